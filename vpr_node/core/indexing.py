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


CORPUS_FITTED_WEIGHTS = "backbone_weights.pt"


def build_index(strategy: RetrievalStrategy, corpus: TileCorpus, out_dir, kind: str = "flat", params: dict | None = None,
                rotations: int = 1, batch_size: int = 16, progress: bool = True, weights_file: str | None = None) -> dict:
    """Embed the corpus and write the index folder. `weights_file` (a file inside out_dir) is recorded
    in the manifest when the backbone's weights were fitted to this corpus (see build_index_for)."""
    descriptors, entries = embed_corpus(strategy, corpus, rotations, batch_size, progress)
    info = {"label": strategy.label, "weights_sha256": strategy.backbone.weights_sha256,
            "preprocessing": strategy.preprocessor.describe(),
            "provenance": strategy.backbone.describe()["provenance"]}
    return write_index(out_dir, descriptors, entries, corpus.records, info, kind, params,
                       extra={"rotations": rotations, "corpus": str(corpus.root), "weights_file": weights_file})


def build_index_for(backbone: str, corpus: TileCorpus, out_dir, weights: str | None = None, backbone_options=None,
                    runtime: str = "pytorch", precision: str = "fp32", device: str = "cpu", **build_kw) -> dict:
    """build-index for a backbone by name. A backbone whose weights are fitted to the corpus
    (efficientnet_lite0_netvlad: k-means centroids) gets them fitted here when `weights` is not
    given; they are saved in the index folder and named in the manifest."""
    import pathlib

    from .backbones.efficientnet import EfficientNetLite0Vpr
    from .strategy import load_strategy
    from .vlad_init import init_vlad

    opts = dict(backbone_options or {})
    weights_file = None
    if backbone == "efficientnet_lite0_netvlad" and not weights:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model = EfficientNetLite0Vpr("netvlad", **{k: v for k, v in opts.items()
                                                   if k in ("input_size", "stages", "num_clusters")}).eval()
        weights = str(init_vlad(model, corpus, out / CORPUS_FITTED_WEIGHTS))
        weights_file = CORPUS_FITTED_WEIGHTS
    strategy = load_strategy(backbone, weights=weights, runtime=runtime, precision=precision, device=device,
                             backbone_options=opts)
    return build_index(strategy, corpus, out_dir, weights_file=weights_file, **build_kw)
