"""`vpr train`: fit a registry backbone on GPS triplets from a tile corpus; resumable; exports weights."""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from ..backbones import Provenance, create_backbone, sha256_file
from ..corpus import TileCorpus, load_corner_table
from .data import CorpusTripletDataset
from .module import RetrievalModule


@dataclasses.dataclass
class TrainConfig:
    backbone: str = "convnext_tiny_gem"
    backbone_options: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None
    maps: str = ""
    corpus: str = ""
    out: str = "runs/train"
    max_steps: int = 2000
    batch_size: int = 16
    val_samples: int = 64
    lr: float = 1e-4
    triplet_weight: float = 1.0
    infonce_weight: float = 0.5
    margin: float = 0.1
    neg_m: float = 100.0
    seed: int = 0
    workers: int = 0
    patience: int = 10
    val_every: int = 200
    resume: str | None = None
    freeze_bn: bool | None = None  # None: frozen when fine-tuning (`weights` given), trained from scratch
    train_only: tuple[str, ...] = ()


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    out = pathlib.Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = create_backbone(cfg.backbone, weights=cfg.weights, **cfg.backbone_options).train()
    corpus, rasters = TileCorpus(cfg.corpus), load_corner_table(cfg.maps)
    train_ds = CorpusTripletDataset(corpus, rasters, model.preprocessor, cfg.max_steps * cfg.batch_size, seed=cfg.seed,
                                    neg_m=cfg.neg_m)
    val_ds = CorpusTripletDataset(corpus, rasters, model.preprocessor, cfg.val_samples, seed=cfg.seed + 10_000,
                                  neg_m=cfg.neg_m)
    module = RetrievalModule(model, lr=cfg.lr, margin=cfg.margin, triplet_weight=cfg.triplet_weight,
                             infonce_weight=cfg.infonce_weight, neg_m=cfg.neg_m, max_steps=cfg.max_steps,
                             freeze_bn=bool(cfg.weights) if cfg.freeze_bn is None else cfg.freeze_bn,
                             train_only=tuple(cfg.train_only))
    loggers = [CSVLogger(out, name="logs")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401
        loggers.append(TensorBoardLogger(out, name="tb"))
    except ImportError:
        pass
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, monitor="val/loss", save_top_k=1)
    trainer = L.Trainer(max_steps=cfg.max_steps, accelerator="auto", devices=1,
                        precision="16-mixed" if torch.cuda.is_available() else "32-true",
                        callbacks=[ckpt, EarlyStopping("val/loss", patience=cfg.patience)], logger=loggers,
                        val_check_interval=min(cfg.val_every, cfg.max_steps), check_val_every_n_epoch=None,
                        log_every_n_steps=1, enable_progress_bar=progress, enable_model_summary=False,
                        num_sanity_val_steps=0)
    resume = cfg.resume
    if resume == "last":
        resume = str(out / "checkpoints" / "last.ckpt") if (out / "checkpoints" / "last.ckpt").exists() else None
    trainer.fit(module, DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers),
                DataLoader(val_ds, batch_size=cfg.batch_size, num_workers=cfg.workers), ckpt_path=resume)
    weights = out / f"{cfg.backbone}.pt"
    model.eval()
    torch.save(model.state_dict(), weights)
    Provenance(source=f"vpr train on {cfg.corpus} ({trainer.global_step} steps, batch {cfg.batch_size})",
               licence="as the training data and trunk weights", sha256=sha256_file(weights), trained=True,
               notes=json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("resume",)})).write(weights)
    return {"weights": str(weights), "steps": trainer.global_step,
            "metrics_csv": str(pathlib.Path(loggers[0].log_dir) / "metrics.csv"),
            "best_checkpoint": ckpt.best_model_path, "last_checkpoint": str(out / "checkpoints" / "last.ckpt")}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a retrieval backbone on GPS triplets (triplet + InfoNCE, Lightning)")
    p.add_argument("--backbone", default="convnext_tiny_gem")
    p.add_argument("--backbone-options", default="{}")
    p.add_argument("--weights", default=None, help="start from these weights (fine-tuning)")
    p.add_argument("--maps", required=True, help="corner-coordinates CSV of the maps the corpus was cut from")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", default="runs/train")
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--infonce-weight", type=float, default=0.5)
    p.add_argument("--triplet-weight", type=float, default=1.0)
    p.add_argument("--neg-m", type=float, default=100.0)
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--resume", default=None, help="a Lightning .ckpt, or 'last' for <out>/checkpoints/last.ckpt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="keep BatchNorm running statistics fixed; default: on when fine-tuning (--weights), off "
                        "from scratch. Re-estimating them from small batches of synthesised views lowered held-out "
                        "recall in every fine-tune measured (README)")
    p.add_argument("--train-only", nargs="+", default=(), metavar="PREFIX",
                   help="train only parameters under these module names (e.g. `pool`: the aggregation layer); "
                        "the rest stays frozen with fixed BatchNorm statistics")
    p.set_defaults(fn=_cmd)


def _cmd(a):
    cfg = TrainConfig(backbone=a.backbone, backbone_options=json.loads(a.backbone_options), weights=a.weights,
                      maps=a.maps, corpus=a.corpus, out=a.out, max_steps=a.max_steps, batch_size=a.batch_size, lr=a.lr,
                      infonce_weight=a.infonce_weight, triplet_weight=a.triplet_weight, neg_m=a.neg_m,
                      val_every=a.val_every, resume=a.resume, seed=a.seed, freeze_bn=a.freeze_bn,
                      train_only=tuple(a.train_only))
    print(json.dumps(train(cfg)))
    return 0
