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
import warnings
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
    clahe_clip: float = 3.0           # CLAHE clip limit (0 disables); normalises contrast across sensors.
                                      # Frames 3, the store's map tiles 2 (build_keystore): frames are
                                      # flatter than the map (haze, cloud veils, other seasons); measured
                                      # in docs/VERIFICATION.md ("Contrast")
    clahe_tile_px: int = 48           # CLAHE tile size in *working* pixels (grid = side / tile)
    min_size_px: float = 0.0          # drop keypoints smaller than this (working pixels)
    border_px: float = 4.0            # drop keypoints this close to the image (or valid-mask) border, working px
    grid_cells: int = 4               # > 0: spread the budget over grid_cells x grid_cells image cells
                                      # (strongest per cell first) so bright cloud edges cannot take it all
    # cloud-like pixels (cloud_mask / fill_clouds: the Localizer's cloud-filled look)
    cloud_max_sat: float = 0.20       # cloud-like: saturation (max - min) / max of BGR below this (0.15 until
                                      # session 42: a translucent cloud edge mixes the ground's colour in; real
                                      # cloud fields +8 of 265 fixes; docs/VERIFICATION.md, "Real cloud shapes")...
    cloud_margin_dn: float = 25.0     # ...and the darkest channel this many DN above the ground floor,
    cloud_floor_pct: float = 10.0     # the frame's cloud_floor_pct percentile of the darkest channel
    cloud_fill_sigma_px: float = 2.0  # Gaussian of the fill (normalised convolution), working pixels
    cloud_min_colour: float = 0.08    # colour frames whose 90th-percentile saturation is lower get no mask
                                      # (cloud or haze over most of the frame: nothing to tell apart)
    cloud_grey_margin_dn: float = 55.0  # grey frames (equal bands): cloud-like is brightness alone, this many
                                      # DN above the floor (0: no mask). 25 / 40 / 55 / 70 / 100 measured on
                                      # grey eval frames (docs/VERIFICATION.md, "Panchromatic frames")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "FeatureConfig":
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:    # a misspelt key would otherwise leave its default in force without a word
            raise ValueError(f"feature: unknown key(s) {', '.join(map(str, unknown))}")
        return cls(**d)


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


def work_scale(cfg: FeatureConfig, shape) -> float:
    """Working pixels per input pixel of ``cfg`` for an image of ``shape`` (H, W): ``cfg.work_scale`` if
    set, else the longer side down to ``cfg.work_side_px`` (never up); never below 8 working pixels, the
    least ``preprocess`` resizes to."""
    side = float(max(shape[:2]))
    if cfg.work_scale is not None:
        s = float(cfg.work_scale)
    elif cfg.work_side_px is None:
        return 1.0
    else:
        s = min(1.0, cfg.work_side_px / side)
    return max(s, 8.0 / side)


