"""A UTM GeoTIFF scene resampled to the equirectangular grid ``bench_real_scene.py`` reads (not a pytest test).

    PYTHONPATH=. python tests/bench/utm_scene.py SCENE.tif OUT.png [--deg-per-px 0.0027]

Real scenes come projected (Landsat and Sentinel-2 products in UTM); the benches and the simulator take a
georeferenced equirectangular image. This reads a GeoTIFF's pixels with OpenCV and its georeference from the
three GeoTIFF tags of a north-up UTM product (ModelPixelScale, ModelTiepoint, the GeoKey directory's
ProjectedCSTypeGeoKey: EPSG 326zz / 327zz, WGS84 UTM north / south), samples it on a latitude-longitude grid
covering the scene (no-data outside it: black, as the product's own corners) and prints the bounds for
``bench_real_scene.py --bounds``. The projection is the transverse Mercator series of Snyder (1987, eqs. 8-9,
8-10; well under a 10 m pixel inside a zone), written here because the bench needs UTM alone and pyproj is no dependency.

A real scene to try (CC0, from USGS Landsat 7 ETM+, rasterio's test data; Andros Island, the Bahamas: real
shallow-bank sea floor, cumulus and no-data corners, 300 m):

    git clone --depth 1 https://github.com/rasterio/rasterio /tmp/rasterio
    PYTHONPATH=. python tests/bench/utm_scene.py /tmp/rasterio/tests/data/RGB.byte.tif /tmp/andros.png
    PYTHONPATH=. python tests/bench/bench_real_scene.py --scene /tmp/andros.png --bounds ... --min-land 0 \\
        --camera 512x512@20 --camera 1024x1024@15 --camera 640x480@20 --control --ceiling
"""
from __future__ import annotations

import argparse
import math
import struct
import sys
from pathlib import Path

import cv2
import numpy as np

WGS84_A_M = 6378137.0
WGS84_F = 1.0 / 298.257223563
UTM_K0 = 0.9996
_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 11: 4, 12: 8, 16: 8}
_TYPE_FMT = {3: "H", 4: "I", 12: "d"}


def meridian_arc_m(lat_rad):
    """Distance along the WGS84 meridian from the equator to ``lat_rad`` (m)."""
    e2 = WGS84_F * (2.0 - WGS84_F)
    return WGS84_A_M * ((1 - e2 / 4 - 3 * e2 ** 2 / 64 - 5 * e2 ** 3 / 256) * lat_rad
                        - (3 * e2 / 8 + 3 * e2 ** 2 / 32 + 45 * e2 ** 3 / 1024) * np.sin(2 * lat_rad)
                        + (15 * e2 ** 2 / 256 + 45 * e2 ** 3 / 1024) * np.sin(4 * lat_rad)
                        - (35 * e2 ** 3 / 3072) * np.sin(6 * lat_rad))


def utm_from_geodetic(lat_deg, lon_deg, zone: int, south: bool = False):
    """(easting, northing) in metres of WGS84 geodetic points in UTM ``zone`` (false northing 10,000 km south)."""
    e2 = WGS84_F * (2.0 - WGS84_F)
    ep2 = e2 / (1.0 - e2)
    phi, lam = np.radians(lat_deg), np.radians(lon_deg)
    lam0 = math.radians(6.0 * zone - 183.0)
    n = WGS84_A_M / np.sqrt(1.0 - e2 * np.sin(phi) ** 2)
    t, c = np.tan(phi) ** 2, ep2 * np.cos(phi) ** 2
    a = (lam - lam0) * np.cos(phi)
    east = UTM_K0 * n * (a + (1 - t + c) * a ** 3 / 6 + (5 - 18 * t + t ** 2 + 72 * c - 58 * ep2) * a ** 5 / 120)
    north = UTM_K0 * (meridian_arc_m(phi) + n * np.tan(phi) * (
        a ** 2 / 2 + (5 - t + 9 * c + 4 * c ** 2) * a ** 4 / 24 + (61 - 58 * t + t ** 2 + 600 * c - 330 * ep2) * a ** 6 / 720))
    return east + 500000.0, north + (10_000_000.0 if south else 0.0)


