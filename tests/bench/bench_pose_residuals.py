"""Why a pose is where it is: one eval frame's fix, its inliers seen through the frame's TRUE pose.

    PYTHONPATH=. python tests/bench/bench_pose_residuals.py --scenario stress_translucent --seed 1 --index 54 \\
        [--frames 100] [--bundle B] [--config C.yaml] [--png residuals.png]

Renders frame ``--index`` of an ``earthfix eval`` scenario exactly as ``earthfix eval --seed S --frames N`` does
(``--frames`` must be that run's: it is part of no seed, but a frame past it is not in the run), locates it, and
projects each inlier's store keypoint (``Fix.evidence`` ``inlier_px`` / ``inlier_latlon``) through the true camera
pose. A right match lands within a few pixels of its frame keypoint; a wrong one lands elsewhere, and wrong ones
that agree with each other (offset the same way) are what bends a pose. Prints the fix, one line per inlier (frame
px, offset to where the truth puts its ground, "wrong" beyond ``--wrong-px``) and the inliers' summary; ``--png``
draws the frame with each inlier and an arrow to its true place (green right, red wrong).

What it found (docs/VERIFICATION.md, "A pose held by two neighbouring matches"): a 53.6 km pose held by two
neighbouring matches 37 px off the same way; a 60 km pose held by one far match 21.5 px off.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import cv2
import numpy as np

from earthfix.onboard import geodesy
from earthfix.onboard.localizer import Localizer
from earthfix.tools import evaluate as ev
from earthfix.tools.build_index import ensure_default_bundle


def true_pixels(camera, truth: dict, latlon: np.ndarray) -> np.ndarray:
    """Frame pixels (N x 2) where the true pose puts ground points (lat, lon deg, on the ellipsoid)."""
    ground = geodesy.geodetic_to_ecef(latlon[:, 0], latlon[:, 1], 0.0)
    r_cam2ecef = geodesy.matrix_from_quat(truth["q_cam2ecef_wxyz"])
    u, v = camera.project((ground - np.asarray(truth["ecef_km"], float)) @ r_cam2ecef)
    return np.c_[u, v]


def eval_frame(scenario: str, seed: int, index: int, frames: int):
    """(camera, image, truth) of frame ``index`` of ``scenario`` in ``earthfix eval --seed seed --frames frames``."""
    names = [s.name for s in ev.SCENARIOS]
    if scenario not in names:
        raise SystemExit(f"bench_pose_residuals: no scenario {scenario!r} (one of {', '.join(names)})")
    if not 0 <= index < frames:
        raise SystemExit(f"bench_pose_residuals: --index {index} is not within the run's {frames} frames")
    sdef = ev.SCENARIOS[names.index(scenario)]
    cam, it = ev.scenario_frames(sdef, frames, ev.scenario_seed(seed, names.index(scenario)))
    img, truth = next(itertools.islice(it, index, index + 1))
    return cam, img, truth


def draw(img, px, true_px, wrong, path) -> None:
    out = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img.copy()
    for (x, y), (tx, ty), bad in zip(px, true_px, wrong):
        colour = (0, 0, 255) if bad else (0, 200, 0)
        cv2.circle(out, (int(round(x)), int(round(y))), 4, colour, 1, cv2.LINE_AA)
        if np.all(np.isfinite([tx, ty])):
            cv2.arrowedLine(out, (int(round(x)), int(round(y))), (int(round(tx)), int(round(ty))), colour, 1,
                            cv2.LINE_AA, tipLength=0.2)
    if not cv2.imwrite(str(path), out):
        raise SystemExit(f"bench_pose_residuals: cannot write {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", required=True, help="an eval scenario (land256, stress_translucent, ...)")
    ap.add_argument("--seed", type=int, required=True, help="the eval run's --seed")
    ap.add_argument("--index", type=int, required=True, help="the frame's index in its scenario (frames.jsonl)")
    ap.add_argument("--frames", type=int, default=100, help="the eval run's --frames (default 100)")
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    ap.add_argument("--config", default=None, help="Localizer config YAML (default: the shipped defaults)")
    ap.add_argument("--wrong-px", type=float, default=6.0,
                    help="an inlier whose ground the true pose puts farther than this from it is wrong (frame px)")
    ap.add_argument("--png", default=None, help="draw the frame, the inliers and their true places here")
    a = ap.parse_args(argv)
    cam, img, truth = eval_frame(a.scenario, a.seed, a.index, a.frames)
    loc = Localizer.load(a.bundle or ensure_default_bundle(), a.config)
    fix = loc.locate(img, cam)
    e = fix.evidence
    print(f"{a.scenario} {a.index} (seed {a.seed}): truth {truth['bore_lat']:.4f}, {truth['bore_lon']:.4f}, "
          f"{truth['alt_km']:.0f} km, tilt {truth.get('tilt_deg', float('nan')):.1f} deg, cloud {truth['cloud_frac']:.2f}")
    if not e.get("inlier_px"):
        print(f"no pose: {fix.reason or fix.error}")
        return 0
    err = geodesy.great_circle_km(e["hyp_lat"], e["hyp_lon"], truth["bore_lat"], truth["bore_lon"])
    print(f"pose ({'fix' if fix.fix else 'no fix: ' + fix.reason}): {float(err):.1f} km off, {e['inliers']} inliers, "
          f"p {fix.confidence:.4f}, sigma {e['bore_sigma_km']:.2f} km, tilt {e['tilt_deg']:.1f} deg, "
          f"alt {e['alt_km']:.0f} km, spread {e['spread']:.3f}, lever {e['lever_km']:.1f} km, "
          f"group lever {e['group_lever_km']:.1f} km, {e['source']} place, {e['look']} look")
    px = np.asarray(e["inlier_px"], float)
    tp = true_pixels(cam, truth, np.asarray(e["inlier_latlon"], float))
    off = tp - px
    wrong = ~(np.hypot(*off.T) <= a.wrong_px)
    print("| frame x | frame y | truth - frame x | truth - frame y | |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for (x, y), (dx, dy), bad in zip(px, off, wrong):
        print(f"| {x:.1f} | {y:.1f} | {dx:+.1f} | {dy:+.1f} | {'wrong' if bad else ''} |")
    print(f"{int(wrong.sum())} of {len(px)} inliers wrong (> {a.wrong_px:g} px from where the truth puts them)")
    if a.png:
        draw(img, px, tp, wrong, a.png)
        print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
