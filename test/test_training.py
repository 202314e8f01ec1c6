"""ConvNeXt-Tiny retrieval model and Lightning training (smoke on CPU, real imagery)."""
import csv

import cv2
import numpy as np
import pytest
import timm
import torch
from conftest import WILDNAV

from vpr_node.core.backbones import create_backbone
from vpr_node.core.backbones.weights import Provenance
from vpr_node.core.maps.sources import load_corner_table
from vpr_node.core.training.data import CorpusTripletDataset, TripletCsvDataset, read_database_csv
from vpr_node.core.training.module import RetrievalModule
from vpr_node.core.training.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def maps_and_corpus(sample_maps, sample_corpus, tmp_path_factory):
    """Real satellite imagery when ../shared is there, else the procedural sample map."""
    if WILDNAV.exists():
        from vpr_node.core.maps.tiles import TileCorpus
        from vpr_node.core.maps.tiling import cut_tiles
        out = tmp_path_factory.mktemp("wn_corpus")
        cut_tiles(load_corner_table(WILDNAV)[:3], out, tile_m=60, overlap=0.5, tile_px=96, progress=False)
        return WILDNAV, TileCorpus(out)
    return sample_maps, sample_corpus


def test_convnext_model_contract(tmp_path):
    m = create_backbone("convnext_tiny_gem", input_size=64)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = m(x)
        assert out.shape == (2, 512) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-4)
        assert torch.equal(out, m(x))
    assert m.provenance.trained is False
    assert create_backbone("convnext_tiny_gem", pooling="avg", descriptor_dim=256).descriptor_dim == 256
    timm_sd = timm.create_model("convnext_tiny", pretrained=False).state_dict()  # timm layout incl. classifier
    torch.save(timm_sd, tmp_path / "convnext_tiny_timm.pth")
    m2 = create_backbone("convnext_tiny_gem", trunk_weights=str(tmp_path / "convnext_tiny_timm.pth"))
    assert torch.equal(m2.trunk.stem[0].weight, timm_sd["stem.0.weight"])


def test_loss_falls_on_real_triplets(maps_and_corpus):
    maps, corpus = maps_and_corpus
    torch.manual_seed(0)
    model = create_backbone("convnext_tiny_gem", input_size=64).train()
    ds = CorpusTripletDataset(corpus, load_corner_table(maps), model.preprocessor, size=6, seed=1)
    batch = torch.utils.data.default_collate([ds[i] for i in range(6)])
    module = RetrievalModule(model, lr=3e-4, max_steps=20)
    opt = module.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(20):
        loss, triplet, infonce = module.losses(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    print("loss per step:", [round(v, 3) for v in losses])
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])


def test_train_command_checkpoints_resumes_and_exports(maps_and_corpus, tmp_path):
    maps, corpus = maps_and_corpus
    cfg = TrainConfig(backbone="efficientnet_lite0_gem", backbone_options={"input_size": 64}, maps=str(maps),
                      corpus=str(corpus.root), out=str(tmp_path / "run"), max_steps=2, batch_size=2, val_samples=2,
                      val_every=2)
    first = train(cfg, progress=False)
    assert first["steps"] == 2
    cfg.max_steps, cfg.resume = 4, "last"
    second = train(cfg, progress=False)
    assert second["steps"] == 4  # resumed from step 2, not restarted
    rows = list(csv.DictReader(open(second["metrics_csv"])))
    assert any(r.get("train/loss") for r in rows) and any(r.get("val/loss") for r in rows)
    prov = Provenance.read(__import__("pathlib").Path(second["weights"]))
    assert prov.trained and "4 steps" in prov.source
    m = create_backbone("efficientnet_lite0_gem", weights=second["weights"], input_size=64)
    assert m.provenance.trained


def test_seed_file_formats(tmp_path):
    for name in ("a", "p", "n"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((40, 40, 3), 100, np.uint8))
    (tmp_path / "triplets.csv").write_text("anchor,positive,negative,place\na.png,p.png,n.png,7\n")
    ds = TripletCsvDataset(tmp_path / "triplets.csv", create_backbone("convnext_tiny_gem", input_size=32).preprocessor)
    item = ds[0]
    assert item["anchor"].shape == (3, 32, 32) and item["place"] == 7
    (tmp_path / "db.csv").write_text("image,lat,lon,heading\na.png,60.4,22.46,90\n")
    assert read_database_csv(tmp_path / "db.csv")[0]["heading"] == 90.0
    (tmp_path / "bad.csv").write_text("anchor,positive\na.png,p.png\n")
    with pytest.raises(ValueError, match="needs columns"):
        TripletCsvDataset(tmp_path / "bad.csv", None)


@pytest.mark.parametrize("freeze", ["train_only_pool", "freeze_bn", "finetune_default"])
def test_frozen_parts_stay_as_loaded_through_the_train_command(maps_and_corpus, tmp_path, freeze):
    """`vpr train --train-only pool` / `--freeze-bn`, through the real Lightning run (Lightning keeps the
    modes its caller set and never calls module.train(), so this must hold inside the Trainer): with
    --train-only only the aggregation layer changes, trunk weights and BatchNorm statistics are exactly
    as loaded; with --freeze-bn the weights learn while every BatchNorm running statistic is unchanged.
    Fine-tuning (--weights given) freezes BatchNorm statistics without being asked."""
    maps, corpus = maps_and_corpus
    kw = {"train_only_pool": {"train_only": ("pool",)}, "freeze_bn": {"freeze_bn": True, "lr": 1e-2},
          "finetune_default": {"weights": str(tmp_path / "start.pt"), "lr": 1e-2}}[freeze]
    torch.save(create_backbone("efficientnet_lite0_gem", input_size=64).state_dict(), tmp_path / "start.pt")
    cfg = TrainConfig(backbone="efficientnet_lite0_gem", backbone_options={"input_size": 64}, maps=str(maps),
                      corpus=str(corpus.root), out=str(tmp_path / "run"), max_steps=2, batch_size=2, val_samples=2,
                      val_every=1, **kw)
    before = create_backbone("efficientnet_lite0_gem", input_size=64).state_dict()
    after = torch.load(train(cfg, progress=False)["weights"])
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    stats = {k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert stats and not changed & stats, sorted(changed & stats)[:5]
    if freeze == "train_only_pool":
        assert changed == {"pool.p"}, sorted(changed)[:5]
    else:
        assert any(k.endswith("conv_pw.weight") for k in changed), sorted(changed)[:5]


def test_train_only_prefix_must_name_parameters():
    from vpr_node.core.errors import ConfigurationError
    with pytest.raises(ConfigurationError, match=r"names no parameter.*\['blocks', 'pool', 'stem'\]"):
        RetrievalModule(create_backbone("efficientnet_lite0_gem", input_size=64), train_only=("netvlad",))
