"""Training: fit a registry backbone on GPS triplets from a tile corpus; resumable; exports weights
(the `vpr train` command builds its options from TrainConfig's fields: tools/train.py)."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from vpr_node.core.backbones import Provenance, create_backbone
from vpr_node.core.backbones.weights import save_weights
from vpr_node.core.maps.sources import load_maps
from vpr_node.core.maps.tiles import TileCorpus
from vpr_node.core.options import option
from vpr_node.core.training.data import CorpusTripletDataset
from vpr_node.core.training.module import RetrievalModule
from vpr_node.core.views.queries import QuerySpec


@dataclasses.dataclass
class TrainConfig:
    backbone: str = option("convnext_tiny_gem", "registry name of the backbone to train")
    backbone_options: dict = option(factory=dict, help="JSON object of backbone options")
    weights: str | None = option(None, "start from these weights (fine-tuning)")
    maps: str = option("", "corner-coordinates CSV of the maps the corpus was cut from")
    corpus: str = option("", "tile corpus folder (vpr make-corpus)")
    out: str = option("runs/train", "run folder: checkpoints, logs, exported weights")
    max_steps: int = option(2000, "optimizer steps")
    max_minutes: float = option(0.0, "wall-clock budget for training in minutes (0 = none); stops at whichever of "
                                     "max_steps and this comes first")
    batch_size: int = option(16, "triplets per step")
    val_samples: int = option(64, "validation triplets (fixed seed)")
    lr: float = option(1e-4, "AdamW learning rate")
    triplet_weight: float = option(1.0, "weight of the triplet loss")
    infonce_weight: float = option(0.5, "weight of the InfoNCE loss")
    margin: float = option(0.1, "triplet margin (squared L2 on unit vectors)")
    neg_m: float = option(100.0, "negatives are tiles farther than this (m)")
    anchor_profile: str = option("standard", "photometric profile of the synthesised anchor views (augment.py)")
    tile_profile: str = option("none", "photometric profile applied to positive/negative tiles (augment.py)")
    altitude: tuple[float, ...] = option((), "anchor altitude range MIN MAX above ground (m; with --hfov); empty = "
                                             "the corpus's nominal 60 m footprint +-30 %")
    hfov: float = option(86.0, "camera horizontal field of view for --altitude (deg)")
    max_tilt_deg: float = option(10.0, "largest camera tilt of the anchor views (deg)")
    seed: int = option(0, "seed of the synthesised anchors")
    workers: int = option(0, "data-loader worker processes")
    patience: int = option(10, "early stopping after this many validations without improvement")
    val_every: int = option(200, "validate every N steps")
    resume: str | None = option(None, "a Lightning .ckpt, or 'last' for <out>/checkpoints/last.ckpt")
    freeze_bn: bool | None = option(None, "keep BatchNorm running statistics fixed; default: on when fine-tuning "
                                          "(--weights), off from scratch. Re-estimating them from small batches of "
                                          "synthesised views lowered held-out recall in every fine-tune measured "
                                          "(README)")
    train_only: tuple[str, ...] = option((), "train only parameters under these module names (e.g. `pool`: the "
                                             "aggregation layer); the rest stays frozen with fixed BatchNorm "
                                             "statistics")
    device: str = option("auto", "auto (CUDA when present) | cpu | cuda")

    def anchor_spec(self):
        spec = QuerySpec(camera=(480, 270), photometric=self.anchor_profile, max_tilt_deg=self.max_tilt_deg)
        if self.altitude:
            spec.altitude_m, spec.hfov_deg = (float(self.altitude[0]), float(self.altitude[1])), self.hfov
        return spec


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    out = pathlib.Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = create_backbone(cfg.backbone, weights=cfg.weights, **cfg.backbone_options).train()
    corpus, rasters = TileCorpus(cfg.corpus), load_maps(cfg.maps)
    data_kw = dict(neg_m=cfg.neg_m, spec=cfg.anchor_spec(), tile_profile=cfg.tile_profile)
    train_ds = CorpusTripletDataset(corpus, rasters, model.preprocessor, cfg.max_steps * cfg.batch_size, seed=cfg.seed,
                                    **data_kw)
    validate = cfg.val_samples > 0
    module = RetrievalModule(model, lr=cfg.lr, margin=cfg.margin, triplet_weight=cfg.triplet_weight,
                             infonce_weight=cfg.infonce_weight, neg_m=cfg.neg_m, max_steps=cfg.max_steps,
                             freeze_bn=bool(cfg.weights) if cfg.freeze_bn is None else cfg.freeze_bn,
                             train_only=tuple(cfg.train_only))
    loggers = [CSVLogger(out, name="logs")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger
        loggers.append(TensorBoardLogger(out, name="tb"))
    except ImportError:
        pass
    if validate:  # keep the best by validation loss, stop early when it stalls
        ckpt = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, monitor="val/loss", save_top_k=1)
        callbacks = [ckpt, EarlyStopping("val/loss", patience=cfg.patience)]
    else:  # a time- or step-budgeted run (mission adaptation): a resumable checkpoint every 20 steps
        ckpt = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0, every_n_train_steps=20)
        callbacks = [ckpt]
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    trainer = L.Trainer(max_steps=cfg.max_steps, accelerator="gpu" if cuda else "cpu", devices=1,
                        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes > 0 else None,
                        precision="16-mixed" if cuda else "32-true", callbacks=callbacks, logger=loggers,
                        val_check_interval=min(cfg.val_every, cfg.max_steps) if validate else None,
                        check_val_every_n_epoch=None, limit_val_batches=None if validate else 0,
                        log_every_n_steps=1, enable_progress_bar=progress, enable_model_summary=False,
                        num_sanity_val_steps=0)
    resume = cfg.resume
    if resume == "last":
        resume = str(out / "checkpoints" / "last.ckpt") if (out / "checkpoints" / "last.ckpt").exists() else None
    val_loader = None
    if validate:
        val_ds = CorpusTripletDataset(corpus, rasters, model.preprocessor, cfg.val_samples, seed=cfg.seed + 10_000,
                                      **data_kw)
        val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, num_workers=cfg.workers)
    trainer.fit(module, DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers),
                val_loader, ckpt_path=resume)
    model.eval()
    weights = save_weights(model, out / f"{cfg.backbone}.pt", Provenance(
        source=f"vpr train on {cfg.corpus} ({trainer.global_step} steps, batch {cfg.batch_size})",
        licence="as the training data and trunk weights",
        notes=json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("resume",)})))
    return {"weights": str(weights), "steps": trainer.global_step,
            "metrics_csv": str(pathlib.Path(loggers[0].log_dir) / "metrics.csv"),
            "best_checkpoint": ckpt.best_model_path, "last_checkpoint": str(out / "checkpoints" / "last.ckpt")}
