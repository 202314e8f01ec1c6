"""Launch the vpr_node lifecycle node with a params file; optionally configure + activate it.

    ros2 launch vpr_node vpr.launch.py params_file:=/path/vpr.yaml auto_start:=true

Arguments: params_file (config/vpr.yaml shows every parameter, the prior topics with commented
defaults), auto_start (configure + activate at launch; false leaves the node unconfigured for
`ros2 lifecycle set /vpr_node configure|activate`). The node's executable, name, environment and DDS
profile come from vpr_node/ros/node_spec.py, which the process harness (environments without `ros2
launch`) uses too.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from vpr_node.ros.node_spec import EXECUTABLE, FASTDDS_PROFILE, NODE_ENV, NODE_NAME, PACKAGE


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    params_file = LaunchConfiguration("params_file")
    auto_start = LaunchConfiguration("auto_start")

    node = LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace="",
        output="screen",
        parameters=[params_file],
        additional_env=NODE_ENV,
    )
    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_CONFIGURE),
        condition=IfCondition(auto_start),
    )
    activate_when_configured = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node, goal_state="inactive",
            entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                  transition_id=Transition.TRANSITION_ACTIVATE))],
        ),
        condition=IfCondition(auto_start),
    )
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "vpr.yaml"),
                              description="node parameters (see config/vpr.yaml)"),
        DeclareLaunchArgument("auto_start", default_value="true", description="configure and activate at launch"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(share, *FASTDDS_PROFILE)),
        node,
        activate_when_configured,
        configure,
    ])
