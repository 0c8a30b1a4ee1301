"""Build the key index for keypoint voting (``earthfix.onboard.vote``): an hnswlib graph over the keypoint
store's descriptors, as the flight matcher sees them (``KeypointStore.decode``: dequantised PCA
coefficients, float32), label = the keypoint's row in the store. Space ``l2``: the verifier matches with L2
distances on the same vectors, and the projected descriptors are not unit vectors.

Parameters (measured on the global default store, 83,205 keypoints x 32-D, frames 256 px / 80 deg):
M 8 / 12 / 16 -> 17.7 / 20.4 / 23.0 MB. The flight searches at the config's ``vote_ef``; what a search costs
for the exact nearest neighbours it finds decides M (``PYTHONPATH=. python tests/bench/bench_keyindex.py``:
15,000 of the vote's own queries, one thread, warm index; docs/VERIFICATION.md, "A denser key index"):
M 8 / ef_construction 100 at ef 32 (until session 38): 15.7 us a query, the exact nearest neighbour first for
79 %; M 12 / ef_construction 200 at ef 20 (shipped): 14.9 us, 82 % (5-25 % faster over three runs); M 16 at
ef 16: 17.6 us, 84 %. A denser graph reaches the same neighbours with a narrower search, for 2.7 MB more.

    python -m earthfix.tools.build_keyindex --store keystore.npz --out keyindex.hnsw
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np

DEFAULT_KEYINDEX = {"space": "l2", "M": 12, "ef_construction": 200, "ef": 20, "seed": 100}


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
