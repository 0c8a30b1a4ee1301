"""Geometric rendering: one ray per pixel -> WGS84 ellipsoid -> basemap sample.

Anti-aliasing: the basemap is sampled from a Gaussian pyramid at the level whose pixel matches the
camera's ground sample (trilinear between levels), so a camera coarser than the map does not alias and
a finer one interpolates bilinearly. Space beyond the limb is black. Everything here is pure geometry;
illumination, clouds and sensor effects are applied afterwards by ``earthfix.sim.effects``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..onboard import geodesy
from ..onboard.camera import Camera
from .basemap import Basemap


@dataclass
class View:
    """A rendered view and the ground under each pixel (NaN where the ray misses the Earth)."""
    image: np.ndarray          # H x W x 3 BGR uint8
    lat: np.ndarray            # H x W geodetic deg
    lon: np.ndarray            # H x W deg
    land: np.ndarray           # H x W land fraction 0..1 (0 off-Earth)
    hit: np.ndarray            # H x W bool
    points: np.ndarray         # H x W x 3 ECEF km of the ground point
    pos_ecef_km: np.ndarray | None = None   # camera position (3,)
    r_cam2ecef: np.ndarray | None = None    # attitude (3x3, columns = camera axes in ECEF)
    centre_ray: np.ndarray | None = None    # the boresight (ray through the image centre), camera frame


_RAY_CACHE: dict = {}


def _camera_rays(camera: Camera) -> np.ndarray:
    key = (camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy)
    rays = _RAY_CACHE.get(key)
    if rays is None:
        if len(_RAY_CACHE) > 16:
            _RAY_CACHE.clear()
        rays = camera.pixel_rays().reshape(-1, 3)
        _RAY_CACHE[key] = rays
    return rays


def _camera_rays_t(camera: Camera) -> np.ndarray:
    """Unit camera-frame rays as a contiguous (3, H*W) array (component rows vectorise best)."""
    key = ("T", camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy)
    rays = _RAY_CACHE.get(key)
    if rays is None:
        if len(_RAY_CACHE) > 16:
            _RAY_CACHE.clear()
        rays = np.ascontiguousarray(_camera_rays(camera).T)
        _RAY_CACHE[key] = rays
    return rays


_SCALE = np.array([1.0 / geodesy.A_KM, 1.0 / geodesy.A_KM, 1.0 / geodesy.B_KM])


def _intersect(camera: Camera, pos_ecef_km, r_cam2ecef):
    """Ray/ellipsoid intersection for all pixels, in float64, in coordinates scaled so that the
    ellipsoid is the unit sphere. Returns (scaled points (3, N) with NaN on misses, hit (N,))."""
    o = np.asarray(pos_ecef_km, dtype=np.float64) * _SCALE
    d = (_SCALE[:, None] * np.asarray(r_cam2ecef, dtype=np.float64)) @ _camera_rays_t(camera)  # (3, N)
    a = np.einsum("ij,ij->j", d, d)
    half_b = o @ d
    c = float(o @ o) - 1.0
    disc = half_b * half_b - a * c
    hit = disc >= 0.0
    np.sqrt(disc, out=disc, where=hit)
    t = (-half_b - disc) / a          # nearer root
    hit &= t > 0.0
    t[~hit] = np.nan
    return o[:, None] + t * d, hit


def _unscale(ps: np.ndarray, h: int, w: int) -> np.ndarray:
    """Scaled (3, N) points to C-contiguous H x W x 3 ECEF km (cv2.merge: 3x faster than a numpy transpose)."""
    return cv2.merge([(ps[0] * geodesy.A_KM).reshape(h, w), (ps[1] * geodesy.A_KM).reshape(h, w),
                      (ps[2] * geodesy.B_KM).reshape(h, w)])


def ground_points(camera: Camera, pos_ecef_km, r_cam2ecef):
    """Ground intersection of every pixel's ray: (points H x W x 3 ECEF km, NaN on misses; hit H x W)."""
    ps, hit = _intersect(camera, pos_ecef_km, r_cam2ecef)
    pts = _unscale(ps, camera.height, camera.width)
    return pts, hit.reshape(camera.height, camera.width)


