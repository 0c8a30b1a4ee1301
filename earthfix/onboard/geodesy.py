"""WGS84 geodesy in km and degrees (geodetic latitude, longitude east, ECEF km).

Flight code and the simulator share these functions; everything is vectorised over leading axes.
"""
from __future__ import annotations

import numpy as np

A_KM = 6378.137                      # WGS84 semi-major axis
F = 1.0 / 298.257223563              # WGS84 flattening
B_KM = A_KM * (1.0 - F)              # semi-minor axis
E2 = F * (2.0 - F)                   # first eccentricity squared
R_MEAN_KM = 6371.0088                # IUGG mean radius, for great-circle distances


def geodetic_to_ecef(lat_deg, lon_deg, h_km=0.0) -> np.ndarray:
    """Geodetic (deg, deg, km) to ECEF km, shape (..., 3)."""
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    s, c = np.sin(lat), np.cos(lat)
    n = A_KM / np.sqrt(1.0 - E2 * s * s)
    h = np.asarray(h_km, dtype=float)
    return np.stack([(n + h) * c * np.cos(lon), (n + h) * c * np.sin(lon), (n * (1.0 - E2) + h) * s], axis=-1)


def ecef_to_geodetic(xyz) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECEF km (..., 3) to geodetic (lat_deg, lon_deg, h_km); Bowring's method, 3 iterations (< 1 mm)."""
    xyz = np.asarray(xyz, dtype=float)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    p = np.hypot(x, y)
    lon = np.arctan2(y, x)
    lat = np.arctan2(z, p * (1.0 - E2))
    for _ in range(3):
        s = np.sin(lat)
        n = A_KM / np.sqrt(1.0 - E2 * s * s)
        h = np.where(np.abs(np.cos(lat)) > 1e-9, p / np.maximum(np.cos(lat), 1e-12) - n, np.abs(z) - B_KM)
        lat = np.arctan2(z, p * (1.0 - E2 * n / (n + h)))
    s = np.sin(lat)
    n = A_KM / np.sqrt(1.0 - E2 * s * s)
    h = np.where(np.abs(np.cos(lat)) > 1e-9, p / np.maximum(np.cos(lat), 1e-12) - n, np.abs(z) - B_KM)
    return np.degrees(lat), np.degrees(lon), h


def surface_to_geodetic(xyz) -> tuple[np.ndarray, np.ndarray]:
    """Geodetic lat/lon (deg) of points that lie on the ellipsoid surface: exact and cheap."""
    xyz = np.asarray(xyz)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    lat = np.degrees(np.arctan2(z, (1.0 - E2) * np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x))
    return lat, lon


def enu_basis(lat_deg, lon_deg) -> np.ndarray:
    """East, North, Up unit vectors (ellipsoid normal) in ECEF as rows of a (..., 3, 3) array."""
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    sl, cl = np.sin(lat), np.cos(lat)
    so, co = np.sin(lon), np.cos(lon)
    e = np.stack([-so, co, np.zeros_like(so)], axis=-1)
    n = np.stack([-sl * co, -sl * so, cl], axis=-1)
    u = np.stack([cl * co, cl * so, sl], axis=-1)
    return np.stack([e, n, u], axis=-2)


def ray_ellipsoid(origin, dirs):
    """First intersection of rays ``origin + t * dirs`` (ECEF km) with the ellipsoid.

    Returns (points (..., 3), hit (...) bool). Rays that miss (beyond the limb) get NaN points.
    """
    origin = np.asarray(origin, dtype=np.float64)
    dirs = np.asarray(dirs)
    scale = np.array([1.0 / A_KM, 1.0 / A_KM, 1.0 / B_KM])
    o = origin * scale
    d = dirs * scale
    a = np.einsum("...i,...i->...", d, d)
    b = 2.0 * np.einsum("...i,...i->...", d, o)
    c = np.dot(o, o) - 1.0 if o.ndim == 1 else np.einsum("...i,...i->...", o, o) - 1.0
    disc = b * b - 4.0 * a * c
    hit = disc >= 0.0
    t = (-b - np.sqrt(np.where(hit, disc, 0.0))) / (2.0 * a)
    hit &= t > 0.0
    t = np.where(hit, t, np.nan)
    return origin + t[..., None] * dirs, hit


def great_circle_km(lat1, lon1, lat2, lon2):
    """Haversine distance on the mean sphere, km."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * R_MEAN_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def destination(lat_deg, lon_deg, azimuth_deg, dist_km):
    """Point reached from (lat, lon) along a great circle of the mean sphere (deg)."""
    p1 = np.radians(lat_deg)
    l1 = np.radians(lon_deg)
    az = np.radians(azimuth_deg)
    d = np.asarray(dist_km) / R_MEAN_KM
    p2 = np.arcsin(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(az))
    l2 = l1 + np.arctan2(np.sin(az) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2))
    return np.degrees(p2), (np.degrees(l2) + 540.0) % 360.0 - 180.0


def wrap_lon(lon_deg):
    """Longitude to [-180, 180)."""
    return (np.asarray(lon_deg) + 180.0) % 360.0 - 180.0


# --- quaternions: scalar first [w, x, y, z], Hamilton, active rotation camera -> ECEF -------------

def quat_from_matrix(r) -> np.ndarray:
    """Rotation matrix (3x3, columns = camera axes in ECEF) to unit quaternion [w, x, y, z], w >= 0."""
    r = np.asarray(r, dtype=float)
    t = np.trace(r)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def matrix_from_quat(q) -> np.ndarray:
    """Unit quaternion [w, x, y, z] to a 3x3 rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
