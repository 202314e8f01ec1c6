"""verification/matchers and map features: one registry of matchers; XFeat + LighterGlue as two networks that export
to ONNX faithfully (the hand-written attention equals kornia's); the map's features prepared before flight, read by
window, checked against the manifest and the matcher, built resumably; a learned matcher's fixes against windows;
the cascade; the verifier running an exported matcher without PyTorch."""
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from vpr_node.core.errors import ConfigurationError, IndexUnavailableError
from vpr_node.core.indexing.map_features import MapFeaturesConfig, build_map_features, plan_blocks
from vpr_node.core.maps.geo import haversine_m
from vpr_node.core.maps.sources import load_corner_table
from vpr_node.core.verification.map_features import FOLDER, MapFeatures, features_dir
from vpr_node.core.verification.matchers import MATCHERS, make_matcher
from vpr_node.core.verification.result import FrameHints
from vpr_node.core.verification.verifier import Verifier, VerifyConfig


@pytest.fixture(scope="module")
def retrieved(gem_strategy, gem_index_dir, sample_queries):
    """(query, its top-10 candidates) of the six sample queries."""
    from vpr_node.core.index.loaded import DescriptorIndex
    from vpr_node.core.retrieval.strategy import RetrievalStrategy
    s = RetrievalStrategy(gem_strategy.backbone, gem_strategy.runtime, DescriptorIndex(gem_index_dir))
    return [(q, s.retrieve_topk(s.embed_query(q.image), 10)) for q in sample_queries]


def test_the_registry_builds_its_matchers_and_refuses_unknown_names():
    for name in ("sift", "orb", "akaze", "xfeat", "xfeat-mnn"):
        m = make_matcher(name, max_features=512, runtime="pytorch")
        assert m.name == name and m.map_source in ("tiles", "windows")
    assert set(MATCHERS) >= {"sift", "xfeat", "aliked"}
    with pytest.raises(ConfigurationError, match="choose one of"):
        make_matcher("superpoint")  # its weights download at run time: not in the registry
    with pytest.raises(ConfigurationError, match="pytorch only"):
        make_matcher("aliked", runtime="onnxruntime")


def test_lighterglue_spelled_out_for_export_equals_kornias():
    import torch

    from vpr_node.core.verification.matchers.xfeat import torch_modules
    _, scores = torch_modules(256)
    rng = torch.Generator().manual_seed(0)
    k0, k1 = torch.rand(1, 300, 2, generator=rng) * 400, torch.rand(1, 350, 2, generator=rng) * 400
    d0 = torch.nn.functional.normalize(torch.randn(1, 300, 64, generator=rng), dim=-1)
    d1 = torch.nn.functional.normalize(torch.randn(1, 350, 64, generator=rng), dim=-1)
    size = torch.tensor([[400.0, 400.0]])
    with torch.inference_mode():
        ours = scores(k0, k1, d0, d1, size, size)
        ref = scores.lg({"image0": {"keypoints": k0, "descriptors": d0, "image_size": size},
                         "image1": {"keypoints": k1, "descriptors": d1, "image_size": size}})["log_assignment"]
    assert torch.allclose(ours.exp(), ref[0, :-1, :-1].exp(), atol=1e-4)


def test_xfeat_exports_to_onnx_faithfully(gem_index_dir, sample_queries):
    from vpr_node.core.verification.matchers.xfeat import PARITY_TOLERANCE
    folder = features_dir(gem_index_dir, "xfeat")
    meta = json.loads((folder / "matcher_onnx.json").read_text())
    assert meta["parity_max_abs_diff"] <= PARITY_TOLERANCE and meta["top_k"] == MapFeaturesConfig().max_features
    onnx = make_matcher("xfeat", max_features=meta["top_k"], runtime="onnxruntime", onnx_dir=folder)
    torch_m = make_matcher("xfeat", max_features=meta["top_k"], runtime="pytorch")
    a, b = sample_queries[0].image, sample_queries[1].image
    fa, fb = torch_m.extract(a), torch_m.extract(b)
    assert np.array_equal(torch_m.match(fa, fa)[0], onnx.match(fa, fa)[0])  # same correspondences
    assert len(onnx.extract(a)) == len(fa) > 500 and len(fb) > 500


