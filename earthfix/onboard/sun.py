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
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    cl = np.cos(lat)
    sin_el = cl * np.cos(lon) * s[0] + cl * np.sin(lon) * s[1] + np.sin(lat) * s[2]
    return np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))
