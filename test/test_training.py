"""ConvNeXt-Tiny retrieval model and Lightning training (smoke on CPU, real imagery)."""
import csv

import cv2
import numpy as np
import pytest
import timm
import torch

from conftest import WILDNAV
from vpr_node.core.backbones import create_backbone
from vpr_node.core.backbones.base import Provenance
from vpr_node.core.corpus import load_corner_table
from vpr_node.core.training.data import CorpusTripletDataset, TripletCsvDataset, read_database_csv
from vpr_node.core.training.module import RetrievalModule
from vpr_node.core.training.train import TrainConfig, train


@pytest.fixture(scope="module")
def maps_and_corpus(sample_maps, sample_corpus, tmp_path_factory):
    """Real satellite imagery when ../shared is there, else the procedural sample map."""
    if WILDNAV.exists():
        from vpr_node.core.corpus import TileCorpus, cut_tiles
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


def test_freeze_bn_keeps_running_statistics_while_weights_train(maps_and_corpus):
    maps, corpus = maps_and_corpus
    torch.manual_seed(0)
    model = create_backbone("efficientnet_lite0_gem", input_size=64)
    ds = CorpusTripletDataset(corpus, load_corner_table(maps), model.preprocessor, size=4, seed=2)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    module = RetrievalModule(model, lr=1e-3, max_steps=2, freeze_bn=True).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight.detach().clone()
    opt = module.configure_optimizers()["optimizer"]
    loss = module.losses(batch)[0]
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stats, bns))
    assert not torch.equal(conv, next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight)


def test_train_only_updates_just_the_named_layer(maps_and_corpus):
    """`vpr train --train-only pool`: the aggregation layer learns; the trunk's weights and BatchNorm
    statistics stay exactly as loaded; a prefix that names nothing fails with the names there are."""
    from vpr_node.core.errors import ConfigurationError
    maps, corpus = maps_and_corpus
    torch.manual_seed(0)
    model = create_backbone("efficientnet_lite0_gem", input_size=64)
    ds = CorpusTripletDataset(corpus, load_corner_table(maps), model.preprocessor, size=4, seed=3)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    module = RetrievalModule(model, lr=1e-2, max_steps=2, train_only=("pool",)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = module.configure_optimizers()["optimizer"]
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.pool.p.numel()
    for _ in range(2):
        loss = module.losses(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"pool.p"}, changed  # trunk weights and BatchNorm running statistics untouched
    with pytest.raises(ConfigurationError, match=r"names no parameter.*\['blocks', 'pool', 'stem'\]"):
        RetrievalModule(create_backbone("efficientnet_lite0_gem", input_size=64), train_only=("netvlad",))
