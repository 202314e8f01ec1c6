"""`vpr bench-real`: retrieval and verification on a REAL camera against an independent map.

`../shared/data/ortholoc_demo_real` (OrthoLoC demo assets, CC BY-NC-SA: read there, never copied) holds one real
drone photograph (autumn, oblique, about 95 m above the ground) with its exact pose, and an official orthophoto of
the place from another season (`xDOP`, summer, 0.18 m/px, 186 m square). The photograph is cut into crops at random
rotations and footprints (views/posed_frame.py) with the ground point under each crop's centre as truth; the
orthophoto, placed at a nominal origin, is the mission map for `prepare-mission` with the crops' camera given. The
crops come from ONE photograph: they are correlated, a small real-imagery check beside the rendered benchmarks.

Ground plane: the dataset's README puts the ground near z = 0 of its local frame; matching the photograph against
the same flight's orthophoto (`DOP`: XFeat + LighterGlue, 375 inliers) puts it at z = -11.5 m (the residuals of the
inliers fall from 6.0 m median at z = 0 to 0.95 m at z = -11.5, where roofs and trees stand above it), so the
camera is about 95 m above the ground, not 83 m. GROUND_Z is that measurement.
"""
from __future__ import annotations

import json
import pathlib

import cv2
import numpy as np

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.benchmarks.developer_maps import shared_data_dir
from vpr_node.core.evaluation.recall import evaluate
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.maps.camera import CameraModel
from vpr_node.core.maps.geo import metres_per_degree
from vpr_node.core.mission.adaptation import AdaptConfig
from vpr_node.core.mission.calibration import CalibrationConfig
from vpr_node.core.mission.config import MissionConfig
from vpr_node.core.mission.prepare import prepare_mission
from vpr_node.core.priors.noise import PriorNoise
from vpr_node.core.retrieval.strategy import load_strategy
from vpr_node.core.verification.verifier import Verifier, VerifyConfig
from vpr_node.core.views.posed_frame import PosedFrame

DATASET = "ortholoc_demo_real"
SCENE = "urban_residential"
ORIGIN = (48.0, 11.5)  # where the local metric frame is placed (the dataset's README suggests it)
GROUND_Z = -11.5  # module docstring
CAMERA = CameraModel.from_hfov(60.0, 1024, 768)  # the nav camera the crops are given as
FOOTPRINT_M = (45.0, 80.0)  # ground side of a crop's short side
# the photograph's optical axis is 25 deg off nadir and its rays 2-51 deg, so the crops look 20-40 deg off nadir (their
# centres' rays, from the pose): the calibration's views are tilted as far as this camera allows (34 deg at 60 deg
# HFOV, queries.tilt_limit_deg): known camera geometry, not fitted on the crops
CAMERA_TILT_DEG = 40.0
# verifier configurations: name -> VerifyConfig overrides; "default" is prepare-mission's calibrated verifier
# the single matchers on retrieval's top 10 (no deeper pass), uncalibrated; the default as the product runs it
VERIFIERS = {name: dict(matcher=name, fallback_matcher="", deeper_k=0) for name in ("sift", "xfeat", "xfeat-mnn",
                                                                                   "aliked")} | {"default": {}}


def dataset_dir() -> pathlib.Path:
    return shared_data_dir() / DATASET


def _local_to_latlon(east, north):
    m_lat, m_lon = metres_per_degree(ORIGIN[0])
    return ORIGIN[0] + np.asarray(north) / m_lat, ORIGIN[1] + np.asarray(east) / m_lon


def posed_frame(data_dir=None) -> PosedFrame:
    d = pathlib.Path(data_dir or dataset_dir())
    k = np.array(json.loads((d / f"{SCENE}_intrinsics.json").read_text())["intrinsics"], np.float64)
    p = np.array(json.loads((d / f"{SCENE}_extrinsics.json").read_text())["pose_w2c"], np.float64)
    bgr = cv2.imread(str(d / f"{SCENE}.jpg"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{d / SCENE}.jpg")
    return PosedFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), k, p[:, :3], p[:, 3], GROUND_Z, _local_to_latlon, SCENE)


