"""Frames as the camera delivers them: decoding and validation, with one-line reasons on failure.

A valid frame is uint8 H x W x 3 (BGR) or H x W (grey); 4-channel images lose alpha, 16-bit images
are scaled to 8 bits, float arrays (API) must be finite and are taken as 0..1 when their maximum is
<= 1, else as 0..255.
"""
from __future__ import annotations

import cv2
import numpy as np

MIN_SIDE_PX = 32


class FrameError(ValueError):
    """A frame that cannot be processed; the message is one line."""


def decode_frame(data: bytes) -> np.ndarray:
    """Encoded PNG/JPEG/... bytes -> uint8 BGR or grey array."""
    if not data:
        raise FrameError("empty file")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise FrameError("truncated JPEG (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-32:]:
        raise FrameError("truncated PNG (no IEND chunk)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameError("not a decodable image")
    return normalise_frame(img)


def read_frame(path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FrameError("file not found") from None
    except IsADirectoryError:
        raise FrameError("is a directory, not an image") from None
    except OSError as exc:
        raise FrameError(f"cannot read file ({exc.strerror})") from None
    return decode_frame(data)


def normalise_frame(img) -> np.ndarray:
    """Any array a caller may pass -> uint8 H x W x 3 BGR or H x W grey; FrameError if impossible."""
    if not isinstance(img, np.ndarray):
        raise FrameError(f"frame must be a numpy array, got {type(img).__name__}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise FrameError(f"frame shape {img.shape} is not H x W, H x W x 3 or H x W x 4")
    if min(img.shape[:2]) < MIN_SIDE_PX:
        raise FrameError(f"frame is {img.shape[1]}x{img.shape[0]} px, smaller than {MIN_SIDE_PX} px")
    if img.dtype == np.uint8:
        pass
    elif img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise FrameError("frame contains NaN or infinite values")
        scale = 255.0 if float(img.max(initial=0.0)) <= 1.0 else 1.0
        img = np.clip(img * scale, 0, 255).astype(np.uint8)
    elif np.issubdtype(img.dtype, np.integer) or img.dtype == np.bool_:
        img = np.clip(img, 0, 255).astype(np.uint8)
    else:
        raise FrameError(f"unsupported frame dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)


def check_size(img: np.ndarray, width: int, height: int) -> None:
    h, w = img.shape[:2]
    if (w, h) != (width, height):
        raise FrameError(f"frame is {w}x{h} px but the camera is {width}x{height}")
