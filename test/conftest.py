"""Shared fixtures: a small real corpus + index built once per session from the procedural sample map."""
from __future__ import annotations

import itertools
import os
import pathlib

import pytest
import torch
from hypothesis import settings as hypothesis_settings

# Property tests draw the same examples on every run (a test must not fail by chance); `HYPOTHESIS_PROFILE=explore`
# searches with fresh random examples instead.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", max_examples=2000)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("VPR_SHARED_DIR", REPO.parent / "shared"))
WILDNAV = SHARED / "data" / "wildnav_turku" / "tiles.csv"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

NOT_UNIT = ("process", "ros_launch", "slow")
BY_MODULE = {"test_launch_": "ros_launch", "test_node_": "process"}  # launch_testing's own items carry no pytestmark


def pytest_collection_modifyitems(config, items):
    """Modules test_launch_* are ros_launch, test_node_* process; every test not marked process, ros_launch or
    slow is a unit test (`scripts/test.sh -m unit`)."""
    for item in items:
        for prefix, mark in BY_MODULE.items():
            if item.path.name.startswith(prefix) and not item.get_closest_marker(mark):
                item.add_marker(getattr(pytest.mark, mark))
        if not any(item.get_closest_marker(m) for m in NOT_UNIT):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def sample_maps(tmp_path_factory):
    from vpr_node.core.maps.procedural import write_sample_map
    # 700 px at 0.3 m/px = 210 m square: 36 tiles of 60 m with 50 % overlap
    return write_sample_map(tmp_path_factory.mktemp("map"), seed=11, size_px=700)


@pytest.fixture(scope="session")
def sample_corpus(sample_maps, tmp_path_factory):
    from vpr_node.core.maps.sources import load_corner_table
    from vpr_node.core.maps.tiles import TileCorpus
    from vpr_node.core.maps.tiling import cut_tiles
    out = tmp_path_factory.mktemp("corpus")
    cut_tiles(load_corner_table(sample_maps), out, tile_m=60.0, overlap=0.5, tile_px=160, progress=False)
    return TileCorpus(out)


@pytest.fixture(scope="session")
def gem_strategy():
    from vpr_node.core.retrieval.strategy import load_strategy
    return load_strategy("efficientnet_lite0_gem", backbone_options={"input_size": 160})


@pytest.fixture(scope="session")
def gem_index_dir(gem_strategy, sample_corpus, sample_maps, tmp_path_factory):
    """The sample map's GeM index with the learned matcher's map features (and its ONNX export) beside it."""
    from vpr_node.core.indexing.index_build import build_index
    from vpr_node.core.indexing.map_features import build_map_features
    from vpr_node.core.indexing.settings import BuildSettings
    out = tmp_path_factory.mktemp("index_gem")
    build_index(gem_strategy, sample_corpus, out, BuildSettings(rotations=1), progress=False)
    build_map_features(sample_maps, out, progress=False, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def sample_queries(sample_maps):
    from vpr_node.core.maps.sources import load_corner_table
    from vpr_node.core.views.queries import QuerySpec, synthesise_queries
    return list(synthesise_queries(load_corner_table(sample_maps), 6, seed=5,
                                   spec=QuerySpec(camera=(480, 270), footprint_m=60.0)))


def requires_wildnav():
    return pytest.mark.skipif(
        not WILDNAV.exists(),
        reason=f"developer benchmark data not found at {WILDNAV.parent} "
        "(set VPR_SHARED_DIR to the folder holding data/wildnav_turku)",
    )


# --- the node as a separate process (shared by every node-process test module) -------------------------
# One ROS_DOMAIN_ID counter for the whole session: modules can run in any order or alone.
_domains = itertools.count(60 + (os.getpid() % 50) * 3)
GEM_OPTS = '{"input_size": 160}'


@pytest.fixture(scope="session")
def vlad_index_dir(sample_corpus, tmp_path_factory):
    """The default backbone's index: build-index fits the NetVLAD centroids over the corpus and stores them."""
    from vpr_node.core.indexing.index_build import build_index_for
    from vpr_node.core.indexing.settings import BuildSettings
    out = tmp_path_factory.mktemp("index_vlad")
    from vpr_node.core.backbones import DEFAULT_BACKBONE
    build_index_for(DEFAULT_BACKBONE, sample_corpus, out,
                    BuildSettings(rotations=1), backbone_options={"input_size": 160, "num_clusters": 8}, progress=False)
    assert (out / "backbone_weights.pt").is_file()
    return out


class Running:
    """The installed node executable started with a params file, plus a client in its own ROS domain."""

    def __init__(self, tmp_path, params, compressed=False, env=None):
        from vpr_node.ros.harness import NodeProcess, VprClient, write_params_file
        self.domain = next(_domains)
        pfile = write_params_file(tmp_path / f"params_{self.domain}.yaml", params)
        self.node = NodeProcess(pfile, tmp_path / f"node_{self.domain}.log", self.domain, extra_env=env)
        self.client = VprClient(self.domain, compressed=compressed)
        self.client.wait_for_node(60)

    def close(self):
        self.client.close()
        return self.node.stop()


def node_params(index_dir, tmp_path, **over):
    p = {"backbone": "efficientnet_lite0_gem", "backbone_options": GEM_OPTS, "index_dir": str(index_dir), "top_k": 5,
         "recorder_path": str(tmp_path / "fdr.jsonl"), "diagnostics_period": 0.5}
    p.update(over)
    return p


def send_frame(client, rgb, stamp_ns, encoding="rgb8"):
    client.publish(client.make_image(rgb, stamp_ns, encoding=encoding))
    return client.next_result(timeout=30)


def pytest_sessionfinish(session, exitstatus):
    """Node processes that tests kill leave their Fast DDS shared-memory segments; remove them (ros/dds_shm.py)."""
    from vpr_node.ros import dds_shm
    dds_shm.remove_orphaned_segments()
