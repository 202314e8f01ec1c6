"""Lightning module: triplet loss (batch-hard negatives) + weighted InfoNCE over any VprBackbone."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from vpr_node.core.errors import ConfigurationError
from vpr_node.core.maps.geo import haversine_m


def _far_mask(batch, pos_m: float, neg_m: float):
    """(B, 2B) bool: which batch tiles (positives then negatives) are valid negatives for each anchor,
    and (B, 2B) which are positives (target or other tiles within pos_m)."""
    if "anchor_latlon" in batch:
        a = batch["anchor_latlon"].cpu().numpy()
        t = torch.cat([batch["positive_latlon"], batch["negative_latlon"]]).cpu().numpy()
        d = torch.from_numpy(haversine_m(a[:, None, 0], a[:, None, 1], t[None, :, 0], t[None, :, 1]))
        return d > neg_m, d <= pos_m
    places = batch["place"]
    tile_places = torch.cat([places, torch.full_like(places, -1)])
    same = places[:, None] == tile_places[None, :]
    return ~same, same


def freeze_except(model: torch.nn.Module, prefixes) -> None:
    """Train only the parameters under the given module-name prefixes (e.g. `pool` for the NetVLAD
    layer of efficientnet_lite0_netvlad); every other parameter is frozen. A prefix that names no
    parameter is a ConfigurationError that lists the names there are."""
    def under(name: str, pre: str) -> bool:
        return name == pre or name.startswith(pre + ".")

    names = [n for n, _ in model.named_parameters()]
    for pre in prefixes:
        if not any(under(n, pre) for n in names):
            top = sorted({n.split(".")[0] for n in names})
            raise ConfigurationError(f"--train-only {pre!r} names no parameter of {type(model).__name__}; "
                                     f"its top-level modules are {top}", parameter="train_only")
    for n, p in model.named_parameters():
        p.requires_grad_(any(under(n, pre) for pre in prefixes))


class RetrievalModule(L.LightningModule):
    def __init__(self, model, lr: float = 1e-4, weight_decay: float = 0.05, margin: float = 0.1,
                 triplet_weight: float = 1.0, infonce_weight: float = 0.5, temperature: float = 0.07,
                 pos_m: float = 25.0, neg_m: float = 100.0, max_steps: int = 1000, freeze_bn: bool = False,
                 train_only: tuple[str, ...] = ()):
        super().__init__()
        self.model = model
        self.save_hyperparameters(ignore=["model"])
        if train_only:
            freeze_except(model, train_only)

    def forward(self, x):
        return self.model(x)

    def hold_frozen_modules_in_eval(self) -> None:
        """With freeze_bn, BatchNorm layers keep their running statistics (eval mode) while the rest
        trains: small fine-tuning batches would otherwise re-estimate them from a few images. Modules
        frozen by `train_only` stay in eval mode too (fixed BatchNorm statistics, no dropout)."""
        for m in self.model.modules():
            own = list(m.parameters(recurse=False))
            frozen = bool(own) and not any(p.requires_grad for p in own)
            if frozen or (self.hparams.freeze_bn and isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
                m.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            self.hold_frozen_modules_in_eval()
        return self

    def on_train_batch_start(self, batch, batch_idx):
        # Lightning (2.6) never calls module.train() in its fit loop: it keeps the submodules' modes
        # as the caller left them (and restores them after validation), so the modes are set here.
        self.hold_frozen_modules_in_eval()

    def losses(self, batch):
        h = self.hparams
        b = batch["anchor"].shape[0]
        emb = self.model(torch.cat([batch["anchor"], batch["positive"], batch["negative"]]))
        a, tiles = emb[:b], emb[b:]  # tiles: positives (b) then negatives (b)
        sim = a @ tiles.T  # (B, 2B) cosine
        far, near = _far_mask(batch, h.pos_m, h.neg_m)
        far, near = far.to(sim.device), near.to(sim.device)
        idx = torch.arange(b, device=sim.device)
        d_pos = 2 - 2 * sim[idx, idx]
        hard_neg = sim.masked_fill(~far, -2.0).max(dim=1).values  # online hard-negative mining (batch-hard)
        triplet = F.relu(h.margin + d_pos - (2 - 2 * hard_neg)).mean()
        logits = (sim / h.temperature).masked_fill(near & ~torch.eye(b, 2 * b, dtype=torch.bool, device=sim.device),
                                                   float("-inf"))
        infonce = F.cross_entropy(logits, idx)
        loss = h.triplet_weight * triplet + h.infonce_weight * infonce
        return loss, triplet, infonce

    def training_step(self, batch, _):
        loss, triplet, infonce = self.losses(batch)
        self.log_dict({"train/loss": loss, "train/triplet": triplet, "train/infonce": infonce}, prog_bar=True,
                      batch_size=batch["anchor"].shape[0])
        return loss

    def validation_step(self, batch, _):
        loss, triplet, infonce = self.losses(batch)
        self.log_dict({"val/loss": loss, "val/triplet": triplet, "val/infonce": infonce}, prog_bar=True,
                      batch_size=batch["anchor"].shape[0])

    def configure_optimizers(self):
        trainable = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
