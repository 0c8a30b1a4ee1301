"""The ground segment builds the same bundle files from the same inputs: the views' HNSW graph, like the key
index, is the same bytes on every build (one thread; two insert in a racing order and each build differs), and so
is a keypoint store (no build time in it)."""
from __future__ import annotations

import hashlib

import numpy as np

from earthfix.tools.build_index import build_hnsw


def _graph_sha(index, path) -> str:
    index.save_index(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_views_graph_is_the_same_bytes_on_every_build(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3000, 64)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    params = {"space": "ip", "M": 16, "ef_construction": 200, "ef": 64}
    first = _graph_sha(build_hnsw(v, params), tmp_path / "a.bin")
    assert all(_graph_sha(build_hnsw(v, params), tmp_path / f"{i}.bin") == first for i in range(3))
    # and the graph is a working one: every vector finds itself first
    labels, _ = build_hnsw(v, params).knn_query(v[:200], k=1)
    assert (labels[:, 0] == np.arange(200)).mean() > 0.99


def test_a_keypoint_store_is_the_same_bytes_on_every_build(tmp_path):
    from earthfix.sim.basemap import Basemap
    from earthfix.tools.build_keystore import BuildConfig, build_keystore
    cfg = BuildConfig(bbox=(30.0, 40.0, -112.0, -104.0))       # a small store: the US Southwest
    shas = []
    for i in range(2):
        store = build_keystore(Basemap.default(), cfg, progress=False)
        store.save(tmp_path / f"{i}.npz")
        shas.append(hashlib.sha256((tmp_path / f"{i}.npz").read_bytes()).hexdigest())
    assert len(store) > 100 and shas[0] == shas[1]
