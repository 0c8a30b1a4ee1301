"""Local features for geometric verification: one extractor, the same on both sides.

The keypoint store (ground segment, ``earthfix.tools.build_keystore``) and the flight verifier
(``earthfix.onboard.verify``) call :func:`extract_features` with configurations that differ only in how
many keypoints they keep and at what working resolution, so the preprocessing (grey, CLAHE) and the
descriptor (SIFT -> RootSIFT) are identical on both sides.

Conventions
- Input: an 8-bit image, H x W x 3 BGR or H x W grey (CONVENTIONS "frames").
- Keypoint coordinates are returned in the *input* image's pixels (x = column, y = row, pixel centres
  at integers), whatever working resolution the detector ran at.
- ``size`` is OpenCV's keypoint diameter, in input pixels.
- ``angle`` is OpenCV's keypoint orientation in degrees in the image (0 = +x, clockwise as seen on
  screen, since +y points down); the verifier only uses differences of angles.
- Descriptors are RootSIFT (L1-normalised SIFT, element-wise square root: unit L2 norm, float32, 128-D).
  The store projects them (PCA) and quantises them; see ``keystore``.

Determinism: SIFT in OpenCV is deterministic for a given image and thread count; callers set
``cv2.setNumThreads``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import cv2
import numpy as np


@dataclass(frozen=True)
class FeatureConfig:
    """How features are extracted. The defaults are the flight (query) configuration."""
    max_keypoints: int = 300          # keep the N strongest (SIFT response; see grid_cells) after detection
    work_side_px: int | None = 128    # resize so the longer side is at most this (None: native size).
                                      # 128 px of a 256 px / 80 deg frame from 600 km is ~8 km/px, the
                                      # basemap's own 7.4 km/px: finer pixels add SIFT time, not matches
    work_scale: float | None = None   # explicit resize factor (overrides work_side_px)
    contrast_threshold: float = 0.02  # SIFT DoG contrast threshold (on 0..1 intensities, / n_octave_layers)
    edge_threshold: float = 10.0
    sigma: float = 1.6
    n_octave_layers: int = 3
    clahe_clip: float = 2.0           # CLAHE clip limit (0 disables); normalises contrast across sensors
    clahe_tile_px: int = 48           # CLAHE tile size in *working* pixels (grid = side / tile)
    min_size_px: float = 0.0          # drop keypoints smaller than this (working pixels)
    border_px: float = 4.0            # drop keypoints this close to the image (or valid-mask) border, working px
    grid_cells: int = 4               # > 0: spread the budget over grid_cells x grid_cells image cells
                                      # (strongest per cell first) so bright cloud edges cannot take it all
    cloud_mask: bool = False          # drop keypoints on bright, unsaturated (cloud-like) pixels
    cloud_min_value: int = 190        # cloud-like: HSV value >= this...
    cloud_max_sat: int = 40           # ...and saturation <= this (0..255)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "FeatureConfig":
        d = dict(d or {})
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class Features(NamedTuple):
    """Keypoints of one image, strongest first."""
    xy: np.ndarray        # N x 2 float32, input-image pixels (x=col, y=row)
    desc: np.ndarray      # N x 128 float32 RootSIFT (unit L2 norm)
    size: np.ndarray      # N float32, keypoint diameter in input pixels
    angle: np.ndarray     # N float32, orientation in degrees (image frame)
    response: np.ndarray  # N float32, DoG response (strength)
    shape: tuple          # (height, width) of the input image

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.xy.shape[0])

    def subset(self, idx) -> "Features":
        return Features(self.xy[idx], self.desc[idx], self.size[idx], self.angle[idx], self.response[idx],
                        self.shape)


SIFT_OFFSET_PX = 0.25   # OpenCV SIFT position bias (working pixels), see extract_features
_SIFT_CACHE: dict = {}
_CLAHE_CACHE: dict = {}


def _sift(cfg: FeatureConfig):
    # nfeatures=0: we rank by response ourselves (OpenCV's internal cut also keeps ties unpredictably)
    key = (cfg.contrast_threshold, cfg.edge_threshold, cfg.sigma, cfg.n_octave_layers)
    s = _SIFT_CACHE.get(key)
    if s is None:
        s = cv2.SIFT_create(nfeatures=0, nOctaveLayers=cfg.n_octave_layers,
                            contrastThreshold=cfg.contrast_threshold, edgeThreshold=cfg.edge_threshold,
                            sigma=cfg.sigma)
        _SIFT_CACHE[key] = s
    return s


def _clahe(clip: float, grid: tuple[int, int]):
    key = (clip, grid)
    c = _CLAHE_CACHE.get(key)
    if c is None:
        c = cv2.createCLAHE(clipLimit=clip, tileGridSize=grid)
        _CLAHE_CACHE[key] = c
    return c


def to_grey(image: np.ndarray) -> np.ndarray:
    """8-bit grey from BGR / BGRA / grey."""
    image = np.asarray(image)
    if image.ndim == 2:
        g = image
    elif image.ndim == 3 and image.shape[2] == 1:
        g = image[..., 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        g = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    else:
        raise ValueError(f"expected an H x W or H x W x 3 image, got shape {image.shape}")
    if g.dtype != np.uint8:
        g = np.clip(g, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(g)


def preprocess(image: np.ndarray, cfg: FeatureConfig, valid: np.ndarray | None = None):
    """Grey, resized to the working resolution, contrast normalised.

    Returns (grey uint8, scale = working px per input px, valid mask at working size or None).
    """
    g = to_grey(image)
    h, w = g.shape
    scale = 1.0
    if cfg.work_scale is not None:
        scale = float(cfg.work_scale)
    elif cfg.work_side_px is not None and max(h, w) > cfg.work_side_px:
        scale = cfg.work_side_px / float(max(h, w))
    if abs(scale - 1.0) > 1e-6:
        nw, nh = max(8, int(round(w * scale))), max(8, int(round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        g = cv2.resize(g, (nw, nh), interpolation=interp)
        if valid is not None:
            valid = cv2.resize(valid.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
        scale_x, scale_y = nw / w, nh / h
        scale = 0.5 * (scale_x + scale_y)
    if cfg.clahe_clip > 0:
        gh, gw = g.shape
        grid = (max(1, int(round(gw / cfg.clahe_tile_px))), max(1, int(round(gh / cfg.clahe_tile_px))))
        g = _clahe(cfg.clahe_clip, grid).apply(g)
    return g, scale, valid


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, square root -> unit L2 norm."""
    d = np.asarray(desc, dtype=np.float32)
    d = d / np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