def map_extent(data_dir=None, which: str = "xDOP") -> tuple[float, float, float, float]:
    """(west, north, east, south) metres of an orthophoto in the local frame (its geotransform; its EPSG:4326 label
    is wrong: the numbers are metres)."""
    import rasterio

    with rasterio.open(pathlib.Path(data_dir or dataset_dir()) / f"{SCENE}_{which}.tif") as r:
        t = r.transform
        return t.c, t.f, t.c + t.a * r.width, t.f + t.e * r.height


def write_map(out_dir, data_dir=None, which: str = "xDOP") -> pathlib.Path:
    """The orthophoto as a mission map: a PNG and its corner-coordinates table (lat/lon at ORIGIN) in out_dir."""
    d = pathlib.Path(data_dir or dataset_dir())
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img = cv2.imread(str(d / f"{SCENE}_{which}.tif"), cv2.IMREAD_COLOR)
    cv2.imwrite(str(out / f"{which}.png"), img)
    west, north, east, south = map_extent(d, which)
    (lat0, lat1), (lon0, lon1) = _local_to_latlon([west, east], [north, south])
    (out / "tiles.csv").write_text(
        "filename,top_left_lat,top_left_lon,bottom_right_lat,bottom_right_lon,width_px,height_px\n"
        f"{which}.png,{float(lat0):.9f},{float(lon0):.9f},{float(lat1):.9f},{float(lon1):.9f},{img.shape[1]},"
        f"{img.shape[0]}\n")
    return out / "tiles.csv"


def real_crops(n: int = 40, seed: int = 0, data_dir=None) -> list:
    """n crops of the photograph whose whole ground lies on the independent orthophoto."""
    west, north, east, south = map_extent(data_dir)

    def inside(e, nn, long_m):
        r = long_m / 2
        return west + r <= e <= east - r and south + r <= nn <= north - r

    return posed_frame(data_dir).crops(n, seed, FOOTPRINT_M, CAMERA, inside)


def mission_config(maps, out, progress: bool = False, **fields) -> MissionConfig:
    """prepare-mission's settings for the real crops: their camera and altitudes, 4 rotations per tile, learned
    whitening without a fine-tune, no report; `fields` override (backbone, retrieval only, ...)."""
    altitude = tuple(CAMERA.altitude_for_footprint(f) for f in FOOTPRINT_M)
    return MissionConfig(maps=str(maps), out=str(out), altitude=altitude, camera=CAMERA, report_queries=0,
                         build=BuildSettings(rotations=4), progress=progress,
                         adapt=AdaptConfig(minutes=0.0, altitude_m=altitude, hfov_deg=CAMERA.hfov_deg),
                         **({"calibration": CalibrationConfig(max_tilt_deg=CAMERA_TILT_DEG)} | fields))


def prepare(workdir, data_dir=None, progress: bool = False) -> pathlib.Path:
    """prepare-mission on the independent orthophoto with the crops' camera and altitudes (cached in workdir)."""
    workdir = pathlib.Path(workdir)
    maps = write_map(workdir / "map", data_dir)
    prepare_mission(mission_config(maps, workdir / "mission", progress), log=print if progress else (lambda *_: None))
    return workdir / "mission"


def aliked_features(index_dir, maps) -> None:
    """ALIKED's map features beside XFeat's (prepare-mission makes XFeat's only), for the matcher comparison."""
    from vpr_node.core.indexing.map_features import MapFeaturesConfig, build_map_features
    from vpr_node.core.verification.map_features import features_dir
    if not (features_dir(index_dir, "aliked") / "meta.json").is_file():
        build_map_features(maps, index_dir, MapFeaturesConfig(matcher="aliked"), progress=False, log=lambda *_: None)


def verifier_for(index_dir, name: str) -> Verifier:
    """A named verifier configuration (VERIFIERS): the default is calibrated, the single matchers are not (their fix
    rate and the precision of all their fixes compare matchers; acceptance is the calibrated default's)."""
    if name == "default":
        return Verifier.for_index(index_dir)
    return Verifier.for_index(index_dir, VerifyConfig(**VERIFIERS[name]), calibrated=False)