def centre_gsd_km(pts: np.ndarray, hit: np.ndarray) -> float | None:
    """Ground sample (km per pixel, geometric mean of the two axes) near the image centre, from the
    ground points ``pts`` (H x W x 3 ECEF km); None when too little of the image sees the Earth."""
    h, w = hit.shape
    r0, c0 = h // 2, w // 2
    win = pts[max(r0 - 2, 0):r0 + 3, max(c0 - 2, 0):c0 + 3]
    if not np.isfinite(win).all():
        ok = np.argwhere(hit)
        if len(ok) < 4:
            return None
        r0, c0 = ok[len(ok) // 2]
        win = pts[max(r0 - 1, 0):r0 + 2, max(c0 - 1, 0):c0 + 2]
        if not np.isfinite(win).all() or min(win.shape[:2]) < 2:
            return None
    dx = np.linalg.norm(win[:, 1:] - win[:, :-1], axis=-1).mean()
    dy = np.linalg.norm(win[1:] - win[:-1], axis=-1).mean()
    return float(np.sqrt(dx * dy))


def pyramid_level(basemap: Basemap, camera: Camera, pts: np.ndarray, hit: np.ndarray) -> float:
    """Pyramid level whose texel matches the camera's ground sample near the image centre."""
    gsd_km = centre_gsd_km(pts, hit)
    if gsd_km is None:
        return 0.0
    step = gsd_km / basemap.km_per_px
    return float(np.log2(step)) if step > 1.0 else 0.0


def render(basemap: Basemap, camera: Camera, pos_ecef_km, r_cam2ecef, level: float | None = None) -> View:
    """Render the basemap as seen by ``camera`` at ``pos_ecef_km`` with attitude ``r_cam2ecef``."""
    h, w = camera.height, camera.width
    ps, hit = _intersect(camera, pos_ecef_km, r_cam2ecef)
    # geodetic lat/lon of surface points straight from the scaled coordinates (x = A xs, z = B zs)
    lon = np.degrees(np.arctan2(ps[1], ps[0])).reshape(h, w)
    rho = np.sqrt(ps[0] * ps[0] + ps[1] * ps[1])
    lat = np.degrees(np.arctan2(ps[2] * geodesy.B_KM, rho * ((1.0 - geodesy.E2) * geodesy.A_KM))).reshape(h, w)
    pts = _unscale(ps, h, w)
    hit = hit.reshape(h, w)
    if level is None:
        level = pyramid_level(basemap, camera, pts, hit)
    img, land = basemap.sample(lat, lon, level)   # NaN (missed) points come back black, land 0
    return View(img, lat, lon, land, hit, pts, np.asarray(pos_ecef_km, dtype=np.float64),
                np.asarray(r_cam2ecef, dtype=np.float64), camera.centre_ray())


def project_ground(camera: Camera, pos_ecef_km, r_cam2ecef, points_ecef_km):
    """Pixel (u, v) of ECEF ground points, NaN where behind the camera or hidden behind the limb."""
    p = np.asarray(points_ecef_km, dtype=np.float64)
    pos = np.asarray(pos_ecef_km, dtype=np.float64)
    rel = p - pos
    d_cam = rel @ np.asarray(r_cam2ecef)
    u, v = camera.project(d_cam)
    # visible when the first ellipsoid hit along the ray is the point itself
    rng = np.linalg.norm(rel, axis=-1)
    hitp, ok = geodesy.ray_ellipsoid(pos, rel / rng[..., None])
    visible = ok & (np.linalg.norm(hitp - p, axis=-1) < 1e-3 * np.maximum(rng, 1.0))
    return np.where(visible, u, np.nan), np.where(visible, v, np.nan)