def empty_features(shape=(0, 0)) -> Features:
    z = np.zeros(0, np.float32)
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), z, z.copy(), z.copy(),
                    tuple(shape))


def extract_features(image: np.ndarray, cfg: FeatureConfig = FeatureConfig(),
                     valid: np.ndarray | None = None) -> Features:
    """Detect and describe keypoints; keep the ``cfg.max_keypoints`` strongest.

    ``valid`` (optional H x W bool) marks pixels that may hold keypoints (e.g. Earth, not space);
    keypoints closer than ``cfg.border_px`` to an invalid pixel or the image border are dropped.
    """
    g, scale, valid_w = preprocess(image, cfg, valid)
    shape = np.asarray(image).shape[:2]
    sift = _sift(cfg)
    # detect, select, then describe only the selected: a descriptor costs ~18 us, rebuilding the
    # pyramid for compute() ~1 ms, so describing everything detected is dearer once >50 are dropped
    kps = sift.detect(g, None)
    if len(kps) == 0:
        return empty_features(shape)
    xy = np.array([k.pt for k in kps], dtype=np.float32)
    size = np.array([k.size for k in kps], dtype=np.float32)
    angle = np.array([k.angle for k in kps], dtype=np.float32)
    resp = np.array([k.response for k in kps], dtype=np.float32)
    keep = size >= cfg.min_size_px
    gh, gw = g.shape
    b = cfg.border_px
    keep &= (xy[:, 0] >= b) & (xy[:, 1] >= b) & (xy[:, 0] <= gw - 1 - b) & (xy[:, 1] <= gh - 1 - b)
    if valid_w is not None and not valid_w.all():
        # distance to the nearest invalid pixel, in working pixels
        dist = cv2.distanceTransform(valid_w.astype(np.uint8), cv2.DIST_L2, 3)
        xi = np.clip(np.round(xy[:, 0]).astype(int), 0, gw - 1)
        yi = np.clip(np.round(xy[:, 1]).astype(int), 0, gh - 1)
        keep &= dist[yi, xi] > np.maximum(b, 0.5 * size)
    if cfg.cloud_mask and np.asarray(image).ndim == 3:
        keep &= ~_cloud_like(np.asarray(image), cfg, scale, xy)
    idx = np.flatnonzero(keep)
    # strongest first; ties broken by position so the order is fully deterministic
    order = np.lexsort((xy[idx, 0], xy[idx, 1], -resp[idx]))
    idx = idx[order]
    if cfg.grid_cells > 0 and len(idx) > cfg.max_keypoints:
        g_n = cfg.grid_cells
        cx = np.clip((xy[idx, 0] * g_n / gw).astype(int), 0, g_n - 1)
        cy = np.clip((xy[idx, 1] * g_n / gh).astype(int), 0, g_n - 1)
        cell = cy * g_n + cx
        # rank of each keypoint within its cell (idx is already strongest-first)
        rank = np.zeros(len(idx), np.int64)
        counts = np.zeros(g_n * g_n, np.int64)
        for j, c in enumerate(cell):
            rank[j] = counts[c]
            counts[c] += 1
        quota = int(math.ceil(cfg.max_keypoints / float(g_n * g_n)))
        first = np.flatnonzero(rank < quota)
        rest = np.flatnonzero(rank >= quota)
        sel = np.concatenate([first, rest])[: cfg.max_keypoints]
        idx = idx[np.sort(sel)]           # keep the strongest-first order
    idx = idx[: cfg.max_keypoints]
    if len(idx) == 0:
        return empty_features(shape)
    sel_kps = [kps[i] for i in idx]
    sel_kps, desc = sift.compute(g, sel_kps)
    if desc is None or len(sel_kps) != len(idx):
        # compute() keeps provided keypoints; guard anyway: re-read what it returned
        if desc is None or len(sel_kps) == 0:
            return empty_features(shape)
        xy = np.array([k.pt for k in sel_kps], dtype=np.float32)
        size = np.array([k.size for k in sel_kps], dtype=np.float32)
        angle = np.array([k.angle for k in sel_kps], dtype=np.float32)
        resp = np.array([k.response for k in sel_kps], dtype=np.float32)
        idx = np.arange(len(sel_kps))
    inv = 1.0 / scale
    # OpenCV's SIFT reports positions 0.25 px too far right/down: it upsamples the image by 2 first and
    # halves coordinates as if pixel corners, not centres, sat at integers (measured: +0.249 px by
    # flipping an image). Then map working pixels back to input pixels (pixel centres at integers).
    xy_in = (xy[idx] - SIFT_OFFSET_PX + 0.5) * inv - 0.5
    return Features(xy_in.astype(np.float32), root_sift(desc), (size[idx] * inv).astype(np.float32),
                    angle[idx], resp[idx], tuple(shape))


