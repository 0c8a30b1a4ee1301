"""Descriptor expansion on the bundle's index, without retraining (not a pytest test; run as a script).

    PYTHONPATH=. python tests/bench/bench_expansion.py [--n 120] [--seed 4242] [--bundle DIR]

Asks whether the encoder's recall can be raised at search time alone, on the bundle's stored (PCA-whitened,
64-D) reference descriptors and queries encoded as the Localizer does (INT8, 4-rotation average, one
thread): exact cosine search, CONVENTIONS recall@1 / @10 over the eligible frames of three 256 px / 80 deg
sets (default basemap, season-shifted, cloud cover 0.7; ``make_frameset``, seed 4242, never the eval's).

- database-side augmentation (DBA): each reference replaced by the similarity-weighted mean of its k
  nearest references in descriptor space (weights ``sim ** a``);
- geographic smoothing: each reference plus ``mix`` x the mean of the references of its scale within
  ``radius`` km (overlapping views of the same ground);
- alpha query expansion (aQE): the query plus the similarity-weighted mean of its k first references.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402

import numpy as np  # noqa: E402

from earthfix.onboard import geodesy  # noqa: E402
from earthfix.onboard.bundle import Bundle  # noqa: E402
from earthfix.onboard.camera import Camera  # noqa: E402
from earthfix.onboard.encoder import Encoder  # noqa: E402
from earthfix.onboard.localizer import shipped_models_dir  # noqa: E402
from earthfix.onboard.preprocess import preprocess  # noqa: E402
from earthfix.sim.basemap import Basemap  # noqa: E402
from earthfix.tools.build_index import default_bundle_dir  # noqa: E402
from earthfix.tools.evaluate import first_hit_rank, is_eligible, recall_at_k  # noqa: E402
from earthfix.tools.framesets import FrameSpec, make_frameset, shifted_basemap  # noqa: E402

def unit_vectors(lat_deg, lon_deg) -> np.ndarray:
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120, help="frames drawn per set (eligible ones are used)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    args = ap.parse_args()
    path = args.bundle or default_bundle_dir()
    bundle = Bundle.load(path)
    if bundle.turns != 1:
        raise SystemExit("bench_expansion: a bundle with one index row per view is needed")
    enc = Encoder((shipped_models_dir() / "encoder_int8.onnx").read_bytes(), threads=1,
                  rotations=int(bundle.manifest["encoder"].get("rotations", 4)))
    refs = normalised(np.load(os.path.join(path, "descriptors.npy")).astype(np.float32))
    ref_xyz = unit_vectors(bundle.lat, bundle.lon)
    cam = Camera.from_fov(256, 256, 80.0)
    queries, truths = [], []
    for shift, cover in ((None, None), ("season", None), (None, 0.7)):
        bm = shifted_basemap(shift) if shift else Basemap.default()
        for img, t in make_frameset(args.n, args.seed, cam, bm, FrameSpec(cloud_cover=cover)):
            if is_eligible(t):
                queries.append(bundle.reduce(enc.encode_input(preprocess(img, enc.input_px)))[0])
                truths.append(t)
    q = np.array(queries)

    def recall(qx: np.ndarray, rx: np.ndarray) -> str:
        """CONVENTIONS recall@1 / @10 of exact cosine search (the eval's metric functions)."""
        top = np.argsort(-(qx @ rx.T), axis=1)[:, :10]
        ranks = [first_hit_rank(zip(bundle.lat[row], bundle.lon[row]), t) for row, t in zip(top, truths)]
        every = [True] * len(ranks)
        return f"R@1 {recall_at_k(ranks, every, 1):6.1%}  R@10 {recall_at_k(ranks, every, 10):6.1%}"

    print(f"{len(q)} eligible frames, {len(refs)} references")
    print(f"{'as shipped':32s} {recall(q, refs)}")
    sim = refs @ refs.T
    nn = np.argsort(-sim, axis=1)[:, :10]
    for k, a in ((2, 1.0), (3, 1.0), (5, 1.0), (5, 3.0), (10, 3.0)):
        w = np.clip(np.take_along_axis(sim, nn[:, :k], 1), 0.0, None) ** a
        print(f"{f'DBA k {k} a {a:g}':32s} {recall(q, normalised((w[..., None] * refs[nn[:, :k]]).sum(1)))}")
    del sim
    same_scale = bundle.scale[:, None] == bundle.scale[None, :]
    for radius_km in (100.0, 200.0):
        near = ((ref_xyz @ ref_xyz.T) > np.cos(radius_km / geodesy.R_MEAN_KM)) & same_scale
        mean = normalised(near.astype(np.float32) @ refs)
        for mix in (0.3, 0.5):
            print(f"{f'geographic {radius_km:g} km mix {mix:g}':32s} {recall(q, normalised(refs + mix * mean))}")
    sq = q @ refs.T
    top = np.argsort(-sq, axis=1)[:, :10]
    for k in (2, 3, 5):
        w = np.clip(np.take_along_axis(sq, top[:, :k], 1), 0.0, None) ** 3.0
        print(f"{f'aQE k {k} a 3':32s} {recall(normalised(q + (w[..., None] * refs[top[:, :k]]).sum(1)), refs)}")


if __name__ == "__main__":
    main()