def geotiff_utm(path) -> dict:
    """The georeference of a north-up UTM GeoTIFF: ``x0_m``, ``y0_m`` (the top-left pixel's corner), ``dx_m``,
    ``dy_m`` (pixel size), ``zone``, ``south``. ValueError for anything else (another projection, a rotated grid)."""
    blob = Path(path).read_bytes()
    order = {b"II": "<", b"MM": ">"}.get(blob[:2])
    if order is None or struct.unpack(order + "H", blob[2:4])[0] != 42:
        raise ValueError(f"{path}: not a classic TIFF")
    ifd = struct.unpack(order + "I", blob[4:8])[0]
    tags = {}
    for i in range(struct.unpack(order + "H", blob[ifd:ifd + 2])[0]):
        tag, typ, count = struct.unpack(order + "HHI", blob[ifd + 2 + 12 * i: ifd + 10 + 12 * i])
        if tag not in (33550, 33922, 34735) or typ not in _TYPE_FMT:
            continue
        size = _TYPE_BYTES[typ] * count
        at = ifd + 10 + 12 * i
        data = blob[at:at + size] if size <= 4 else blob[(p := struct.unpack(order + "I", blob[at:at + 4])[0]):p + size]
        tags[tag] = struct.unpack(order + _TYPE_FMT[typ] * count, data)
    if not {33550, 33922, 34735} <= tags.keys():
        raise ValueError(f"{path}: no GeoTIFF pixel scale, tie point and key directory")
    keys = tags[34735]
    geo = {keys[j]: keys[j + 3] for j in range(4, 4 + 4 * keys[3], 4) if keys[j + 1] == 0}
    epsg = geo.get(3072)
    if epsg is None or not (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        raise ValueError(f"{path}: projected CRS EPSG {epsg} is not WGS84 UTM")
    sx, sy = tags[33550][:2]
    i, j, _, x, y, _ = tags[33922][:6]
    return {"x0_m": x - i * sx, "y0_m": y + j * sy, "dx_m": sx, "dy_m": sy, "zone": epsg % 100, "south": epsg > 32700}


def geodetic_from_utm(east_m: float, north_m: float, zone: int, south: bool = False) -> tuple[float, float]:
    """(lat, lon) deg of a UTM point: ``utm_from_geodetic`` inverted by Newton's method (a numeric Jacobian)."""
    lat, lon = 0.0, 6.0 * zone - 183.0
    for _ in range(8):
        e, n = utm_from_geodetic(lat, lon, zone, south)
        d = 1e-5
        e_la, n_la = utm_from_geodetic(lat + d, lon, zone, south)
        e_lo, n_lo = utm_from_geodetic(lat, lon + d, zone, south)
        jac = np.array([[e_la - e, e_lo - e], [n_la - n, n_lo - n]]) / d
        step = np.linalg.solve(jac, [east_m - e, north_m - n])
        lat, lon = lat + float(step[0]), lon + float(step[1])
    return lat, lon


def to_equirectangular(img: np.ndarray, geo: dict, deg_per_px: float, pad_deg: float = 0.05):
    """(image on a latitude-longitude grid, (lon_min, lon_max, lat_min, lat_max)) covering the scene's corners."""
    h, w = img.shape[:2]
    corners = [geodetic_from_utm(geo["x0_m"] + px * geo["dx_m"], geo["y0_m"] - py * geo["dy_m"], geo["zone"],
                                 geo["south"]) for px, py in ((0, 0), (w, 0), (0, h), (w, h))]
    lat_min, lat_max = min(c[0] for c in corners) - pad_deg, max(c[0] for c in corners) + pad_deg
    lon_min, lon_max = min(c[1] for c in corners) - pad_deg, max(c[1] for c in corners) + pad_deg
    gw, gh = round((lon_max - lon_min) / deg_per_px), round((lat_max - lat_min) / deg_per_px)
    lon = lon_min + (np.arange(gw) + 0.5) * (lon_max - lon_min) / gw
    lat = lat_max - (np.arange(gh) + 0.5) * (lat_max - lat_min) / gh
    e, n = utm_from_geodetic(lat[:, None], lon[None, :], geo["zone"], geo["south"])
    mx = ((e - geo["x0_m"]) / geo["dx_m"] - 0.5).astype(np.float32)
    my = ((geo["y0_m"] - n) / geo["dy_m"] - 0.5).astype(np.float32)
    out = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, (lon_min, lon_max, lat_min, lat_max)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", help="a north-up WGS84 UTM GeoTIFF (8-bit RGB)")
    ap.add_argument("out", help="the equirectangular PNG to write")
    ap.add_argument("--deg-per-px", type=float, default=0.0027, help="output sample (0.0027 deg: ~300 m)")
    a = ap.parse_args()
    img = cv2.imread(a.scene, cv2.IMREAD_COLOR)
    if img is None:
        print(f"utm_scene: cannot read {a.scene}", file=sys.stderr)
        return 1
    try:
        geo = geotiff_utm(a.scene)
    except ValueError as exc:
        print(f"utm_scene: {exc}", file=sys.stderr)
        return 1
    out, bounds = to_equirectangular(img, geo, a.deg_per_px)
    cv2.imwrite(a.out, out)
    print(f"{a.out}: {out.shape[1]} x {out.shape[0]} px; --bounds " + " ".join(f"{b:.4f}" for b in bounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
