"""Training of retrieval models (Lightning). Plain Python: no rclpy."""
