"""Weak poses of the vote's prior path, right against wrong (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_prior_poses.py FRAMES.jsonl [FRAMES.jsonl ...] [--below-inliers 10]
        [--confidence MODEL.json]

Reads the ``--out`` files of ``bench_cameras.py`` / ``bench_real_clouds.py`` (their records' ``pose`` holds the
verified pose's evidence) and takes the fixes matched where a vote place's own pose put the store keypoints
(``from_prior``) on fewer than ``--below-inliers`` inliers (config ``weak_prior_pose_inliers``: such a pose does not
end a frame's search, docs/VERIFICATION.md "A weak prior pose does not end the search"). Prints, for the right ones
(within 50 km), each evidence value's p1 / p5 / p50 / p95 / p99 / max, then each wrong one's values beside them and
how many right fixes (of every kind, and of this path) a confidence bar at the wrong one's confidence would refuse:
the question whether anything in the evidence tells such a wrong pose from the right ones before it flies.
``--confidence``: every fix scored again under another confidence model (``earthfix calibrate``'s JSON; the
records' ``pose`` holds its inputs): each wrong one's new probability and the right fixes it would take below
``min_confidence`` (the searches themselves are not re-run: a fix the old model let end a search stands as it was).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from earthfix.onboard.confidence import ConfidenceModel
from earthfix.tools.evaluate import FALSE_FIX_KM, percentiles

# evidence compared (the record's own keys first, then its "pose"'s)
KEYS = ("inliers", "confidence", "bore_sigma_km", "offset_sigma_km", "tilt_deg", "matches", "inlier_ratio", "spread",
        "reproj_rms_work_px", "lever_km")


def value(rec: dict, key: str):
    v = rec.get(key)
    if v is None:
        v = (rec.get("pose") or {}).get(key)
    return None if v is None else float(v)


def weak_prior(rec: dict, below_inliers: int) -> bool:
    return bool(rec.get("fix") and rec.get("from_prior") and rec.get("inliers", 0) < below_inliers)


def is_right(rec: dict) -> bool:
    return rec.get("err_km") is not None and rec["err_km"] <= FALSE_FIX_KM


def evidence(rec: dict) -> dict:
    """The confidence model's inputs of a fixed frame's record (``ConfidenceModel``'s evidence keys)."""
    return dict(rec.get("pose") or {}, ok=True, inliers=rec.get("inliers"), bore_sigma_km=rec.get("bore_sigma_km"))


def rescore(recs: list[dict], model: ConfidenceModel, min_confidence: float = 0.9) -> dict:
    """Every fix under ``model``: the right ones it takes below ``min_confidence``, each wrong one's probability."""
    fixes = [r for r in recs if r.get("fix") and r.get("pose")]
    p = {id(r): model(evidence(r)) for r in fixes}
    return {"right_below": sum(p[id(r)] < min_confidence for r in fixes if is_right(r)),
            "right": sum(is_right(r) for r in fixes),
            "wrong": [(r.get("camera"), r.get("index"), r["confidence"], p[id(r)]) for r in fixes if not is_right(r)]}


def summarise(recs: list[dict], below_inliers: int = 10) -> dict:
    """The comparison as a dict: counts, the right weak prior poses' percentiles per key, and each wrong one's
    values with the right fixes a bar at its confidence would refuse (``refused_all``, ``refused_prior``)."""
    fixes = [r for r in recs if r.get("fix")]
    weak = [r for r in fixes if weak_prior(r, below_inliers)]
    right = [r for r in weak if is_right(r)]
    wrong = [r for r in weak if not is_right(r)]
    right_conf = np.array([r["confidence"] for r in fixes if is_right(r)], float)
    prior_conf = np.array([r["confidence"] for r in right], float)
    ranges = {}
    for k in KEYS:
        q = percentiles([value(r, k) for r in right], (1, 5, 50, 95, 99, 100))
        if q["p50"] is not None:
            q["max"] = q.pop("p100")
            ranges[k] = q
    wrong_out = [{"camera": r.get("camera"), "index": r.get("index"), "err_km": r["err_km"],
                  "values": {k: value(r, k) for k in KEYS},
                  "refused_all": int((right_conf < r["confidence"]).sum()),
                  "refused_prior": int((prior_conf < r["confidence"]).sum())} for r in wrong]
    return {"frames": len(recs), "fixes": len(fixes), "right_fixes": int(len(right_conf)), "weak_prior": len(weak),
            "weak_prior_right": len(right), "ranges": ranges, "wrong": wrong_out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frames", nargs="+", metavar="FRAMES.jsonl")
    ap.add_argument("--below-inliers", type=int, default=10, help="weak: fewer inliers than this (config "
                    "weak_prior_pose_inliers)")
    ap.add_argument("--confidence", default=None, metavar="MODEL.json", help="also score every fix under this "
                    "confidence model")
    a = ap.parse_args()
    recs = []
    for path in a.frames:
        with open(path) as fh:
            recs += [json.loads(line) for line in fh if line.strip()]
    s = summarise(recs, a.below_inliers)
    print(f"{s['frames']} frames, {s['fixes']} fixes ({s['right_fixes']} right); weak prior poses (< "
          f"{a.below_inliers} inliers) {s['weak_prior']}, right {s['weak_prior_right']}")
    print("| evidence | right p1 | p5 | p50 | p95 | p99 | max |" + "".join(
        f" wrong {w['camera']} {w['index']} |" for w in s["wrong"]))
    print("| --- |" + " ---: |" * (6 + len(s["wrong"])))
    for k, q in s["ranges"].items():
        cells = " | ".join(f"{q[c]:.3g}" for c in ("p1", "p5", "p50", "p95", "p99", "max"))
        wcells = "".join(f" {w['values'][k]:.3g} |" if w["values"][k] is not None else " – |" for w in s["wrong"])
        print(f"| {k} | {cells} |{wcells}")
    for w in s["wrong"]:
        print(f"wrong {w['camera']} frame {w['index']}: {w['err_km']:.0f} km off; a bar at its confidence "
              f"{w['values']['confidence']:.4f} refuses {w['refused_all']} of {s['right_fixes']} right fixes "
              f"({w['refused_prior']} of {s['weak_prior_right']} right weak prior poses)")
    if a.confidence:
        r = rescore(recs, ConfidenceModel.load(a.confidence))
        print(f"under {a.confidence}: {r['right_below']} of {r['right']} right fixes below 0.9; wrong: " + ", ".join(
            f"{c} {i} p {p0:.4f} -> {p1:.4f}" for c, i, p0, p1 in r["wrong"]))


if __name__ == "__main__":
    main()
