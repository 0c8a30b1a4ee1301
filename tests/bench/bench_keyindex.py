"""The vote's key-index search: cost against exactness, per graph and breadth (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_keyindex.py [--frames 40] [--seed 0] [--queries 15000]
        [--graph M:EF_CONSTRUCTION ...] [--ef N ...] [--bundle DIR]

Records the queries the vote really sends (the projected descriptors of the frame keypoints of every look, the
Localizer run on the eval's land sets land256, season256, land512, cloudy and stress_thin at ``--seed``), draws
``--queries`` of them, finds each one's exact nearest store keypoint (numpy, the whole store), then for every
graph (the bundle's own, and each ``--graph``, built here on one thread as ``build_keyindex`` builds it) and
breadth: microseconds per query (batches of 150, as the vote sends them, one thread, best of 5 runs
interleaved over the configurations) and the share of queries whose first neighbour is the exact one.
Timings are of a warm index: in the pipeline, after the frame's other stages, a search costs more.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from earthfix.onboard.localizer import Localizer  # noqa: E402
from earthfix.tools.build_index import ensure_default_bundle  # noqa: E402
from earthfix.tools.build_keyindex import build_keyindex  # noqa: E402
from earthfix.tools.evaluate import SCENARIOS, scenario_frames, scenario_seed  # noqa: E402

SETS = ("land256", "season256", "land512", "cloudy", "stress_thin")
BATCH = 150


class _Recorder:
    """Stands in for the voter's index: passes every search on and keeps its queries."""

    def __init__(self, index):
        self.index, self.queries = index, []

    def knn_query(self, q, k):
        self.queries.append(np.array(q, np.float32))
        return self.index.knn_query(q, k=k)

    def __getattr__(self, name):
        return getattr(self.index, name)


def vote_queries(loc: Localizer, frames: int, seed: int) -> np.ndarray:
    rec = _Recorder(loc.voter.index)
    loc.voter.index = rec
    for k, sdef in enumerate(SCENARIOS):
        if sdef.name in SETS:
            cam, it = scenario_frames(sdef, frames, scenario_seed(seed, k))
            for img, _ in it:
                loc.locate(img, cam)
    loc.voter.index = rec.index
    return np.concatenate(rec.queries)


def exact_first(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    xx = (x * x).sum(1)
    return np.concatenate([np.argmin(xx[None] - 2.0 * q[i:i + 2000] @ x.T, axis=1) for i in range(0, len(q), 2000)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=40, help="frames per set whose vote queries are recorded")
    ap.add_argument("--seed", type=int, default=0, help="base seed (as earthfix eval)")
    ap.add_argument("--queries", type=int, default=15000)
    ap.add_argument("--graph", action="append", default=None, metavar="M:EF_CONSTRUCTION",
                    help="another graph to build and time (repeatable; default 8:100 and 16:200)")
    ap.add_argument("--ef", type=int, action="append", default=None, help="breadths (default 16 20 24 32)")
    ap.add_argument("--bundle", default=None)
    a = ap.parse_args()
    cv2.setNumThreads(1)
    loc = Localizer.load(a.bundle or str(ensure_default_bundle()), None, {"threads": 1})
    q = vote_queries(loc, a.frames, a.seed)
    q = q[np.random.default_rng(0).choice(len(q), min(a.queries, len(q)), replace=False)]
    store = loc.voter.store
    x = np.ascontiguousarray(store.decode(np.arange(len(store))), dtype=np.float32)
    truth = exact_first(x, q)
    m = loc.bundle.manifest.get("keyindex", {})
    graphs = {f"bundle (M {m.get('M')}, ef_construction {m.get('ef_construction')})": loc.voter.index}
    for g in a.graph or ["8:100", "16:200"]:
        M, efc = (int(v) for v in g.split(":"))
        index, _ = build_keyindex(store, {"M": M, "ef_construction": efc}, threads=1)
        index.set_num_threads(1)
        graphs[f"M {M}, ef_construction {efc}"] = index
    confs = [(name, ef) for name in graphs for ef in (a.ef or [16, 20, 24, 32])]
    best = dict.fromkeys(confs, np.inf)
    for _ in range(5):
        for name, ef in confs:
            index = graphs[name]
            index.set_ef(ef)
            t = time.perf_counter()
            for i in range(0, len(q), BATCH):
                index.knn_query(q[i:i + BATCH], k=2)
            best[(name, ef)] = min(best[(name, ef)], time.perf_counter() - t)
    print(f"{len(q)} vote queries of {a.frames} frames per set ({', '.join(SETS)}), seed {a.seed}; "
          f"{len(x)} store keypoints x {x.shape[1]}-D\n")
    print("| graph | ef | µs per query | exact nearest neighbour first |\n| --- | ---: | ---: | ---: |")
    for name, ef in confs:
        index = graphs[name]
        index.set_ef(ef)
        labels, _ = index.knn_query(q, k=1)
        print(f"| {name} | {ef} | {best[(name, ef)] / len(q) * 1e6:.1f} | "
              f"{100.0 * np.mean(labels[:, 0].astype(np.int64) == truth):.1f} % |")


if __name__ == "__main__":
    main()
