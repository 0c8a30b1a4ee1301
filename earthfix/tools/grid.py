"""The global grid of reference views: a Fibonacci lattice per footprint scale, land and coasts only.

A reference view is a nadir, north-up render of the basemap centred on a lattice point, whose footprint
half-width is one of ``SCALES_KM``. Lattice spacing is ``SPACING_FRAC`` of the footprint width
(2 x half-width), i.e. <= 1/4 of a footprint as the bundle spec asks.

Scales: the cameras in use see footprint half-widths from 231 km (512 px at 60 deg from 400 km) to 671 km
(256 px at 80 deg from 800 km); four scales a factor ~1.4 apart keep every query within x1.2 of one.
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from ..onboard import geodesy

SCALES_KM = (250.0, 350.0, 490.0, 690.0)    # reference footprint half-widths
SPACING_FRAC = 0.25                           # lattice spacing / footprint width
REF_FOV_DEG = 80.0                            # reference views: nadir pinhole at this FOV


def ref_alt_km(half_width_km: float, fov_deg: float = REF_FOV_DEG) -> float:
    """Altitude at which a nadir camera of ``fov_deg`` sees ``half_width_km``."""
    return half_width_km / math.tan(math.radians(fov_deg) / 2.0)


def fibonacci_lattice(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n near-uniform points on the sphere (lat, lon degrees)."""
    i = np.arange(n) + 0.5
    lat = np.degrees(np.arcsin(1.0 - 2.0 * i / n))
    lon = (np.degrees(np.pi * (1.0 + 5.0 ** 0.5) * i) + 180.0) % 360.0 - 180.0
    return lat, lon


@lru_cache(maxsize=8)
def smoothed_land(radius_km: float, land_key: int = 0) -> np.ndarray:
    """Global land fraction averaged over a disc-sized Gaussian of ``radius_km`` on a 0.25-deg grid."""
    from ..sim.basemap import global_land_fraction
    land = cv2.resize(global_land_fraction("10min"), (1440, 720), interpolation=cv2.INTER_AREA)
    sigma_px = max(radius_km / 2.0 / 27.8, 0.5)   # 0.25 deg ~ 27.8 km (north-south)
    return cv2.GaussianBlur(land, (0, 0), sigma_px, borderType=cv2.BORDER_WRAP if False else cv2.BORDER_REFLECT)


def land_fraction_near(lat, lon, radius_km: float) -> np.ndarray:
    grid = smoothed_land(float(round(radius_km, 1)))
    h, w = grid.shape
    r = np.clip(((90.0 - np.asarray(lat)) / 180.0 * h).astype(int), 0, h - 1)
    c = np.clip((((np.asarray(lon) + 180.0) % 360.0) / 360.0 * w).astype(int), 0, w - 1)
    return grid[r, c]


def reference_grid(scales_km=SCALES_KM, spacing_frac: float = SPACING_FRAC, min_land: float = 0.02,
                   lat_limit_deg: float = 84.0):
    """Reference view centres: (lat, lon, scale_index) arrays over all scales, land/coast only."""
    lats, lons, sidx = [], [], []
    area_km2 = 4.0 * math.pi * geodesy.R_MEAN_KM ** 2
    for k, hw in enumerate(scales_km):
        spacing = spacing_frac * 2.0 * hw
        n = int(math.ceil(area_km2 / (spacing * spacing)))
        lat, lon = fibonacci_lattice(n)
        keep = (np.abs(lat) <= lat_limit_deg) & (land_fraction_near(lat, lon, hw) >= min_land)
        lats.append(lat[keep]); lons.append(lon[keep]); sidx.append(np.full(keep.sum(), k, np.int16))
    return np.concatenate(lats), np.concatenate(lons), np.concatenate(sidx)
