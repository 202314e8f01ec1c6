"""`vpr` command line: corpus, index, evaluation, demo, conversion and benchmark tools."""
from __future__ import annotations

import argparse
import json
import pathlib
import sys


def _add_backbone_args(p, default="efficientnet_lite0_netvlad"):
    p.add_argument("--backbone", default=default, help="registry name (see `vpr backbones`)")
    p.add_argument("--weights", default=None, help="converted weights file (default: the backbone's packaged weights)")
    p.add_argument("--backbone-options", default="{}", help="JSON object of backbone options")
    p.add_argument("--runtime", default="pytorch", choices=("pytorch", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    p.add_argument("--device", default="cpu")


def _strategy(args, index_dir=None):
    from vpr_node.core.strategy import load_strategy
    return load_strategy(args.backbone, weights=args.weights, index_dir=index_dir, runtime=args.runtime,
                         precision=args.precision, device=args.device, backbone_options=json.loads(args.backbone_options))


def cmd_backbones(args):
    from vpr_node.core.backbones import available_backbones
    print("\n".join(available_backbones()))


def cmd_sample_map(args):
    from vpr_node.core.sample_map import write_sample_map
    print(write_sample_map(args.out, seed=args.seed))


def _rasters(source):
    from vpr_node.core.corpus import load_corner_table, load_xyz_folder
    p = pathlib.Path(source)
    return load_corner_table(p) if p.suffix == ".csv" else load_xyz_folder(p)


def cmd_make_corpus(args):
    from vpr_node.core.corpus import cut_tiles
    recs = cut_tiles(_rasters(args.maps), args.out, tile_m=args.tile_m, overlap=args.overlap, tile_px=args.tile_px)
    print(f"{len(recs)} tiles -> {args.out}")


def cmd_synth_queries(args):
    from vpr_node.core.queries import QuerySpec, synthesise_queries, write_queries
    spec = QuerySpec(camera=(args.width, args.height), footprint_m=args.footprint_m,
                     yaw_deg=(0.0, 360.0) if not args.north_up else (0.0, 0.0))
    qs = synthesise_queries(_rasters(args.maps), args.n, seed=args.seed, spec=spec)
    path = write_queries(qs, args.out)
    print(path)
    if args.bag:
        from vpr_node.core.bagio import write_query_bag
        from vpr_node.core.queries import read_queries
        print(write_query_bag(read_queries(path), args.bag, rate_hz=args.rate))


def cmd_build_index(args):
    from vpr_node.core.corpus import TileCorpus
    from vpr_node.core.indexing import build_index_for
    m = build_index_for(args.backbone, TileCorpus(args.corpus), args.out, weights=args.weights,
                        backbone_options=json.loads(args.backbone_options), runtime=args.runtime,
                        precision=args.precision, device=args.device, kind=args.index_type,
                        params=json.loads(args.index_params), rotations=args.rotations, batch_size=args.batch_size)
    print(json.dumps({k: m[k] for k in ("backbone_label", "descriptor_dim", "index_type", "tile_count", "entry_count",
                                        "build_seconds")}))


def cmd_evaluate(args):
    from vpr_node.core.evaluation import evaluate, format_table, write_report
    from vpr_node.core.queries import read_queries
    qs = read_queries(args.queries)
    if args.limit:
        qs = qs[:args.limit]
    results = []
    first = None
    for i, idx in enumerate(args.index):
        s = _strategy(args, index_dir=idx)
        first = first or s
        r = evaluate(s, qs, k=20, heading_known=args.heading_known)
        if len(args.index) > 1 or args.heading_known:
            r.backbone = f"{r.backbone}{'+heading' if args.heading_known else ''}[{pathlib.Path(idx).name}]"
        results.append(r)
    print(format_table(results))
    if args.out:
        files = write_report(results, args.out, qs, first.index)
        print(json.dumps(files))


def cmd_export_onnx(args):
    from vpr_node.core.backbones import create_backbone
    from vpr_node.core.runtimes import export_onnx
    m = create_backbone(args.backbone, weights=args.weights, **json.loads(args.backbone_options))
    print(export_onnx(m, m.preprocessor.input_shape(), args.out))


def cmd_recorder(args):
    from vpr_node.core.recorder import read_records
    for rec in read_records(args.path):
        if not args.kind or rec.get("kind") == args.kind:
            print(json.dumps(rec))


def cmd_init_vlad(args):
    from vpr_node.core.corpus import TileCorpus
    from vpr_node.core.vlad_init import init_vlad
    corpus = TileCorpus(args.corpus)
    if args.backbone == "net_vlad":  # VGG16 NetVLAD, 32768-D (run fit-pca afterwards for 4096/512-D)
        import pathlib
        from vpr_node.core.backbones.base import Provenance, load_state_dict_strict, torch_load
        from vpr_node.core.backbones.netvlad import NetVladVgg16
        model, trained = NetVladVgg16(32768), False
        if args.weights:  # reuse the encoder (and conv layout) of a converted checkpoint; its PCA is dropped
            state = {k: v for k, v in torch_load(args.weights, "net_vlad").items() if not k.startswith("pca.")}
            model = NetVladVgg16(32768, conv_bias="pool.conv.bias" in state)
            load_state_dict_strict(model, state, "net_vlad")
            prov = Provenance.read(pathlib.Path(args.weights))
            trained = bool(prov and prov.trained)
        print(init_vlad(model.eval(), corpus, args.out, n_images=args.images, seed=args.seed,
                        trunk=f"VGG16 encoder from {args.weights or 'random initialisation'}", trunk_trained=trained))
        return
    from vpr_node.core.backbones.efficientnet import EfficientNetLite0Vpr
    model = EfficientNetLite0Vpr("netvlad", num_clusters=args.clusters).eval()
    print(init_vlad(model, corpus, args.out, n_images=args.images, seed=args.seed))


def cmd_demo(args):
    from .demo import run_demo
    return run_demo(args)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vpr", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("backbones", help="list registered backbones")
    p.set_defaults(fn=cmd_backbones)

    p = sub.add_parser("sample-map", help="write the procedural sample map (+ corner table)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(fn=cmd_sample_map)

    p = sub.add_parser("make-corpus", help="cut georeferenced maps into a tile corpus")
    p.add_argument("--maps", required=True, help="corner-coordinates CSV or XYZ z/x/y folder")
    p.add_argument("--out", required=True)
    p.add_argument("--tile-m", type=float, default=60.0, help="tile ground size in metres")
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--tile-px", type=int, default=320, help="stored tile size in pixels")
    p.set_defaults(fn=cmd_make_corpus)

    p = sub.add_parser("synth-queries", help="synthesise drone-like frames with ground truth")
    p.add_argument("--maps", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--footprint-m", type=float, default=60.0)
    p.add_argument("--north-up", action="store_true", help="yaw 0 (heading-aligned frames)")
    p.add_argument("--bag", default=None, help="also write a rosbag2 (MCAP) with Image + NavSatFix")
    p.add_argument("--rate", type=float, default=3.0, help="frame rate in the bag")
    p.set_defaults(fn=cmd_synth_queries)

    p = sub.add_parser("build-index", help="embed a tile corpus and build the FAISS index + manifest")
    _add_backbone_args(p)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--index-type", default="flat", choices=("flat", "hnsw", "ivfpq"))
    p.add_argument("--index-params", default="{}", help='JSON, e.g. {"M": 32, "efSearch": 64}')
    p.add_argument("--rotations", type=int, default=4, choices=(1, 2, 4, 8),
                   help="embed each tile at this many headings (robustness to unknown yaw)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(fn=cmd_build_index)

    p = sub.add_parser("evaluate", help="recall@1/5/10/20 at 25/50 m, latency, plot and mosaic")
    _add_backbone_args(p)
    p.add_argument("--queries", required=True, help="queries.csv from synth-queries")
    p.add_argument("--index", required=True, nargs="+", help="index folder(s)")
    p.add_argument("--out", default=None, help="report folder (JSON, PNG plot, PNG mosaic)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--heading-known", action="store_true", help="rotate each query north-up by its true heading")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("export-onnx", help="export a backbone to ONNX")
    _add_backbone_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_export_onnx)

    p = sub.add_parser("recorder", help="print flight-data-recorder records")
    p.add_argument("path")
    p.add_argument("--kind", default=None)
    p.set_defaults(fn=cmd_recorder)

    p = sub.add_parser("init-vlad", help="k-means NetVLAD centroids from corpus features (NetVLAD paper recipe)")
    p.add_argument("--backbone", default="efficientnet_lite0_netvlad", choices=("efficientnet_lite0_netvlad", "net_vlad"))
    p.add_argument("--weights", default=None, help="net_vlad: 32768-D project checkpoint whose encoder to use")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--clusters", type=int, default=16)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_init_vlad)

    p = sub.add_parser("demo", help="end-to-end: sample map -> index -> node process -> streamed frames -> recall")
    p.add_argument("--workdir", default="artifacts/demo")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--rate", type=float, default=2.0, help="publish rate (Hz)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--seed", type=int, default=3)
    p.set_defaults(fn=cmd_demo)

    from . import extra_commands
    extra_commands.register(sub)

    args = ap.parse_args(argv)
    rc = args.fn(args)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
