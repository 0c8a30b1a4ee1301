"""Frames as the camera delivers them: decoding and validation, with one-line reasons on failure.

A valid frame is uint8 H x W x 3 (BGR) or H x W (grey); 4-channel images lose alpha, 16-bit images
keep the top 8 of the bits they use (a 12-bit frame in a 16-bit container is shifted by 4, a full-range one
by 8), float arrays (API) must be finite and are taken as 0..1 when their maximum is
<= 1, else as 0..255.

Encoded frames: empty, truncated (PNG without IEND, JPEG without EOI), oversized (header sides above
``MAX_SIDE_PX``, checked before decoding) and undecodable data are refused, and so are JPEGs whose decoder
reports corrupt data (see ``_imdecode_listening``). PNG carries CRCs, so libpng refuses damaged data itself.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading

import cv2
import numpy as np

MIN_SIDE_PX = 32
MAX_SIDE_PX = 16384          # the largest camera side (camera.py); larger headers are refused before decoding
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), which carry the image size
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class FrameError(ValueError):
    """A frame that cannot be processed; the message is one line."""


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or a JPEG start-of-frame header, without decoding; None when the
    format is another one or the header cannot be found (the decoder then decides)."""
    if data[:8] == _PNG_MAGIC and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i, n = 2, len(data)
        while i + 4 <= n:
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:                       # fill byte
                i += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:   # markers without a length
                i += 2
                continue
            if marker == 0xDA:                       # start of scan before any frame header
                return None
            if marker in _JPEG_SOF:
                if i + 9 > n:
                    return None
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def png_chunk_overrun(data: bytes) -> str | None:
    """Why a PNG's chunk lengths cannot be right (one line), or None. OpenCV's PNG reader allocates a chunk's
    declared length before reading it: a 12 kB file whose IDAT claims 3.7 GB took 10 s and gigabytes of
    memory to refuse (earthfix soak, 2026-12-01). Walking the chunk headers costs microseconds."""
    i, n = 8, len(data)
    while i + 8 <= n:
        length = int.from_bytes(data[i:i + 4], "big")
        kind = data[i + 4:i + 8]
        if length > n - i - 12:
            name = kind.decode("ascii", "replace") if kind.isalpha() else "a"
            return f"damaged PNG: {name} chunk claims {length} bytes, the file has {max(n - i - 12, 0)} left"
        if kind == b"IEND":
            return None
        i += 12 + length
    return None


def decode_frame(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """Encoded PNG/JPEG/... bytes -> uint8 BGR or grey array.

    The PNG/JPEG header is checked before decoding, so that a small file cannot make the decoder allocate
    a huge image: sides above ``MAX_SIDE_PX`` are refused, and so is any other size than ``size``
    = (width, height) when given (the camera's).
    """
    if not data:
        raise FrameError("empty file")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise FrameError("truncated JPEG (no end-of-image marker)")
    if data[:8] == _PNG_MAGIC and b"IEND" not in data[-32:]:
        end = data.rfind(b"IEND")
        if end < 0:
            raise FrameError("truncated PNG (no IEND chunk)")
        raise FrameError(f"PNG has {len(data) - end - 8} bytes after its IEND chunk (damaged or concatenated)")
    if data[:8] == _PNG_MAGIC:
        bad = png_chunk_overrun(data)
        if bad is not None:
            raise FrameError(bad)
    hs = header_size(data)
    if hs is not None:
        w, h = hs
        if max(w, h) > MAX_SIDE_PX:
            raise FrameError(f"image header says {w}x{h} px, larger than {MAX_SIDE_PX} px: not decoded")
        if size is not None and (w, h) != tuple(size) and min(w, h) >= MIN_SIDE_PX:
            raise FrameError(f"frame is {w}x{h} px but the camera is {size[0]}x{size[1]}")
    try:
        img, text = _imdecode_listening(data)
    except (cv2.error, MemoryError) as exc:
        img, text = None, str(exc)
    if img is None:
        first = next((_short(ln) for ln in text.splitlines() if ln.strip()), "")
        raise FrameError("not a decodable image" + (f" (decoder: {first})" if first else ""))
    if data[:2] == b"\xff\xd8":
        complaint = next((ln for ln in text.splitlines() if any(w in ln.lower() for w in _JPEG_CORRUPT)), "")
        if complaint:
            raise FrameError(f"corrupt JPEG data (decoder: {_short(complaint)})")
    if text.strip():                                 # benign decoder notes of a good image: pass them on
        try:
            os.write(2, text.encode("utf-8", "replace"))
        except OSError:
            pass
    return normalise_frame(img)


# JPEG has no checksum: a damaged entropy-coded segment still decodes, with blocks shifted or smeared, and
# such a frame can verify at the wrong place (measured with earthfix soak: fixes 60-500 km off at
# confidence 0.99). libjpeg notices this damage but only says so on the process's stderr (fd 2); decoding
# listens there, refuses JPEGs it complains about, and gives the decoder's words as the reason of frames
# that do not decode at all (instead of letting them clutter stderr).
_JPEG_CORRUPT = ("corrupt", "premature", "invalid", "bogus", "huffman", "inconsistent", "overflow", "unexpected")
_capture_lock = threading.Lock()
_capture_file = None
_capture_pid = None            # a forked child must not share the parent's capture file (one file offset)


def _short(line: str, n: int = 120) -> str:
    line = " ".join(re.sub(r"^\[\s*\w+:\d+@[\d.]+\]\s*(global\s+)?", "", line.strip()).split())
    return line if len(line) <= n else line[: n - 3] + "..."


def _imdecode_listening(data: bytes):
    """cv2.imdecode with file descriptor 2 redirected: (image or None, what the decoders wrote there).
    Serialised by a lock (fd 2 is process-wide); without an fd 2 it decodes without listening."""
    global _capture_file, _capture_pid
    buf = np.frombuffer(data, np.uint8)
    with _capture_lock:
        try:
            if _capture_file is None or _capture_pid != os.getpid():
                _capture_file = tempfile.TemporaryFile()
                _capture_pid = os.getpid()
            _capture_file.seek(0)
            _capture_file.truncate()
            saved = os.dup(2)
        except OSError:
            return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), ""
        try:
            os.dup2(_capture_file.fileno(), 2)
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        _capture_file.seek(0)
        text = _capture_file.read(64 * 1024).decode("utf-8", "replace")
    return img, text


def read_frame(path, size: tuple[int, int] | None = None) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FrameError("file not found") from None
    except IsADirectoryError:
        raise FrameError("is a directory, not an image") from None
    except OSError as exc:
        raise FrameError(f"cannot read file ({exc.strerror})") from None
    except ValueError:          # a path no file system takes (a NUL byte: a piped list gone wrong)
        raise FrameError("not a valid file path (it holds a NUL byte)") from None
    return decode_frame(data, size)


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
        # a 16-bit container often holds 10-14-bit samples (LSB-aligned): keep the top 8 of the bits the
        # frame uses, not of 16, or a 12-bit frame would read as 0..15 DN, a blank frame
        bits = max(8, int(img.max(initial=0)).bit_length())
        img = (img >> (bits - 8)).astype(np.uint8)
    elif np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise FrameError("frame contains NaN or infinite values")
        if float(img.max(initial=0.0)) <= 1.0:          # 0..1 convention (clip first: no overflow)
            img = (np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
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
