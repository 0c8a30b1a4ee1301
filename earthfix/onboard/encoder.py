"""The global image encoder at flight time: an ONNX model run by onnxruntime alone.

The session is created from bytes that the caller has already verified against a SHA-256 sum, so the
file on disk cannot change between the check and the load. Rotation: the encoder is trained to be
robust to any yaw; with ``rotations=4`` the descriptor is also averaged over the four 90-degree turns of
the input (then exactly invariant to them), at 4x the encoder cost.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .preprocess import INPUT_PX, preprocess, rotations


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Encoder:
    def __init__(self, model_bytes: bytes, threads: int = 1, providers=None, rotations: int = 4,
                 input_px: int = INPUT_PX, name: str = ""):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(model_bytes, sess_options=opts, providers=wanted)
        self.input_name = self.session.get_inputs()[0].name
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.rotations = int(rotations)
        self.input_px = int(input_px)
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

    def encode(self, frame: np.ndarray) -> np.ndarray:
        return self.encode_input(preprocess(frame, self.input_px))

    def encode_batch(self, inputs: np.ndarray) -> np.ndarray:
        """N x 3 x S x S preprocessed inputs -> N x dim descriptors (rotation-averaged)."""
        n = inputs.shape[0]
        if self.rotations > 1:
            step = 4 // self.rotations
            xs = np.concatenate([np.rot90(inputs, r * step, axes=(2, 3)) for r in range(self.rotations)], 0)
        else:
            xs = inputs
        z = self.session.run(None, {self.input_name: np.ascontiguousarray(xs, dtype=np.float32)})[0]
        z = z.reshape(self.rotations, n, -1).mean(axis=0)
        return (z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)).astype(np.float32)
