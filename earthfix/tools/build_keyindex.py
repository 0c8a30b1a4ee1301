"""Build the key index for keypoint voting (``earthfix.onboard.vote``): an hnswlib graph over the keypoint
store's descriptors, as the flight matcher sees them (``KeypointStore.decode``: dequantised PCA
coefficients, float32), label = the keypoint's row in the store. Space ``l2``: the verifier matches with L2
distances on the same vectors, and the projected descriptors are not unit vectors.

Parameters (measured on the global default store, 83,205 keypoints x 32-D, frames 256 px / 80 deg):
M 8 / 12 / 16 -> 17.7 / 20.4 / 23.0 MB; at ``ef`` 16 the first-neighbour agreement with exact search is
0.80 / 0.88 / 0.91 but the true matches found (and the voter's recall) are the same within a frame or two
at ef 8-24, because a true match is usually a clear nearest neighbour. M 8 keeps the file under 20 MB.

    python -m earthfix.tools.build_keyindex --store keystore.npz --out keyindex.hnsw
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np

DEFAULT_KEYINDEX = {"space": "l2", "M": 8, "ef_construction": 100, "ef": 12, "seed": 100}


def build_keyindex(store, params: dict | None = None, threads: int = 1):
    """(hnswlib.Index, meta) over every keypoint of ``store``; ``params`` override ``DEFAULT_KEYINDEX``.

    ``meta`` (JSON-able) holds the parameters, ``dim``, ``count`` and ``store_desc_sha256`` (the SHA-256 of
    the store's quantised descriptors, so an index can be matched to its store). One thread builds the
    same graph every time; more threads are faster but not reproducible byte for byte.
    """
    from .build_index import build_hnsw
    p = dict(DEFAULT_KEYINDEX, **(params or {}))
    if p["space"] not in ("l2", "ip"):
        raise ValueError(f"keyindex: space must be 'l2' or 'ip', got {p['space']!r}")
    n = len(store)
    if n < 1:
        raise ValueError("keyindex: the keypoint store is empty")
    t0 = time.perf_counter()
    x = np.ascontiguousarray(store.decode(np.arange(n)), dtype=np.float32)
    index = build_hnsw(x, p, threads=int(threads))
    meta = {"library": "hnswlib", "space": p["space"], "M": int(p["M"]),
            "ef_construction": int(p["ef_construction"]), "ef": int(p["ef"]), "seed": int(p["seed"]),
            "dim": int(x.shape[1]), "count": int(n),
            "store_desc_sha256": hashlib.sha256(np.ascontiguousarray(store.desc).tobytes()).hexdigest(),
            "build_s": round(time.perf_counter() - t0, 1)}
    return index, meta


def main(argv=None) -> int:
    from ..onboard.keystore import KeypointStore
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="keypoint store (.npz)")
    ap.add_argument("--out", required=True, help="index file to write (hnswlib format)")
    ap.add_argument("--M", type=int, default=DEFAULT_KEYINDEX["M"])
    ap.add_argument("--ef-construction", type=int, default=DEFAULT_KEYINDEX["ef_construction"])
    ap.add_argument("--ef", type=int, default=DEFAULT_KEYINDEX["ef"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    store = KeypointStore.load(a.store)
    index, meta = build_keyindex(store, {"M": a.M, "ef_construction": a.ef_construction, "ef": a.ef},
                                 threads=a.threads)
    index.save_index(a.out)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
