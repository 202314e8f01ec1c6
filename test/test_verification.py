"""verification/: frames verified against the index folder's own tile pixels: fixes metres from the truth,
candidates re-ranked by inliers, implausible homographies refused with the reason, typed errors for bad input, the
covariance that the fit implies, the calibration of the confidence, and the engine that pairs frames with their
results and reports the ones that never meet."""
import json
import math
import shutil

import numpy as np
import pytest

from vpr_node.core.errors import IndexUnavailableError, VprVerificationError
from vpr_node.core.index.folder import TILE_IMAGES, VERIFICATION, add_to_manifest
from vpr_node.core.io.recorder import FlightDataRecorder, read_records
from vpr_node.core.maps.geo import haversine_m
from vpr_node.core.maps.sources import load_corner_table
from vpr_node.core.retrieval.engine import Frame
from vpr_node.core.verification import geometry
from vpr_node.core.verification.confidence import FEATURES, Calibration, calibrate, covariance_scale
from vpr_node.core.verification.engine import RetrievalResult, VerificationEngine
from vpr_node.core.verification.verifier import Verifier, VerifyConfig
from vpr_node.core.views.queries import QuerySpec, synthesise_queries


@pytest.fixture(scope="module")
def verifier(gem_index_dir):
    return Verifier.for_index(gem_index_dir)


@pytest.fixture(scope="module")
def verified(gem_strategy, gem_index_dir, sample_queries, verifier):
    """(query, candidates, Verification) of the six sample queries against the GeM index's tiles."""
    from vpr_node.core.index.loaded import DescriptorIndex
    from vpr_node.core.retrieval.strategy import RetrievalStrategy
    s = RetrievalStrategy(gem_strategy.backbone, gem_strategy.runtime, DescriptorIndex(gem_index_dir))
    out = []
    for q in sample_queries:
        cands = s.retrieve_topk(s.embed_query(q.image), 10)
        out.append((q, cands, verifier.verify(q.image, cands)))
    return out


def test_the_index_folder_owns_its_tile_images(gem_index_dir, sample_corpus):
    manifest = json.loads((gem_index_dir / "manifest.json").read_text())
    assert manifest["tile_images"] == "tiles" and TILE_IMAGES in manifest["files"]
    listed = (gem_index_dir / TILE_IMAGES).read_text().splitlines()
    assert len(listed) == len(sample_corpus) and all((gem_index_dir / line.split("  ")[1]).is_file() for line in listed)


def test_fixes_lie_metres_from_the_truth(verified):
    fixes = [(q, v) for q, _, v in verified if v.fix is not None]
    assert len(fixes) >= 4, [v.reason for _, _, v in verified]
    for q, v in fixes:
        assert haversine_m(q.lat, q.lon, v.fix.lat, v.fix.lon) < 5.0
        yaw_error = (v.fix.heading_deg - q.yaw_deg + 180) % 360 - 180
        assert abs(yaw_error) < 5.0, (v.fix.heading_deg, q.yaw_deg)
        cov = np.asarray(v.fix.cov_en)
        assert cov.shape == (2, 2) and np.all(np.linalg.eigvalsh(cov) > 0) and v.fix.sigma_m < 25


def test_candidates_are_reranked_by_inliers_with_reasons_for_the_rest(verified, verifier):
    for _, cands, v in verified:
        assert sorted(c.tile_id for c in v.candidates) == sorted(c.tile.name for c in cands[:verifier.cfg.verify_k])
        valid = [c for c in v.candidates if c.valid]
        assert [c.inliers for c in valid] == sorted((c.inliers for c in valid), reverse=True)
        assert v.candidates[:len(valid)] == valid  # valid ones first
        assert all(c.reason for c in v.candidates[len(valid):])
        assert v.reason == "uncalibrated" or v.fix is None  # this index has no calibration


