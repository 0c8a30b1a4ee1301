"""Which views of a frame should the encoder's descriptor average? (docs/VERIFICATION.md, "The encoder sees the
cleaned frame too").

For every eligible frame of the eval's land sets (main and stress; ``earthfix eval``'s frames of ``--seed``), the
encoder's own spaced top 10 (as ``Localizer.candidates`` makes it: the default bundle, INT8, HNSW) is scored with the
descriptor of each variant: the normalised mean of the listed views' descriptors (each rotation-averaged).
Views: ``frame``; ``filled`` / ``despeckled``: the looks' cloud-filled and despeckled frames (when the frame has
them, else nothing); ``crop80`` / ``crop60``: centre crops of 80 / 60 % of the side; ``grey``: the frame in grey;
``clahe``: CLAHE on its L* band. ``max``: the frame's and the filled view's lists fused by best similarity.

    PYTHONPATH=. python tests/bench/bench_encoder_views.py --seed 3 [--frames 100] [--jsonl OUT]

Prints R@1 / R@10 counts per set (main = land256, season256, land512, cloudy; stress = the stress sets).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import cv2
import numpy as np

VARIANTS = {
    "frame": ("frame",),
    "frame+filled": ("frame", "filled"),
    "frame+filled+despeckled": ("frame", "filled", "despeckled"),      # shipped (config encoder_views)
    "+crop80+crop60": ("frame", "filled", "despeckled", "crop80", "crop60"),
    "+grey": ("frame", "filled", "despeckled", "grey"),
    "+clahe": ("frame", "filled", "despeckled", "clahe"),
}


def crop(img, f):
    h, w = img.shape[:2]
    ch, cw = int(round(h * f)), int(round(w * f))
    return img[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]


def views_of(loc, img, cam) -> dict:
    """Every candidate view of one frame by name (None where the frame has no such view)."""
    prep = loc.prepare(img, cam, {})
    bgr = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
    return {"frame": img, "filled": prep.filled, "despeckled": prep.despeckled,
            "crop80": crop(img, 0.8), "crop60": crop(img, 0.6),
            "grey": cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR),
            "clahe": cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)}


def main(argv=None) -> int:
    from earthfix.onboard.localizer import SPACING_FETCH, Localizer, spaced_places
    from earthfix.tools import evaluate as ev
    from earthfix.tools.build_index import ensure_default_bundle
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--jsonl", default=None, help="write one record of ranks per frame here")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    loc = Localizer.load(ensure_default_bundle(), config={"deadline_ms": 10000})
    b, k = loc.bundle, loc.cfg["top_k"]

    def top(idx, sim, sp):
        keep = spaced_places(b.lat[idx], b.lon[idx], k, sp)
        return [(float(b.lat[i]), float(b.lon[i])) for i in idx[keep]]

    out = open(args.jsonl, "w") if args.jsonl else None
    tally = defaultdict(lambda: defaultdict(int))
    for si, sdef in enumerate(ev.SCENARIOS):
        if sdef.kind != "land" or not sdef.daylight:
            continue
        cam, frames = ev.scenario_frames(sdef, args.frames, ev.scenario_seed(args.seed, si))
        sp = loc.spacing_km(cam)
        for i, (img, truth) in enumerate(frames):
            if not ev.is_eligible(truth):
                continue
            views = views_of(loc, img, cam)
            desc = {n: loc.encoder.encode(v) for n, v in views.items() if v is not None}
            rec = {"set": sdef.name, "index": i}
            for name, parts in VARIANTS.items():
                d = sum(desc[p] for p in parts if p in desc)
                rec[name] = ev.first_hit_rank(top(*b.search(d / np.linalg.norm(d), SPACING_FETCH * k), sp), truth)
            lists = [b.search(desc[p], SPACING_FETCH * k) for p in ("frame", "filled") if p in desc]
            best: dict = {}
            for idx, sim in lists:
                for j, s in zip(idx, sim):
                    best[int(j)] = max(best.get(int(j), -9.0), float(s))
            order = np.array(sorted(best, key=lambda j: -best[j]))
            rec["max"] = ev.first_hit_rank(top(order, None, sp), truth)
            for group in (sdef.name, "stress" if sdef.stress else "main", "all"):
                t = tally[group]
                t["n"] += 1
                for name in list(VARIANTS) + ["max"]:
                    t[name + "@1"] += rec[name] is not None and rec[name] <= 1
                    t[name + "@10"] += rec[name] is not None and rec[name] <= 10
            if out:
                out.write(json.dumps(rec) + "\n")
    names = list(VARIANTS) + ["max"]
    print(f"seed {args.seed}, {args.frames} frames a set; R@1 / R@10 counts of eligible frames")
    print("| set | eligible | " + " | ".join(names) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in names) + " |")
    for g in ["main", "stress", "all"] + [s.name for s in ev.SCENARIOS if s.name in tally]:
        t = tally[g]
        print(f"| {g} | {t['n']} | " + " | ".join(f"{t[n + '@1']} / {t[n + '@10']}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