def _cloud_like(image_bgr: np.ndarray, cfg: FeatureConfig, scale: float, xy_work: np.ndarray) -> np.ndarray:
    """True for keypoints whose 3x3 working-pixel neighbourhood is mostly bright and unsaturated."""
    small = image_bgr
    if abs(scale - 1.0) > 1e-6:
        h, w = image_bgr.shape[:2]
        small = cv2.resize(image_bgr, (max(8, int(round(w * scale))), max(8, int(round(h * scale)))),
                           interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    m = ((hsv[..., 2] >= cfg.cloud_min_value) & (hsv[..., 1] <= cfg.cloud_max_sat)).astype(np.float32)
    m = cv2.blur(m, (3, 3))
    xi = np.clip(np.round(xy_work[:, 0]).astype(int), 0, m.shape[1] - 1)
    yi = np.clip(np.round(xy_work[:, 1]).astype(int), 0, m.shape[0] - 1)
    return m[yi, xi] > 0.5


def extract(image_bgr_or_grey: np.ndarray, cfg: FeatureConfig = FeatureConfig()):
    """(kp_xy float32 N x 2 in input pixels, desc float32 N x 128 RootSIFT, kp_size float32 N)."""
    f = extract_features(image_bgr_or_grey, cfg)
    return f.xy, f.desc, f.size
