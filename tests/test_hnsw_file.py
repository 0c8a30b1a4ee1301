"""The key index kept without its vectors (onboard/hnsw_file.py): the file hnswlib reads is the one it wrote."""
import io

import hnswlib
import numpy as np
import pytest

from earthfix.onboard.hnsw_file import (HEADER_BYTES, HnswFileError, pack_graph, restore_vectors, strip_vectors,
                                        unpack_graph, write_restored)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    index = hnswlib.Index(space="l2", dim=8)
    index.init_index(max_elements=600, M=6, ef_construction=40, random_seed=3)
    order = rng.permutation(600)                          # labels in another order than the elements'
    index.add_items(x[order], order, num_threads=1)
    path = tmp_path_factory.mktemp("hnsw") / "index.hnsw"
    index.save_index(str(path))
    return x, path.read_bytes(), path


def test_the_graph_with_its_vectors_put_back_is_the_saved_file_byte_for_byte(saved):
    x, blob, _ = saved
    graph = strip_vectors(blob, 8)
    assert len(graph) == len(blob) - 600 * 8 * 4
    assert restore_vectors(graph, x) == blob
    assert unpack_graph(pack_graph(blob, 8), x) == blob


def test_the_file_written_a_block_at_a_time_is_the_saved_file(saved):
    x, blob, _ = saved
    asked = []

    def vectors_of(labels):
        asked.append(len(labels))
        return x[labels]
    out = io.BytesIO()
    write_restored(strip_vectors(blob, 8), vectors_of, 8, 600, out, chunk=7)   # 600 = 85 x 7 + 5
    assert out.getvalue() == blob
    assert max(asked) == 7 and sum(asked) == 600                  # never more than a block of vectors at once


def test_nothing_is_written_for_a_graph_that_does_not_fit(saved):
    x, blob, _ = saved
    out = io.BytesIO()
    with pytest.raises(HnswFileError):
        write_restored(strip_vectors(blob, 8), lambda labels: x[labels], 8, 599, out)
    assert out.getvalue() == b""
    with pytest.raises(HnswFileError):                            # rows of another width from the store
        write_restored(strip_vectors(blob, 8), lambda labels: x[labels, :4], 8, 600, io.BytesIO())


def test_a_restored_index_answers_as_the_original(saved, tmp_path):
    x, blob, path = saved
    out = tmp_path / "restored.hnsw"
    out.write_bytes(unpack_graph(pack_graph(blob, 8), x))
    a, b = hnswlib.Index(space="l2", dim=8), hnswlib.Index(space="l2", dim=8)
    a.load_index(str(path))
    b.load_index(str(out))
    q = np.random.default_rng(9).normal(size=(50, 8)).astype(np.float32)
    assert np.array_equal(a.knn_query(q, k=5)[0], b.knn_query(q, k=5)[0])


def test_a_graph_is_refused_against_other_vectors_or_another_layout(saved):
    x, blob, _ = saved
    graph = strip_vectors(blob, 8)
    with pytest.raises(HnswFileError):
        restore_vectors(graph, x[:599])                   # fewer vectors than elements
    with pytest.raises(HnswFileError):
        restore_vectors(graph, np.zeros((600, 16), np.float32))   # another dimension
    with pytest.raises(HnswFileError):
        strip_vectors(blob[:HEADER_BYTES - 1], 8)
    with pytest.raises(HnswFileError):
        restore_vectors(graph[:len(graph) // 2], x)       # cut short
    with pytest.raises(HnswFileError):
        unpack_graph(b"not zlib", x)
