"""The encoder's own preprocessing, shared by training, bundle building and flight.

frame (H x W x 3 BGR or H x W grey, uint8) -> float32 1 x 3 x S x S, S = ``INPUT_PX``:
resize with area averaging (the camera may be finer than the map), then per-channel standardisation
over the Earth pixels (mean 0, std 1), which removes exposure, gain and white-balance differences.
Black pixels (space beyond the limb) stay at 0 after standardisation.
"""
from __future__ import annotations

import cv2
import numpy as np

INPUT_PX = 96


def to_bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def standardise(small_bgr: np.ndarray) -> np.ndarray:
    """uint8 S x S x 3 -> float32 3 x S x S, per-channel standardised over non-black pixels."""
    x = small_bgr.astype(np.float32)
    valid = (x.max(axis=2) > 3.0)
    n = int(valid.sum())
    if n < 16:
        return np.zeros((3,) + x.shape[:2], np.float32)
    v = x[valid]
    mean = v.mean(axis=0)
    std = v.std(axis=0) + 8.0   # floor: a flat image stays flat instead of amplifying noise
    y = (x - mean) / std
    y[~valid] = 0.0
    return np.ascontiguousarray(y.transpose(2, 0, 1))


def preprocess(frame: np.ndarray, size: int = INPUT_PX) -> np.ndarray:
    """Frame -> 1 x 3 x size x size float32 encoder input."""
    bgr = to_bgr(frame)
    small = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    return standardise(small)[None]


def rotations(x: np.ndarray, k: int) -> np.ndarray:
    """Stack the input rotated by 0, 90, ... degrees (k = 1, 2 or 4) along the batch axis."""
    if k <= 1:
        return x
    step = 4 // k
    return np.concatenate([np.rot90(x, r * step, axes=(2, 3)) for r in range(k)], axis=0).copy()
