"""Measure keypoint voting as a retrieval, and with verification of its candidates (a script, not a test).

    PYTHONPATH=. nice -n 10 python tests/bench/bench_vote.py --store STORE.npz [--keyindex KI.hnsw]
        [--n 60] [--seed 777] [--basemap default|season] [--set k=3 --set cell_km=200 ...] [--json out.json]

Frames: ``earthfix.tools.framesets.make_frameset`` (land, 400-800 km, any yaw, 0-5 deg tilt, the
simulator's effects), 256 px at 80 deg, from the default basemap or ``shifted_basemap('season')``.
Recall@k (CONVENTIONS): eligible frames with one of the first k candidates within half the footprint
half-width of the true boresight. Fix rate: eligible frames whose vote candidates verify with confidence
>= 0.9 (the shipped confidence model, else the prior); false fixes: any such fix > 50 km off. Times are
thread CPU time per frame at one thread (cv2, hnswlib, BLAS), so a shared machine inflates them less.
Without ``--keyindex`` the index is built here (one thread, ~10 s for the global store).

With ``--bundle DIR [--encoder ONNX] [--deadline-ms MS]`` the whole Localizer runs instead, with ``vote``
off and on: fix rate, source of the fixes, false fixes and CPU time per frame (``--store`` is then unused).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from earthfix.onboard import geodesy  # noqa: E402
from earthfix.onboard.camera import Camera  # noqa: E402
from earthfix.onboard.confidence import ConfidenceModel  # noqa: E402
from earthfix.onboard.keystore import KeypointStore  # noqa: E402
from earthfix.onboard.verify import Verifier  # noqa: E402
from earthfix.onboard.vote import KeypointVoter, VoteConfig  # noqa: E402


def pct(a, q):
    return round(float(np.percentile(a, q)), 2) if len(a) else None


def main(argv=None) -> int:
    import hnswlib
    from earthfix.tools.build_keyindex import build_keyindex
    from earthfix.tools.framesets import FrameSpec, make_frameset, shifted_basemap
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--keyindex", default=None)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--basemap", default="default", choices=["default", "season", "relief"])
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--fov", type=float, default=80.0)
    ap.add_argument("--set", action="append", default=[], help="VoteConfig override key=json")
    ap.add_argument("--confidence", default=None, help="confidence model JSON (default: shipped, else prior)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--bundle", default=None, help="run the Localizer on this bundle, vote off and on")
    ap.add_argument("--encoder", default=None)
    ap.add_argument("--deadline-ms", type=float, default=1000.0)
    a = ap.parse_args(argv)
    if a.bundle:
        return localizer_bench(a)
    cv2.setNumThreads(1)
    store = KeypointStore.load(a.store)
    if a.keyindex:
        index = hnswlib.Index(space="l2", dim=store.dim)
        index.load_index(a.keyindex, max_elements=len(store))
        ki_bytes = os.path.getsize(a.keyindex)
    else:
        index, _ = build_keyindex(store)
        tmp = f"/tmp/bench_vote_{os.getpid()}.hnsw"
        index.save_index(tmp)
        ki_bytes = os.path.getsize(tmp)
        os.unlink(tmp)
    index.set_num_threads(1)
    over = {}
    for s in a.set:
        k, v = s.split("=", 1)
        over[k] = json.loads(v)
    voter = KeypointVoter(store, index, VoteConfig(**over))
    verifier = Verifier(store)
    conf_path = a.confidence
    if conf_path is None:
        from earthfix.onboard.localizer import shipped_models_dir
        conf_path = shipped_models_dir() / "confidence.json"
    conf = ConfidenceModel.load(conf_path)
    cam = Camera.from_fov(a.width, a.width, a.fov)
    basemap = None if a.basemap == "default" else shifted_basemap(a.basemap)
    rows = []
    for img, tr in make_frameset(a.n, a.seed, cam, basemap, FrameSpec(kind="land")):
        f = verifier.extract(img)
        t = time.thread_time()
        cands = voter.candidates(f, cam, 3)
        t_vote = (time.thread_time() - t) * 1e3
        hw = tr["footprint_half_width_km"]
        ok_truth = tr["bore_lat"] is not None
        d = [float(geodesy.great_circle_km(c.lat, c.lon, tr["bore_lat"], tr["bore_lon"])) if ok_truth else 1e9
             for c in cands]
        t = time.thread_time()
        v = verifier.verify(f, cam, cands) if cands else None
        t_ver = (time.thread_time() - t) * 1e3
        fixed = bool(v is not None and v.ok and conf(v.evidence) >= 0.9)
        err = float(geodesy.great_circle_km(v.lat, v.lon, tr["bore_lat"], tr["bore_lon"])) \
            if fixed and ok_truth else None
        rows.append({"eligible": bool(tr["eligible"]), "hit1": bool(d and d[0] <= 0.5 * hw),
                     "hit3": any(x <= 0.5 * hw for x in d[:3]), "n_cand": len(cands),
                     "votes": [c.votes for c in cands], "cand_err_km": [round(x, 1) for x in d],
                     "wrong_cands": sum(x > 0.5 * hw for x in d), "fix": fixed, "err_km": err, "false_fix": bool(fixed and (err is None or err > 50.0)),
                     "inliers": int(v.inliers) if v is not None else 0,
                     "vote_ms": t_vote, "verify_ms": t_ver, "total_ms": t_vote + t_ver,
                     "query_ms": voter.last_stats.get("query_ms", 0.0)})
    el = [r for r in rows if r["eligible"]]
    ne = max(len(el), 1)
    errs = [r["err_km"] for r in el if r["err_km"] is not None]
    tv = [r["vote_ms"] for r in rows]
    tt = [r["total_ms"] for r in rows]
    out = {"frames": len(rows), "eligible": len(el), "basemap": a.basemap, "seed": a.seed,
           "config": voter.cfg.to_dict(), "keyindex_bytes": ki_bytes, "store_keypoints": len(store),
           "recall@1": round(sum(r["hit1"] for r in el) / ne, 3),
           "recall@3": round(sum(r["hit3"] for r in el) / ne, 3),
           "fix_rate": round(sum(r["fix"] for r in el) / ne, 3),
           "false_fixes": sum(r["false_fix"] for r in rows),
           "wrong_candidates_per_frame": round(sum(r["wrong_cands"] for r in rows) / max(len(rows), 1), 3),
           "fix_err_km_p50_p90": [pct(errs, 50), pct(errs, 90)],
           "vote_ms_p50_p90_p99": [pct(tv, 50), pct(tv, 90), pct(tv, 99)],
           "vote_plus_verify_ms_p50_p90_p99": [pct(tt, 50), pct(tt, 90), pct(tt, 99)]}
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"summary": out, "frames": rows}, fh)
    return 0


def localizer_bench(a) -> int:
    from earthfix.onboard.localizer import Localizer
    from earthfix.tools.framesets import FrameSpec, make_frameset, shifted_basemap
    cam = Camera.from_fov(a.width, a.width, a.fov)
    basemap = None if a.basemap == "default" else shifted_basemap(a.basemap)
    frames = list(make_frameset(a.n, a.seed, cam, basemap, FrameSpec(kind="land")))
    cfg = {"deadline_ms": a.deadline_ms}
    if a.encoder:
        cfg["encoder"] = a.encoder
    if a.confidence:
        cfg["confidence"] = {"path": a.confidence}
    out = {}
    for vote in (False, True):
        loc = Localizer.load(a.bundle, config=dict(cfg, vote=vote))
        el = fixes = false = 0
        src: dict = {}
        cpu = []
        for img, tr in frames:
            t = time.thread_time()
            fix = loc.locate(img, cam)
            cpu.append((time.thread_time() - t) * 1e3)
            el += bool(tr["eligible"])
            if fix.fix:
                d = float(geodesy.great_circle_km(fix.lat, fix.lon, tr["bore_lat"], tr["bore_lon"])) \
                    if tr["bore_lat"] is not None else 1e9
                false += d > 50.0
                if tr["eligible"]:
                    fixes += 1
                    s = fix.evidence.get("source", "encoder")
                    src[s] = src.get(s, 0) + 1
        out[f"vote_{str(vote).lower()}"] = {
            "eligible": el, "fix_rate": round(fixes / max(el, 1), 3), "fixes_by_source": src, "false_fixes": false,
            "cpu_ms_p50_p90_p99": [pct(cpu, 50), pct(cpu, 90), pct(cpu, 99)]}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
