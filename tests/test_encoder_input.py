"""The encoder's input side comes from the model (its ONNX input shape), so an encoder exported at another
side than the default 96 px is fed, and its bundle rendered, at that side (onboard/encoder.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from earthfix.onboard.encoder import Encoder
from earthfix.onboard.preprocess import INPUT_PX


def _pooling_model(side) -> bytes:
    """A stand-in encoder: global max pool of the 3 channels -> a 3-D descriptor; input N x 3 x side x side
    (``side`` None: a free spatial size)."""
    dims = ["batch", 3, side, side] if side else ["batch", 3, "h", "w"]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["batch", 3])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 3])
    graph = helper.make_graph([helper.make_node("GlobalMaxPool", ["image"], ["pooled"]),
                               helper.make_node("Reshape", ["pooled", "shape"], ["descriptor"])],
                              "pool", [x], [y], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("side", [96, 128, 160])
def test_the_encoder_reads_its_input_side_from_the_model(side):
    enc = Encoder(_pooling_model(side), rotations=1)
    assert enc.input_px == side
    frame = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    d = enc.encode(frame)                    # a wrong side would be refused by onnxruntime
    assert d.shape == (3,) and abs(float(np.linalg.norm(d)) - 1.0) < 1e-5
    with pytest.raises(ValueError, match=f"takes {side} px"):     # told another side: refused at load
        Encoder(_pooling_model(side), rotations=1, input_px=side + 32)


def test_a_free_input_side_falls_back_to_the_default_unless_told():
    assert Encoder(_pooling_model(None), rotations=1).input_px == INPUT_PX
    assert Encoder(_pooling_model(None), rotations=1, input_px=112).input_px == 112


def test_a_model_trained_at_another_side_is_exported_at_it(tmp_path):
    """``earthfix train --input-px 112`` then ``earthfix export``: the ONNX input, the card and the flight
    encoder all say 112 px (needs the ``train`` extra: skipped without torch, as in CI)."""
    pytest.importorskip("torch")
    import json
    from earthfix.tools.export_encoder import export
    from earthfix.tools.train_encoder import train
    ckpt = train(tmp_path / "run", minutes=0, steps=1, seed=0, lr=1e-3, dim=32, threads=1, workers=0,
                 input_px=112, log=lambda s: None)
    meta = export(ckpt, tmp_path / "models", n_calib=4)
    assert meta["input_px"] == 112 and json.loads((tmp_path / "models" / "encoder.json").read_text())["input_px"] == 112
    for name in ("encoder_fp32.onnx", "encoder_int8.onnx"):
        enc = Encoder.from_file(tmp_path / "models" / name, rotations=1)
        assert enc.input_px == 112 and enc.dim == 32
    with pytest.raises(ValueError, match="112 px"):     # resuming at another side is refused
        train(tmp_path / "run", minutes=0, steps=2, seed=0, lr=1e-3, dim=32, threads=1, workers=0,
              resume=True, log=lambda s: None)
