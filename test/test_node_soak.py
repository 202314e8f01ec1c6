"""The soak run, short (`vpr soak` runs 100,000 frames: BENCHMARKS.md): vpr_node and vpr_verifier as processes,
every input fuzzed (frames and the heading / altitude / position prior topics) at high rates. Both nodes stay up
and exit 0, every frame each node saw is accounted for (results + typed errors + counted drops), every fuzzed
prior sample that arrived is a typed c2.vpr.prior_error, and no implausible prior reached 'ok'."""
import dataclasses
import shutil

import pytest
from launch_helpers import accept_every_fix

pytestmark = pytest.mark.process

HFOV = 86.0
ALTITUDE_M = 60.0 / (2 * 0.9325 * 270 / 480)  # the sample flight's 60 m short side at hfov 86 deg, 480x270 px


def test_a_short_fuzzed_soak_accounts_for_every_input(gem_index_dir, sample_queries, tmp_path):
    from vpr_node.tools.soak import run_soak
    index = tmp_path / "index"
    shutil.copytree(gem_index_dir, index)
    accept_every_fix(index)
    queries = [dataclasses.replace(q, altitude_m=ALTITUDE_M) for q in sample_queries]
    s = run_soak(tmp_path / "soak", frames=300, rate_hz=10.0, corrupt_fraction=0.2, prior_fuzz=0.3, seed=3,
                 index_dir=index, queries=queries, backbone="efficientnet_lite0_gem",
                 backbone_options='{"input_size": 160}', hfov_deg=HFOV, progress=False, log=lambda *a: None)
    acc, node, ver = s["accounting"], s["node"], s["verifier"]
    assert s["alive"] == {"node": True, "verifier": True} and s["still_serving_after"], s
    assert s["exit_codes"] == {"node": 0, "verifier": 0}, s
    assert s["sent"]["corrupt"] > 30 and s["sent"]["prior_fuzzed"] > 150, s["sent"]
    assert acc["node_frames_unaccounted"] == 0 and acc["verifier_frames_unaccounted"] == 0, s
    assert node["results_out"] > 100 and ver["verified"] > 20, s
    assert set(node["typed_frame_errors"]) == {"c2.vpr.preprocess_error"}, s
    # best-effort DDS may lose a sample between processes; each one that arrived fuzzed is a typed error
    lost = acc["prior_samples_lost_in_transport"]
    assert 0 <= acc["prior_samples_fuzzed_minus_typed_errors"] <= lost, s
    assert {k.split(".")[0] for k in node["prior_error_reasons"]} == {"heading", "altitude", "position"}, s
