"""The global image encoder at flight time: an ONNX model run by onnxruntime alone.

The session is created from bytes that the caller has already verified against a SHA-256 sum, so the
file on disk cannot change between the check and the load.

Rotation, two ways, recorded per model in its card (``encoder.json`` beside it, ``rotation_handling``):
- an encoder trained for any yaw (``reference_turns`` 1): with ``rotations=4`` the query descriptor is
  averaged over the four 90-degree turns of the input (then exactly invariant to them), at 4x the cost;
- an encoder trained for +-45 deg of yaw (``reference_turns`` 4): the bundle stores every reference view
  turned by 0/90/180/270 deg, one of which is within 45 deg of any frame, and the query is encoded once
  (``rotations=1``). More discriminative (no invariance to learn) and 4x cheaper per frame; 4x the index.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .preprocess import INPUT_PX, preprocess, rotations


LEGACY_CARD = {"rotations": 4, "reference_turns": 1}   # encoders exported before the card said otherwise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rotation_handling(encoder_path) -> dict:
    """{'rotations': query turns averaged, 'reference_turns': turns stored per reference view} from the
    ``encoder.json`` card beside ``encoder_path`` (when it lists that file), else ``LEGACY_CARD``."""
    import json
    card = Path(encoder_path).with_name("encoder.json")
    try:
        meta = json.loads(card.read_text())
        if Path(encoder_path).name not in meta.get("files", {}):
            return dict(LEGACY_CARD)
        out = {"rotations": int(meta.get("rotations", 4)), "reference_turns": int(meta.get("reference_turns", 1))}
    except (OSError, ValueError, TypeError, AttributeError):
        return dict(LEGACY_CARD)
    if out["rotations"] not in (1, 2, 4) or out["reference_turns"] not in (1, 2, 4):
        raise ValueError(f"{card}: rotations and reference_turns must be 1, 2 or 4")
    return out


def session_providers(providers=None) -> list[str]:
    """The config's execution providers that this onnxruntime has (CUDA / TensorRT where present, as on a
    Jetson), in the config's order; the CPU provider when none of them is available."""
    available = ort.get_available_providers()
    return [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]


class Encoder:
    def __init__(self, model_bytes: bytes, threads: int = 1, providers=None, rotations: int = 4,
                 input_px: int | None = None, name: str = ""):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_bytes, sess_options=opts, providers=session_providers(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.rotations = int(rotations)
        # the input side the model was exported with (its ONNX input shape), else the default
        side = self.session.get_inputs()[0].shape[-1]
        if isinstance(side, int) and input_px and int(input_px) != side:
            raise ValueError(f"encoder {name or '(bytes)'} takes {side} px inputs, not {input_px}")
        self.input_px = int(input_px or (side if isinstance(side, int) else INPUT_PX))
        self.sha256 = sha256_bytes(model_bytes)
        self.name = name

    @classmethod
    def from_file(cls, path, **kw) -> "Encoder":
        data = Path(path).read_bytes()
        return cls(data, name=str(path), **kw)

    def encode_input(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed input 1x3xSxS -> L2-normalised descriptor (dim,)."""
        xb = rotations(x, self.rotations).astype(np.float32)
        z = self.session.run(None, {self.input_name: xb})[0]
        d = z.mean(axis=0)
        return (d / (np.linalg.norm(d) + 1e-12)).astype(np.float32)

    def encode_views(self, inputs: np.ndarray) -> np.ndarray:
        """N x 3 x S x S preprocessed views of one frame -> one L2-normalised descriptor (dim,): the mean of
        the views' descriptors (each rotation-averaged), in one onnxruntime call. One view is ``encode_input``."""
        if inputs.shape[0] == 1:
            return self.encode_input(inputs)
        d = self.encode_batch(inputs).mean(axis=0)
        return (d / (np.linalg.norm(d) + 1e-12)).astype(np.float32)

    def encode(self, frame: np.ndarray) -> np.ndarray:
        return self.encode_input(preprocess(frame, self.input_px))

    def encode_batch(self, inputs: np.ndarray) -> np.ndarray:
        """N x 3 x S x S preprocessed inputs -> N x dim descriptors (rotation-averaged)."""
        n = inputs.shape[0]
        xs = rotations(inputs, self.rotations)
        z = self.session.run(None, {self.input_name: np.ascontiguousarray(xs, dtype=np.float32)})[0]
        z = z.reshape(self.rotations, n, -1).mean(axis=0)
        return (z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)).astype(np.float32)
