"""Inputs for the launch suites (launch_testing entry points cannot take pytest fixtures): a small GeM
index over the procedural sample map, a params file, a synthesised flight and bag."""
from __future__ import annotations

import os
import pathlib

SKIP_REASON = ("ROS 2 launch tools not installed: scripts/setup_env.sh builds them from ../shared/vendor/ros2 "
               "(scripts/build_ros2_tools.sh), or source a ROS 2 installation")
GEM_OPTS = '{"input_size": 160}'


def vpr_launch_description(params_file, **args):
    """The installed launch/vpr.launch.py with this params file (auto_start:=false unless `args` say otherwise:
    launch arguments such as auto_start="true", verifier="true"), then ReadyToTest."""
    import launch
    import launch_testing.actions
    from ament_index_python.packages import get_package_share_directory
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    path = os.path.join(get_package_share_directory("vpr_node"), "launch", "vpr.launch.py")
    return launch.LaunchDescription([
        launch.actions.IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments={
            "params_file": str(params_file), "auto_start": "false", **args}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


def small_index(work: pathlib.Path, map_features: bool = False) -> dict:
    """Sample map (210 m), 60 m tiles, a GeM index (160 px, 1 rotation) and 6 synthesised frames; ~15 s. With
    `map_features`, the learned matcher's map features too (what the default verifier's fallback needs)."""
    from vpr_node.core.indexing.index_build import build_index_for
    from vpr_node.core.indexing.settings import BuildSettings
    from vpr_node.core.maps.procedural import write_sample_map
    from vpr_node.core.maps.sources import load_corner_table
    from vpr_node.core.maps.tiles import TileCorpus
    from vpr_node.core.maps.tiling import cut_tiles
    from vpr_node.core.views.queries import QuerySpec, synthesise_queries

    work.mkdir(parents=True, exist_ok=True)
    maps = write_sample_map(work / "map", seed=11, size_px=700)
    cut_tiles(load_corner_table(maps), work / "corpus", tile_m=60.0, overlap=0.5, tile_px=160, progress=False)
    build_index_for("efficientnet_lite0_gem", TileCorpus(work / "corpus"), work / "index",
                    BuildSettings(rotations=1), backbone_options={"input_size": 160}, progress=False)
    queries = list(synthesise_queries(load_corner_table(maps), 6, seed=5,
                                      spec=QuerySpec(camera=(480, 270), footprint_m=60.0)))
    if map_features:
        from vpr_node.core.indexing.map_features import build_map_features
        build_map_features(maps, work / "index", progress=False, log=lambda *_: None)
    return {"maps": maps, "index": work / "index", "queries": queries}


def node_params_file(work: pathlib.Path, index, verifier: dict | None = None, **over) -> pathlib.Path:
    """vpr_node's parameters (and, with `verifier`, the vpr_verifier's beside them) in one params file."""
    import yaml
    params = {"backbone": "efficientnet_lite0_gem", "backbone_options": GEM_OPTS, "index_dir": str(index),
              "top_k": 5, "recorder_path": str(work / "fdr.jsonl"), "diagnostics_period": 0.5, **over}
    doc = {"vpr_node": {"ros__parameters": params}}
    if verifier is not None:
        from vpr_node.ros.node_spec import VERIFIER_NAME
        doc[VERIFIER_NAME] = {"ros__parameters": {"index_dir": str(index), "diagnostics_period": 0.5,
                                                   "recorder_path": str(work / "verifier_fdr.jsonl"), **verifier}}
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def accept_every_fix(index_dir, verifier: str | None = None) -> None:
    """A calibration in the index folder that accepts every verified fix, for the default verifier's matchers (or
    `verifier`, e.g. 'sift'): tests of the nodes' publishing path (what the calibrated model accepts is tested on the
    developer maps)."""
    from vpr_node.core.index.folder import VERIFICATION, add_to_manifest
    from vpr_node.core.verification.confidence import FEATURES, Calibration
    from vpr_node.core.verification.verifier import VerifyConfig
    d = len(FEATURES)
    Calibration([0.0] * d, 6.0, [0.0] * d, [1.0] * d, threshold=0.5, verifier=verifier or VerifyConfig().label).save(
        pathlib.Path(index_dir) / VERIFICATION)
    add_to_manifest(index_dir, VERIFICATION)


def isolate_ros_domain(domain: int) -> None:
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from vpr_node.ros.harness import default_fastdds_profile
    profile = default_fastdds_profile()
    if profile:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", profile)
