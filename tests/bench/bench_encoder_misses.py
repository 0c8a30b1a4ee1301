"""Where the encoder's R@1 misses come from (not a pytest test): the same frames and search as
bench_retrieval's whitened-PCA rows, with the search restricted to references within R km of the truth
(a place prior: does the descriptor tell neighbours apart?) and to the truth's own footprint scale.

    PYTHONPATH=. python tests/bench/bench_encoder_misses.py --onnx models/encoder_int8.onnx [--n 150]
        [--seed 4242] [--radius-km 3000 1000]

Prints, per basemap, R@1 over the whole grid, within each radius, and at the truth's nearest scale, and
the rank of the best right reference among all (p50 / p75 / p90). Recall as in CONVENTIONS (a reference
within half the footprint half-width of the true boresight point), eligible frames only.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from earthfix.onboard import geodesy  # noqa: E402
from earthfix.onboard.bundle import reduce_descriptors  # noqa: E402
from earthfix.onboard.camera import Camera  # noqa: E402
from earthfix.onboard.encoder import Encoder, rotation_handling  # noqa: E402
from earthfix.onboard.preprocess import preprocess  # noqa: E402
from earthfix.sim.basemap import Basemap  # noqa: E402
from earthfix.tools import grid  # noqa: E402
from earthfix.tools.build_index import WHITEN_POWER, encode_views, fit_pca  # noqa: E402
from earthfix.tools.evaluate import hit_radius_km, is_eligible  # noqa: E402
from earthfix.tools.framesets import FrameSpec, make_frameset, shifted_basemap  # noqa: E402


def top1_hit(sim: np.ndarray, hit: np.ndarray, allowed: np.ndarray) -> bool:
    """Is the most similar allowed reference a right one?"""
    idx = np.flatnonzero(allowed)
    return bool(len(idx)) and bool(hit[idx[np.argmax(sim[idx])]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True, help="ONNX encoder (its encoder.json beside it)")
    ap.add_argument("--n", type=int, default=150, help="frames drawn per set (eligible ones are used)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--radius-km", type=float, nargs="+", default=[3000.0, 1000.0])
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rot = rotation_handling(args.onnx)
    if rot["reference_turns"] != 1:
        raise SystemExit("bench_encoder_misses: encoders with references at several turns are not handled")
    enc = Encoder.from_file(args.onnx, threads=1, rotations=rot["rotations"])
    basemap = Basemap.default()
    lat, lon, scale = grid.reference_grid()
    mean, comps = fit_pca(db := encode_views(basemap, enc, lat, lon, scale, progress=False), 64, WHITEN_POWER)
    refs = reduce_descriptors(db, mean, comps)
    log_scales = np.log(np.array(grid.SCALES_KM))
    cam = Camera.from_fov(256, 256, 80.0)
    for name, bm in (("default", basemap), ("season-shifted", shifted_basemap("season"))):
        frames = [(img, tr) for img, tr in make_frameset(args.n, args.seed, cam, bm, FrameSpec()) if is_eligible(tr)]
        q = reduce_descriptors(enc.encode_batch(np.concatenate([preprocess(img, enc.input_px) for img, _ in frames])), mean, comps)
        counts = {"whole grid": 0, **{f"within {r:g} km": 0 for r in args.radius_km}, "own scale": 0}
        best_right_rank = []
        for qj, (_, tr) in zip(q, frames):
            sim = refs @ qj
            d_km = geodesy.great_circle_km(tr["bore_lat"], tr["bore_lon"], lat, lon)
            hit = d_km <= hit_radius_km(tr)
            own = int(np.argmin(np.abs(log_scales - np.log(tr["footprint_half_width_km"]))))
            counts["whole grid"] += top1_hit(sim, hit, np.ones(len(sim), bool))
            for r in args.radius_km:
                counts[f"within {r:g} km"] += top1_hit(sim, hit, d_km < r)
            counts["own scale"] += top1_hit(sim, hit, scale == own)
            best_right_rank.append(int((sim > sim[hit].max()).sum()) + 1 if hit.any() else len(sim))
        n = len(frames)
        print(f"seed {args.seed} {name:15s} eligible {n}  R@1 " + "  ".join(f"{k} {v / n:.1%}" for k, v in counts.items())
              + "  best right reference's rank p50/p75/p90 "
              + "/".join(str(int(v)) for v in np.percentile(best_right_rank, [50, 75, 90])), flush=True)


if __name__ == "__main__":
    main()
