"""Recall@N against ground-truth positions (the field's standard protocol) and latency statistics."""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np
from tqdm import tqdm

from .geo import haversine_m
from .index import DescriptorIndex
from .queries import Query
from .strategy import RetrievalStrategy

RECALL_NS = (1, 5, 10, 20)
RADII_M = (25.0, 50.0)


def percentile_ms(values, q) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else float("nan")


@dataclasses.dataclass
class EvalResult:
    backbone: str
    descriptor_dim: int
    n_queries: int
    recall: dict  # {"25": {"1": r, ...}, "50": {...}}
    embed_ms_p50: float
    embed_ms_p95: float
    search_ms_p50: float
    search_ms_p95: float
    per_query: list = dataclasses.field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("per_query")
        return d


def recall_from_distances(dist_m: np.ndarray, ns=RECALL_NS, radius_m: float = 25.0) -> dict[int, float]:
    """dist_m: (Q, K) metres from each query's true position to its ranked tiles."""
    hit = dist_m <= radius_m
    return {n: float(np.mean(hit[:, :n].any(axis=1))) for n in ns}


def evaluate(strategy: RetrievalStrategy, queries: list[Query], k: int = 20, heading_known: bool = False,
             progress: bool = True) -> EvalResult:
    """Embed each query, retrieve top-k, compute recall@N at 25 m and 50 m and latency."""
    index: DescriptorIndex = strategy.index
    k = min(k, len(index))
    dists, embed_ms, search_ms, per_query = [], [], [], []
    for q in tqdm(queries, desc=f"evaluating {strategy.label}", unit="query", disable=not progress):
        img = q.image
        if heading_known:
            from .preprocess import rotate_to_north_up
            img = rotate_to_north_up(img, q.yaw_deg)
        t0 = time.perf_counter()
        d = strategy.embed_query(img)
        t1 = time.perf_counter()
        cands = strategy.retrieve_topk(d, k)
        t2 = time.perf_counter()
        embed_ms.append((t1 - t0) * 1e3)
        search_ms.append((t2 - t1) * 1e3)
        lat = np.array([c.tile.lat for c in cands])
        lon = np.array([c.tile.lon for c in cands])
        dm = haversine_m(q.lat, q.lon, lat, lon)
        if len(dm) < k:
            dm = np.concatenate([dm, np.full(k - len(dm), np.inf)])
        dists.append(dm)
        per_query.append({"name": q.name, "tiles": [c.tile.name for c in cands[:5]], "dist_m": dm[:5].tolist()})
    dist = np.stack(dists)
    recall = {str(int(r)): {str(n): v for n, v in recall_from_distances(dist, RECALL_NS, r).items()} for r in RADII_M}
    return EvalResult(strategy.label, strategy.descriptor_dim, len(queries), recall,
                      percentile_ms(embed_ms, 50), percentile_ms(embed_ms, 95),
                      percentile_ms(search_ms, 50), percentile_ms(search_ms, 95), per_query)


def format_table(results: list[EvalResult]) -> str:
    head = (f"{'backbone':<28}{'dim':>6}{'n':>5}  " + "  ".join(f"R@{n}/25m" for n in RECALL_NS) + "  "
            + "  ".join(f"R@{n}/50m" for n in RECALL_NS) + "  embed p50/p95 ms  search p50/p95 ms")
    lines = [head, "-" * len(head)]
    for r in results:
        rec = "  ".join(f"{r.recall['25'][str(n)]:>8.3f}" for n in RECALL_NS) + "  " + \
              "  ".join(f"{r.recall['50'][str(n)]:>8.3f}" for n in RECALL_NS)
        lines.append(f"{r.backbone:<28}{r.descriptor_dim:>6}{r.n_queries:>5}  {rec}  "
                     f"{r.embed_ms_p50:>7.1f}/{r.embed_ms_p95:<7.1f}   {r.search_ms_p50:>7.2f}/{r.search_ms_p95:<7.2f}")
    return "\n".join(lines)


def write_report(results: list[EvalResult], out_dir, queries: list[Query] | None = None, index: DescriptorIndex | None = None,
                 corpus_root=None) -> dict:
    """JSON + recall@K plot (PNG) + a mosaic of example queries beside their top-5 tiles."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        for radius, style in (("25", "-o"), ("50", "--s")):
            ax.plot(RECALL_NS, [r.recall[radius][str(n)] for n in RECALL_NS], style, label=f"{r.backbone} @{radius} m")
    ax.set_xlabel("N (top-N tiles)")
    ax.set_ylabel("recall@N")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(RECALL_NS)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"VPR recall@N ({results[0].n_queries} queries)" if results else "VPR recall@N")
    fig.tight_layout()
    fig.savefig(out_dir / "recall_at_n.png", dpi=120)
    plt.close(fig)
    files = {"json": str(out_dir / "results.json"), "plot": str(out_dir / "recall_at_n.png")}
    if queries and index is not None and results:
        files["mosaic"] = str(write_mosaic(results[0], queries, index, out_dir / f"examples_{results[0].backbone}.png"))
    return files


def write_mosaic(result: EvalResult, queries: list[Query], index: DescriptorIndex, path, n_rows: int = 6,
                 radius_m: float = 25.0) -> pathlib.Path:
    """Each row: the query, then its top-5 tiles; green border = within radius of the truth, red = not."""
    import cv2
    corpus_root = pathlib.Path(index.manifest.get("corpus", ""))
    by_name = {r.tile_id: r for r in index.records}
    cell = 160
    rows = []
    for q, pq in list(zip(queries, result.per_query))[:n_rows]:
        qi = q.image
        h, w = qi.shape[:2]
        s = min(h, w)
        qi = cv2.resize(qi[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2], (cell, cell))
        row = [cv2.copyMakeBorder(qi, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))]
        for name, dm in zip(pq["tiles"], pq["dist_m"]):
            img = cv2.imread(str(corpus_root / by_name[name].path))
            img = np.zeros((cell, cell, 3), np.uint8) if img is None else cv2.cvtColor(cv2.resize(img, (cell, cell)), cv2.COLOR_BGR2RGB)
            colour = (0, 200, 0) if dm <= radius_m else (220, 0, 0)
            row.append(cv2.copyMakeBorder(img, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=colour))
        while len(row) < 6:
            row.append(np.zeros_like(row[0]))
        rows.append(np.concatenate(row, 1))
    mosaic = np.concatenate(rows, 0)
    cv2.imwrite(str(path), cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR))
    return pathlib.Path(path)
