"""Pre-flight mission preparation: adapting the backbone to the mission map and building its index, with a
before/after report."""
