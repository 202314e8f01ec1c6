"""What the nav camera sees: drone views of a map synthesised with ground truth, their photometric
conditions, and the image geometry shared by frames and tiles (rotations, north-up, ground crops)."""
