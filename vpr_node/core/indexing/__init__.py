"""Making an index folder from a tile corpus: chunked, checkpointed, distributable tile embedding (the one path for
build-index and prepare-mission), the index build with its whitening and weights, and reindexing."""