def test_bad_input_is_a_typed_error(verifier, sample_queries, verified):
    with pytest.raises(VprVerificationError, match="no candidates"):
        verifier.verify(sample_queries[0].image, [])
    _, cands, _ = verified[0]
    other = type(cands[0])(0, type(cands[0].tile)(18, 0.0, 0.0, "a_tile_of_another_map"), 0.1, 192, "x")
    with pytest.raises(IndexUnavailableError, match="not in the index's tile table"):
        verifier.verify(sample_queries[0].image, [other])


def test_a_changed_tile_image_is_refused(gem_index_dir, tmp_path, sample_queries, verified):
    copy = tmp_path / "index"
    shutil.copytree(gem_index_dir, copy)
    _, cands, _ = verified[0]
    rel = [line.split("  ")[1] for line in (copy / TILE_IMAGES).read_text().splitlines()
           if line.split("  ")[1].endswith(f"{cands[0].tile.name}.png")][0]
    tile = copy / rel
    tile.unlink()  # a hard link: replace the file, not the corpus's
    shutil.copyfile(gem_index_dir / rel, tile)
    data = bytearray(tile.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tile.write_bytes(bytes(data))
    with pytest.raises(IndexUnavailableError, match="corrupt or was changed"):
        Verifier.for_index(copy).verify(sample_queries[0].image, cands[:1])


def _fit(H, n=50, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, [400, 300], (n, 2))
    dst = geometry.project(H, src) + rng.normal(0, noise, (n, 2))
    return geometry.HomographyFit(np.asarray(H, np.float64), src, dst, n, 0.0)


def test_homographies_a_camera_over_the_ground_cannot_make_are_refused():
    size, tile = (400, 300), (320, 320)
    ok = np.array([[0.8, 0.0, 0.0], [0.0, 0.8, 40.0], [0.0, 0.0, 1.0]])
    assert geometry.implausible(_fit(ok), size, tile) == ""
    mirrored = np.array([[-0.8, 0.0, 320.0], [0.0, 0.8, 40.0], [0.0, 0.0, 1.0]])
    assert geometry.implausible(_fit(mirrored), size, tile) == "degenerate_homography"
    sheared = np.array([[0.8, 2.5, 0.0], [0.0, 0.3, 40.0], [0.0, 0.0, 1.0]])
    assert geometry.implausible(_fit(sheared), size, tile) == "degenerate_homography"
    tiny = np.array([[0.05, 0.0, 150.0], [0.0, 0.05, 150.0], [0.0, 0.0, 1.0]])
    assert geometry.implausible(_fit(tiny), size, tile) == "implausible_scale"
    elsewhere = ok + np.array([[0, 0, 900.0], [0, 0, 0], [0, 0, 0]])
    assert geometry.implausible(_fit(elsewhere), size, tile) == "fix_outside_tile"


def test_the_fix_covariance_matches_the_scatter_of_noisy_fits():
    """200 fits to the same ground truth with 1 px keypoint noise (seeded): the propagated covariance predicts the
    spread of the fixes (mean squared Mahalanobis error near its expectation 2, within the sampling spread)."""
    H = np.array([[0.7, -0.2, 100.0], [0.2, 0.7, 60.0], [1e-5, 2e-5, 1.0]])
    truth = geometry.centre_and_heading(H.ravel()[:8], (400, 300))[:2]
    nees = []
    for seed in range(200):
        f = _fit(H, n=40, seed=seed, noise=1.0)
        fit, _ = geometry.estimate(f.src, f.dst, 4.0, 15)
        out, cov = geometry.fix_covariance(fit, (400, 300))
        e = out[:2] - truth
        nees.append(e @ np.linalg.solve(cov[:2, :2], e))
    assert 1.4 < np.mean(nees) < 2.8, np.mean(nees)


def test_calibration_accepts_only_what_validation_says_is_right():
    rng = np.random.default_rng(0)
    n = 400
    inliers = rng.integers(15, 300, n)
    correct = rng.random(n) < 1 / (1 + np.exp(-(inliers - 60) / 10))  # more inliers, more often right
    x = np.c_[np.log1p(inliers), rng.random((n, 6))]
    err = np.where(correct, rng.uniform(0, 5, n), rng.uniform(40, 400, n))
    err_en = np.c_[err / math.sqrt(2), err / math.sqrt(2)]
    cov = np.repeat(np.eye(2)[None] * 4.0, n, 0)
    cal = calibrate(x, err, err_en, cov, n_frames=500)
    accepted = np.array([cal.confidence(v) >= cal.threshold for v in x])
    assert correct[accepted].mean() >= 0.99 and accepted.sum() >= 100
    assert cal.validation["precision"] >= 0.99 and cal.validation["acceptance"] == round(accepted.sum() / 500, 4)
    few = calibrate(x[:5], err[:5], err_en[:5], cov[:5], n_frames=500)
    assert few.threshold > 1 and "no fix will be accepted" in few.validation["warning"]


def test_covariance_scale_makes_the_errors_fit():
    rng = np.random.default_rng(1)
    err = rng.normal(0, 3.0, (500, 2))  # true sigma 3 m; the fit says 1 m
    s = covariance_scale(err, np.repeat(np.eye(2)[None], 500, 0), floor_m=0.0)
    assert 7.0 < s < 11.0  # about 9 = 3^2
    assert covariance_scale(err, np.repeat(np.eye(2)[None] * 100.0, 500, 0), floor_m=0.0) == 1.0  # never shrinks


def test_a_calibrated_index_accepts_fixes(gem_index_dir, tmp_path, verified, sample_queries):
    copy = tmp_path / "index"
    shutil.copytree(gem_index_dir, copy)
    d = len(FEATURES)
    Calibration([0.0] * d, 6.0, [0.0] * d, [1.0] * d, threshold=0.5, verifier=VerifyConfig().label).save(
        copy / VERIFICATION)
    add_to_manifest(copy, VERIFICATION)
    v = Verifier.for_index(copy, require_calibration=True)
    q, cands, _ = verified[0]
    res = v.verify(q.image, cands)
    assert res.fix is not None and res.accepted and res.reason == "" and res.fix.confidence > 0.99
    (copy / VERIFICATION).write_text((copy / VERIFICATION).read_text().replace('"threshold": 0.5', '"threshold": 0.4'))
    with pytest.raises(IndexUnavailableError, match="changed after calibration"):
        Verifier.for_index(copy)


def test_a_missing_calibration_fails_fast_where_required(gem_index_dir):
    from vpr_node.core.errors import ConfigurationError
    with pytest.raises(ConfigurationError, match="calibrate-verifier"):
        Verifier.for_index(gem_index_dir, require_calibration=True)


def test_the_engine_pairs_frames_with_results_and_reports_the_unmatched(verifier, verified, tmp_path):
    q, cands, _ = verified[0]
    rec = FlightDataRecorder(tmp_path / "fdr.jsonl")
    got = []
    eng = VerificationEngine(verifier, lambda pair, v: got.append(v), recorder=rec, match_timeout_s=0.5)
    index_id = verifier.tiles.index_id
    # result first, then its frame: paired
    eng.add_result(RetrievalResult(1000, "cam", index_id, cands))
    eng.add_frame(Frame(decode=lambda: q.image, frame_id="cam", stamp_ns=1000))
    eng.process(eng.queue.get(timeout=1)[0])
    assert len(got) == 1 and got[0].fix is not None
    # a frame whose result never comes, and a result whose frame never comes: both reported after the timeout
    eng.add_frame(Frame(decode=lambda: q.image, frame_id="cam", stamp_ns=2000))
    eng.add_result(RetrievalResult(3000, "cam", index_id, cands))
    assert eng.expire(now=1e12) == 2
    counts = eng.snapshot()
    assert counts["frame_without_result"] == 1 and counts["result_without_frame"] == 1
    # a result from another index is a typed error, not a fix
    eng.add_result(RetrievalResult(4000, "cam", "0" * 16, cands))
    eng.add_frame(Frame(decode=lambda: q.image, frame_id="cam", stamp_ns=4000))
    assert eng.process(eng.queue.get(timeout=1)[0]) is None
    rec.close()
    kinds = [r["kind"] for r in read_records(tmp_path / "fdr.jsonl")]
    assert kinds.count("c2.vpr.verify_error") == 3 and kinds.count("c2.vpr.verification") == 1
    reasons = {r.get("reason") for r in read_records(tmp_path / "fdr.jsonl") if r["kind"] == "c2.vpr.verify_error"}
    assert reasons == {"frame_without_result", "result_without_frame", "other_index"}


def test_changed_ground_views_are_the_photometric_views_at_the_same_places(sample_maps):
    rasters = load_corner_table(sample_maps)
    spec = QuerySpec(camera=(480, 270), footprint_m=60.0, photometric="strong")
    a = list(synthesise_queries(rasters, 4, seed=3, spec=spec))
    b = list(synthesise_queries(rasters, 4, seed=3, spec=QuerySpec(camera=(480, 270), footprint_m=60.0,
                                                                   photometric="changed")))
    assert [(x.lat, x.lon, x.yaw_deg) for x in a] == [(x.lat, x.lon, x.yaw_deg) for x in b]
    assert all(np.abs(x.image.astype(int) - y.image.astype(int)).mean() > 2 for x, y in zip(a, b, strict=True))
    again = list(synthesise_queries(rasters, 4, seed=3, spec=QuerySpec(camera=(480, 270), footprint_m=60.0,
                                                                       photometric="changed")))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(b, again, strict=True))


