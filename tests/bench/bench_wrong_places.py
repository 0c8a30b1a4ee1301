"""How far does a wrong place get through verification? (not a pytest test)

    PYTHONPATH=. python tests/bench/bench_wrong_places.py [--n 40] [--seed 4242] [--near 4] [--far 4]
        [--bundle DIR]

For land frames of the four eval-like sets (land256, land512, season256, cloudy; ``make_frameset``, seed
4242 by default, never the eval's), each look the Localizer would take (plain, and cloud-filled when the
frame qualifies) is verified against the true place and against wrong places: ``--near`` land places
1,300-2,500 km from the truth (outside the search radius, often the same kind of terrain) and ``--far``
ones farther away, with the inlier minimum lowered to 4. Prints, for wrong places, the robust-fit inlier
counts reached and how many gave a valid pose, and for the true place the same for comparison.
"""
from __future__ import annotations

import argparse
import collections
from dataclasses import replace

import numpy as np

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera
from earthfix.onboard.features import fill_clouds
from earthfix.onboard.localizer import FILL_SHARE, Localizer
from earthfix.onboard.verify import Verifier
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.framesets import FrameSpec, make_frameset, random_place, shifted_basemap


def place_between(rng, lat0, lon0, lo_km, hi_km):
    for _ in range(2000):
        lat, lon = random_place(rng, "land")
        if lo_km <= float(geodesy.great_circle_km(lat, lon, lat0, lon0)) <= hi_km:
            return lat, lon
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40, help="frames per set")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--near", type=int, default=4, help="wrong places 1,300-2,500 km away per look")
    ap.add_argument("--far", type=int, default=4, help="wrong places > 2,500 km away per look")
    ap.add_argument("--bundle", default=None, help="bundle to verify on (default: the default bundle)")
    a = ap.parse_args()
    loc = Localizer.load(a.bundle or ensure_default_bundle(), config={"min_confidence": 0.0})
    rng = np.random.default_rng(a.seed + 1)
    sets = [("land256", Camera.from_fov(256, 256, 80), None, FrameSpec()),
            ("land512", Camera.from_fov(512, 512, 60), None, FrameSpec()),
            ("season256", Camera.from_fov(256, 256, 80), "season", FrameSpec()),
            ("cloudy", Camera.from_fov(256, 256, 80), None, FrameSpec(cloud_cover=0.7))]
    inl = {"wrong": collections.Counter(), "true": collections.Counter()}
    poses = {"wrong": 0, "true": 0}          # valid poses
    off = {"wrong": 0, "true": 0}            # ...more than 50 km from the truth
    trials = {"wrong": 0, "true": 0}
    refused = collections.Counter()          # why wrong places with >= 6 inliers at some stage were refused
    for k, (name, cam, bm, spec) in enumerate(sets):
        basemap = shifted_basemap(bm) if bm else None
        for img, truth in make_frameset(a.n, a.seed + k, cam, basemap, spec):
            blat, blon = truth["bore_lat"], truth["bore_lon"]
            fver = loc.fill_verifier(cam)
            looks = [(img, loc.verifier_for(cam), None)]
            filled, mask = fill_clouds(img, fver.cfg.feature, share=FILL_SHARE)
            if filled is not img:
                looks.append((filled, fver, mask))
            for im, ver, drop in looks:
                v = Verifier(ver.store, replace(ver.cfg, min_inliers=4, min_matches=4))
                feats = v.extract(im, drop=drop)
                places = [("wrong", place_between(rng, blat, blon, 1300.0, 2500.0)) for _ in range(a.near)]
                places += [("wrong", place_between(rng, blat, blon, 2500.0, 30000.0)) for _ in range(a.far)]
                places.append(("true", (blat, blon)))
                for kind, p in places:
                    if p is None:
                        continue
                    res = v.verify(feats, cam, [p])
                    trials[kind] += 1
                    inl[kind][int(res.inliers)] += 1
                    if kind == "wrong" and res.inliers >= 6 and not res.ok:
                        refused[res.reason.split(" (")[0]] += 1
                        print("  wrong place refused:", name, res.inliers, res.reason, "spread %.3f tilt %.1f alt %.0f" % (res.spread, res.tilt_deg or -1, res.alt_km or -1))
                    if res.ok:
                        poses[kind] += 1
                        off[kind] += float(geodesy.great_circle_km(res.lat, res.lon, blat, blon)) > 50.0
    print("wrong places with >= 6 inliers at some stage, refused by:", dict(refused))
    for kind in ("wrong", "true"):
        hist = dict(sorted(inl[kind].items()))
        print(f"{kind} places: {trials[kind]} trials, valid poses {poses[kind]} ({off[kind]} more than 50 km "
              f"off); robust-fit inliers reached {{inliers: trials}}: {hist}")


if __name__ == "__main__":
    main()
