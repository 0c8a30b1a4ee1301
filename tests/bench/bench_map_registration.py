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
of offsets every ``--step-deg``, then the share of windows more than 10 and 25 km off (``earthfix.tools.map_registration``;
``earthfix eval --basemap`` reports the same summary). ``--at LAT LON``: the
offset at those points, and what a fix there would show: ``fix - truth`` ≈ minus that offset.
"""
from __future__ import annotations

import argparse

from earthfix.tools.map_registration import Registration, default_reference, summarise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("map")
    ap.add_argument("--reference", default=str(default_reference()))
    ap.add_argument("--window-px", type=int, default=64)
    ap.add_argument("--step-deg", type=float, default=10.0)
    ap.add_argument("--at", type=float, nargs=2, action="append", default=None, metavar=("LAT", "LON"))
    a = ap.parse_args()
    reg = Registration.of_files(a.map, a.reference, a.window_px)
    if a.at:
        print("| lat | lon | map offset east / north km | response |")
        print("| ---: | ---: | ---: | ---: |")
        for lat, lon in a.at:
            o = reg.offset_km(lat, lon)
            print(f"| {lat:.2f} | {lon:.2f} | " + (f"{o[0]:+.0f} / {o[1]:+.0f} | {o[2]:.2f} |" if o else "– | – |"))
        return
    print(f"offsets east,north km of {a.map} against {a.reference} ('.' no texture, '?' weak peak)")
    row, kept, last = [], [], None
    for lat, lon, o, ok in reg.grid(a.step_deg):
        if last is not None and lat != last:
            print(f"{last:+4.0f} " + " ".join(f"{c:>9}" for c in row))
            row = []
        last = lat
        row.append("." if o is None else (f"{o[0]:+.0f},{o[1]:+.0f}" if ok else "?"))
        if ok:
            kept.append(o)
    print(f"{last:+4.0f} " + " ".join(f"{c:>9}" for c in row))
    g = summarise(kept)
    if g["windows"]:
        print(f"{g['windows']} windows: offset p50 {g['offset_p50_km']:.1f} km, over 10 km {100 * g['over_10_km']:.0f} %, "
              f"over 25 km {100 * g['over_25_km']:.0f} %")


if __name__ == "__main__":
    main()
