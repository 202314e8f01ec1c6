"""`vpr bench-recall`: the developer recall benchmark over every map in ../shared/data (or --maps).

Per map: synthesised drone queries of a fixed seed (never used by adaptation), tiles, an index per
configuration, recall@1/5/10/20 at 25/50 m and top-1 hubness; then the mean over maps.

Configurations: `default` (the default backbone, backbones.DEFAULT_BACKBONE, vocabulary fitted on the map, no
adaptation), `adapted`
(`prepare-mission` on the map: learned whitening from synthesised map views, plus a fine-tune when
--adapt-minutes > 0), `heading` (default index, queries rotated north-up by their true heading),
`gem` (efficientnet_lite0_gem), `lite0` / `lite0_adapted` (efficientnet_lite0_netvlad, the default until
2026-12-07), `adapted_retrieval` (`adapted` without the map features and the verifier's calibration: what a
retrieval comparison needs), `legacy_trunk` (lite0 with the earlier symmetric-padding trunk).
Priors (the node's PriorApplier, fed the truth plus noise: heading 10 deg, altitude 10 %, position
200 m unless named): `adapted+heading`, `adapted+altitude`, `adapted+position`, `adapted+position50`,
`adapted+position500`, `adapted+all` (the three together), `adapted_rot1+heading` (an index with one
rotation per tile instead of four, for heading-known operation), `adapted_rot8` (eight rotations per tile).
Verification (the calibrated verifier of the adapted index): `adapted+verify`, `adapted+all+verify`; one matcher,
uncalibrated (fix rate and fixes within 25 m): `adapted+sift`, `adapted+xfeat`. Narrowing: `adapted+narrow_gem` (the
adapted default's top 50 narrowed by efficientnet_lite0_gem's adapted index over the same tiles)."""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from vpr_node.core.backbones import DEFAULT_BACKBONE
from vpr_node.core.benchmarks.protocols import prepare_benchmark, protocol_setup
from vpr_node.core.benchmarks.workspace import cached_index
from vpr_node.core.evaluation.recall import RECALL_NS, evaluate
from vpr_node.core.evaluation.report import write_report, write_verification_report
from vpr_node.core.indexing.settings import BuildSettings
from vpr_node.core.mission.adaptation import AdaptConfig
from vpr_node.core.mission.config import MissionConfig, retrieval_only
from vpr_node.core.mission.prepare import prepare_mission
from vpr_node.core.priors.noise import PriorNoise
from vpr_node.core.retrieval.narrowing import NarrowingStrategy
from vpr_node.core.retrieval.strategy import load_strategy
from vpr_node.core.verification.verifier import Verifier, VerifyConfig

LITE0 = "efficientnet_lite0_netvlad"  # the default before xfeat_netvlad
CONFIGS = {
    "default": dict(backbone=DEFAULT_BACKBONE),
    "adapted": dict(backbone=DEFAULT_BACKBONE, adapt=True),
    "heading": dict(backbone=DEFAULT_BACKBONE, heading_known=True),
    "gem": dict(backbone="efficientnet_lite0_gem"),
    "lite0": dict(backbone=LITE0),
    "lite0_adapted": dict(backbone=LITE0, adapt=True, retrieval_only=True),
    "adapted_retrieval": dict(backbone=DEFAULT_BACKBONE, adapt=True, retrieval_only=True),
    "legacy_trunk": dict(backbone=LITE0, options={"trunk": "efficientnet_lite0"}),
    "adapted+heading": dict(backbone=DEFAULT_BACKBONE, adapt=True, priors=dict(heading=True)),
    "adapted+altitude": dict(backbone=DEFAULT_BACKBONE, adapt=True, priors=dict(altitude=True)),
    "adapted+position": dict(backbone=DEFAULT_BACKBONE, adapt=True, priors=dict(position=True)),
    "adapted+position50": dict(backbone=DEFAULT_BACKBONE, adapt=True, priors=dict(position=True, position_sigma_m=50)),
    "adapted+position500": dict(backbone=DEFAULT_BACKBONE, adapt=True,
                                priors=dict(position=True, position_sigma_m=500)),
    "adapted+all": dict(backbone=DEFAULT_BACKBONE, adapt=True, priors=dict(heading=True, altitude=True, position=True)),
    "adapted_rot1+heading": dict(backbone=DEFAULT_BACKBONE, adapt=True, rotations=1, priors=dict(heading=True)),
    "adapted_rot8": dict(backbone=DEFAULT_BACKBONE, adapt=True, rotations=8),
    "adapted+verify": dict(backbone=DEFAULT_BACKBONE, adapt=True, verify=True),
    "adapted+all+verify": dict(backbone=DEFAULT_BACKBONE, adapt=True, verify=True,
                               priors=dict(heading=True, altitude=True, position=True)),
    # single matchers on the top 10, uncalibrated (their fix rate and share of fixes within 25 m compare matchers)
    "adapted+sift": dict(backbone=DEFAULT_BACKBONE, adapt=True,
                         verify=dict(matcher="sift", fallback_matcher="", deeper_k=0)),
    "adapted+xfeat": dict(backbone=DEFAULT_BACKBONE, adapt=True,
                          verify=dict(matcher="xfeat", fallback_matcher="", deeper_k=0)),
    # the adapted default's top RETRIEVAL_K narrowed by a second adapted backbone (retrieval/narrowing.py)
    "adapted+narrow_gem": dict(backbone=DEFAULT_BACKBONE, adapt=True, narrow="efficientnet_lite0_gem"),
}
DEFAULT_CONFIGS = ("default", "adapted")
RETRIEVAL_K = 50  # candidates retrieved where nothing is verified (recall@50); the verifier's K is its own
PRIOR_CONFIGS = ("adapted", "adapted+heading", "adapted+altitude", "adapted+position", "adapted+all")


