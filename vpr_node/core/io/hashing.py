"""Content hashes of files (index manifests, weights provenance, build checkpoints)."""
from __future__ import annotations

import hashlib


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
