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


def write_verification_report(result: EvalResult, verifier, queries: list[Query], out_dir, n_mosaic: int = 6,
                              radius_m: float = 25.0) -> dict:
    """For an evaluation run with a verifier: the precision of accepted fixes against the acceptance rate as the
    confidence threshold varies (PNG; the calibrated threshold marked), and a mosaic of frames beside their
    verified tiles with the inlier matches (PNG)."""
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vpr_node.core.verification.confidence import precision_curve
    from vpr_node.core.verification.drawing import draw_verification, verification_picture

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs = [p["verification"] for p in result.per_query]
    fixed = [r for r in recs if r["fix"] and r.get("confidence") == r.get("confidence")]  # with a confidence
    files = {}
    if fixed:
        conf = np.array([r["confidence"] for r in fixed])
        correct = np.array([r["fix_error_m"] <= radius_m for r in fixed])
        curve = precision_curve(conf, correct, len(recs))
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([p["acceptance"] for p in curve], [p["precision"] for p in curve], "-", label=result.backbone)
        cal = verifier.calibration
        if cal is not None:
            at = [p for p in curve if p["threshold"] >= cal.threshold]
            if at:
                ax.plot([at[-1]["acceptance"]], [at[-1]["precision"]], "o", color="red",
                        label=f"calibrated threshold {cal.threshold:.3f}")
        ax.set_xlabel("acceptance rate (accepted fixes / frames)")
        ax.set_ylabel(f"precision (accepted fixes within {radius_m:g} m)")
        ax.set_ylim(min(0.8, min(p["precision"] for p in curve)) - 0.02, 1.005)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"verification: precision vs acceptance ({len(recs)} frames)")
        fig.tight_layout()
        fig.savefig(out_dir / "precision_vs_acceptance.png", dpi=120)
        plt.close(fig)
        files["precision_curve"] = str(out_dir / "precision_vs_acceptance.png")
    rows = []
    for q, pq in list(zip(queries, result.per_query, strict=True))[:n_mosaic]:
        rec = pq["verification"]
        v = verifier.verify(q.image, verifier_candidates(verifier, [rec["tile_id"]] if rec["fix"] else pq["tiles"]))
        pic = verification_picture(verifier, q.image, v, height=240)
        if pic is None:
            pic = draw_verification(q.image, np.zeros((320, 320, 3), np.uint8), None,
                                    (q.image.shape[1] // 3, q.image.shape[0] // 3), 240, label=v.reason)
        rows.append(cv2.resize(pic, (720, 240)))
    if rows:
        cv2.imwrite(str(out_dir / "verification_examples.png"),
                    cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
        files["verification_mosaic"] = str(out_dir / "verification_examples.png")
    return files


def verifier_candidates(verifier, tile_ids: list[str]) -> list:
    """Candidates (in this order) for tile ids of the verifier's index: to re-verify an evaluated query."""
    from vpr_node.core.types import Candidate, TileId

    out = []
    for rank, t in enumerate(tile_ids):
        row = verifier.tiles.row(t)
        c = verifier.tiles.cols
        out.append(Candidate(rank, TileId(0, float(c["lat"][row]), float(c["lon"][row]), t), 0.0, 0, ""))
    return out
