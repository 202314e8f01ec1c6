"""Replay a rosbag2 through the vpr_node lifecycle node in simulated time.

    ros2 launch vpr_node replay.launch.py bag:=/path/flight_bag index_dir:=/path/index \
        [backbone:=xfeat_netvlad] [rate:=1.0] [out:=/path/result_bag]

Starts the node with use_sim_time:=true (configured and activated at launch) and the package's
`vpr_bag_player`, which publishes the bag's camera and NavSatFix messages at their recorded timing
(scaled by `rate`) with /clock, writes the node's VprResult output to `out` and prints recall@1/5/10
against the bag's GPS. The launch ends when the player is done (test/test_launch_replay.py runs it).
`vpr replay-ros` runs the same executables through the same lifecycle services without `ros2 launch`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler, SetEnvironmentVariable
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from vpr_node.ros.node_spec import EXECUTABLE, FASTDDS_PROFILE, NODE_ENV, NODE_NAME, PACKAGE


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arg = LaunchConfiguration
    node = LifecycleNode(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME, namespace="", output="screen", additional_env=NODE_ENV,
        parameters=[arg("params_file"), {"use_sim_time": True, "backbone": arg("backbone"),
                                         "index_dir": arg("index_dir"), "image_topic": arg("camera_topic"),
                                         "compressed": arg("compressed")}],
    )
    player = Node(
        package=PACKAGE, executable="vpr_bag_player", name="vpr_bag_player", output="screen",
        arguments=[arg("bag"), "--rate", arg("rate"), "--out", arg("out"), "--camera-topic", arg("camera_topic")],
    )
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    start_player_when_active = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="active", entities=[player]))
    stop_when_player_done = RegisterEventHandler(
        OnProcessExit(target_action=player, on_exit=[EmitEvent(event=Shutdown(reason="replay done"))])
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "bag", description="rosbag2 folder (MCAP or sqlite3) with camera frames (+ NavSatFix)"
            ),
            DeclareLaunchArgument("index_dir", description="index built by `vpr build-index` for the backbone"),
            DeclareLaunchArgument("backbone", default_value="xfeat_netvlad"),
            DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw"),
            DeclareLaunchArgument("compressed", default_value="false", description="true for CompressedImage bags"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback speed; 1.0 = recorded timing"),
            DeclareLaunchArgument("out", default_value="vpr_results_bag", description="result bag folder"),
            DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "vpr.yaml")),
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(share, *FASTDDS_PROFILE)
            ),
            node,
            activate_when_configured,
            start_player_when_active,
            stop_when_player_done,
            configure,
        ]
    )
