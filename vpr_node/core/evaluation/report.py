"""TODO docstring: report."""
from __future__ import annotations

import json
import pathlib

import numpy as np

from vpr_node.core.evaluation.recall import RECALL_NS, EvalResult
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.views.queries import Query


def format_table(results: list[EvalResult]) -> str:
    head = (f"{'backbone':<28}{'dim':>6}{'n':>5}  " + "  ".join(f"R@{n}/25m" for n in RECALL_NS) + "  "
            + "  ".join(f"R@{n}/50m" for n in RECALL_NS) + "  hub  embed p50/p95 ms  search p50/p95 ms")
    lines = [head, "-" * len(head)]
    for r in results:
        rec = "  ".join(f"{r.recall['25'][str(n)]:>8.3f}" for n in RECALL_NS) + "  " + \
              "  ".join(f"{r.recall['50'][str(n)]:>8.3f}" for n in RECALL_NS)
        lines.append(f"{r.backbone:<28}{r.descriptor_dim:>6}{r.n_queries:>5}  {rec}  "
                     f"{r.hubness.get('max_share', 0):.2f}  "
                     f"{r.embed_ms_p50:>7.1f}/{r.embed_ms_p95:<7.1f}   {r.search_ms_p50:>7.2f}/{r.search_ms_p95:<7.2f}")
    return "\n".join(lines)


def write_report(
    results: list[EvalResult],
    out_dir,
    queries: list[Query] | None = None,
    index: DescriptorIndex | None = None,
    corpus_root=None,
) -> dict:
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
    for q, pq in list(zip(queries, result.per_query, strict=True))[:n_rows]:
        qi = q.image
        h, w = qi.shape[:2]
        s = min(h, w)
        qi = cv2.resize(qi[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2], (cell, cell))
        row = [cv2.copyMakeBorder(qi, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))]
        for name, dm in zip(pq["tiles"], pq["dist_m"], strict=False):
            img = cv2.imread(str(corpus_root / by_name[name].path))
            img = (
                np.zeros((cell, cell, 3), np.uint8)
                if img is None
                else cv2.cvtColor(cv2.resize(img, (cell, cell)), cv2.COLOR_BGR2RGB)
            )
            colour = (0, 200, 0) if dm <= radius_m else (220, 0, 0)
            row.append(cv2.copyMakeBorder(img, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=colour))
        while len(row) < 6:
            row.append(np.zeros_like(row[0]))
        rows.append(np.concatenate(row, 1))
    mosaic = np.concatenate(rows, 0)
    cv2.imwrite(str(path), cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR))
    return pathlib.Path(path)