def test_map_features_are_read_by_window(gem_index_dir, sample_maps):
    mf = MapFeatures(gem_index_dir)
    r = load_corner_table(sample_maps)[0]
    lat, lon = (float(v) for v in r.geo.pixel_to_latlon(r.geo.width / 2, r.geo.height / 2))
    whole, _ = mf.window(lat, lon, 500.0, 10**6)
    assert len(whole) == mf.meta["features"] > 1000  # a window over the whole map holds every feature once
    feats, win = mf.window(lat, lon, 40.0, 10**6)
    assert 0 < len(feats) < len(whole) and win.size == (400, 400)  # 80 m at 0.2 m/px
    assert np.all((feats.xy >= 0) & (feats.xy < 400))
    for x, y in feats.xy[:50]:  # each lies within the window's square around the centre
        plat, plon = win.to_latlon(x, y)
        assert haversine_m(lat, lon, plat, plon) <= 40.0 * math.sqrt(2) + 0.5
    strongest, _ = mf.window(lat, lon, 40.0, 100)
    assert len(strongest) == 100 and strongest.scores.min() >= np.sort(feats.scores)[-100]


def test_blocks_cover_each_raster_pixel_once(sample_maps):
    rasters = load_corner_table(sample_maps)
    blocks = plan_blocks(rasters, MapFeaturesConfig(block_px=128, overlap_px=32))
    w, h = rasters[0].geo.width, rasters[0].geo.height
    owned = np.zeros((h, w), np.int32)
    for b in blocks:
        xlo, xhi, ylo, yhi = b.own
        ys, xs = np.mgrid[0:h, 0:w] + 0.5
        owned += ((xs >= xlo) & (xs < xhi) & (ys >= ylo) & (ys < yhi)).astype(np.int32)
        assert b.x0 <= xlo and xhi <= b.x0 + b.side and b.y0 <= ylo and yhi <= b.y0 + b.side
    assert owned.min() == 1 and owned.max() == 1


def test_map_features_are_checked_against_the_manifest_and_the_matcher(gem_index_dir, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(gem_index_dir, copy)
    with pytest.raises(ConfigurationError, match="map-features-matcher xfeat"):  # made by another XFeat version
        MapFeatures(copy).check_matcher(type("M", (), {"name": "xfeat", "version": 99})())
    meta = features_dir(copy, "xfeat") / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "gsd_m": 0.3}))
    with pytest.raises(IndexUnavailableError, match="manifest"):
        MapFeatures(copy)
    shutil.rmtree(copy / FOLDER)
    with pytest.raises(ConfigurationError, match="vpr map-features"):
        Verifier.for_index(copy)  # the default's fallback needs them: fails fast, saying what to run
    with pytest.raises(ConfigurationError, match="map-features-matcher aliked"):
        Verifier.for_index(gem_index_dir, VerifyConfig(matcher="aliked", fallback_matcher=""))
    assert Verifier.for_index(copy, VerifyConfig(fallback_matcher="")).fallback is None


def test_an_interrupted_map_feature_build_resumes_where_it_stopped(gem_index_dir, sample_maps, tmp_path):
    cfg = MapFeaturesConfig(block_px=256, chunk_blocks=2)
    inner = make_matcher("xfeat", max_features=cfg.max_features, runtime="pytorch")

    class Failing:
        name, version, calls = inner.name, inner.version, 0

        def identity(self):
            return inner.identity()

        def extract(self, rgb):
            Failing.calls += 1
            if Failing.calls == 5:
                raise RuntimeError("power cut")
            return inner.extract(rgb)

    index = tmp_path / "index"
    shutil.copytree(gem_index_dir, index)
    shutil.rmtree(index / FOLDER)
    with pytest.raises(RuntimeError, match="power cut"):
        build_map_features(sample_maps, index, cfg, matcher=Failing(), progress=False, log=lambda *_: None)
    done = sorted(p.name for p in (index / "work" / FOLDER / "xfeat" / "shards").glob("*.entries.npy"))
    assert done == ["00000.entries.npy", "00001.entries.npy"]  # two chunks of two blocks finished
    Failing.calls = -10**6
    meta = build_map_features(sample_maps, index, cfg, matcher=Failing(), progress=False, log=lambda *_: None)
    n_blocks = len(plan_blocks(load_corner_table(sample_maps), cfg))
    assert Failing.calls == -10**6 + n_blocks - 4  # only the blocks of the unfinished chunks were extracted
    clean = tmp_path / "clean"
    shutil.copytree(gem_index_dir, clean)
    shutil.rmtree(clean / FOLDER)
    again = build_map_features(sample_maps, clean, cfg, matcher=inner, progress=False, log=lambda *_: None)
    assert meta["features"] == again["features"]
    a, b = (np.load(features_dir(d, "xfeat") / "features.npy") for d in (index, clean))
    assert np.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("matcher", ["xfeat", "xfeat-mnn"])
