"""An hnswlib index file without its vectors: the key index's graph, stored once.

hnswlib's index file (``HierarchicalNSW::saveIndex``, hnswlib 0.8) is a 96-byte little-endian header, then one
fixed-size block per element — its level-0 links (``offset_data`` bytes), its vector (``dim`` float32 for the
l2 and ip spaces), its label (8 bytes) — then each element's upper-level links. The key index's vectors are
the keypoint store's own descriptors, dequantised (``KeypointStore.decode``): the bundle keeps them once, as
the store's 32 bytes a keypoint, instead of also as the index's 128 (17 MB of the default bundle's 64).
``strip_vectors`` leaves them out of a saved index; ``restore_vectors`` puts them back, by label, before
hnswlib reads the file. What remains (links and labels) is zlib-compressed in the bundle (``pack_graph`` /
``unpack_graph``): neighbours' ids are close and unused link slots zero, so the default bundle's key index
goes from 32.4 MB to 8.1. ``Bundle.load`` streams the restored file into the temporary file hnswlib reads
(``write_restored``), a block of elements at a time. Why by hand: hnswlib reads and writes whole files only.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np

_HEADER = struct.Struct("<QQQQQQiIQQQdQ")   # offset_level0, max_elements, count, size_per_element,
                                            # label_offset, offset_data, max_level, entry point, max_M,
                                            # max_M0, M, mult, ef_construction
HEADER_BYTES = _HEADER.size                 # 96
LABEL_BYTES = 8


class HnswFileError(ValueError):
    """An index file whose layout is not the one described above."""


def _layout(blob: bytes, dim: int, stripped: bool) -> tuple[int, int, int, int]:
    """(count, bytes per element as saved, offset of the vector, bytes per element as given)."""
    if len(blob) < HEADER_BYTES:
        raise HnswFileError("index file shorter than its header")
    off0, _max, n, per, label_off, data_off, *_ = _HEADER.unpack_from(blob, 0)
    vec = 4 * int(dim)
    if off0 != 0 or label_off != data_off + vec or per != label_off + LABEL_BYTES or n < 1:
        raise HnswFileError(f"index layout is not hnswlib's for {dim}-D float vectors")
    given = per - vec if stripped else per
    if len(blob) < HEADER_BYTES + n * given:
        raise HnswFileError("index file shorter than its elements")
    return int(n), int(per), int(data_off), int(given)


def strip_vectors(blob: bytes, dim: int) -> bytes:
    """A saved hnswlib index (``blob``, vectors of ``dim`` float32) without its vectors."""
    n, per, data_off, _ = _layout(blob, dim, stripped=False)
    body = np.frombuffer(blob, np.uint8, count=n * per, offset=HEADER_BYTES).reshape(n, per)
    kept = np.concatenate([body[:, :data_off], body[:, data_off + 4 * dim:]], axis=1)
    return blob[:HEADER_BYTES] + kept.tobytes() + blob[HEADER_BYTES + n * per:]


def write_restored(graph: bytes, vectors_of, dim: int, count: int, out, chunk: int = 16384) -> None:
    """Write to the binary file ``out`` the hnswlib index file ``strip_vectors`` made ``graph`` from, element
    ``i``'s vector being ``vectors_of(labels)[j]`` for ``labels[j]`` = its label (float32 rows of ``dim``;
    ``count`` vectors exist: the rows the index was built on, its labels their row numbers). Written ``chunk``
    elements at a time: neither the file nor all the vectors are ever in memory at once (the load's peak on a
    flight computer: docs/BUNDLE.md). The graph's layout and labels are checked against ``count`` before the
    first byte is written; rows of another shape from ``vectors_of`` stop the writing where they come
    (``HnswFileError``: the caller discards the file)."""
    n, per, data_off, given = _layout(graph, dim, stripped=True)
    kept = np.frombuffer(graph, np.uint8, count=n * given, offset=HEADER_BYTES).reshape(n, given)
    labels = np.ascontiguousarray(kept[:, data_off:data_off + LABEL_BYTES]).view("<u8").ravel()
    if n != count or int(labels.max()) >= count:
        raise HnswFileError(f"index of {n} elements (labels up to {int(labels.max())}) against {count} vectors")
    out.write(graph[:HEADER_BYTES])
    vec = 4 * int(dim)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        body = np.empty((b - a, per), np.uint8)
        body[:, :data_off] = kept[a:b, :data_off]
        rows = np.ascontiguousarray(vectors_of(labels[a:b]), dtype=np.float32)
        if rows.shape != (b - a, dim):
            raise HnswFileError(f"vectors of shape {rows.shape} for {b - a} labels of {dim}-D")
        body[:, data_off:data_off + vec] = rows.view(np.uint8)
        body[:, data_off + vec:] = kept[a:b, data_off:]
        out.write(memoryview(body).cast("B"))
    out.write(memoryview(graph)[HEADER_BYTES + n * given:])


def restore_vectors(graph: bytes, vectors: np.ndarray) -> bytes:
    """The hnswlib index file ``strip_vectors`` made ``graph`` from, with element ``i``'s vector
    ``vectors[label_i]`` (float32, N x dim), in memory (``write_restored`` writes it to a file)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise HnswFileError(f"vectors must be N x dim, got shape {vectors.shape}")
    buf = io.BytesIO()
    write_restored(graph, lambda labels: vectors[labels], vectors.shape[1], len(vectors), buf)
    return buf.getvalue()


def pack_graph(blob: bytes, dim: int) -> bytes:
    """A saved hnswlib index as the bundle keeps it: without its vectors, zlib-compressed."""
    return zlib.compress(strip_vectors(blob, dim), 6)


def decompress_graph(data) -> bytes:
    """``pack_graph``'s ``data`` back to the graph (the index file without its vectors)."""
    try:
        return zlib.decompress(data)
    except zlib.error as exc:
        raise HnswFileError(f"index graph is not zlib data ({exc})") from None


def unpack_graph(data: bytes, vectors: np.ndarray) -> bytes:
    """The hnswlib index file of ``pack_graph``'s ``data``, its vectors put back from ``vectors``."""
    return restore_vectors(decompress_graph(data), vectors)
