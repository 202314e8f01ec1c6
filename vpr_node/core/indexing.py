"""Embed every tile of a corpus (optionally at several rotations) and write the index folder."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .corpus import TileCorpus
from .index import write_index
from .strategy import RetrievalStrategy


def rotated_views(img: np.ndarray, rotations: int) -> list[np.ndarray]:
    """The tile at `rotations` headings evenly spaced over 360 deg (1, 2 or 4 use exact 90-deg turns)."""
    if rotations not in (1, 2, 4, 8):
        raise ValueError("rotations must be 1, 2, 4 or 8")
    views = [np.ascontiguousarray(np.rot90(img, k)) for k in range(0, 4, 4 // min(rotations, 4))]
    if rotations == 8:
        import cv2
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 45, 1.0)
        r45 = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        views += [np.ascontiguousarray(np.rot90(r45, k)) for k in range(4)]
    return views


def embed_corpus(strategy: RetrievalStrategy, corpus: TileCorpus, rotations: int = 1, batch_size: int = 16,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (rows, D) and the tile row of each descriptor."""
    descs, entries, batch, batch_ids = [], [], [], []
    bar = tqdm(total=len(corpus) * rotations, desc=f"embedding tiles ({strategy.label})", unit="view",
               disable=not progress)

    def flush():
        if batch:
            descs.append(strategy.embed_batch(batch))
            entries.extend(batch_ids)
            bar.update(len(batch))
            batch.clear()
            batch_ids.clear()

    for i in range(len(corpus)):
        for view in rotated_views(corpus.image(i), rotations):
            batch.append(view)
            batch_ids.append(i)
            if len(batch) >= batch_size:
                flush()
    flush()
    bar.close()
    return np.concatenate(descs).astype(np.float32), np.asarray(entries, np.int32)


def build_index(strategy: RetrievalStrategy, corpus: TileCorpus, out_dir, kind: str = "flat", params: dict | None = None,
                rotations: int = 1, batch_size: int = 16, progress: bool = True) -> dict:
    descriptors, entries = embed_corpus(strategy, corpus, rotations, batch_size, progress)
    info = {"label": strategy.label, "weights_sha256": strategy.backbone.weights_sha256,
            "preprocessing": strategy.preprocessor.describe(),
            "provenance": strategy.backbone.describe()["provenance"]}
    return write_index(out_dir, descriptors, entries, corpus.records, info, kind, params,
                       extra={"rotations": rotations, "corpus": str(corpus.root)})
