"""Is a global map geometrically faithful? Local offsets against a reference map (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_map_registration.py MAP.jpg [--reference REF.jpg] [--window-px 64]
        [--step-deg 10] [--at LAT LON ...]

A held-out map measures the pipeline only if its pixels lie where its equirectangular grid says: frames
rendered from a map whose ground is drawn 60 km off are located where their ground really is, and the bench
counts a right answer as a false fix (session 51: an old texture of openuniverse, 6 "false fixes", every one
the map's own offset). This compares MAP with REF (default: the shipped July Blue Marble, georeferenced and
without relief shading) on the same grid: per window of ``--window-px`` px over land, the phase correlation
of the two maps' gradient magnitudes (OpenCV), i.e. where MAP draws REF's ground, as an east / north offset
in km. Windows whose correlation peak is weak (< 0.3: different content) are left out. Prints a grid
of offsets every ``--step-deg``, then the share of windows more than 10 and 25 km off. ``--at LAT LON``: the
offset at those points, and what a fix there would show: ``fix - truth`` ≈ minus that offset.
"""
from __future__ import annotations

import argparse
import math

import cv2
import numpy as np

from earthfix.sim.basemap import shipped_maps_dir

MIN_RESPONSE = 0.3


def gradient_magnitude(img: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.0)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


class Registration:
    """MAP's local offsets against REF, both resampled to REF's equirectangular grid (global)."""

    def __init__(self, map_path: str, ref_path: str, window_px: int = 64):
        ref = cv2.imread(ref_path, cv2.IMREAD_COLOR)
        img = cv2.imread(map_path, cv2.IMREAD_COLOR)
        if ref is None or img is None:
            raise SystemExit(f"cannot read {ref_path if ref is None else map_path}")
        h, w = ref.shape[:2]
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        self.ref, self.map = gradient_magnitude(ref), gradient_magnitude(img)
        self.deg_per_px = 360.0 / w
        self.win = int(window_px)
        self.hann = cv2.createHanningWindow((self.win, self.win), cv2.CV_64F)

    def offset_km(self, lat: float, lon: float) -> tuple[float, float, float] | None:
        """(east km, north km, peak response) of where MAP draws the ground REF has at (lat, lon); None
        at the map's edge or where REF has no texture."""
        r = int((90.0 - lat) / self.deg_per_px)
        c = int((lon + 180.0) / self.deg_per_px)
        h = self.win // 2
        a = self.ref[r - h:r + h, c - h:c + h].astype(np.float64)
        b = self.map[r - h:r + h, c - h:c + h].astype(np.float64)
        if a.shape != (self.win, self.win) or b.shape != a.shape or a.std() < 3.0:
            return None
        (dx, dy), resp = cv2.phaseCorrelate(a, b, self.hann)
        km = self.deg_per_px * 111.2
        return dx * km * math.cos(math.radians(lat)), -dy * km, float(resp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("map")
    ap.add_argument("--reference", default=str(shipped_maps_dir() / "nasa-bmng-07_2048.jpg"))
    ap.add_argument("--window-px", type=int, default=64)
    ap.add_argument("--step-deg", type=float, default=10.0)
    ap.add_argument("--at", type=float, nargs=2, action="append", default=None, metavar=("LAT", "LON"))
    a = ap.parse_args()
    reg = Registration(a.map, a.reference, a.window_px)
    if a.at:
        print("| lat | lon | map offset east / north km | response |")
        print("| ---: | ---: | ---: | ---: |")
        for lat, lon in a.at:
            o = reg.offset_km(lat, lon)
            print(f"| {lat:.2f} | {lon:.2f} | " + (f"{o[0]:+.0f} / {o[1]:+.0f} | {o[2]:.2f} |" if o else "– | – |"))
        return
    lats = np.arange(70.0, -60.0, -a.step_deg)
    lons = np.arange(-170.0, 180.0, a.step_deg)
    mags = []
    print(f"offsets east,north km of {a.map} against {a.reference} ('.' no texture, '?' weak peak)")
    for lat in lats:
        cells = []
        for lon in lons:
            o = reg.offset_km(lat, lon)
            if o is None:
                cells.append(".")
            elif o[2] < MIN_RESPONSE:
                cells.append("?")
            else:
                cells.append(f"{o[0]:+.0f},{o[1]:+.0f}")
                mags.append(math.hypot(o[0], o[1]))
        print(f"{lat:+4.0f} " + " ".join(f"{c:>9}" for c in cells))
    m = np.asarray(mags)
    if len(m):
        print(f"{len(m)} windows: offset p50 {np.median(m):.1f} km, over 10 km {100 * np.mean(m > 10):.0f} %, "
              f"over 25 km {100 * np.mean(m > 25):.0f} %")


if __name__ == "__main__":
    main()
