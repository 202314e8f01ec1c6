"""maps/: map sources (corner CSV, UTM GeoTIFF with nodata and 16-bit bands, XYZ folders), tile plans and cutting, the
procedural mission-sized orthophoto."""
import math

import cv2
import numpy as np
import pytest
from rasterio.transform import from_bounds  # noqa: E402
from rasterio.warp import Resampling, calculate_default_transform, reproject  # noqa: E402

from vpr_node.core.errors import ConfigurationError  # noqa: E402
from vpr_node.core.maps.sources import load_corner_table, load_maps, load_xyz_folder, slippy_tile_bounds  # noqa: E402
from vpr_node.core.maps.tiles import TilePlan  # noqa: E402
from vpr_node.core.maps.tiling import (
    cut_corpus,  # noqa: E402
    cut_tiles,
)

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    from vpr_node.core.maps.procedural import write_sample_map
    root = tmp_path_factory.mktemp("geotiff")
    csv = write_sample_map(root / "png", seed=4, size_px=600)
    png = load_corner_table(csv)[0]
    rgb = png.read_rgb()
    g = png.geo
    h, w = rgb.shape[:2]
    wgs = from_bounds(g.lon0, g.lat1, g.lon1, g.lat0, w, h)
    prof = dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:4326", transform=wgs,
                tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(root / "wgs84.tif", "w", **prof) as dst:
        dst.write(rgb.transpose(2, 0, 1))
        dst.build_overviews([2, 4], Resampling.average)
    # the same map reprojected to UTM zone 34N (as an orthophoto usually comes), pixels outside = nodata 0
    with rasterio.open(root / "wgs84.tif") as src:
        t, tw, th = calculate_default_transform(src.crs, "EPSG:32634", w, h, *src.bounds)
        utm = np.zeros((3, th, tw), np.uint8)
        reproject(rgb.transpose(2, 0, 1), utm, src_transform=wgs, src_crs="EPSG:4326", dst_transform=t,
                  dst_crs="EPSG:32634", resampling=Resampling.bilinear, dst_nodata=0)
    with rasterio.open(root / "utm.tif", "w", **dict(prof, crs="EPSG:32634", transform=t, width=tw, height=th,
                                                       nodata=0)) as dst:
        dst.write(utm)
    # grey, 16-bit, in UTM
    grey = (utm.astype(np.float32).mean(0) * 40 + 1000).astype(np.uint16)
    grey[utm.max(0) == 0] = 0
    with rasterio.open(root / "grey16.tif", "w", **dict(prof, crs="EPSG:32634", transform=t, width=tw, height=th,
                                                          count=1, dtype="uint16", nodata=0)) as dst:
        dst.write(grey, 1)
    return {"csv": csv, "root": root}


def _cut(path, out, tile_px=96):
    recs = cut_corpus(load_maps(path), out, TilePlan.single(60.0, 0.5), tile_px, progress=False)
    return recs


def test_a_utm_geotiff_gives_the_tiles_of_the_corner_table_map(maps, tmp_path):
    """Every tile cut from the GeoTIFF shows what the reference map shows at the tile's lat/lon bounds."""
    import cv2
    ref = load_corner_table(maps["csv"])[0]
    img, g = ref.read_rgb(), ref.geo
    n_ref = len(_cut(maps["csv"], tmp_path / "ref"))
    for name in ("wgs84.tif", "utm.tif"):
        recs = _cut(maps["root"] / name, tmp_path / name)
        assert len(recs) >= n_ref * 0.5, name
        if name == "utm.tif":
            assert recs[0].src_crs == "EPSG:32634" and len(recs[0].src_bounds.split()) == 4
            e0, n0, e1, n1 = map(float, recs[0].src_bounds.split())
            assert 58 < e1 - e0 < 63 and 58 < n1 - n0 < 63  # a 60 m tile, square in UTM metres
        for r in recs:
            x0 = (r.west - g.lon0) / (g.lon1 - g.lon0) * g.width
            x1 = (r.east - g.lon0) / (g.lon1 - g.lon0) * g.width
            y0 = (r.north - g.lat0) / (g.lat1 - g.lat0) * g.height
            y1 = (r.south - g.lat0) / (g.lat1 - g.lat0) * g.height
            assert abs((x1 - x0) - (y1 - y0)) < 3, (name, r.tile_id)  # square on the ground
            want = cv2.resize(img[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))], (96, 96),
                              interpolation=cv2.INTER_AREA).astype(np.float32)
            got = cv2.cvtColor(cv2.imread(str(tmp_path / name / r.path)), cv2.COLOR_BGR2RGB).astype(np.float32)
            assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.9, (name, r.tile_id)


