"""HNSW measurements: the recall-speed sweep that chose M/ef_construction/ef, and the synthetic
scale test (1M views) for docs/BUNDLE.md.

    earthfix index-bench --bundle DIR --out docs/index_sweep.json          # sweep on the real descriptors
    earthfix index-bench --synthetic 1000000 --dim 64 --out docs/index_1m.json

Recall here is HNSW recall@10 against exact inner-product search on the same descriptors (queries =
held-out perturbed copies of indexed vectors, so the true neighbours are meaningful). Query time is at one
thread, one query at a time, as onboard.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def exact_topk(base: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), 256):
        sim = q[s:s + 256] @ base.T
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.take_along_axis(sim, part, 1).argsort(axis=1)[:, ::-1]
        out[s:s + 256] = np.take_along_axis(part, order, 1)
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def queries_from(base: np.ndarray, n: int, noise: float, rng) -> np.ndarray:
    q = base[rng.choice(len(base), n, replace=False)] + rng.normal(0, noise, (n, base.shape[1])).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def time_queries(index, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index.set_num_threads(1)
    labels = np.empty((len(q), k), np.int64)
    t = np.empty(len(q))
    for i in range(len(q)):
        t0 = time.perf_counter()
        lab, _ = index.knn_query(q[i:i + 1], k=k)
        t[i] = (time.perf_counter() - t0) * 1e3
        labels[i] = lab[0]
    return labels, t


def sweep(base: np.ndarray, n_queries=500, k=10, seed=0, grid=((8, 100), (16, 100), (16, 200), (24, 200), (32, 200)),
          efs=(16, 32, 64, 96, 128, 256), log=print) -> list[dict]:
    import hnswlib
    rng = np.random.default_rng(seed)
    q = queries_from(base, n_queries, 0.35 / np.sqrt(base.shape[1]), rng)
    truth = exact_topk(base, q, k)
    rows = []
    for m, efc in grid:
        idx = hnswlib.Index(space="ip", dim=base.shape[1])
        idx.init_index(max_elements=len(base), M=m, ef_construction=efc, random_seed=100)
        idx.set_num_threads(2)
        t0 = time.perf_counter()
        idx.add_items(base, np.arange(len(base)))
        build_s = time.perf_counter() - t0
        for ef in efs:
            if ef < k:
                continue
            idx.set_ef(ef)
            labels, t = time_queries(idx, q, k)
            row = {"M": m, "ef_construction": efc, "ef": ef, "recall10": round(recall_at_k(labels, truth), 4),
                   "query_ms_p50": round(float(np.median(t)), 4), "query_ms_p99": round(float(np.percentile(t, 99)), 4),
                   "build_s": round(build_s, 2)}
            rows.append(row)
            log(json.dumps(row))
    return rows


def synthetic(n: int, dim: int, seed=0, m=16, efc=100, ef=64, k=10, n_queries=300, log=print) -> dict:
    """Clustered synthetic descriptors (like places: many near-duplicates), build + query figures."""
    import hnswlib
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 50, 10), dim)).astype(np.float32)
    base = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    idx = hnswlib.Index(space="ip", dim=dim)
    idx.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=100)
    idx.set_num_threads(2)
    t0 = time.perf_counter()
    for s in range(0, n, 100000):
        idx.add_items(base[s:s + 100000], np.arange(s, min(s + 100000, n)))
        log(f"synthetic: {min(s + 100000, n)}/{n} added, {time.perf_counter() - t0:.0f} s")
    build_s = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = Path("/tmp/earthfix_synth.hnsw")
    idx.save_index(str(path))
    file_bytes = path.stat().st_size
    path.unlink()
    q = queries_from(base, n_queries, 0.35 / np.sqrt(dim), rng)
    truth = exact_topk(base, q, k)
    idx.set_ef(ef)
    labels, t = time_queries(idx, q, k)
    return {"views": n, "dim": dim, "M": m, "ef_construction": efc, "ef": ef, "build_s_2threads": round(build_s, 1),
            "index_file_bytes": file_bytes, "bytes_per_view": round(file_bytes / n, 1),
            "rss_growth_mb": round((rss1 - rss0) / 1024, 1), "recall10_vs_exact": round(recall_at_k(labels, truth), 4),
            "query_ms_p50": round(float(np.median(t)), 4), "query_ms_p99": round(float(np.percentile(t, 99)), 4)}


def register(sub):
    p = sub.add_parser("index-bench", help="HNSW recall-speed sweep and synthetic scale test",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None, help="sweep on this bundle's descriptors")
    p.add_argument("--synthetic", type=int, default=0, help="number of synthetic views (scale test)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--out", default=None, help="JSON output")
    p.set_defaults(func=run)


def run(args) -> int:
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.synthetic:
        res = synthetic(args.synthetic, args.dim, log=log)
    else:
        from ..onboard.bundle import Bundle
        from .build_index import ensure_default_bundle
        b = Bundle.load(args.bundle or ensure_default_bundle(), load_keystore=False, load_descriptors=True)
        base = b.descriptors.astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        res = {"bundle": str(b.path), "views": int(len(base)), "dim": int(base.shape[1]), "rows": sweep(base, log=log)}
    text = json.dumps(res, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0
