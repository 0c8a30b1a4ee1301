"""Encoder retrieval over the global reference grid, for choosing between models (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_retrieval.py --onnx models/encoder_fp32.onnx [--n 120] [--seed 4242 ...]
        [--pca 64 --whiten 0 0.5]

A checkpoint of ``earthfix train`` is measured after ``earthfix export --checkpoint CK --models DIR``
(seconds). The same question as ``earthfix eval``'s encoder rows, on frames the eval never uses (seed 4242
by default), so that picking a model does not tune on the report's frames: every reference view of the
default grid is rendered and encoded as ``build-index`` does (``build_index.encode_views``, the flight
``Encoder`` with its rotation handling from the card beside the file: 4-rotation average, or references
stored at 4 turns and queries encoded once; one thread), queries are ``make_frameset`` frames (land, 256 px at
80 deg, the simulator's effects) from the default and the season-shifted basemap, and search is exact
cosine on the full descriptors (no PCA, no HNSW), and with ``--pca`` also after build-index's compression
(PCA fitted on the references, each ``--whiten`` power). Recall@k as in CONVENTIONS: a candidate within
half the footprint half-width of the true boresight point, over eligible frames.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from earthfix.onboard.bundle import reduce_descriptors  # noqa: E402
from earthfix.onboard.camera import Camera  # noqa: E402
from earthfix.onboard.encoder import Encoder, rotation_handling  # noqa: E402
from earthfix.onboard.preprocess import preprocess  # noqa: E402
from earthfix.sim.basemap import Basemap  # noqa: E402
from earthfix.tools import grid  # noqa: E402
from earthfix.tools.build_index import WHITEN_POWER, encode_views, fit_pca  # noqa: E402
from earthfix.tools.evaluate import exact_topk, first_hit_rank, is_eligible, recall_at_k  # noqa: E402
from earthfix.tools.framesets import FrameSpec, make_frameset, shifted_basemap  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True, help="ONNX encoder (FP32 or INT8)")
    ap.add_argument("--n", type=int, default=120, help="frames drawn per set (eligible ones are used)")
    ap.add_argument("--seed", type=int, nargs="+", default=[4242],
                    help="frame-set seeds (the references are encoded once)")
    ap.add_argument("--pca", type=int, nargs="*", default=[],
                    help="also search after a PCA to these dimensions (fitted on the references, as build-index does)")
    ap.add_argument("--whiten", type=float, nargs="*", default=[WHITEN_POWER],
                    help=f"whitening powers tried with each --pca dimension (build-index uses {WHITEN_POWER})")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rot = rotation_handling(args.onnx)
    turns = rot["reference_turns"]
    enc = Encoder.from_file(args.onnx, threads=1, rotations=rot["rotations"])
    print(f"rotation handling: {rot}", flush=True)
    basemap = Basemap.default()
    lat, lon, scale = grid.reference_grid()
    t = time.time()
    db = encode_views(basemap, enc, lat, lon, scale, progress=False, turns=turns)
    print(f"{len(db)} reference views rendered and encoded in {time.time() - t:.0f} s", flush=True)
    cam = Camera.from_fov(256, 256, 80.0)
    for seed, name, bm in [(s, n, b) for s in args.seed
                           for n, b in (("default", basemap), ("season-shifted", shifted_basemap("season")))]:
        frames = [(img, tr) for img, tr in make_frameset(args.n, seed, cam, bm, FrameSpec()) if is_eligible(tr)]
        q = enc.encode_batch(np.concatenate([preprocess(img, enc.input_px) for img, _ in frames]))
        for dim, power in [(None, 0.0)] + [(d, p) for d in args.pca for p in args.whiten]:
            refs, qs = db, q
            if dim:
                mean, comps = fit_pca(db, dim, power)
                refs, qs = [reduce_descriptors(v, mean, comps) for v in (db, q)]
            top = [exact_topk(refs, qj, 10, turns) for qj in qs]
            ranks = [first_hit_rank(list(zip(lat[top[j]], lon[top[j]])), tr) for j, (_, tr) in enumerate(frames)]
            elig = [True] * len(frames)
            label = "full" if not dim else f"PCA {dim} w{power:g}"
            print(f"seed {seed} {name:15s} {label:12s} eligible {len(frames):4d}  "
                  f"R@1 {recall_at_k(ranks, elig, 1):6.1%}  R@10 {recall_at_k(ranks, elig, 10):6.1%}", flush=True)


if __name__ == "__main__":
    main()
