"""Is a global map where its equirectangular grid says? Local offsets against a reference map.

A held-out map measures the pipeline only if its pixels lie where its grid says: frames rendered from a map
whose ground is drawn 60 km off are located where their ground really is, and an evaluation counts those right
answers as false fixes (session 51: an old openuniverse texture, 6 "false fixes", every one the map's own
offset). ``Registration`` compares a map with a reference on the reference's grid: per window of ``window_px``
px, the phase correlation (OpenCV) of the two maps' gradient magnitudes, i.e. where the map draws the
reference's ground, as an east / north offset in km. Windows whose correlation peak is weak
(< ``MIN_RESPONSE``: different content) or without texture are left out. Faithful maps read 3.5-4.9 km at the
median (the method's floor: their content differs), the openuniverse texture 11.5 km with half its windows over
10 km. A fix on a frame of that map lies at minus the offset from the truth.

Default reference: the shipped July Blue Marble (``maps/``: georeferenced, without relief shading).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ..sim.basemap import read_image

MIN_RESPONSE = 0.3
WINDOW_PX = 64
SUSPECT_P50_KM = 8.0          # a map whose median offset exceeds this is not a fair test of position


def default_reference() -> Path:
    """The shipped July map (``DEFAULT_KEYSTORE_EXTRA``: the default bundle's second map), checked against its
    SHA-256."""
    from ..sim.basemap import shipped_map_path
    from .build_index import DEFAULT_KEYSTORE_EXTRA
    return shipped_map_path(DEFAULT_KEYSTORE_EXTRA[0])


def gradient_magnitude(img: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.0)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


class Registration:
    """A map's local offsets against a reference, both on the reference's equirectangular grid (global)."""

    def __init__(self, map_image: np.ndarray, ref_image: np.ndarray, window_px: int = WINDOW_PX):
        h, w = ref_image.shape[:2]
        if map_image.shape[:2] != (h, w):
            map_image = cv2.resize(map_image, (w, h), interpolation=cv2.INTER_AREA)
        self.ref, self.map = gradient_magnitude(ref_image), gradient_magnitude(map_image)
        self.deg_per_px = 360.0 / w
        self.win = int(window_px)
        self.hann = cv2.createHanningWindow((self.win, self.win), cv2.CV_64F)

    @classmethod
    def of_image(cls, map_image: np.ndarray, ref_path=None, window_px: int = WINDOW_PX) -> "Registration":
        """``map_image`` (a global map, BGR, as read: water not flattened) against the map at ``ref_path``
        (default: ``default_reference()``)."""
        ref_path = default_reference() if ref_path is None else ref_path
        ref = read_image(ref_path)
        if ref is None:
            raise ValueError(f"cannot read {ref_path}")
        return cls(map_image, ref, window_px)

    @classmethod
    def of_files(cls, map_path, ref_path=None, window_px: int = WINDOW_PX) -> "Registration":
        img = read_image(map_path)
        if img is None:
            raise ValueError(f"cannot read {map_path}")
        return cls.of_image(img, ref_path, window_px)

    def offset_km(self, lat: float, lon: float) -> tuple[float, float, float] | None:
        """(east km, north km, peak response) of where the map draws the ground the reference has at (lat, lon);
        None at the map's edge or where the reference has no texture."""
        r = int((90.0 - lat) / self.deg_per_px)
        c = int((lon + 180.0) / self.deg_per_px)
        h = self.win // 2
        a = self.ref[r - h:r + h, c - h:c + h].astype(np.float64)
        b = self.map[r - h:r + h, c - h:c + h].astype(np.float64)
        if a.shape != (self.win, self.win) or b.shape != a.shape or a.std() < 3.0:
            return None
        (dx, dy), resp = cv2.phaseCorrelate(a, b, self.hann)
        km = self.deg_per_px * 111.2
        return dx * km * math.cos(math.radians(lat)), -dy * km, float(resp)

    def grid(self, step_deg: float = 10.0):
        """(lat, lon, offset or None, ok) every ``step_deg`` between 70 N and 60 S; ok: a strong peak."""
        for lat in np.arange(70.0, -60.0, -step_deg):
            for lon in np.arange(-170.0, 180.0, step_deg):
                o = self.offset_km(float(lat), float(lon))
                yield float(lat), float(lon), o, o is not None and o[2] >= MIN_RESPONSE

    def summary(self, step_deg: float = 10.0) -> dict:
        """``summarise`` over ``grid(step_deg)``'s windows with a strong peak."""
        return summarise([o for _, _, o, ok in self.grid(step_deg) if ok])


def summarise(offsets) -> dict:
    """Windows kept, the median offset (km) and the shares over 10 and 25 km of (east km, north km, ...)
    ``offsets``; ``suspect`` when the median exceeds ``SUSPECT_P50_KM``."""
    m = np.array([math.hypot(o[0], o[1]) for o in offsets])
    if not len(m):
        return {"windows": 0, "offset_p50_km": None, "over_10_km": None, "over_25_km": None, "suspect": None}
    p50 = float(np.median(m))
    return {"windows": int(len(m)), "offset_p50_km": round(p50, 1), "over_10_km": round(float(np.mean(m > 10)), 4),
            "over_25_km": round(float(np.mean(m > 25)), 4), "suspect": p50 > SUSPECT_P50_KM}