def test_a_calibration_from_another_verifier_version_is_refused_with_what_to_run(gem_index_dir, tmp_path):
    from vpr_node.core.errors import ConfigurationError
    from vpr_node.core.verification.confidence import VERIFIER_VERSION
    index = tmp_path / "index"
    shutil.copytree(gem_index_dir, index)
    d = len(FEATURES)
    for version, refused in ((VERIFIER_VERSION, False), (VERIFIER_VERSION - 1, True)):
        Calibration([0.0] * d, 0.0, [0.0] * d, [1.0] * d, 0.5, validation={"verifier_version": version},
                    verifier="sift>xfeat").save(index / VERIFICATION)
        add_to_manifest(index, VERIFICATION)
        if refused:
            with pytest.raises(ConfigurationError, match="calibrate-verifier"):
                Calibration.for_index(index)
        else:
            assert Calibration.for_index(index).validation["verifier_version"] == VERIFIER_VERSION
            with pytest.raises(ConfigurationError, match="fitted for the matchers 'sift>xfeat'.*calibrate-verifier"):
                Calibration.for_index(index, verifier="sift")  # it holds for the matchers it was fitted with


# --- a confidence that knows a wrong fix (issue 32) ---------------------------------------------------------
def test_evidence_beyond_the_inlier_count():
    from vpr_node.core.verification import evidence
    rng = np.random.default_rng(0)
    spread = rng.uniform(0, [400, 300], (200, 2))
    patch = rng.uniform([0, 0], [120, 90], (200, 2))  # all in one corner, away from the centre
    h1, c1, d1 = evidence.inlier_spread(spread, (400, 300))
    h2, c2, d2 = evidence.inlier_spread(patch, (400, 300))
    assert h1 > 0.8 and c1 == 1.0 and d1 > 0.3
    assert h2 < 0.1 and c2 <= 0.25 and d2 < 0  # the fix would be extrapolated outside the inliers
    rot = np.array([[np.cos(0.5), -np.sin(0.5), 10], [np.sin(0.5), np.cos(0.5), 5], [0, 0, 1.0]])
    assert evidence.anisotropy(rot, (400, 300)) == pytest.approx(0.0, abs=1e-6)
    assert evidence.anisotropy(np.diag([3.0, 1.0, 1.0]), (400, 300)) == pytest.approx(math.log(3.0))
    from vpr_node.core.verification.result import VerifiedCandidate
    near, far = (VerifiedCandidate(0, "a", 0, 0, 0, inliers=100, fix_lat=60.0, fix_lon=22.0),
                 VerifiedCandidate(1, "b", 0, 0, 0, inliers=90, fix_lat=60.0, fix_lon=22.01))
    assert evidence.rival_ratio([near, far], 20.0) == pytest.approx(0.9)  # 556 m apart: a rival
    assert evidence.rival_ratio([near, VerifiedCandidate(2, "c", 0, 0, 0, inliers=90, fix_lat=60.0,
                                                         fix_lon=22.0001)], 20.0) == 0.0  # 5.6 m: agrees
    assert evidence.against_prior(60.0, 22.0, np.eye(2), 60.0, 22.0, 10.0).distance == pytest.approx(0.0)
    assert evidence.against_prior(60.001, 22.0, np.zeros((2, 2)), 60.0, 22.0, 10.0).distance == \
        pytest.approx(11.12, abs=0.05)
    assert evidence.against_prior(60.0, 22.0, np.eye(2), math.nan, math.nan, math.nan) is None


