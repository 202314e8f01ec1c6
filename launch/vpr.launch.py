"""Launch the vpr_node lifecycle node (and, with verifier:=true, the vpr_verifier node) with a params file.

    ros2 launch vpr_node vpr.launch.py params_file:=/path/vpr.yaml [auto_start:=true] [verifier:=true] [respawn:=true]
        [autopilot:=px4|ardupilot]

Arguments: params_file (config/vpr.yaml shows every parameter of both nodes), auto_start (the nodes configure and
activate themselves: their `autostart` parameter; false leaves them unconfigured for `ros2 lifecycle set
/vpr_node configure|activate`), verifier (start vpr_verifier beside vpr_node: geometric verification, the
position fix), respawn (restart a node that dies, after respawn_delay seconds; a respawned node with auto start
configures and activates itself again, and appends to a new recorder file), autopilot (px4 or ardupilot: also start
vpr_mavlink, the accepted fixes to the autopilot over MAVLink, its `autopilot` parameter set to the argument; the
connection and the rest come from the params file; it needs verifier:=true). The nodes' executables, names,
environment and DDS profile come from vpr_node/ros/node_spec.py, which the process harness (environments without
`ros2 launch`) uses too.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode

from vpr_node.ros.node_spec import (
    EXECUTABLE,
    FASTDDS_PROFILE,
    MAVLINK_EXECUTABLE,
    MAVLINK_NAME,
    NODE_ENV,
    NODE_NAME,
    PACKAGE,
    RESPAWN_MAX_RETRIES,
    VERIFIER_EXECUTABLE,
    VERIFIER_NAME,
)


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arg = LaunchConfiguration

    def node(executable, name, extra=None, **kw):
        return LifecycleNode(package=PACKAGE, executable=executable, name=name, namespace="", output="screen",
                             parameters=[arg("params_file"), {"autostart": arg("auto_start"), **(extra or {})}],
                             additional_env=NODE_ENV, respawn=arg("respawn"), respawn_delay=1.0,
                             respawn_max_retries=RESPAWN_MAX_RETRIES, **kw)

    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "vpr.yaml"),
                              description="node parameters (see config/vpr.yaml)"),
        DeclareLaunchArgument("auto_start", default_value="true", description="configure and activate at start"),
        DeclareLaunchArgument("verifier", default_value="false",
                              description="also start vpr_verifier (geometric verification and the position fix)"),
        DeclareLaunchArgument("respawn", default_value="true", description="restart a node that dies"),
        DeclareLaunchArgument("autopilot", default_value="none", choices=["none", "px4", "ardupilot"],
                              description="also start vpr_mavlink: accepted fixes to a PX4 or ArduPilot autopilot"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(share, *FASTDDS_PROFILE)),
        node(EXECUTABLE, NODE_NAME),
        node(VERIFIER_EXECUTABLE, VERIFIER_NAME, condition=IfCondition(arg("verifier"))),
        node(MAVLINK_EXECUTABLE, MAVLINK_NAME, extra={"autopilot": arg("autopilot")},
             condition=IfCondition(PythonExpression(["'", arg("autopilot"), "' != 'none'"]))),
    ])
