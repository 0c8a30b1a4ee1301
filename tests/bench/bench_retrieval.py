"""Encoder retrieval over the global reference grid, for choosing between models (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_retrieval.py --onnx models/encoder_fp32.onnx [--n 120] [--seed 4242]
    PYTHONPATH=. python tests/bench/bench_retrieval.py --checkpoint runs/encoder3/encoder.pt   # needs torch

The same question as ``earthfix eval``'s encoder rows, on frames the eval never uses (seed 4242 by
default), so that picking a model does not tune on the report's frames: every reference view of the
default grid is rendered (``render_reference``, cached in ``--cache``) and encoded with the 4-rotation
average, queries are ``make_frameset`` frames (land, 256 px at 80 deg, the simulator's effects) from the
default and the season-shifted basemap, search is exact cosine on the full descriptors (no PCA, no HNSW).
Recall@k as in CONVENTIONS: a candidate within half the footprint half-width of the true boresight point,
over eligible frames.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from earthfix.onboard import geodesy  # noqa: E402
from earthfix.onboard.camera import Camera  # noqa: E402
from earthfix.onboard.preprocess import preprocess, standardise  # noqa: E402
from earthfix.sim.basemap import Basemap  # noqa: E402
from earthfix.tools import grid  # noqa: E402
from earthfix.tools.evaluate import is_eligible  # noqa: E402
from earthfix.tools.framesets import FrameSpec, make_frameset, shifted_basemap  # noqa: E402
from earthfix.tools.train_encoder import render_reference  # noqa: E402


def encoder_fn(onnx_path: str | None, checkpoint: str | None):
    """N x 3 x S x S -> N x D descriptors (not normalised), one thread."""
    if onnx_path:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: np.concatenate([sess.run(None, {name: np.ascontiguousarray(x[i:i + 256])})[0]
                                         for i in range(0, len(x), 256)])
    import torch
    from earthfix.tools.train_encoder import build_model
    torch.set_num_threads(1)
    state = torch.load(checkpoint, weights_only=True)
    model = build_model(state.get("dim", 128))
    model.load_state_dict(state["model"])
    model.eval()

    def run(x):
        with torch.no_grad():
            return np.concatenate([model(torch.from_numpy(np.ascontiguousarray(x[i:i + 256]))).numpy()
                                   for i in range(0, len(x), 256)])
    return run


def rot4(enc, x: np.ndarray) -> np.ndarray:
    """The 4-rotation average (as ``onboard.encoder.Encoder``), L2-normalised."""
    z = np.mean([enc(np.rot90(x, k, axes=(2, 3))) for k in range(4)], axis=0)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", help="FP32 (or INT8) ONNX encoder")
    src.add_argument("--checkpoint", help="torch checkpoint of earthfix train (needs the [train] extra)")
    ap.add_argument("--n", type=int, default=120, help="frames drawn per set (eligible ones are used)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--cache", default="/tmp/earthfix_refs_u8.npy", help="rendered reference views (uint8)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    basemap = Basemap.default()
    lat, lon, scale = grid.reference_grid()
    cache = Path(args.cache)
    if cache.is_file() and len(np.load(cache, mmap_mode="r")) == len(lat):
        refs = np.load(cache)
    else:
        refs = np.stack([render_reference(basemap, float(lat[i]), float(lon[i]), int(scale[i])).image
                         for i in range(len(lat))])
        np.save(cache, refs)
    enc = encoder_fn(args.onnx, args.checkpoint)
    t = time.time()
    db = np.concatenate([rot4(enc, np.stack([standardise(r) for r in refs[i:i + 2048]]))
                         for i in range(0, len(refs), 2048)])
    print(f"{len(db)} reference views encoded in {time.time() - t:.0f} s", flush=True)
    cam = Camera.from_fov(256, 256, 80.0)
    for name, bm in (("default", basemap), ("season-shifted", shifted_basemap("season"))):
        frames = [(img, tr) for img, tr in make_frameset(args.n, args.seed, cam, bm, FrameSpec()) if is_eligible(tr)]
        q = rot4(enc, np.concatenate([preprocess(img) for img, _ in frames]))
        top = np.argsort(-(q @ db.T), axis=1)[:, :10]
        r1 = r10 = 0
        for j, (_, tr) in enumerate(frames):
            d = geodesy.great_circle_km(tr["bore_lat"], tr["bore_lon"], lat[top[j]], lon[top[j]])
            hit = d < 0.5 * tr["footprint_half_width_km"]
            r1 += bool(hit[0])
            r10 += bool(hit.any())
        print(f"{name:15s} eligible {len(frames):4d}  R@1 {r1 / len(frames):6.1%}  R@10 {r10 / len(frames):6.1%}",
              flush=True)


if __name__ == "__main__":
    main()
