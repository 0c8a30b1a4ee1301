"""The shipped INT8 encoder describes as its FP32 model does on the CPU at hand.

x86 CPUs without VNNI (AVX2, AVX-512 before VNNI) sum UINT8 x INT8 products in pairs into 16 bits, which
saturates with full-range 8-bit weights: on such a CPU the 8-bit encoder shipped until session 82 gave a few
descriptors far from FP32's (cosine down to 0.35 on these queries). Its weights are now quantized in 7 bits
(``export_encoder.quantize_int8``'s ``reduce_range``), which no CPU saturates (models/README.md, "7-bit weights").
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from earthfix.onboard.localizer import shipped_models_dir


def _descriptors(path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    d = s.run(None, {s.get_inputs()[0].name: x})[0]
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_the_shipped_int8_encoder_describes_like_its_fp32_model_on_this_cpu():
    from earthfix.tools.export_encoder import calibration_inputs
    models = shipped_models_dir()
    if not (models / "encoder_fp32.onnx").is_file():
        pytest.skip("no shipped encoder_fp32.onnx")
    x = calibration_inputs(64, seed=4321)          # held out: the shipped calibration used seed 1234
    cos = (_descriptors(models / "encoder_fp32.onnx", x) * _descriptors(models / "encoder_int8.onnx", x)).sum(1)
    assert np.median(cos) > 0.995, np.median(cos)   # 8-bit weights on an AVX2 EPYC: 0.974
    assert cos.min() > 0.95, cos.min()              # ...and 0.35 at the worst


def test_requantize_writes_an_int8_encoder_from_the_fp32_one_and_its_sums(tmp_path):
    """``earthfix export --requantize``: the FP32 model of a models folder quantized again without a checkpoint
    (QDQ, the FP32 input side), ``encoder.json``'s sums those of the files written; refused without the files."""
    import hashlib
    import json
    import shutil

    import onnx

    from earthfix.onboard.encoder import Encoder
    from earthfix.tools.export_encoder import requantize
    models = shipped_models_dir()
    if not (models / "encoder_fp32.onnx").is_file():
        pytest.skip("no shipped encoder_fp32.onnx")
    for name in ("encoder_fp32.onnx", "encoder.json"):
        shutil.copy(models / name, tmp_path / name)
    meta = requantize(tmp_path, n_calib=8)
    int8 = tmp_path / "encoder_int8.onnx"
    assert {n.op_type for n in onnx.load(str(int8)).graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    assert meta["files"]["encoder_int8.onnx"]["sha256"] == hashlib.sha256(int8.read_bytes()).hexdigest()
    assert json.loads((tmp_path / "encoder.json").read_text()) == meta
    assert meta["input_px"] == Encoder.from_file(int8, rotations=1).input_px == 96
    with pytest.raises(FileNotFoundError):
        requantize(tmp_path / "nowhere")
