"""Recall@N against ground-truth positions (the field's standard protocol) and latency statistics."""
from __future__ import annotations

import collections
import dataclasses
import math
import time

import numpy as np
from tqdm import tqdm

from vpr_node.core.evaluation.verified import frame_record, summarise
from vpr_node.core.index.hubness import top1_hubness
from vpr_node.core.index.loaded import DescriptorIndex
from vpr_node.core.maps.geo import haversine_m
from vpr_node.core.retrieval.strategy import RetrievalStrategy
from vpr_node.core.verification.result import FrameHints
from vpr_node.core.views.geometry import rotate_to_north_up
from vpr_node.core.views.queries import Query

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
    hubness: dict = dataclasses.field(default_factory=dict)  # top-1 concentration over the queries
    per_query: list = dataclasses.field(default_factory=list, repr=False)
    extra: dict = dataclasses.field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("per_query")
        d.pop("extra")
        return d


def recall_from_distances(dist_m: np.ndarray, ns=RECALL_NS, radius_m: float = 25.0) -> dict[int, float]:
    """dist_m: (Q, K) metres from each query's true position to its ranked tiles."""
    hit = dist_m <= radius_m
    return {n: float(np.mean(hit[:, :n].any(axis=1))) for n in ns}


def truth_distances(lat: float, lon: float, cand_lat, cand_lon, k: int) -> np.ndarray:
    """(k,) metres from a frame's true position to its ranked candidates, padded with inf when fewer."""
    d = haversine_m(lat, lon, np.asarray(cand_lat, np.float64), np.asarray(cand_lon, np.float64))
    return np.pad(d[:k], (0, max(0, k - len(d))), constant_values=np.inf)


def recall_summary(dists: list, k: int, radius_m: float = 25.0) -> dict[str, float]:
    """Recall@1/5/10 (those <= k) at radius_m over per-frame truth_distances rows; {} without rows."""
    if not len(dists):
        return {}
    ns = tuple(n for n in (1, 5, 10) if n <= k)
    return {str(n): v for n, v in recall_from_distances(np.stack(dists), ns, radius_m).items()}


def evaluate(strategy: RetrievalStrategy, queries: list[Query], k: int = 20, heading_known: bool = False,
             progress: bool = True, priors=None, camera=None, verifier=None, ns=RECALL_NS) -> EvalResult:
    """Embed each query, retrieve top-k, compute recall@N (N in `ns`, each <= k) at 25 m and 50 m and latency.

    `verifier` (verification.Verifier) also verifies each query's candidates (the frame as the camera took it; as
    many as it asks for, `candidates_needed`, recall still at k): per-query outcome in
    `per_query[i]["verification"]`, totals in `extra["verification"]` (evaluation/verified.py).

    `priors` (priors.PriorNoise) simulates the drone's heading / altitude / position priors with noise
    and applies them exactly as the node does (priors.PriorApplier); `camera` (camera.CameraModel) is the
    nav camera the altitude prior needs. The embed time then includes the prior's rotation/crop."""
    index: DescriptorIndex = strategy.index
    applier, rng, prior_states = None, None, collections.Counter()
    if priors is not None and priors.any:
        applier, rng = priors.applier(index, camera), np.random.default_rng(priors.seed)
    k = min(k, len(index))
    depth = min(max(k, verifier.cfg.candidates_needed), len(index)) if verifier is not None else k
    dists, embed_ms, search_ms, per_query, top1, truth, wrong = [], [], [], [], [], [], []
    row_of = {r.tile_id: i for i, r in enumerate(index.records)}
    tile_lat = np.array([r.lat for r in index.records])
    tile_lon = np.array([r.lon for r in index.records])
    for q in tqdm(queries, desc=f"evaluating {strategy.label}", unit="query", disable=not progress):
        img = q.image
        if heading_known:
            img = rotate_to_north_up(img, q.yaw_deg)
        allowed = None
        t0 = time.perf_counter()
        if applier is not None:
            stamp = len(dists) * 1_000_000_000
            for kind, value in priors.sample(rng, q.yaw_deg, q.altitude_m, q.lat, q.lon).items():
                applier.buffer.add(kind, stamp, *value)
            img, allowed, state = applier.apply(img, stamp)
            prior_states.update(state.label().split())
        d = strategy.embed_query(img)
        t1 = time.perf_counter()
        cands = strategy.retrieve_topk(d, depth, allowed)
        t2 = time.perf_counter()
        embed_ms.append((t1 - t0) * 1e3)
        search_ms.append((t2 - t1) * 1e3)
        dm = truth_distances(q.lat, q.lon, [c.tile.lat for c in cands], [c.tile.lon for c in cands], k)
        dists.append(dm)
        truth.append(int(np.argmin(haversine_m(q.lat, q.lon, tile_lat, tile_lon))))
        if cands:
            top1.append(row_of[cands[0].tile.name])
            if dm[0] > RADII_M[0]:
                wrong.append(top1[-1])
        per_query.append({"name": q.name, "tiles": [c.tile.name for c in cands[:5]], "dist_m": dm[:5].tolist(),
                          "hit_at_10": bool(np.any(dm[:10] <= RADII_M[0]))})
        if verifier is not None:
            hints = frame_hints(state, camera) if applier is not None else None
            per_query[-1]["verification"] = frame_record(verifier.verify(q.image, cands, hints), q.lat, q.lon)
    dist = np.stack(dists)
    recall = {str(int(r)): {str(n): v for n, v in recall_from_distances(dist, ns, r).items()} for r in RADII_M}
    result = EvalResult(strategy.label, strategy.descriptor_dim, len(queries), recall,
                        percentile_ms(embed_ms, 50), percentile_ms(embed_ms, 95),
                        percentile_ms(search_ms, 50), percentile_ms(search_ms, 95),
                        query_hubness(top1, truth, wrong, len(index.records)), per_query)
    if applier is not None:
        result.extra["priors"] = {"simulated": priors.label(), "states": dict(prior_states)}
    if verifier is not None:
        result.extra["verification"] = summarise([p["verification"] for p in per_query])
    return result


def frame_hints(state, camera) -> FrameHints:
    """What the node's VprResult tells the verifier of a frame's priors (ros/conversions.hints_from_msg)."""
    heading = state.heading_deg if state.applied("heading") else math.nan
    footprint = camera.square_footprint_m(state.altitude_m) if camera is not None and state.applied("altitude") \
        else math.nan
    position = state.applied("position")
    return FrameHints(heading_deg=float(heading), footprint_m=float(footprint),
                      prior_lat=state.position_lat if position else math.nan,
                      prior_lon=state.position_lon if position else math.nan,
                      prior_sigma_m=state.position_sigma_m if position else math.nan)


def query_hubness(top1: list, truth: list, wrong: list, n_tiles: int) -> dict:
    """Top-1 concentration over the queries: `max_share` of the most frequent top-1 tile, `truth_max_share`
    the same for the tiles nearest the true positions (what a perfect system shows: on a small map, large
    footprints centre the queries), and `wrong_hub_share`, the fraction of all queries whose wrong top-1
    (beyond 25 m) is one and the same tile: the hub-tile symptom."""
    out = top1_hubness(np.asarray(top1, np.int64), n_tiles)
    out["truth_max_share"] = top1_hubness(np.asarray(truth, np.int64), n_tiles)["max_share"]
    counts = np.bincount(np.asarray(wrong, np.int64), minlength=n_tiles) if wrong else np.zeros(1)
    out["wrong_hub_share"] = round(float(counts.max() / max(1, len(top1))), 4)
    return out