def test_a_frame_turned_north_up_keeps_every_pixel_and_no_false_edge_around_it():
    """A learned matcher sees the frame turned north-up by its heading: the canvas holds every pixel of the frame,
    and around it the frame mirrored, not black (a black surround draws an edge along the frame's border where a
    detector spends its keypoints: BENCHMARKS.md 'Verification on real imagery')."""
    from vpr_node.core.verification.verifier import turned

    img = np.random.default_rng(0).integers(60, 200, (300, 400, 3), dtype=np.uint8)
    out, m = turned(img, 35.0)
    a = math.radians(35.0)
    assert out.shape[:2] == (math.ceil(400 * math.sin(a) + 300 * math.cos(a)),
                             math.ceil(400 * math.cos(a) + 300 * math.sin(a)))
    corners = np.c_[[[0, 0], [400, 0], [400, 300], [0, 300]], np.ones(4)] @ m.T
    assert corners.min() >= -1e-6 and np.all(corners.max(0) <= np.array(out.shape[1::-1]) + 1e-6)
    assert out.min() >= 60  # no black anywhere on the canvas


def test_a_fix_where_an_independent_prior_put_the_drone_is_worth_more_on_a_large_map_than_on_a_small_one():
    """The position prior's evidence: a wrong fix lands anywhere on the covered map within the gate, a right one
    around the prior. On a map much larger than the prior's uncertainty, agreeing with the prior raises the odds
    (at most the gate's area over the prior's density); on a map the prior already covers, it says little; a fix
    far out in the prior's tail loses odds."""
    from vpr_node.core.verification import evidence

    def tiles(side_m: float, tile_m: float = 50.0):  # a square map of side_m, tiled without gaps
        m_lat, m_lon = evidence.metres_per_degree(60.0)
        edges = np.arange(0.0, side_m, tile_m)
        s, w = (a.ravel() for a in np.meshgrid(edges, edges, indexing="ij"))
        return {"south": 60.0 + s / m_lat, "north": 60.0 + (s + tile_m) / m_lat,
                "west": 22.0 + w / m_lon, "east": 22.0 + (w + tile_m) / m_lon}

    large, small = evidence.MapCoverage(tiles(2000.0)), evidence.MapCoverage(tiles(150.0))
    assert large.area_m2 == pytest.approx(2000.0 ** 2, rel=0.02) and small.area_m2 == pytest.approx(150.0 ** 2,
                                                                                                     rel=0.1)
    cov = np.eye(2) * 50.0 ** 2  # a 50 m prior; the centre of each map
    lat_l, lon_l = 60.0 + 1000.0 / evidence.metres_per_degree(60.0)[0], 22.0 + 1000.0 / evidence.metres_per_degree(
        60.0)[1]
    area, mass = large.within_gate(lat_l, lon_l, cov, 4.0)
    assert area == pytest.approx(math.pi * 200.0 ** 2, rel=0.05)  # the 4-sigma disc, all of it on the map
    assert mass == pytest.approx(1.0 - math.exp(-8.0), abs=0.01)  # and nearly all of the prior's probability
    at_prior_large = evidence.prior_log_ratio(0.0, cov, area, mass)
    assert at_prior_large == pytest.approx(math.log(16.0 / 2.0), rel=0.05)  # (4 sigma)^2 pi / (2 pi sigma^2)
    assert evidence.prior_log_ratio(3.0, cov, area, mass) < 0  # out in the tail: likelier wrong than right by place
    m_lat, m_lon = evidence.metres_per_degree(60.0)
    area, mass = small.within_gate(60.0 + 75.0 / m_lat, 22.0 + 75.0 / m_lon, cov, 4.0)  # the small map's centre
    assert area == pytest.approx(small.area_m2, rel=0.1) and 0.6 < mass < 0.9  # the gate holds the whole map
    assert evidence.prior_log_ratio(0.0, cov, area, mass) < at_prior_large - 1.0
    assert evidence.with_log_ratio(0.5, math.log(3.0)) == pytest.approx(0.75)
    assert evidence.with_log_ratio(0.8, 0.0) == pytest.approx(0.8)

