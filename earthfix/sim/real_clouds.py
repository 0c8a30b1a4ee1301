"""A real cloud field laid where it lies: a global equirectangular cloud opacity (a satellite composite's
cloud layer) in place of the simulator's procedural ``effects.CloudField``.

The field is an image covering longitude -180..180 (column 0 at 180 W) and latitude 90..-90 (row 0 at 90 N).
Its opacity is the image's alpha channel when it has one (a cloud layer, e.g. three-globe's ``clouds.png``),
else read from its colours: bright, nearly grey pixels (:func:`scene_opacity`). Each frame takes the clouds
over its own ground: a real day's weather where it was. Opacity above 0.5 counts as cloud in the truth
(``cloud_frac``, eligibility), as with the simulator's field.

Used by ``earthfix eval --cloud-field`` and the diagnostic bench ``tests/bench/bench_real_clouds.py``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .basemap import read_image


CLI_HELP = ("a real global cloud field (equirectangular, -180..180 / -90..90; its alpha channel, else its bright grey "
            "pixels) laid where it lies instead of the simulator's clouds")   # --cloud-field of sim, eval, replay


class CloudFieldError(ValueError):
    """A cloud field image that cannot be read or is not a global equirectangular image."""


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def scene_opacity(bgr: np.ndarray, v_ramp=(120.0, 210.0), s_ramp=(70.0, 30.0)) -> np.ndarray:
    """Cloud opacity (float32 0..1) of a true-colour scene: bright and nearly grey pixels (HSV value ramped up
    over ``v_ramp``, saturation ramped down over ``s_ramp``; how translucent the edges come out rests on them)."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV).astype(np.float32)
    return (_ramp(hsv[..., 2], *v_ramp) * _ramp(-hsv[..., 1], -s_ramp[0], -s_ramp[1])).astype(np.float32)


def image_opacity(raw: np.ndarray, v_ramp=(120.0, 210.0), s_ramp=(70.0, 30.0)) -> np.ndarray:
    """Cloud opacity (float32 0..1) of an image as decoded with ``cv2.IMREAD_UNCHANGED``: its alpha channel when it
    has one (a cloud layer), else :func:`scene_opacity` of its colours (a grey image as three equal bands, 16 bits
    taken to 8 as ``cv2.IMREAD_COLOR`` does)."""
    if raw.ndim == 3 and raw.shape[2] == 4:
        return raw[..., 3].astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)
    bgr = raw if raw.ndim == 3 else cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
    if bgr.dtype == np.uint16:
        bgr = (bgr >> 8).astype(np.uint8)
    return scene_opacity(bgr, v_ramp, s_ramp)


def sample_opacity(opacity: np.ndarray, x: np.ndarray, y: np.ndarray, border: int) -> np.ndarray:
    """``opacity`` at pixel coordinates (x, y) (bilinear; 0 where they are not finite: rays off the Earth)."""
    x = np.array(x, np.float64)
    y = np.array(y, np.float64)
    bad = ~np.isfinite(x) | ~np.isfinite(y)
    x[bad] = y[bad] = 0.0
    a = cv2.remap(opacity, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR, borderMode=border)
    a[bad] = 0.0
    return a


class GlobalCloudField:
    """A global opacity field (equirectangular, row 0 at 90 N, column 0 at 180 W) sampled where it lies.
    Duck-types ``effects.CloudField.sample_with_thickness`` (the cover and offsets are ignored: the field has
    its own clouds, in their own places); thickness is the opacity itself. It has no veil or cumulus layer:
    frames that ask for those (``thin_cloud``, ``cumulus``) keep the simulator's field."""

    carries_cover = True      # ``effects.apply`` draws it whatever the configured cloud_cover

    def __init__(self, opacity: np.ndarray, source: str = ""):
        opacity = np.asarray(opacity, np.float32)
        if opacity.ndim != 2 or abs(opacity.shape[1] - 2 * opacity.shape[0]) > 2:
            name = f" {source}" if source else ""
            raise CloudFieldError(f"cloud field{name}: {opacity.shape[1]} x {opacity.shape[0]} px is not a global "
                                  "equirectangular image (width = 2 x height)")
        self.opacity = np.clip(opacity, 0.0, 1.0)
        self.source = source
        self.px_per_deg = opacity.shape[1] / 360.0

    @classmethod
    def load(cls, path, v_ramp=(120.0, 210.0), s_ramp=(70.0, 30.0)) -> "GlobalCloudField":
        """The field of an image file (:func:`image_opacity`)."""
        raw = read_image(path, cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise CloudFieldError(f"cannot read cloud field image {path}")
        return cls(image_opacity(raw, v_ramp, s_ramp), Path(path).name)

    @property
    def cloud_share(self) -> float:
        """Share of the image's pixels (not of the globe's area) with opacity above 0.5."""
        return float((self.opacity > 0.5).mean())

    def sample_with_thickness(self, lat_deg, lon_deg, cover=None, lon_offset_deg=0.0, flip_lat=False, **_):
        lat = np.asarray(lat_deg, np.float64)
        lon = (np.asarray(lon_deg, np.float64) + 180.0) % 360.0
        x, y = lon * self.px_per_deg - 0.5, (90.0 - lat) * self.px_per_deg - 0.5
        a = sample_opacity(self.opacity, x, y, cv2.BORDER_WRAP)
        return a, a.copy()
