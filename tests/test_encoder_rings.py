"""Ring pooling of the encoder (``earthfix train --pool rings``): GeM over three rings about the boresight.

The ring layout is numpy and always tested; the network parts need the ``train`` extra (torch)."""
import numpy as np
import pytest

from earthfix.tools.train_encoder import RING_EDGES, ring_weights


def test_rings_are_concentric_and_each_a_mean():
    w = ring_weights(6)                              # a 96 px input's 6 x 6 feature map
    assert w.shape == (36, len(RING_EDGES))
    np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-6)
    assert ((w > 0).sum(1) <= 1).all()               # a cell belongs to one ring at most
    assert list((w > 0).sum(0)) == [4, 12, 16]       # the centre 2 x 2, the 4 x 4 around it, the rest
    ring = ((w > 0) * np.arange(1, 4)).sum(1).reshape(6, 6)
    assert ring[0, 0] == ring[0, -1] == ring[-1, 0] == ring[-1, -1] == 0   # corners: no turn keeps them
    for k in (1, 2, 3):                              # a quarter turn maps every ring onto itself
        assert (np.rot90(ring == k) == (ring == k)).all()


def test_too_small_a_map_is_refused():
    with pytest.raises(ValueError, match="empty"):
        ring_weights(1)


def test_ring_model_is_recorded_and_rebuilt_for_export(tmp_path):
    torch = pytest.importorskip("torch")
    from earthfix.tools.export_encoder import export_fp32
    from earthfix.tools.train_encoder import build_model, train
    with pytest.raises(ValueError, match="pool"):
        build_model(128, "max")
    ckpt = train(tmp_path, minutes=0, steps=2, seed=0, lr=1e-3, dim=128, threads=1, workers=0, pool="rings",
                 log=lambda s: None)
    assert torch.load(ckpt, weights_only=True)["pool"] == "rings"
    import onnxruntime as ort
    assert export_fp32(ckpt, tmp_path / "e.onnx") == 96
    sess = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    z = sess.run(None, {"image": np.random.default_rng(0).standard_normal((2, 3, 96, 96), np.float32)})[0]
    assert z.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-4)
