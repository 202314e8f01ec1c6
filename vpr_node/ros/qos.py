"""QoS of the package's topics: one place, used by both nodes and by every subscriber in the package.

Frames come in as sensor data (best effort, newest wins). The outputs (VprResult, VprVerification, the fix and
the pose) are reliable and keep their last `OUTPUT_DEPTH` messages for late-joining subscribers that ask for
transient local: discovery between two processes completes in its own time, and a result published in the moment
before the verifier (or a recorder, a test client) is matched still reaches it. Volatile subscribers (RViz,
Foxglove, mavros) are compatible and receive only new messages. The verifier asks for transient local, so a
VprResult publisher of your own must offer it (publish with OUTPUT_QOS).
"""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

OUTPUT_DEPTH = 10
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=OUTPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
FRAME_QOS = qos_profile_sensor_data

__all__ = ["FRAME_QOS", "OUTPUT_DEPTH", "OUTPUT_QOS"]