def test_nodata_windows_are_skipped_and_16_bit_grey_is_stretched(maps, tmp_path):
    import cv2
    recs = _cut(maps["root"] / "grey16.tif", tmp_path / "grey")
    assert recs
    skipped = (tmp_path / "grey" / "skipped.json").read_text()
    assert '"nodata_windows": 0' not in skipped  # the rotated UTM footprint leaves nodata corners
    img = cv2.imread(str(tmp_path / "grey" / recs[0].path))
    assert img.std() > 10 and (img[..., 0] == img[..., 1]).all()


def test_maps_that_cannot_be_used_say_why(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_maps(tmp_path / "missing.tif")
    with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as d:
        d.write(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(ConfigurationError, match="no CRS"):
        load_maps(tmp_path / "nocrs.tif")


def test_xyz_folder_at_a_chosen_zoom(tmp_path):
    import cv2
    for z, x, y in ((17, 10, 20), (18, 20, 40), (18, 21, 40)):
        (tmp_path / "xyz" / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "xyz" / str(z) / str(x) / f"{y}.png"), np.full((256, 256, 3), 90, np.uint8))
    assert len(load_maps(tmp_path / "xyz")) == 3
    assert len(load_maps(tmp_path / "xyz", xyz_zooms=[18])) == 2
    with pytest.raises(ConfigurationError, match="zoom"):
        load_maps(tmp_path / "xyz", xyz_zooms=[12])


def test_xyz_folder_corpus(tmp_path):
    z, x0, y0 = 17, 72000, 37000
    rng = np.random.default_rng(0)
    for dx in range(2):
        for dy in range(2):
            p = tmp_path / "xyz" / str(z) / str(x0 + dx) / f"{y0 + dy}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    rasters = load_xyz_folder(tmp_path / "xyz")
    assert len(rasters) == 4
    north, west, south, east = slippy_tile_bounds(z, x0, y0)
    assert west == pytest.approx(x0 / 2**z * 360 - 180) and north > south
    recs = cut_tiles(rasters, tmp_path / "corpus", tile_m=rasters[0].geo.gsd_m * 128, overlap=0.5, progress=False)
    assert len(recs) == 4 * 9
    r = recs[0]
    assert r.north > r.lat > r.south and r.west < r.lon < r.east
    assert abs(r.zoom - z) <= 2 and not math.isnan(r.lat)


def test_large_map_is_a_tiled_utm_geotiff_with_overviews(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from vpr_node.core.maps.procedural import LARGE_MAP_CRS, write_large_map
    from vpr_node.core.maps.sources import load_maps
    from vpr_node.core.maps.tiles import TilePlan
    from vpr_node.core.maps.tiling import cut_corpus
    path = write_large_map(tmp_path / "big.tif", size_m=600, gsd_m=1.0, block_px=250, progress=False)
    with rasterio.open(path) as src:
        assert src.crs.to_string() == LARGE_MAP_CRS and src.width == 600 and src.overviews(1)
        assert src.block_shapes[0] == (256, 256)  # tiled: windowed reads touch only their blocks
        a, b = src.read(window=((0, 250), (0, 250))), src.read(window=((0, 250), (250, 500)))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # blocks are different landscapes
    records = cut_corpus(load_maps(path), tmp_path / "corpus", TilePlan.single(150, 0.5), 96, progress=False)
    assert len(records) >= 36 and records[0].src_crs == LARGE_MAP_CRS
