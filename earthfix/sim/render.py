"""Geometric rendering: one ray per pixel -> WGS84 ellipsoid -> basemap sample.

Anti-aliasing: the basemap is sampled from a Gaussian pyramid at the level whose pixel matches the
camera's ground sample (trilinear between levels), so a camera coarser than the map does not alias and
a finer one interpolates bilinearly. Space beyond the limb is black. Everything here is pure geometry;
illumination, clouds and sensor effects are applied afterwards by ``earthfix.sim.effects``.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def ground_points(camera: Camera, pos_ecef_km, r_cam2ecef):
    """Ground intersection of every pixel's ray: (points H x W x 3, hit H x W)."""
    dirs = _camera_rays(camera) @ np.asarray(r_cam2ecef, dtype=np.float64).T
    pts, hit = geodesy.ray_ellipsoid(np.asarray(pos_ecef_km, dtype=np.float64), dirs)
    return pts.reshape(camera.height, camera.width, 3), hit.reshape(camera.height, camera.width)


def pyramid_level(basemap: Basemap, camera: Camera, pts: np.ndarray, hit: np.ndarray) -> float:
    """Pyramid level whose texel matches the camera's ground sample near the image centre."""
    h, w = hit.shape
    r0, c0 = h // 2, w // 2
    win = pts[max(r0 - 2, 0):r0 + 3, max(c0 - 2, 0):c0 + 3]
    if not np.isfinite(win).all():
        ok = np.argwhere(hit)
        if len(ok) < 4:
            return 0.0
        r0, c0 = ok[len(ok) // 2]
        win = pts[max(r0 - 1, 0):r0 + 2, max(c0 - 1, 0):c0 + 2]
        if not np.isfinite(win).all() or min(win.shape[:2]) < 2:
            return 0.0
    dx = np.linalg.norm(win[:, 1:] - win[:, :-1], axis=-1).mean()
    dy = np.linalg.norm(win[1:] - win[:-1], axis=-1).mean()
    gsd_km = float(np.sqrt(dx * dy))
    step = gsd_km / basemap.km_per_px
    return float(np.log2(step)) if step > 1.0 else 0.0


def render(basemap: Basemap, camera: Camera, pos_ecef_km, r_cam2ecef, level: float | None = None) -> View:
    """Render the basemap as seen by ``camera`` at ``pos_ecef_km`` with attitude ``r_cam2ecef``."""
    pts, hit = ground_points(camera, pos_ecef_km, r_cam2ecef)
    lat, lon = geodesy.surface_to_geodetic(pts)
    if level is None:
        level = pyramid_level(basemap, camera, pts, hit)
    la = np.where(hit, lat, 0.0)
    lo = np.where(hit, lon, 0.0)
    img, land = basemap.sample(la, lo, level)
    img[~hit] = 0
    land = np.where(hit, land, 0.0).astype(np.float32)
    return View(img, lat, lon, land, hit, pts)


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
