"""The descriptor index over a tile corpus: FAISS index types and their tuning, the index folder and its
manifest, hubness, loading with verification, and search (optionally restricted to some tiles)."""
