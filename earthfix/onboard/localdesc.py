"""A learned local descriptor: the patch around each SIFT keypoint through a small ONNX network.

SIFT still finds the keypoints (position, size, orientation); only the descriptor changes. The same
:class:`PatchDescriber` describes the keypoint store's map tiles on the ground (``build_keystore``) and the
frames in flight (``features.extract_features``), and the bundle carries the network it was built with
(``localdesc.onnx``), so the two sides cannot disagree.

Patch convention (both sides)
- Sampled from the working grey image (after CLAHE) on a ``PATCH_PX`` x ``PATCH_PX`` grid centred on the
  keypoint, the network's window (its ONNX metadata ``window_per_size``; ``WINDOW_PER_SIZE``, SIFT's own
  descriptor window, for a network that records none) x its OpenCV ``size`` on a side, turned by its
  OpenCV ``angle`` (degrees): the patch's +x runs along (cos a, sin a) in image pixels (x right, y down),
  which makes the patch of a turned image the same patch (measured: 0.96 median correlation against
  0.06 for the other sense).
- Bilinear samples, edges replicated; the network's input is the raw 0..255 grey, N x 1 x 32 x 32 float32.
  It averages 2 x 2 samples and standardises each patch itself (so brightness and contrast, e.g. a
  uniform veil, do not reach the descriptor), and returns N x D unit vectors.

Why: SIFT's gradient histogram weighs a cloud fragment's edge (~150 DN) over the ground's texture
(~10-30 DN) anywhere in its 100-250 km window; a network trained on frames under broken cloud, veils and
other seasons against clean map patches learns which structure to trust (docs/VERIFICATION.md, "A learned
local descriptor").
"""
from __future__ import annotations

import cv2
import numpy as np

BUNDLE_FILE = "localdesc.onnx"   # the network's file name in a bundle and in models/
PATCH_PX = 32               # samples per patch side fed to the network
WINDOW_PER_SIZE = 6.0       # patch side / OpenCV keypoint size (SIFT's descriptor window: 4 bins of 1.5 size)
WINDOW_KEY = "window_per_size"   # ONNX metadata: the window the network was trained at (travels with it)
WINDOW_RANGE = (2.0, 24.0)  # windows a network may record (outside: refused as corrupt)
_CHUNK = 1000               # remap's output must stay under 32767 rows: patches per call

_T = ((np.arange(PATCH_PX) + 0.5) / PATCH_PX - 0.5).astype(np.float32)
_U, _V = (a.ravel()[None] for a in np.meshgrid(_T, _T))     # 1 x P*P each


class LocalDescError(ValueError):
    """A local-descriptor network that cannot be used."""


def patch_grid(xy, size, angle_deg, window_per_size: float = WINDOW_PER_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions (x, y), each K x PATCH_PX x PATCH_PX, of the patches of K keypoints at ``xy``
    (K x 2, pixels of the image they are sampled from) with OpenCV ``size`` and ``angle_deg``, each patch
    ``window_per_size`` x its ``size`` on a side."""
    xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
    side = np.float32(window_per_size) * np.asarray(size, dtype=np.float32).reshape(-1)
    a = np.radians(np.asarray(angle_deg, dtype=np.float32).reshape(-1))
    c, s = (side * np.cos(a))[:, None], (side * np.sin(a))[:, None]
    px = xy[:, :1] + c * _U - s * _V          # float32 throughout: ~10x faster than float64 grids
    py = xy[:, 1:] + s * _U + c * _V
    shape = (len(xy), PATCH_PX, PATCH_PX)
    return px.reshape(shape), py.reshape(shape)


def sample_patches(grey: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Bilinear samples of an 8-bit ``grey`` image at the positions of :func:`patch_grid`: K x P x P uint8."""
    k = px.shape[0]
    if k == 0:
        return np.zeros((0, PATCH_PX, PATCH_PX), np.uint8)
    out = []
    for i in range(0, k, _CHUNK):
        mx = np.ascontiguousarray(px[i:i + _CHUNK].reshape(-1, PATCH_PX), dtype=np.float32)
        my = np.ascontiguousarray(py[i:i + _CHUNK].reshape(-1, PATCH_PX), dtype=np.float32)
        out.append(cv2.remap(grey, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                   .reshape(-1, PATCH_PX, PATCH_PX))
    return np.concatenate(out)


class PatchDescriber:
    """Describe keypoints with an ONNX patch network (input N x 1 x 32 x 32 grey, output N x D)."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1, providers=None, name: str = BUNDLE_FILE):
        import onnxruntime as ort

        from .encoder import session_providers, sha256_bytes
        self.sha256 = sha256_bytes(onnx_bytes)
        self.name = name
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(onnx_bytes, opts, providers=session_providers(providers))
        except Exception as exc:   # onnxruntime raises its own exception types
            raise LocalDescError(f"local descriptor {name} is not a usable ONNX model: "
                                 f"{str(exc).splitlines()[0]}") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if len(inp.shape) != 4 or list(inp.shape[1:]) != [1, PATCH_PX, PATCH_PX]:
            raise LocalDescError(f"local descriptor {name}: input shape {inp.shape}, expected "
                                 f"[N, 1, {PATCH_PX}, {PATCH_PX}]")
        self.dim = int(out.shape[1]) if isinstance(out.shape[1], int) else None
        self.input_name = inp.name
        self.window_per_size = network_window(self.session, name)

    def describe(self, grey: np.ndarray, xy, size, angle_deg) -> np.ndarray:
        """Descriptors (N x D float32, unit L2) of keypoints of the 8-bit ``grey`` image (pixels, OpenCV
        size and angle in that image)."""
        return self.describe_patches(sample_patches(grey, *patch_grid(xy, size, angle_deg, self.window_per_size)))

    def describe_patches(self, patches: np.ndarray) -> np.ndarray:
        """Descriptors (N x D float32, unit L2) of N x 32 x 32 grey patches (``sample_patches``)."""
        if len(patches) == 0:
            return np.zeros((0, self.dim or 0), np.float32)
        x = patches.astype(np.float32)[:, None]
        d = self.session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)
        n = np.linalg.norm(d, axis=1, keepdims=True)
        return d / np.maximum(n, 1e-12)


def network_window(session, name: str = BUNDLE_FILE) -> float:
    """The patch window (x keypoint size) a network was trained at: its ONNX metadata ``window_per_size``,
    ``WINDOW_PER_SIZE`` when it records none (every network before session 78)."""
    raw = session.get_modelmeta().custom_metadata_map.get(WINDOW_KEY)
    if raw is None:
        return WINDOW_PER_SIZE
    try:
        w = float(raw)
    except ValueError:
        w = float("nan")
    if not WINDOW_RANGE[0] <= w <= WINDOW_RANGE[1]:
        raise LocalDescError(f"local descriptor {name}: metadata {WINDOW_KEY}={raw!r} is not a window in "
                             f"{WINDOW_RANGE[0]:g}..{WINDOW_RANGE[1]:g}")
    return w
