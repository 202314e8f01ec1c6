"""Plain-Python retrieval core. Importing it never imports rclpy."""
