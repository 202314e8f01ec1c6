"""vpr_node: visual place recognition for GPS-denied drones.

`vpr_node.core` is plain Python (no rclpy); `vpr_node.ros` is the thin ROS 2 layer;
`vpr_node.tools` holds the command-line entry points. The generated message module
(`vpr_node.msg`) lives in the colcon install tree; extend_path lets a source checkout find it.
"""
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
__version__ = "0.1.0"
