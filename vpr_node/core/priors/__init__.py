"""What the drone already knows (heading, altitude above ground, position): prior messages -> timed samples,
matched to a frame by stamp and applied before retrieval (north-up rotation, ground crop, restricted search)."""