def run_recall_benchmark(maps_csv, workdir, n_queries: int = 200, seed: int = 100, report_dir=None,
                         configs=DEFAULT_CONFIGS, protocol: str = "benchmark", adapt_minutes: float = 0.0,
                         device: str = "auto") -> list:
    """One map: an EvalResult per configuration (their `extra` holds the adaptation time)."""

    workdir = pathlib.Path(workdir)
    corpus, queries = prepare_benchmark(maps_csv, workdir, n_queries, seed, protocol)
    results, first_index = [], None
    for name in configs:
        cfg = CONFIGS[name]
        opts = cfg.get("options", {})
        extra = {}
        if cfg.get("adapt"):
            rot, backbone, only = cfg.get("rotations", 4), cfg["backbone"], cfg.get("retrieval_only", False)
            idx, extra = adapted_index(maps_csv, workdir / mission_folder(backbone, rot, only), protocol, adapt_minutes,
                                       device, rot, backbone, only)
        else:
            tag = "_".join(f"{k}-{v}" for k, v in opts.items())
            idx = cached_index(cfg["backbone"], corpus, workdir / f"index_{cfg['backbone']}{'_' + tag if tag else ''}",
                               BuildSettings(rotations=4), backbone_options=opts)
        s = load_strategy(cfg["backbone"], index_dir=str(idx), backbone_options=opts)
        if cfg.get("narrow"):
            second, _ = adapted_index(maps_csv, workdir / mission_folder(cfg["narrow"], retrieval=True), protocol,
                                      adapt_minutes, device, 4, cfg["narrow"], True)
            s = NarrowingStrategy(s, load_strategy(cfg["narrow"], index_dir=str(second)), RETRIEVAL_K)
        first_index = first_index or s.index
        noise = PriorNoise(**cfg["priors"], seed=seed) if cfg.get("priors") else None
        verify = cfg.get("verify")
        verifier = None if not verify else Verifier.for_index(idx) if verify is True else \
            Verifier.for_index(idx, VerifyConfig(**verify), calibrated=False)
        k = 20 if verifier else RETRIEVAL_K
        r = evaluate(s, queries, k=k, heading_known=cfg.get("heading_known", False), priors=noise,
                     camera=protocol_setup(protocol)[0].camera_model(), verifier=verifier,
                     ns=RECALL_NS if verifier else (*RECALL_NS, RETRIEVAL_K))
        if verifier is not None and report_dir:
            r.extra["verification_files"] = write_verification_report(r, verifier, queries,
                                                                       pathlib.Path(report_dir) / name)
        r.backbone = name
        r.extra.update(extra)
        r.extra["index_MiB"] = round(sum(f.stat().st_size for f in pathlib.Path(idx).glob("*.*")) / 2**20, 2)
        results.append(r)
    if report_dir:
        write_report(results, report_dir, queries, first_index)
    return results


def mission_folder(backbone: str, rotations: int = 4, retrieval: bool = False) -> str:
    """The work folder of an adapted index: `mission` for the default backbone at 4 rotations, suffixed otherwise."""
    return ("mission" + ("" if rotations == 4 else f"_rot{rotations}")
            + ("" if backbone == DEFAULT_BACKBONE else f"_{backbone}") + ("_retrieval" if retrieval else ""))