def preprocess(image: np.ndarray, cfg: FeatureConfig, valid: np.ndarray | None = None):
    """Grey, resized to the working resolution, contrast normalised.

    Returns (grey uint8, scale = working px per input px, valid mask at working size or None).
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    scale = work_scale(cfg, (h, w))
    g = to_grey(image)
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
                     valid: np.ndarray | None = None, drop: np.ndarray | None = None,
                     describer=None) -> Features:
    """Detect and describe keypoints; keep the ``cfg.max_keypoints`` strongest.

    ``describer``: a ``localdesc.PatchDescriber`` to describe the kept keypoints with (the learned local
    descriptor), or None for RootSIFT. A keypoint store and the frames matched against it must use the
    same one (``KeypointStore.describer``).

    ``valid`` (optional H x W bool) marks pixels that may hold keypoints (e.g. Earth, not space);
    keypoints closer than ``cfg.border_px`` to an invalid pixel or the image border are dropped.
    ``drop`` (optional bool mask of the image at any resolution, e.g. ``fill_clouds``' mask): keypoints
    centred on a set pixel are dropped before the budget is spent (their support may overlap it).
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
    if drop is not None:
        sx, sy = drop.shape[1] / gw, drop.shape[0] / gh
        xi = np.clip((xy[:, 0] * sx).astype(int), 0, drop.shape[1] - 1)
        yi = np.clip((xy[:, 1] * sy).astype(int), 0, drop.shape[0] - 1)
        keep &= ~drop[yi, xi]
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
    if describer is not None:
        # patches are centred on the corrected positions (OpenCV's 0.25 px offset, below)
        desc = describer.describe(g, xy[idx] - SIFT_OFFSET_PX, size[idx], angle[idx])
    else:
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
        desc = root_sift(desc)
    inv = 1.0 / scale
    # OpenCV's SIFT reports positions 0.25 px too far right/down: it upsamples the image by 2 first and
    # halves coordinates as if pixel corners, not centres, sat at integers (measured: +0.249 px by
    # flipping an image). Then map working pixels back to input pixels (pixel centres at integers).
    xy_in = (xy[idx] - SIFT_OFFSET_PX + 0.5) * inv - 0.5
    return Features(xy_in.astype(np.float32), desc, (size[idx] * inv).astype(np.float32),
                    angle[idx], resp[idx], tuple(shape))


def cloud_mask(image_bgr: np.ndarray, cfg: FeatureConfig = FeatureConfig(),
               work_per_px: float = 0.5, dilate: bool = True) -> np.ndarray | None:
    """Cloud-like pixels of an 8-bit BGR image (H x W bool), or None for an unlit frame (or a
    panchromatic one when ``cfg.cloud_grey_margin_dn`` is 0).

    Clouds and haze add the same grey to every band, so they pull a pixel towards white: low saturation
    and a darkest band well above the ground's. The ground floor is a low percentile of the darkest band
    over the frame's lit pixels, so a dark frame's thin veils count and a desert frame's sand mostly does
    not. Snow, ice and pale salt flats are taken for cloud: no colour tells them apart, which is why the
    ``Localizer`` keeps the plain look too (alone below 20 % cloud-like pixels, second above). A grey
    frame (equal bands: a panchromatic sensor) is judged by brightness alone, with the wider margin
    ``cfg.cloud_grey_margin_dn``: bright ground is taken for cloud more often there, and the plain look is
    what catches it. A colour frame with hardly any colour (90th-percentile saturation below
    ``cfg.cloud_min_colour``: cloud or haze over most of it) gets no mask.
    The mask is dilated by half a working pixel (``work_per_px``: working pixels per image pixel): a
    fragment's soft rim carries its edge too (``dilate=False``: the pixels themselves).
    """
    b, g, r = cv2.split(np.ascontiguousarray(image_bgr))
    v = cv2.max(cv2.max(b, g), r)
    m = cv2.min(cv2.min(b, g), r)
    lit = (v > 15).astype(np.uint8)
    if cv2.countNonZero(lit) < 16:
        return None
    chroma = cv2.subtract(v, m)
    floor = _percentile_u8(m, lit, cfg.cloud_floor_pct)
    if _percentile_u8(chroma, lit, 99.0) <= 2:
        # equal bands: a panchromatic sensor. Brightness alone, with a wider margin
        if cfg.cloud_grey_margin_dn <= 0:
            return None
        mask = (m > floor + cfg.cloud_grey_margin_dn).astype(np.uint8)
    else:
        sat = cv2.divide(chroma, v, scale=255.0)                  # saturation, 0..255 (0 where v = 0)
        if _percentile_u8(sat, lit, 90.0) < cfg.cloud_min_colour * 255.0:
            return None      # a colour frame with hardly any colour left (cloud, haze over most of it)
        mask = ((sat < cfg.cloud_max_sat * 255.0) & (m > floor + cfg.cloud_margin_dn)).astype(np.uint8)
    if not dilate:
        return mask > 0
    k = 2 * max(1, int(round(0.5 / work_per_px))) + 1
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))) > 0