def run(workdir, n: int = 40, seed: int = 0, verifiers=("sift", "xfeat", "default"), data_dir=None,
        progress: bool = True) -> dict:
    """Retrieval recall@1/5/10/50 at 25 and 50 m and each verifier's outcome on the real crops; the default verifier
    also with a position prior (50 m), and with heading (10 deg), altitude (10 %) and position (50 m) priors."""
    index = prepare(workdir, data_dir, progress)
    if "aliked" in verifiers:
        aliked_features(index, pathlib.Path(workdir) / "map" / "tiles.csv")
    queries = real_crops(n, seed, data_dir)
    strategy = load_strategy(DEFAULT_BACKBONE, index_dir=str(index))
    k = min(50, len(strategy.index))
    out = {"crops": n, "seed": seed, "footprint_m": FOOTPRINT_M, "tiles": len(strategy.index), "verifiers": {}}
    base = evaluate(strategy, queries, k=k, progress=progress)
    out["retrieval"] = {"recall": base.recall, "embed_ms_p50": base.embed_ms_p50, "k": k}
    for name in verifiers:
        r = evaluate(strategy, queries, k=10, progress=progress, verifier=verifier_for(index, name))
        recs = [p["verification"] for p in r.per_query]
        out["verifiers"][name] = _summary(r.extra["verification"], recs, r.per_query)
    for label, noise in (("default+position50", PriorNoise(position=True, position_sigma_m=50.0, seed=seed)),
                         ("default+all", PriorNoise(heading=True, altitude=True, position=True, position_sigma_m=50.0,
                                                    seed=seed))):
        r = evaluate(strategy, queries, k=10, progress=progress, priors=noise, camera=CAMERA,
                     verifier=verifier_for(index, "default"))
        out["verifiers"][label] = _summary(r.extra["verification"], [p["verification"] for p in r.per_query],
                                           r.per_query)
    return out


def _summary(totals: dict, recs: list, per_query: list) -> dict:
    """Totals, plus the fix rate over the frames whose right place retrieval put in the top 10."""
    right = [p["hit_at_10"] for p in per_query]
    fixes = [r for r in recs if r["fix"]]
    within = [r for r in fixes if r["fix_error_m"] <= 25.0]
    return {**totals, "fixes": len(fixes), "fixes_within_25m": len(within),
            "fix_rate_given_right_candidate": round(sum(1 for r, ok in zip(recs, right, strict=True)
                                                        if ok and r["fix"] and r["fix_error_m"] <= 25.0)
                                                    / max(1, sum(right)), 4),
            "fix_error_m_p50_all": round(float(np.median([r["fix_error_m"] for r in fixes])), 2) if fixes else None}


def format_markdown(res: dict) -> str:
    rc = res["retrieval"]["recall"]
    lines = [f"Real crops: {res['crops']} crops of one photograph (seed {res['seed']}), footprint "
             f"{res['footprint_m'][0]:g}-{res['footprint_m'][1]:g} m, {res['tiles']} tiles.", "",
             "| retrieval | R@1 | R@5 | R@10 | R@20 |", "|---|---:|---:|---:|---:|"]
    for radius in ("25", "50"):
        lines.append(f"| {radius} m | " + " | ".join(f"{rc[radius][n]:.3f}" for n in ("1", "5", "10", "20")) + " |")
    lines += ["", "| verifier | fix rate | fixes within 25 m / fixes | fix rate where the right tile is in the top "
                  "10 | accepted | precision of accepted | error p50 (accepted) | verify p50 / p95 ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in res["verifiers"].items():
        lines.append(f"| {name} | {v['fix_rate']:.3f} | {v['fixes_within_25m']} / {v['fixes']} | "
                     f"{v['fix_rate_given_right_candidate']:.3f} | {v['accepted']} | {v['precision']} | "
                     f"{v['error_m_p50']} | {v['verify_ms_p50']} / {v['verify_ms_p95']} |")
    return "\n".join(lines)


def crops_mosaic(queries, path, cols: int = 8, size=(256, 192)) -> None:
    """The crops as a picture (what the benchmark's frames look like)."""
    tiles = [cv2.resize(q.image, size, interpolation=cv2.INTER_AREA) for q in queries]
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))

