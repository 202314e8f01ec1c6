"""Recall in metres against ground truth (the field's standard protocol), latency statistics and reports
(recall plots, mosaics of queries beside their tiles)."""