def test_a_learned_matcher_fixes_frames_against_map_windows(gem_index_dir, retrieved, matcher):
    v = Verifier.for_index(gem_index_dir, VerifyConfig(matcher=matcher, fallback_matcher=""))
    for hinted in (False, True):
        good = 0
        for q, cands in retrieved:
            hints = FrameHints(heading_deg=q.yaw_deg) if hinted else None
            res = v.verify(q.image, cands, hints)
            assert res.matcher == matcher and len(res.candidates) == len(cands)
            if res.fix is not None and haversine_m(q.lat, q.lon, res.fix.lat, res.fix.lon) < 5.0:
                good += 1
                yaw_error = (res.fix.heading_deg - q.yaw_deg + 180) % 360 - 180
                assert abs(yaw_error) < 5.0
                assert res.fix.sigma_m < 25 and np.all(np.linalg.eigvalsh(np.asarray(res.fix.cov_en)) > 0)
            shared = [c for c in res.candidates if c.reason == "same_window"]
            assert all(not c.valid for c in shared)  # one fix per window: shared candidates do not "agree"
        assert good >= 4, (matcher, hinted)


def test_the_cascade_runs_the_fallback_only_on_frames_the_first_cannot_verify(gem_index_dir, retrieved):
    v = Verifier.for_index(gem_index_dir)  # sift > xfeat, uncalibrated: the fallback runs where SIFT has no fix
    q, cands = retrieved[0]
    res = v.verify(q.image, cands)
    assert res.fix is not None and res.matcher == "sift" and len(res.stages) == 1
    blank = np.full_like(q.image, 127)  # nothing to match for SIFT: the fallback runs, finds nothing either
    res = v.verify(blank, cands)
    assert [s.matcher for s in res.stages] == ["sift", "xfeat"] and res.fix is None
    v.run_all_stages = True  # calibration: both stages on every frame
    res = v.verify(q.image, cands)
    assert [s.matcher for s in res.stages] == ["sift", "xfeat"] and res.matcher == "sift"


def test_the_verifier_runs_an_exported_matcher_without_pytorch(gem_index_dir, retrieved, tmp_path):
    q, cands = retrieved[0]
    np.save(tmp_path / "frame.npy", q.image)
    (tmp_path / "cands.json").write_text(json.dumps([[c.rank, c.tile.name, c.tile.lat, c.tile.lon, c.distance]
                                                     for c in cands]))
    code = f"""
import json, sys, numpy as np
from vpr_node.core.types import Candidate, TileId
from vpr_node.core.verification.verifier import Verifier, VerifyConfig
v = Verifier.for_index({str(gem_index_dir)!r}, VerifyConfig(matcher="xfeat", fallback_matcher=""))
rows = json.load(open({str(tmp_path / 'cands.json')!r}))
cands = [Candidate(r, TileId(18, la, lo, t), d, 0, "") for r, t, la, lo, d in rows]
res = v.verify(np.load({str(tmp_path / 'frame.npy')!r}), cands)
print(json.dumps({{"runtime": v.primary.runtime, "torch": "torch" in sys.modules, "fix": res.fix is not None}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"runtime": "onnxruntime", "torch": False, "fix": True}