@pytest.fixture(scope="module")
def hard_calibrated(gem_index_dir, gem_strategy, sample_maps, tmp_path_factory):
    """The sample index calibrated by prepare-mission's calibration (SIFT alone, for speed: the cascade's is
    measured in BENCHMARKS.md) on 200 views, look-alike and other-map views among them."""
    from vpr_node.core.index.loaded import DescriptorIndex
    from vpr_node.core.maps.camera import CameraModel
    from vpr_node.core.mission.calibration import CalibrationConfig, calibrate_verifier
    from vpr_node.core.retrieval.strategy import RetrievalStrategy
    from vpr_node.core.verification.verifier import VerifyConfig
    index = tmp_path_factory.mktemp("hard") / "index"
    shutil.copytree(gem_index_dir, index)
    s = RetrievalStrategy(gem_strategy.backbone, gem_strategy.runtime, DescriptorIndex(index))
    cfg = VerifyConfig(fallback_matcher="")
    cal = calibrate_verifier(s, index, sample_maps, (50.0, 65.0), CameraModel.from_hfov(86.0, 480, 270),
                             CalibrationConfig(views=200, check_views=0), cfg, progress=False)
    return s, Verifier.for_index(index, cfg), cal


def _hard_views(sample_maps, kind, n, seed):
    from vpr_node.core.views.hard import ElsewhereViews, LookalikeViews
    spec = QuerySpec.benchmark(altitude_m=(50.0, 65.0), camera=(480, 270))
    return list((LookalikeViews if kind == "lookalike" else ElsewhereViews)(load_corner_table(sample_maps), n, seed,
                                                                            spec))


