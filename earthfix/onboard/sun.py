"""The Sun seen from the ground: its direction in ECEF and its elevation at a point, from UTC time alone.

Astronomical Almanac low-precision solar coordinates (about 0.01 deg over 1950-2050; mean equator and equinox of
date), turned into ECEF about z by Greenwich mean sidereal time (IAU-82, UT1 = UTC; the equation of the
equinoxes, under an arcsecond, neglected). Written out here, not taken from an ephemeris library, because the
flight code depends on numpy, onnxruntime, hnswlib, OpenCV and PyYAML only; the simulator lights its frames
with this same function (``earthfix.sim.effects.sun_direction_ecef``), so flight and simulation share one Sun.
Elevations are geodetic: above the ellipsoid's tangent plane, degrees.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from .fusion import gmst_rad, to_posix_s

J2000_POSIX_S = 946728000.0          # 2000-01-01T12:00:00 UTC


def parse_utc(text) -> datetime:
    """An ISO 8601 string ('2025-11-10T19:00:00Z'; without a zone: UTC) or a datetime (naive: UTC) as an aware
    datetime, strings turned to UTC; ValueError with a one-line reason otherwise. (The simulator's times too:
    ``earthfix.sim.orbit.parse_time``.)"""
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=timezone.utc)
    try:
        t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 UTC time: {text!r}") from None
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def utc_posix_s(t) -> float:
    """UTC time as POSIX seconds from POSIX seconds, a datetime (naive = UTC), numpy datetime64 or an ISO 8601
    string ('2025-11-10T19:00:00Z'); ValueError with a one-line reason otherwise."""
    if isinstance(t, str):
        t = parse_utc(t)
    if isinstance(t, bool) or not isinstance(t, (int, float, datetime, np.datetime64, np.floating, np.integer)):
        raise ValueError(f"not a time: {t!r}")
    ts = float(to_posix_s(t))
    if not math.isfinite(ts):
        raise ValueError(f"not a time: {t!r}")
    return ts


def sun_direction_ecef(t, gmst: float | None = None) -> np.ndarray:
    """Unit vector from the Earth's centre to the Sun in ECEF at UTC ``t`` (any form ``utc_posix_s`` reads);
    ``gmst`` (radians) overrides the sidereal time computed from ``t``."""
    ts = utc_posix_s(t)
    d = (ts - J2000_POSIX_S) / 86400.0                          # days from J2000.0
    mean_lon = math.radians((280.460 + 0.9856474 * d) % 360.0)
    anomaly = math.radians((357.528 + 0.9856003 * d) % 360.0)
    lam = mean_lon + math.radians(1.915) * math.sin(anomaly) + math.radians(0.020) * math.sin(2 * anomaly)
    eps = math.radians(23.439 - 4.0e-7 * d)                     # obliquity of the ecliptic
    x, y, z = math.cos(lam), math.cos(eps) * math.sin(lam), math.sin(eps) * math.sin(lam)
    th = float(gmst_rad(ts)) if gmst is None else float(gmst)
    c, s = math.cos(th), math.sin(th)
    v = np.array([c * x + s * y, -s * x + c * y, z])
    return v / np.linalg.norm(v)


def sun_elevation_deg(lat_deg, lon_deg, t=None, sun_dir=None):
    """Geodetic elevation of the Sun (deg) at ground points (vectorised); give ``t`` or ``sun_dir``."""
    s = sun_direction_ecef(t) if sun_dir is None else np.asarray(sun_dir, dtype=float)
    return np.degrees(np.arcsin(np.clip(_sin_elevation(lat_deg, lon_deg, s), -1.0, 1.0)))


def _sin_elevation(lat_deg, lon_deg, sun_dir: np.ndarray):
    """Sine of the Sun's geodetic elevation at ground points: the ellipsoid normal's dot with its direction."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    cl = np.cos(lat)
    return cl * np.cos(lon) * sun_dir[0] + cl * np.sin(lon) * sun_dir[1] + np.sin(lat) * sun_dir[2]


class Daylight:
    """Where ground can be seen at one time: the Sun's direction (ECEF unit vector) and the least Sun elevation
    (deg) of ground that can show in a frame. With the frame's time the search keeps to such ground: a store
    keypoint or a reference view in the night cannot be what a daytime frame shows (``vote.KeypointVoter``,
    ``Localizer.candidates``)."""

    def __init__(self, sun_ecef, min_elev_deg: float):
        self.sun_ecef = np.asarray(sun_ecef, dtype=float)
        self.min_elev_deg = float(min_elev_deg)

    @classmethod
    def at(cls, t, min_elev_deg: float) -> "Daylight":
        """At UTC ``t`` (any form ``utc_posix_s`` reads)."""
        return cls(sun_direction_ecef(t), min_elev_deg)

    def lit(self, lat_deg, lon_deg, slack_deg=0.0) -> np.ndarray:
        """True where the Sun stands at least ``min_elev_deg`` - ``slack_deg`` above the ground (vectorised)."""
        floor_deg = np.maximum(self.min_elev_deg - np.asarray(slack_deg, dtype=float), -90.0)
        return _sin_elevation(lat_deg, lon_deg, self.sun_ecef) >= np.sin(np.radians(floor_deg))
