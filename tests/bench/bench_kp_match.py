"""Which frame keypoints match the keypoint store right, across imagery products? (not a pytest test)

    PYTHONPATH=. python tests/bench/bench_kp_match.py [MAP.jpg ...] [--n 60] [--seed 31337] [--camera 256x256@80]
        [--right-km 8] [--locate]

Frames of the eval's land kind (``make_frameset``: the simulator's effects **without clouds**, so that every
keypoint sees ground; 400-800 km, 0-5 deg off nadir, any yaw) rendered from each map (``home``: the default
basemap; default: home and the held-out maps given), their plain look's keypoints (``Localizer.verifier_for``:
the flight extraction, strongest first) matched to the store keypoints within the true place's search circle
(``radius_factor`` x the footprint half-width about the true boresight point) with the flight ratio test. A match
is **right** when its store keypoint lies within ``--right-km`` of the ground point the frame keypoint sees (the
truth's pose, the simulator's ray through the keypoint's pixel); the orientation vote, RANSAC and the pose are
not involved. Prints per map: keypoints, ratio-test matches, right nearest neighbours, right matches; the share of
right nearest neighbours and the matches' precision by keypoint size on the ground (the home map's quartiles) and
by strength rank; per frame the right matches' p10 / p50 / p90. ``--locate`` adds, per frame, whether the
verifier given only the true place and the whole Localizer (deadline out of the way) fix it, by right matches.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import cv2
import numpy as np

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera
from earthfix.onboard.localizer import Localizer
from earthfix.sim.basemap import Basemap
from earthfix.sim.effects import EffectsConfig
from earthfix.sim.render import ground_points
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.evaluate import FALSE_FIX_KM, position_error_km
from earthfix.tools.framesets import make_frameset

from bench_cameras import parse_cameras
from bench_ceiling import true_place_fixed

RANKS = ((0, 50), (50, 150), (150, 300), (300, 10 ** 6))


def keypoint_rows(loc: Localizer, cam: Camera, f, truth: dict, right_km: float) -> np.ndarray:
    """One row per keypoint of ``f`` (the plain look's features) that sees the Earth: (size on the ground km,
    strength rank, passes the ratio test, nearest store keypoint right)."""
    ver = loc.verifier_for(cam)
    st = ver.store
    r = geodesy.matrix_from_quat(np.array(truth["q_cam2ecef_wxyz"]))
    pts, hit = ground_points(cam, truth["ecef_km"], r)
    x = np.clip(np.round(f.xy[:, 0]).astype(int), 0, cam.width - 1)
    y = np.clip(np.round(f.xy[:, 1]).astype(int), 0, cam.height - 1)
    glat, glon = geodesy.surface_to_geodetic(pts[y, x])
    km_px = 2.0 * truth["footprint_half_width_km"] / cam.width
    idx = st.query(truth["bore_lat"], truth["bore_lon"], ver.cfg.radius_factor * truth["footprint_half_width_km"])
    if len(f) == 0 or len(idx) < 2:
        return np.zeros((0, 4))
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(st.project(f.desc).astype(np.float32),
                                             st.decode(idx).astype(np.float32), k=2)
    rows = []
    for i, m in enumerate(knn):
        if len(m) < 2 or not hit[y[i], x[i]]:
            continue
        j = idx[m[0].trainIdx]
        d = float(geodesy.great_circle_km(glat[i], glon[i], float(st.lat[j]), float(st.lon[j])))
        rows.append((f.size[i] * km_px, i, m[0].distance < ver.cfg.ratio * m[1].distance, d < right_km))
    return np.array(rows, dtype=float).reshape(-1, 4)


def located(loc: Localizer, cam: Camera, img, f, truth: dict) -> tuple[bool, bool]:
    """(the plain look's verifier given only the true place fixes ``img`` from its features ``f``, the Localizer
    fixes it), within FALSE_FIX_KM."""
    fx = loc.locate(img, cam)
    return (true_place_fixed(loc.verifier_for(cam), f, cam, truth),
            bool(fx.fix and position_error_km(fx.lat, fx.lon, truth) < FALSE_FIX_KM))


def share(sel: np.ndarray) -> str:
    """'right nearest neighbours / precision of the ratio-test matches' of the rows ``sel``."""
    p = sel[:, 2].astype(bool)
    return f"{sel[:, 3].mean():.2f} / {sel[p, 3].mean() if p.any() else 0.0:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("maps", nargs="*", help="held-out global equirectangular maps (home is always first)")
    ap.add_argument("--n", type=int, default=60, help="frames per map (the eligible ones are used)")
    ap.add_argument("--seed", type=int, default=31337)
    ap.add_argument("--camera", default="256x256@80", metavar="WxH@FOV")
    ap.add_argument("--right-km", type=float, default=8.0, help="a match within this of the truth is right")
    ap.add_argument("--locate", action="store_true", help="also the true place's verifier and the Localizer")
    a = ap.parse_args()
    (w, h, fov), = parse_cameras([a.camera])
    cam = Camera.from_fov(w, h, fov)
    loc = Localizer.load(ensure_default_bundle(), None, {"deadline_ms": 10000.0})
    effects = replace(EffectsConfig.default(), clouds=False, cloud_cover=0.0)
    results = {}
    for m in ["home"] + list(a.maps):
        basemap = None if m == "home" else Basemap.load(m)
        rows, frames = [], []
        for img, truth in make_frameset(a.n, a.seed, cam, basemap=basemap, effects=effects):
            if not truth["eligible"]:
                continue
            f = loc.verifier_for(cam).extract(img)
            k = keypoint_rows(loc, cam, f, truth, a.right_km)
            rows.append(k)
            right = int((k[:, 2] * k[:, 3]).sum())
            frames.append((right,) + (located(loc, cam, img, f, truth) if a.locate else (False, False)))
        results[m] = (np.concatenate(rows), np.array(frames, dtype=float))
    edges = np.quantile(results["home"][0][:, 0], [0.0, 0.25, 0.5, 0.75, 1.0])
    edges[-1] += 1e-6
    print(f"{a.camera}, seed {a.seed}, clouds off; right: within {a.right_km:g} km; shares: right nearest neighbours /"
          " precision of the ratio-test matches")
    for m, (k, fr) in results.items():
        print(f"\n{m}: {len(fr)} eligible frames, {len(k)} keypoints, {int(k[:, 2].sum())} ratio-test matches, "
              f"{int(k[:, 3].sum())} right nearest neighbours, {int((k[:, 2] * k[:, 3]).sum())} right matches; right "
              f"matches a frame p10 / p50 / p90 {' / '.join(f'{x:.0f}' for x in np.percentile(fr[:, 0], [10, 50, 90]))}")
        print("  by size on the ground: " + " | ".join(
            f"{lo:.0f}-{hi:.0f} km {share(k[(k[:, 0] >= lo) & (k[:, 0] < hi)])}"
            for lo, hi in zip(edges[:-1], edges[1:]) if ((k[:, 0] >= lo) & (k[:, 0] < hi)).any()))
        print("  by strength rank: " + " | ".join(
            f"{lo}-{hi if hi < 10 ** 6 else ''} {share(k[(k[:, 1] >= lo) & (k[:, 1] < hi)])}"
            for lo, hi in RANKS if ((k[:, 1] >= lo) & (k[:, 1] < hi)).any()))
        if a.locate:
            print(f"  true place verified {int(fr[:, 1].sum())}, Localizer fixed {int(fr[:, 2].sum())} of {len(fr)}; "
                  "by right matches a frame: " + " | ".join(
                      f"{lo}-{hi}: {int(s[:, 1].sum())} / {int(s[:, 2].sum())} of {len(s)}"
                      for lo, hi in ((0, 5), (5, 10), (10, 20), (20, 40), (40, 10 ** 6))
                      for s in [fr[(fr[:, 0] >= lo) & (fr[:, 0] < hi)]] if len(s)))


if __name__ == "__main__":
    main()
