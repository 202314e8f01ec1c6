"""Geometric verification of retrieval candidates (the spec's C2.5 re-ranker): local features of a frame against
its top-K tiles' pixels, a robust homography, candidates re-ranked by inliers, and a metric fix of the camera with
its heading, covariance and a calibrated confidence."""
