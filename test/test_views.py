"""views/: image geometry shared by frames and tiles (north-up rotation, ground crops)."""
import cv2
import numpy as np

from vpr_node.core.views.geometry import crop_to_ground, rotate_to_north_up


def test_rotate_to_north_up_inverts_heading():
    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8), (400, 400), interpolation=cv2.INTER_CUBIC)
    rotated = np.ascontiguousarray(np.rot90(base, 1))  # heading 90 deg: map appears turned left
    back = rotate_to_north_up(rotated, 90.0)
    assert np.abs(back.astype(int) - base.astype(int)).mean() < 2


def test_crop_to_ground_keeps_the_centre():
    img = np.zeros((720, 1280, 3), np.uint8)
    assert crop_to_ground(img, footprint_m=120.0, target_m=60.0).shape == (360, 360, 3)
    assert crop_to_ground(img, footprint_m=50.0, target_m=60.0).shape == (720, 720, 3)  # cannot zoom out
