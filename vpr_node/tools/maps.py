"""`vpr sample-map`, `vpr make-corpus`, `vpr synth-queries`: the map side of the pre-flight tools."""
from __future__ import annotations

from vpr_node.core.maps.sources import load_maps
from vpr_node.tools.common import MAPS_HELP, add_camera_args, camera_from_args, print_json


def tile_plan_from_args(a):
    from vpr_node.core.maps.tiles import TilePlan
    from vpr_node.core.maps.tiling import plan_for_camera
    if a.altitude:
        return plan_for_camera(camera_from_args(a), a.altitude[0], a.altitude[1], a.radius, a.max_scale_step)
    return TilePlan.single(a.tile_m, a.overlap)


def add_tile_args(p) -> None:
    add_camera_args(p)
    p.add_argument("--tile-m", type=float, default=60.0, help="tile ground size in metres (without --altitude)")
    p.add_argument("--overlap", type=float, default=0.5, help="tile overlap (without --altitude)")
    p.add_argument("--radius", type=float, default=25.0,
                   help="with --altitude: recall radius (m) the tile spacing must support")
    p.add_argument("--max-scale-step", type=float, default=1.5,
                   help="with --altitude: a new tile scale whenever the footprint range exceeds this ratio")
    p.add_argument("--tile-px", type=int, default=320, help="stored tile size in pixels")


def _sample_map(a):
    from vpr_node.core.maps.procedural import write_sample_map
    print(write_sample_map(a.out, seed=a.seed))


def _large_map(a):
    from vpr_node.core.maps.procedural import write_large_map
    print(write_large_map(a.out, a.size_km * 1000.0, a.gsd, seed=a.seed))


def _make_corpus(a):
    from vpr_node.core.maps.tiling import cut_corpus
    plan = tile_plan_from_args(a)
    recs = cut_corpus(load_maps(a.maps, a.xyz_zoom), a.out, plan, a.tile_px)
    print_json({"tiles": len(recs), "out": a.out, "scales": plan.scales, "plan": plan.reason})


def _synth_queries(a):
    from vpr_node.core.views.queries import QuerySpec, read_queries, synthesise_queries, write_queries
    spec = QuerySpec.benchmark() if a.benchmark else QuerySpec(camera=tuple(a.image_size), footprint_m=a.footprint_m)
    if a.altitude:
        spec.altitude_m, spec.hfov_deg, spec.camera = tuple(a.altitude), a.hfov, tuple(a.image_size)
    if a.north_up:
        spec.yaw_deg = (0.0, 0.0)
    if a.photometric:
        spec.photometric = a.photometric
    path = write_queries(synthesise_queries(load_maps(a.maps), a.n, seed=a.seed, spec=spec), a.out)
    print(path)
    if a.bag:
        from vpr_node.core.io.bags import write_query_bag
        from vpr_node.core.priors.noise import PriorNoise
        noise = None
        if a.bag_priors:
            noise = PriorNoise(**{k: True for k in a.bag_priors}, heading_sigma_deg=a.heading_sigma,
                               altitude_sigma_pct=a.altitude_sigma, position_sigma_m=a.position_sigma, seed=a.seed)
        print(write_query_bag(read_queries(path), a.bag, rate_hz=a.rate, priors=noise))


def register(sub) -> None:
    p = sub.add_parser("sample-map", help="write the procedural sample map (+ corner table)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(fn=_sample_map)

    p = sub.add_parser("large-map", help="write a mission-sized procedural orthophoto (tiled UTM GeoTIFF with "
                                         "overviews; 10 km = 100 km2 at 1 m/px) for scale benchmarks")
    p.add_argument("--out", required=True, help="the .tif to write")
    p.add_argument("--size-km", type=float, default=10.0, help="side of the square map (km)")
    p.add_argument("--gsd", type=float, default=1.0, help="ground sample distance (m/px)")
    p.add_argument("--seed", type=int, default=11)
    p.set_defaults(fn=_large_map)

    p = sub.add_parser("make-corpus", help="cut georeferenced maps into a tile corpus (footprint-matched with "
                                           "--altitude and the camera)")
    p.add_argument("--maps", required=True, help=MAPS_HELP)
    p.add_argument("--xyz-zoom", type=int, nargs="+", default=None, help="XYZ folder: only these zoom levels")
    p.add_argument("--out", required=True)
    add_tile_args(p)
    p.set_defaults(fn=_make_corpus)

    p = sub.add_parser("synth-queries", help="synthesise drone-like frames with ground truth")
    p.add_argument("--maps", required=True, help=MAPS_HELP)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--benchmark",
        action="store_true",
        help="the developer benchmark's protocol (55-110 m, 86 deg hfov, tilt <= 15 deg, strong photometrics)",
    )
    add_camera_args(p)
    p.add_argument("--footprint-m", type=float, default=60.0, help="without --altitude: nominal footprint +-30 %%")
    p.add_argument("--photometric", default=None, choices=("none", "standard", "strong", "adaptation"))
    p.add_argument("--north-up", action="store_true", help="yaw 0 (heading-aligned frames)")
    p.add_argument("--bag", default=None, help="also write a rosbag2 (MCAP) with Image + NavSatFix")
    p.add_argument("--rate", type=float, default=3.0, help="frame rate in the bag")
    p.add_argument("--bag-priors", nargs="+", default=(), choices=("heading", "altitude", "position"),
                   help="also write the drone's priors into the bag: /imu (heading), /rangefinder (altitude above "
                        "ground), /prior/fix (position with covariance), the truth plus noise")
    p.add_argument("--heading-sigma", type=float, default=10.0, help="heading prior noise (deg, 1 sigma)")
    p.add_argument("--altitude-sigma", type=float, default=10.0, help="altitude prior noise (%% of altitude)")
    p.add_argument("--position-sigma", type=float, default=200.0, help="position prior noise (m, 1 sigma per axis)")
    p.set_defaults(fn=_synth_queries)