def despeckle_clouds(image: np.ndarray, image_bgr: np.ndarray, cell_px: int,
                     cfg: FeatureConfig = FeatureConfig(), min_share: float = 0.09, shrink: int = 1):
    """Small cloud cells (fair-weather cumulus: 1-6 km, hundreds per frame) taken out of ``image`` (grey or
    BGR; ``image_bgr`` the same frame in BGR, for :func:`cloud_mask`) by a grey-level erosion over
    ``cell_px`` x ``cell_px`` pixels: every pixel takes the darkest value around it, which is the ground
    between the cells wherever the cells leave a gap. Returns (image, speckle share): the input object
    itself when the cloud-like pixels that a ``cell_px`` opening removes (fragments smaller than a cell)
    are no more than ``min_share`` of the frame. ``shrink`` > 1: the test and the erosion run on the frame
    area-averaged by that integer factor (``cell_px`` in those pixels; OpenCV's fast path) and the eroded
    frame comes back at the input's size: a narrow camera's frame is far finer than the features that will
    be taken from it.

    Why: a cell smaller than a pixel brightens it by the share it covers, so a cumulus field lays a
    noise of tens of DN over ground whose texture has 10-30 DN: SIFT sees the noise, and the cloud mask
    (cloud-like nearly everywhere) leaves the cloud-filled look no ground. Erosion also widens dark
    ground features by ``cell_px // 2`` pixels and takes patchy snow out with the cells, which costs
    frames without cumulus, hence the gate: every frame it helped had a speckle share of 0.098 or more,
    those it cost mostly 0.05-0.085 (docs/VERIFICATION.md, "Fair-weather cumulus").
    """
    h, w = image.shape[:2]
    small, small_bgr = image, image_bgr
    if shrink > 1 and min(h, w) >= 8 * shrink:
        f = 1.0 / int(shrink)
        small_bgr = cv2.resize(image_bgr, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        small = small_bgr if image is image_bgr else cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    mask = cloud_mask(small_bgr, cfg, dilate=False)
    if mask is None:
        return image, 0.0
    m8 = mask.view(np.uint8)
    kernel = np.ones((int(cell_px), int(cell_px)), np.uint8)
    speckle = (cv2.countNonZero(m8) - cv2.countNonZero(cv2.morphologyEx(m8, cv2.MORPH_OPEN, kernel))) / m8.size
    if speckle <= min_share:
        return image, float(speckle)
    out = cv2.erode(small, kernel)
    if out.shape[:2] != (h, w):
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return out, float(speckle)


def _percentile_u8(a: np.ndarray, mask: np.ndarray | None, q: float, above: int = -1) -> float:
    """``q``-th percentile (lower value) of the uint8 values of ``a`` where ``mask`` is set (None: all) and
    the value is over ``above``; 0 when there is none."""
    hist = cv2.calcHist([a], [0], mask, [256], [0, 256]).ravel()
    hist[: above + 1] = 0.0
    c = np.cumsum(hist)
    return float(np.searchsorted(c, q / 100.0 * c[-1]))


def _brightest_band(image: np.ndarray) -> np.ndarray:
    """Each pixel's brightest band (a grey frame as it is)."""
    x = np.asarray(image)
    if x.ndim == 2:
        return x
    b, g, r = cv2.split(x)                      # contiguous bands: a third faster than strided views
    return cv2.max(cv2.max(b, g), r)


def white_balanced(image_bgr: np.ndarray, pct: float = 99.0, min_gain: float = 1.05):
    """``image_bgr`` with each band scaled so that its ``pct`` percentile over the lit pixels matches the
    brightest band's, or None when no band needs a gain of ``min_gain`` or more (a balanced frame) or the
    frame is unlit or grey.

    Why: a cloud is white, so under a sensor's colour cast (another sensor's band gains) it takes the
    cast's colour, and its saturation rises over ``cloud_max_sat``: :func:`cloud_mask` no longer sees it.
    On a frame with cloud the brightest pixels are the cloud's, and scaling them back to grey gives the
    mask its clouds again. On a bright desert the brightest pixels are sand, which this turns grey too,
    so the Localizer uses it only for a later look, after the plain look found nothing.
    """
    img = np.ascontiguousarray(image_bgr)
    if img.ndim != 3:
        return None
    lit = (_brightest_band(img) > 15).astype(np.uint8)
    if cv2.countNonZero(lit) < 16:
        return None
    top = np.array([_percentile_u8(np.ascontiguousarray(img[..., c]), lit, pct) for c in range(3)],
                   dtype=np.float64)
    if top.min() <= 15:
        return None
    gains = top.max() / top
    if gains.max() < min_gain:
        return None
    return cv2.multiply(img, (*gains, 0.0))                           # rounded, saturated


EXPOSURE_BELOW_DN = 110.0   # config exposure_below_dn's default: the 5th-10th percentile, over the simulator's
                            # daylight frames, of the 99.5th percentile of a frame's brightest band
EXPOSURE_TO_DN = 180.0      # ... and its median: where an underexposed frame's brightest pixels are taken
EXPOSURE_MAX_GAIN = 2.0     # at most the noise (and the 1-DN steps) of the frame doubled: at x2.7 one frame in 240 of
                            # a 256 px / 100 deg camera at a third of its light gave a wrong pose (docs/VERIFICATION.md)
TONE_LIFT_DN = 20.0     # config tone_lift_dn's default: the Blue Marble's daylight ground seldom has its 25th percentile lower
SHARPEN_BELOW = 0.47    # config sharpen_below's default: under the 1st-5th percentile of frames as sharp as the map
SPACE_DN = 3            # a pixel whose brightest band is at most this is black: space, or beyond a scene's edge


def exposure_stretched(image: np.ndarray, below_dn: float = EXPOSURE_BELOW_DN, to_dn: float = EXPOSURE_TO_DN,
                       max_gain: float = EXPOSURE_MAX_GAIN):
    """(``image`` times the gain that takes the 99.5th percentile of its brightest band over the non-black
    pixels to ``to_dn``, the gain) for a frame whose percentile is below ``below_dn``, else (``image`` itself,
    1.0). The gain is at most ``max_gain``; ``below_dn`` 0 turns this off.

    Why: a camera exposed for brighter scenes than it sees (a fixed exposure set so that sunlit cloud and ice
    never saturate, or a 12-bit sensor's top bits with headroom) delivers the whole frame at a fraction of
    its counts: cloud no longer bright enough for the cloud mask, ground texture under SIFT's contrast
    threshold. A gain is that exposure's inverse (the tone lift's power is a sensor curve's). Frames whose
    brightest pixels reach ``below_dn`` are passed on as they are (docs/VERIFICATION.md, "An underexposed
    frame").
    """
    if below_dn <= 0:
        return image, 1.0
    # black pixels (space, a scene's edge) are not its light; an all-black frame has none (p 0)
    p = _percentile_u8(_brightest_band(image), None, 99.5, above=SPACE_DN)
    if p >= below_dn or p <= SPACE_DN:
        return image, 1.0
    gain = min(max_gain, to_dn / p)
    lut = _rounded_u8(np.arange(256) * gain)
    return cv2.LUT(np.ascontiguousarray(image), lut), gain


def tone_lifted(image: np.ndarray, low_dn: float = TONE_LIFT_DN, max_lift: float = 2.5):
    """(``image`` through the power curve ``255 (x / 255) ** g`` that takes its 25th-percentile grey level up to
    ``low_dn``, g) for a frame darker than that, else (``image`` itself, 1.0). ``g`` is at least
    ``1 / max_lift``; ``low_dn`` 0 turns this off.

    Why: a sensor whose tone curve is steeper than the reference map's (counts nearly linear in radiance,
    where the map is gamma-encoded) squeezes the ground into the bottom few tens of DN: CLAHE's clip limits
    how far it spreads them, and the cloud mask's saturation and floor are judged on the wrong curve. The
    map's own ground seldom has a 25th percentile below ~20 DN in daylight; lifting a frame that does back
    to it gives the stages the contrast they were tuned on (docs/VERIFICATION.md, "A sensor's tone curve").
    A frame as bright as that is returned as it is, so frames on the map's curve are untouched.
    """
    if low_dn <= 0:
        return image, 1.0
    grey = to_grey(image)
    # black pixels (space past the limb, a scene's edge) are not ground: a frame whose other pixels are bright
    # enough is left as it is; a dark one is lifted by all its pixels (its own darkest ground is black too)
    p25 = _percentile_u8(grey, (_brightest_band(image) > SPACE_DN).astype(np.uint8), 25.0)
    if p25 < low_dn:
        p25 = _percentile_u8(grey, None, 25.0)
    if p25 >= low_dn:
        return image, 1.0
    g = max(1.0 / max_lift, math.log(low_dn / 255.0) / math.log(max(p25, 1.0) / 255.0))
    lut = _rounded_u8(255.0 * (np.arange(256) / 255.0) ** g)
    return cv2.LUT(np.ascontiguousarray(image), lut), g


LINE_BAD_DEV = 0.25     # a column (row) whose light is off its neighbours' by more than this share is a stuck line
STRIPING_ABOVE = 0.03   # the robust spread of the columns' (rows') mean gains that is striping (900 release frames:
                        # p50 0.004, max 0.022; column gain patterns of 2 / 4 %: p50 0.024 / 0.045, min 0.019 / 0.035)
LINE_MAX_BAD_SHARE = 0.05   # more "stuck" lines than this share is the scene's own texture, not a sensor's defect
STRIPE_TREND_LINES = 4.0    # stripe_gains: the gains' trend over this many lines (Gaussian sigma) is the ground's


class LineGains(NamedTuple):
    """Each column's mean light against its neighbours' (``line_gains``); nan where the neighbours are dark."""
    gain: np.ndarray    # against the median of the four nearest columns' (c-2, c-1, c+1, c+2)
    left: np.ndarray    # against the mean of the two on its left (c-2, c-1)...
    right: np.ndarray   # ...and on its right (c+1, c+2): a stuck line is off both the same way, an edge is not


def line_gains(grey: np.ndarray, axis: int = 1) -> LineGains:
    """``LineGains`` of every column (``axis`` 1; 0: every row) of ``grey`` from the lines' mean grey (a line's
    whole length averages its ground's texture away)."""
    m = cv2.reduce(np.ascontiguousarray(grey), 0 if axis == 1 else 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    w = len(m)
    if w < 5:
        nan = np.full(w, np.nan, np.float32)
        return LineGains(nan, nan, nan)
    p = np.pad(m, 2, mode="reflect")
    a, b, c, d = p[:w], p[1:w + 1], p[3:w + 3], p[4:w + 4]
    # the median of four: their sum less the largest and the smallest, halved
    ref = 0.5 * (a + b + c + d - np.maximum(np.maximum(a, b), np.maximum(c, d))
                 - np.minimum(np.minimum(a, b), np.minimum(c, d)))

    def ratio(r):
        return np.where(r > 12.0, m / np.maximum(r, 1.0), np.nan).astype(np.float32)

    return LineGains(ratio(ref), ratio(0.5 * (a + b)), ratio(0.5 * (c + d)))


def stripe_gains(grey: np.ndarray, axis: int = 1, trend_lines: float = STRIPE_TREND_LINES) -> np.ndarray:
    """Each column's (``axis`` 1; 0: each row's) gain against a smooth trend, from neighbouring lines pixel by
    pixel: the median over every other row of the log-ratio of each line to the one before it (pixels under 8 or
    over 250 DN left out) is the step between their gains, since the ground barely changes from one line to the
    next; the steps summed give every line's log gain, and their trend (a Gaussian of ``trend_lines``) is taken
    out as the ground's own. Why not the lines' mean grey (``line_gains``): a line's mean holds its ground's
    brightness as well as its gain, and dividing by it left about half of a 4 % pattern; this leaves about a
    quarter (docs/VERIFICATION.md, "A sensor's line defects")."""
    g = (grey if axis == 1 else grey.T)[::2]
    if g.shape[1] < 2:
        return np.ones(g.shape[1], np.float32)
    lg = cv2.log(g.astype(np.float32) + 1.0)
    step = lg[:, 1:] - lg[:, :-1]
    off = (g < 8) | (g > 250)
    off = off[:, 1:] | off[:, :-1]
    if off.any():
        step[off] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # a line with no valid pixel: no step
            d = np.nanmedian(step, axis=0)
        d[~np.isfinite(d)] = 0.0
    else:
        d = np.median(step, axis=0)
    e = np.concatenate([[0.0], np.cumsum(d)]).astype(np.float32)
    trend = cv2.GaussianBlur(e.reshape(1, -1), (0, 0), trend_lines, borderType=cv2.BORDER_REFLECT).ravel()
    return np.exp(e - trend).astype(np.float32)


def repair_lines(image: np.ndarray, striping_above: float = STRIPING_ABOVE):
    """(``image`` with a sensor's line defects mended, {"lines": stuck lines mended, "striping": the gains'
    spread found}): columns, then rows, that are stuck (dead, hot: darker or brighter on average than the lines
    on both sides by more than ``LINE_BAD_DEV``; an edge in the scene is darker on one side only) are replaced
    by the nearest good lines on both sides, interpolated; then, when the good lines' mean gains
    (``line_gains``) spread more than ``striping_above`` (a pushbroom's or a CMOS column amplifier's fixed
    pattern), each line is divided by its gain from its neighbours pixel by pixel (``stripe_gains``). ``image``
    itself when nothing is found (most frames); ``striping_above`` 0 turns it off.

    Why: the keypoint store's tiles have no such lines, and a frame's do not move with the ground: four stuck
    columns of 256 cost 12 of 256 fixes of the release frames, a 4 % column gain pattern 23 (docs/VERIFICATION.md,
    "A sensor's line defects")."""
    if striping_above <= 0:
        return image, {"lines": 0, "striping": 0.0}
    x = None
    found = {"lines": 0, "striping": 0.0}
    grey = to_grey(image)
    stale = False                 # grey no longer shows x: made again only where a later step reads it
    for axis in (1, 0):
        if stale:
            grey, stale = to_grey(_rounded_u8(x)), False
        lg = line_gains(grey, axis)
        g, n = lg.gain, len(lg.gain)
        known = ~np.isnan(g)
        with np.errstate(invalid="ignore"):
            bad = known & (((lg.left > 1 + LINE_BAD_DEV) & (lg.right > 1 + LINE_BAD_DEV))
                           | ((lg.left < 1 - LINE_BAD_DEV) & (lg.right < 1 - LINE_BAD_DEV)))
            good = known & ~bad & (np.abs(g - 1.0) <= LINE_BAD_DEV)
        if good.sum() < n // 2 or bad.sum() > LINE_MAX_BAD_SHARE * n:
            continue
        dev = g[good] - 1.0
        spread = float(1.4826 * np.median(np.abs(dev - np.median(dev))))
        found["striping"] = max(found["striping"], round(spread, 4))
        # a stuck line has good lines on both sides (a no-data border's edge has none on one)
        idx = np.flatnonzero(good)
        j = np.searchsorted(idx, np.flatnonzero(bad))
        flanked = (j > 0) & (j < len(idx))
        bad_idx = np.flatnonzero(bad)[flanked]
        striped = spread > striping_above
        if not striped and not len(bad_idx):
            continue
        if x is None:
            x = np.asarray(image).astype(np.float32)
        view = x if axis == 1 else np.swapaxes(x, 0, 1)
        if len(bad_idx):
            # first, so that a stuck line's step does not break the chain of stripe_gains' steps
            lo, hi = idx[j[flanked] - 1], idx[j[flanked]]
            w = ((bad_idx - lo) / (hi - lo)).astype(np.float32).reshape((-1,) + (1,) * (view.ndim - 2))
            view[:, bad_idx] = (1.0 - w) * view[:, lo] + w * view[:, hi]
            found["lines"] += int(len(bad_idx))
            stale = True
        if striped:
            if stale:
                grey, stale = to_grey(_rounded_u8(x)), False
            view /= stripe_gains(grey, axis).reshape((1, n) + (1,) * (view.ndim - 2))
            stale = True
    if x is None:
        return image, found
    return _rounded_u8(x), found


def _rounded_u8(x: np.ndarray) -> np.ndarray:
    """A float image rounded and saturated to 8 bits."""
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def blur_ratio(image: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> float:
    """How sharp a frame is at the working resolution: the grey image's variance between Gaussians of 1 and
    2 working pixels over its variance between 2 and 4. Ground texture has about the same share of its
    variance in each octave (this ratio is 0.5-0.8 on the simulator's frames of the Blue Marble); a frame
    blurred by a soft lens, defocus or imagery coarser than the map's has lost the finest octave."""
    g = to_grey(image)
    s = work_scale(cfg, g.shape)
    if abs(s - 1.0) > 1e-6:
        g = cv2.resize(g, (max(8, int(round(g.shape[1] * s))), max(8, int(round(g.shape[0] * s)))),
                       interpolation=cv2.INTER_AREA)
    g = g.astype(np.float32)
    b1, b2, b4 = (cv2.GaussianBlur(g, (0, 0), k) for k in (1.0, 2.0, 4.0))
    coarse = float(np.var(b2 - b4))
    return float(np.var(b1 - b2)) / coarse if coarse > 1e-6 else 1.0


def sharpened(image: np.ndarray, cfg: FeatureConfig = FeatureConfig(), below: float = SHARPEN_BELOW,
              sigma_work_px: float = 1.0, amount: float = 2.0):
    """(``image`` unsharp-masked, ratio) when its :func:`blur_ratio` is under ``below``, else (``image`` itself,
    ratio): ``image + amount * (image - Gaussian(sigma_work_px working pixels))``, all bands, rounded and
    saturated. ``below`` 0 turns it off.

    Why: the keypoint store's tiles keep the map's own sharpness; a blurred frame loses the finest SIFT
    octave against them (docs/VERIFICATION.md, "Blurred and noisy frames"). Sharpening a frame that is not
    blurred costs fixes, hence the gate.
    """
    if below <= 0:
        return image, 1.0
    r = blur_ratio(image, cfg)
    if r >= below:
        return image, r
    x = np.ascontiguousarray(image)
    sigma = sigma_work_px / work_scale(cfg, x.shape[:2])
    # 8-bit throughout (OpenCV's fast paths): addWeighted rounds and saturates
    return cv2.addWeighted(x, 1.0 + amount, cv2.GaussianBlur(x, (0, 0), sigma), -amount, 0.0), r


def clear_near_cloud_share(mask: np.ndarray, radius_px: float) -> float:
    """Share of a cloud mask's clear pixels (``mask`` False) within ``radius_px`` of a cloud pixel (Euclidean,
    OpenCV's 3 x 3 distance transform); 0.0 without cloud, 1.0 without clear pixels.

    Why: it tells broken cloud (fragments of a few km: nearly all clear ground lies next to an edge, where
    the cloud-filled look pays) from cloud in masses and snow taken for cloud (the clear ground lies away from
    the edges, and the frame as it is fixes sooner; docs/VERIFICATION.md, "Which look first")."""
    m = np.asarray(mask, dtype=bool)
    clear = (~m).astype(np.uint8)
    n_clear = int(cv2.countNonZero(clear))
    if n_clear == 0:
        return 1.0
    if n_clear == clear.size:
        return 0.0
    d = cv2.distanceTransform(clear, cv2.DIST_L2, 3)
    return float(np.count_nonzero(d[clear > 0] < radius_px)) / n_clear


def fill_clouds(image_bgr: np.ndarray, cfg: FeatureConfig = FeatureConfig(),
                share: tuple[float, float] = (0.0, 1.0), balance: bool = False):
    """Replace cloud-like pixels (:func:`cloud_mask`) by a Gaussian-weighted mean of the clear pixels
    around them (normalised convolution). Returns (BGR uint8 image of the input's size, mask or None);
    the mask is at the resolution the fill ran at: twice ``cfg``'s working resolution
    (:func:`work_scale`), or the input's if coarser. Clear pixels keep their input values. A frame whose
    cloud-like share of pixels lies outside ``share`` is returned as it is (the input object).
    ``balance``: the mask is taken from the frame white-balanced (:func:`white_balanced`, at the fill's
    resolution), and a frame that needs no balance is returned as it is with mask None.

    Why: at the reference's ~7 km/px a SIFT descriptor spans 100-250 km, so broken cloud (fragments of
    6-30 km) lands in nearly every descriptor window of a partly cloudy frame, and a cloud edge's
    contrast (~150 DN) swamps the ground texture's (~10-30 DN). Smoothing the cloud away keeps the clear
    ground's gradients and removes the cloud's (measured: docs/VERIFICATION.md, "The cloud-filled look").
    """
    image_bgr = np.asarray(image_bgr)
    h, w = image_bgr.shape[:2]
    ws = work_scale(cfg, (h, w))
    fs = min(1.0, 2.0 * ws)                            # fill scale: fill px per input px
    small = image_bgr
    if fs < 1.0:
        small = cv2.resize(image_bgr, (max(8, int(round(w * fs))), max(8, int(round(h * fs)))),
                           interpolation=cv2.INTER_AREA)
        fs = small.shape[1] / w
    judged = white_balanced(small) if balance else small
    if judged is None:
        return image_bgr, None
    mask = cloud_mask(judged, cfg, ws / fs)
    if mask is None:
        return image_bgr, mask
    n = cv2.countNonZero(mask.view(np.uint8))
    if n == 0 or not share[0] <= n / mask.size <= share[1]:
        return image_bgr, mask
    x = small.astype(np.float32)
    sigma = cfg.cloud_fill_sigma_px * fs / ws
    num = _fill(x, mask, sigma)
    m = mask
    if small is not image_bgr:
        num = cv2.resize(num, (w, h), interpolation=cv2.INTER_LINEAR)
        m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    out = image_bgr.copy()
    out = cv2.copyTo(cv2.convertScaleAbs(num), m.view(np.uint8), out)     # rounded, saturated
    return out, mask


def _fill(x: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised convolution of the unmasked pixels of ``x`` (H x W x 3 float32), coarse to fine: the
    frame's clear mean, then Gaussians of 16, 4 and 1 x ``sigma``, each trusted where it saw enough clear
    pixels, so wide cloud gets the broad ground colour rather than a black hole with hard edges.
    Computed on a grid of up to ``sigma`` per cell (the result is that smooth anyway)."""
    h, w = mask.shape
    clear = (~mask).astype(np.float32)
    acc = cv2.merge([x[..., 0] * clear, x[..., 1] * clear, x[..., 2] * clear, clear])   # colour and weight
    f = 1
    while sigma / (2 * f) >= 1.0 and min(h, w) // (2 * f) >= 8:
        f *= 2
    if f > 1:
        acc = cv2.resize(acc, (w // f, h // f), interpolation=cv2.INTER_AREA)
    tot = cv2.sumElems(acc)
    out = np.empty(acc.shape[:2] + (3,), np.float32)
    out[...] = np.array(tot[:3], np.float32) / np.float32(max(tot[3], 1e-6))
    for k in (16.0, 4.0, 1.0):
        blur = _blur(acc, k * sigma / f)
        den = blur[..., 3:]
        wgt = np.clip(den * np.float32(10.0), 0.0, 1.0)                  # trusted from 10 % clear
        out += wgt * (blur[..., :3] / np.maximum(den, np.float32(1e-6)) - out)
    return out if f == 1 else cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones on a subsampled copy (their kernels would cost 100x more at full size)."""
    f = 1
    while sigma / (2 * f) >= 2.0 and min(a.shape[:2]) // (2 * f) >= 4:
        f *= 2
    if f == 1:
        return cv2.GaussianBlur(a, (0, 0), sigma)
    h, w = a.shape[:2]
    small = cv2.resize(a, (w // f, h // f), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def extract(image_bgr_or_grey: np.ndarray, cfg: FeatureConfig = FeatureConfig()):
    """(kp_xy float32 N x 2 in input pixels, desc float32 N x 128 RootSIFT, kp_size float32 N)."""
    f = extract_features(image_bgr_or_grey, cfg)
    return f.xy, f.desc, f.size
