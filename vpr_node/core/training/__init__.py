"""Training retrieval models on GPS triplets synthesised from a tile corpus (Lightning)."""