def adapted_index(maps_csv, mission_dir, protocol: str, adapt_minutes: float, device: str, rotations: int = 4,
                  backbone: str = DEFAULT_BACKBONE, retrieval: bool = False):
    """prepare-mission on the map with the protocol's camera and altitudes (no report: the benchmark's own
    queries are the report; `retrieval`: stop after the index, no map features or calibration).
    Returns (index folder, adaptation facts)."""
    spec, plan = protocol_setup(protocol)
    if protocol == "legacy":
        raise ValueError("the adapted configuration runs with the benchmark protocol (camera + altitudes)")
    t0 = time.perf_counter()
    summary = prepare_mission(MissionConfig(
        maps=str(maps_csv), out=str(mission_dir), altitude=spec.altitude_m, camera=spec.camera_model(),
        report_queries=0, build=BuildSettings(rotations=rotations), backbone=backbone,
        **(retrieval_only() if retrieval else {}),
        adapt=AdaptConfig(minutes=adapt_minutes, altitude_m=spec.altitude_m, hfov_deg=spec.hfov_deg, device=device)),
        log=lambda *_: None)
    adaptation = summary.get("adaptation") or {}
    return pathlib.Path(mission_dir), {"prepare_mission_s": round(time.perf_counter() - t0, 1), **adaptation}


def run_all(maps: list, workdir, n_queries: int, seed: int, configs, protocol: str, adapt_minutes: float,
            device: str) -> dict:
    workdir = pathlib.Path(workdir)
    per_map = {}
    for m in maps:
        area = pathlib.Path(m).parent.name
        res = run_recall_benchmark(m, workdir / area, n_queries, seed, workdir / area / "report", configs, protocol,
                                   adapt_minutes, device)
        per_map[area] = {r.backbone: {**r.to_json(), "extra": r.extra} for r in res}
        (workdir / "results_partial.json").write_text(json.dumps(per_map, indent=2, default=str) + "\n")
    mean = {c: {radius: {n: float(np.mean([per_map[a][c]["recall"][radius][n] for a in per_map]))
                         for n in per_map[next(iter(per_map))][c]["recall"][radius]}
                for radius in ("25", "50")} for c in configs}
    return {"protocol": protocol, "n_queries": n_queries, "seed": seed, "adapt_minutes": adapt_minutes,
            "per_map": per_map, "mean": mean}


def format_markdown(summary: dict) -> str:
    lines = ["| area | configuration | R@1 | R@5 | R@10 | R@20 | R@50 | R@1 50 m | wrong-hub share | top-1 / truth max "
             "share | embed / search p50 ms | index MiB | adaptation time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for area, rows in summary["per_map"].items():
        for c, r in rows.items():
            rc = r["recall"]
            ex = r.get("extra") or {}
            t = ""
            if ex.get("prepare_mission_s") is not None:
                t = f"{ex.get('prepare_mission_s', 0):.0f} s prepare-mission"
                if ex.get("fine_tune"):
                    t += f" ({ex['fine_tune']['steps']} fine-tune steps on {ex['fine_tune']['device']})"
            hub = r.get("hubness", {})
            r50 = f"{rc['25']['50']:.3f}" if "50" in rc["25"] else ""
            lines.append(f"| {area} | {c} | {rc['25']['1']:.3f} | {rc['25']['5']:.3f} | {rc['25']['10']:.3f} | "
                         f"{rc['25']['20']:.3f} | {r50} | {rc['50']['1']:.3f} | {hub.get('wrong_hub_share', '')} | "
                         f"{hub.get('max_share', '')} / {hub.get('truth_max_share', '')} | "
                         f"{r['embed_ms_p50']:.1f} / {r['search_ms_p50']:.2f} | {ex.get('index_MiB', '')} | {t} |")
    for c, rc in summary["mean"].items():
        r50 = f"{rc['25']['50']:.3f}" if "50" in rc["25"] else ""
        lines.append(f"| **mean** | {c} | {rc['25']['1']:.3f} | {rc['25']['5']:.3f} | {rc['25']['10']:.3f} | "
                     f"{rc['25']['20']:.3f} | {r50} | {rc['50']['1']:.3f} | | | | | |")
    verified = [(a, c, r["extra"]["verification"]) for a, rows in summary["per_map"].items() for c, r in rows.items()
                if (r.get("extra") or {}).get("verification")]
    if verified:
        lines += ["", "| area | configuration | retrieval R@1 | verified R@1 | fix rate | accepted | precision | "
                      "error p50 / p95 m | mean NEES | verify p50 / p95 ms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for a, c, v in verified:
            r1 = summary["per_map"][a][c]["recall"]["25"]["1"]
            lines.append(f"| {a} | {c} | {r1:.3f} | {v['verified_recall_at_1']:.3f} | {v['fix_rate']:.3f} | "
                         f"{v['acceptance_rate']:.3f} | {v['precision']} | {v['error_m_p50']} / {v['error_m_p95']} | "
                         f"{v['mean_nees']} | {v['verify_ms_p50']} / {v['verify_ms_p95']} |")
    return "\n".join(lines)
