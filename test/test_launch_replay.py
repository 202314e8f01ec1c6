"""launch_pytest over the real launch/replay.launch.py: a synthesised bag in (camera + NavSatFix), the node
in simulated time and the package's bag player; a result bag and recall out, launch ending when the
player is done."""
import os
import time

import pytest
from launch_helpers import SKIP_REASON, isolate_ros_domain, node_params_file, small_index

pytest.importorskip("launch_pytest", reason=SKIP_REASON)  # the imports below need the ROS 2 launch tools
import launch
import launch_pytest
from ament_index_python.packages import get_package_share_directory
from launch.launch_description_sources import PythonLaunchDescriptionSource

pytestmark = pytest.mark.ros_launch

DOMAIN = 90 + os.getpid() % 10


@pytest.fixture(scope="module")
def replay_inputs(tmp_path_factory):
    from vpr_node.core.io.bags import write_query_bag
    work = tmp_path_factory.mktemp("replay_launch")
    sample = small_index(work)
    bag = write_query_bag(sample["queries"], work / "flight_bag", rate_hz=3.0)
    return {"bag": bag, "index": sample["index"], "params": node_params_file(work, sample["index"]),
            "out": work / "results_bag", "frames": len(sample["queries"])}


# function scope: the module-scope generator path of this launch_pytest snapshot calls
# FixtureManager.getfixtureinfo(funcargs=...), which pytest 8 removed. auto_shutdown=False: the launch file
# ends itself when the player is done (launch_pytest then waits for it instead of interrupting the player).
@launch_pytest.fixture(auto_shutdown=False)
def replay_launch(replay_inputs):
    isolate_ros_domain(DOMAIN)
    path = os.path.join(get_package_share_directory("vpr_node"), "launch", "replay.launch.py")
    args = {"bag": str(replay_inputs["bag"]), "index_dir": str(replay_inputs["index"]),
            "out": str(replay_inputs["out"]), "backbone": "efficientnet_lite0_gem",
            "params_file": str(replay_inputs["params"])}
    return launch.LaunchDescription([
        launch.actions.IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=args.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


@pytest.mark.launch(fixture=replay_launch)
def test_replay_launch_writes_a_result_bag_and_recall(replay_inputs):
    from vpr_node.core.io.bags import read_results
    from vpr_node.ros.bag_player import score_against_bag
    out = replay_inputs["out"]
    deadline = time.monotonic() + 240
    while not (out / "metadata.yaml").exists() and time.monotonic() < deadline:  # written when the player is done
        time.sleep(0.5)
    assert (out / "metadata.yaml").exists(), "the bag player wrote no result bag"
    yield  # the launch ends itself: the player's exit emits Shutdown
    results = read_results(out)
    assert len(results) == replay_inputs["frames"]
    assert {m.backbone_label for m in results} == {"efficientnet_lite0_gem"}
    scored = score_against_bag(results, replay_inputs["bag"], top_k=5)
    assert scored["with_ground_truth"] == replay_inputs["frames"] and 0.0 <= scored["recall_at_25m"]["5"] <= 1.0