def test_the_calibration_sees_wrong_fixes_and_ranks_them_below_right_ones(hard_calibrated):
    _, _, cal = hard_calibrated
    v = cal.validation
    assert v["wrong_fixes"] >= 3 and v["wrong_fixes_by_condition"]["lookalike"] >= 3, v
    assert v["precision"] >= 0.99 and v["accepted"] >= 50
    curve = v["curve"]  # by falling confidence: precision falls as the wrong fixes come in
    assert curve[0]["precision"] == 1.0 and curve[-1]["precision"] < 1.0
    assert any(w != 0 for w in cal.weights)  # not the constant model of a calibration that saw no wrong fix


def test_a_lookalike_frame_gives_no_accepted_wrong_fix(hard_calibrated, sample_maps):
    s, verifier, _ = hard_calibrated
    for q in _hard_views(sample_maps, "lookalike", 12, seed=78):
        res = verifier.verify(q.image, s.retrieve_topk(s.embed_query(q.image), 10))
        if res.accepted:
            assert haversine_m(q.lat, q.lon, res.fix.lat, res.fix.lon) <= 25.0, (q.name, res.reason)


def test_frames_of_another_map_are_never_accepted(hard_calibrated, sample_maps):
    s, verifier, _ = hard_calibrated
    for q in _hard_views(sample_maps, "elsewhere", 12, seed=79):
        assert not verifier.verify(q.image, s.retrieve_topk(s.embed_query(q.image), 10)).accepted


