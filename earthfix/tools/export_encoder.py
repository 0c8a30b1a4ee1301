"""Export the trained encoder to ONNX (FP32), then quantize it to static INT8 (QDQ) with onnxruntime.

Calibration uses simulated query frames (the same renderer and augmentation as training, another seed),
so activation ranges match what the camera delivers. Writes into ``--models``:
``encoder_fp32.onnx``, ``encoder_int8.onnx`` and ``encoder.json`` (input size, descriptor size,
preprocessing, SHA-256 of both files).

Run:  earthfix export --checkpoint runs/encoder/encoder.pt --models models
      earthfix export --requantize --models models      (the shipped FP32 model again to INT8, no torch)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..onboard.encoder import sha256_bytes
from ..onboard.preprocess import INPUT_PX


def export_fp32(checkpoint: Path, out: Path) -> int:
    """The checkpoint as ONNX FP32 with a fixed input side (the one it trained at); returns that side."""
    import torch
    from .train_encoder import build_model, checkpoint_input_px
    state = torch.load(checkpoint, weights_only=True)
    side = checkpoint_input_px(state)
    model = build_model(int(state.get("dim", 128)), str(state.get("pool", "gem")), side)
    model.load_state_dict(state["model"])
    model.eval()
    x = torch.zeros(1, 3, side, side)
    torch.onnx.export(model, (x,), str(out), input_names=["image"], output_names=["descriptor"],
                      dynamic_axes={"image": {0: "batch"}, "descriptor": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    return side


def calibration_inputs(n: int, seed: int = 1234, input_px: int = INPUT_PX) -> np.ndarray:
    """Preprocessed simulated queries for INT8 calibration (augmented, rotated, all scales)."""
    from ..onboard.preprocess import preprocess
    from ..sim.basemap import Basemap
    from . import train_encoder as te
    rng = np.random.default_rng(seed)
    basemap = Basemap.default()
    xs = []
    while len(xs) < n:
        p = te.random_land_point(rng)
        view, blat, _, _ = te.render_query(basemap, rng, *p, px=te.query_render_px(input_px))
        if not np.isfinite(blat):
            continue
        q = te.augment(view.image, view.land, rng) if len(xs) % 2 == 0 else view.image
        xs.append(preprocess(q, input_px)[0])
    return np.stack(xs).astype(np.float32)


def quantize_int8(fp32: Path, out: Path, calib: np.ndarray, input_name: str = "image", batch: int = 1) -> None:
    """Static INT8 (QDQ) of ``fp32`` into ``out``: per-channel INT8 weights in 7 bits (``reduce_range``), UINT8
    activations, ranges from the 99.99th percentile over ``calib`` (fed ``batch`` rows at a time to the input
    ``input_name``; the rows past the last whole batch are left out: onnxruntime's histogram calibration needs
    equal batches).

    Why 7-bit weights: x86 CPUs without VNNI (AVX2, and AVX-512 before VNNI) multiply UINT8 activations by
    INT8 weights in pairs summed into 16 bits, which saturates with full-range weights; onnxruntime's
    quantization guide names ``reduce_range`` as the remedy. Measured on an AVX2 EPYC (session 82, scratch
    over 300 held-out queries): the 8-bit encoder's descriptor against FP32's had cosine median 0.978 and 5th
    percentile 0.50 (there the release eval's INT8 R@10 fell 6.9 points under FP32's), the 7-bit one 0.9986
    and 0.995, at the same speed (models/README.md, "7-bit weights")."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calib) > batch:
        calib = calib[: len(calib) - len(calib) % batch]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{input_name: calib[i:i + batch]} for i in range(0, len(calib), batch)])

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(pre))
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": 99.99})
    finally:
        pre.unlink(missing_ok=True)


def file_sums(*paths: Path) -> dict:
    """``encoder.json``'s record of the model files: {name: {"sha256", "bytes"}}."""
    return {f.name: {"sha256": sha256_bytes(f.read_bytes()), "bytes": f.stat().st_size} for f in paths}


def export(checkpoint: Path, models: Path, n_calib: int = 256, reference_turns: int | None = None) -> dict:
    """FP32 + INT8 ONNX and the card ``encoder.json``. ``reference_turns`` (1 or 4; default from the
    run's ``train_log.json``: 4 when it trained with ``--max-yaw-deg`` <= 45, else 1) says how the model
    handles rotation (``onboard/encoder.py``)."""
    if reference_turns is None:
        log_p = Path(checkpoint).with_name("train_log.json")
        max_yaw = json.loads(log_p.read_text()).get("max_yaw_deg", 180.0) if log_p.is_file() else 180.0
        reference_turns = 4 if max_yaw <= 45.0 else 1
    models.mkdir(parents=True, exist_ok=True)
    fp32 = models / "encoder_fp32.onnx"
    int8 = models / "encoder_int8.onnx"
    side = export_fp32(checkpoint, fp32)
    quantize_int8(fp32, int8, calibration_inputs(n_calib, input_px=side))
    import onnxruntime as ort
    dim = int(ort.InferenceSession(str(fp32)).get_outputs()[0].shape[-1])
    meta = {"input_px": side, "descriptor_dim": dim, "channels": "BGR",
            "preprocessing": "earthfix.onboard.preprocess.preprocess: INTER_AREA resize, per-channel standardisation",
            "rotation_handling": ("query averaged over 4 turns" if reference_turns == 1 else
                                  f"references stored at {reference_turns} turns, query encoded once"),
            "rotations": 4 if reference_turns == 1 else 1, "reference_turns": int(reference_turns),
            "files": file_sums(fp32, int8)}
    (models / "encoder.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def requantize(models: Path, n_calib: int = 256) -> dict:
    """A shipped FP32 encoder (``models/encoder_fp32.onnx``, no checkpoint or torch needed) quantized again into
    ``encoder_int8.onnx``, at the input side its ONNX input fixes; ``encoder.json``'s file sums follow."""
    import onnxruntime as ort
    fp32, int8, card = models / "encoder_fp32.onnx", models / "encoder_int8.onnx", models / "encoder.json"
    if not fp32.is_file() or not card.is_file():
        raise FileNotFoundError(f"{models}: no encoder_fp32.onnx and encoder.json to quantize again")
    side = int(ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[-1])
    quantize_int8(fp32, int8, calibration_inputs(n_calib, input_px=side))
    meta = json.loads(card.read_text())
    meta["files"] = file_sums(fp32, int8)
    card.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def register(sub):
    p = sub.add_parser("export", help="export the encoder to ONNX FP32 and static INT8",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/encoder/encoder.pt")
    p.add_argument("--models", default="models")
    p.add_argument("--calib", type=int, default=256, help="calibration frames")
    p.add_argument("--reference-turns", type=int, choices=[1, 4], default=None,
                   help="rotation handling recorded in encoder.json (default: from the run's train_log.json)")
    p.add_argument("--requantize", action="store_true",
                   help="no checkpoint: quantize --models' encoder_fp32.onnx again into encoder_int8.onnx")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.requantize:
        try:
            meta = requantize(Path(args.models), args.calib)
        except FileNotFoundError as exc:
            print(f"earthfix export: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(meta, indent=2))
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print("earthfix export: torch is not installed; pip install 'earthfix[train]'", file=sys.stderr)
        return 2
    meta = export(Path(args.checkpoint), Path(args.models), args.calib, args.reference_turns)
    print(json.dumps(meta, indent=2))
    return 0