def test_a_fix_far_from_the_position_prior_is_refused(gem_index_dir, tmp_path, verified):
    from vpr_node.core.verification.result import FrameHints
    copy = tmp_path / "index"
    shutil.copytree(gem_index_dir, copy)
    d = len(FEATURES)
    Calibration([0.0] * d, 6.0, [0.0] * d, [1.0] * d, threshold=0.5, verifier=VerifyConfig().label).save(
        copy / VERIFICATION)
    add_to_manifest(copy, VERIFICATION)
    v = Verifier.for_index(copy)
    q, cands, _ = next((q, c, r) for q, c, r in verified if r.fix is not None)
    assert v.verify(q.image, cands, FrameHints(prior_lat=q.lat, prior_lon=q.lon, prior_sigma_m=20.0)).accepted
    far = v.verify(q.image, cands, FrameHints(prior_lat=q.lat + 0.01, prior_lon=q.lon, prior_sigma_m=20.0))
    assert not far.accepted and far.reason == "far_from_prior"  # 1.1 km off a 20 m prior


def test_a_calibration_that_saw_no_wrong_fix_is_refused_when_wrong_ones_get_through():
    from vpr_node.core.errors import ConfigurationError
    from vpr_node.core.mission.calibration import check_calibration
    d = len(FEATURES)
    blind = Calibration([0.0] * d, 6.0, [0.0] * d, [1.0] * d, 0.5,
                        validation={"frames": 300, "views": 300, "fixes": 250, "correct_fixes": 250})
    check_calibration(blind, {"frames": 40, "accepted": 5, "accepted_wrong": 0})  # nothing wrong got through
    with pytest.raises(ConfigurationError, match="saw no wrong fix.*--calib-views 600"):
        check_calibration(blind, {"frames": 40, "accepted": 5, "accepted_wrong": 2})
    seeing = Calibration([0.0] * d, 6.0, [0.0] * d, [1.0] * d, 0.5,
                         validation={"frames": 300, "views": 300, "fixes": 250, "correct_fixes": 240})
    check_calibration(seeing, {"frames": 40, "accepted": 5, "accepted_wrong": 1})  # its threshold saw them


def test_a_frame_the_first_ten_cannot_verify_is_verified_deeper_in_the_list(gem_index_dir, gem_strategy, verified):
    """deeper_k: on changed ground the right place is often just below the top 10; the first matcher goes on down
    the list only for frames the first verify_k give no fix, and re-ranks all it verified."""
    import dataclasses

    from vpr_node.core.index.loaded import DescriptorIndex
    from vpr_node.core.retrieval.strategy import RetrievalStrategy
    s = RetrievalStrategy(gem_strategy.backbone, gem_strategy.runtime, DescriptorIndex(gem_index_dir))
    q, _, v = next((q, c, v) for q, c, v in verified if v.fix is not None)
    ranked = s.retrieve_topk(s.embed_query(q.image), len(s.index))
    shallow = Verifier.for_index(gem_index_dir, VerifyConfig(fallback_matcher="", deeper_k=0))
    far = [c for c in ranked if shallow.verify(q.image, [c]).fix is None][:14]  # tiles that give this frame no fix
    assert len(far) == 14
    right = next(c for c in ranked if c.tile.name == v.fix.tile_id)
    listed = [dataclasses.replace(c, rank=i + 1) for i, c in enumerate([*far[:10], right, *far[10:]])]
    deep = Verifier.for_index(gem_index_dir, VerifyConfig(fallback_matcher="", deeper_k=12))
    assert deep.cfg.label == "sift@12" and deep.cfg.candidates_needed == 12
    assert shallow.verify(q.image, listed).fix is None  # the right tile is 11th
    found = deep.verify(q.image, listed)
    assert found.fix is not None and found.fix.tile_id == right.tile.name
    assert haversine_m(q.lat, q.lon, found.fix.lat, found.fix.lon) < 5.0
    assert len(found.candidates) == 12 and found.candidates[0].retrieval_rank == 11  # re-ranked with the first ten
    # a frame the first ten verify is not taken further
    first = deep.verify(q.image, [dataclasses.replace(c, rank=i + 1) for i, c in enumerate([right, *far[:13]])])
    assert first.fix is not None and len(first.candidates) == 10
