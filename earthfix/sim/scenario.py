"""Orbit-replay scenarios: an orbit, a camera, an attitude law and effects, streamed frame by frame.

Attitude laws (CONVENTIONS: nadir = along the ellipsoid normal below the spacecraft), each pointing the
boresight, the ray through the image centre (``Camera.centre_ray``; the optical axis for a centred camera):
- ``nadir``: boresight exactly at nadir, yaw exactly from the yaw law;
- ``jitter``: nadir plus a random pointing error of ``jitter_deg`` (standard deviation per axis, a few tenths
  of a degree) and a yaw error of ``yaw_noise_deg`` per frame, the pointing of a real, imperfect bus;
- ``tilt``: off nadir by exactly ``tilt_deg`` towards a random image direction per frame.

Yaw law (``yaw_deg``): ``"track"`` puts the image's up along the ground-track direction (the sub-satellite
point's motion over the rotating Earth: the natural push-broom orientation), a number fixes the yaw, and
``"random"`` draws a uniform yaw per frame.

Every frame has its own random streams derived from (seed, frame index): a frame is identical whatever the
duration of the run, and any frame can be regenerated alone with ``Scenario.frame(i)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from ..onboard import geodesy
from ..onboard.camera import Camera, nadir_attitude, tilt_rotation, yaw_of_attitude
from . import effects as fx
from .basemap import Basemap
from .orbit import Orbit, iso, parse_duration_s, parse_time, times
from .render import render

ATTITUDES = ("nadir", "jitter", "tilt")


def _r(x, nd):
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def track_azimuth_deg(pos_ecef_km, vel_ecef_km_s) -> float:
    """Azimuth (deg, clockwise from north) of the ground-track direction below the spacecraft."""
    lat, lon, _ = geodesy.ecef_to_geodetic(pos_ecef_km)
    e, n, _ = geodesy.enu_basis(float(lat), float(lon))
    v = np.asarray(vel_ecef_km_s, dtype=float)
    return float(math.degrees(math.atan2(v @ e, v @ n)) % 360.0)


def make_truth(camera: Camera, t: datetime, pos_ecef_km, r_cam2ecef, info: dict, frame: str | None = None,
               vel_ecef_km_s=None) -> dict:
    """The truth record of a frame (CONVENTIONS simulator contract, plus diagnostics)."""
    pos = np.asarray(pos_ecef_km, dtype=float)
    r = np.asarray(r_cam2ecef, dtype=float)
    sub_lat, sub_lon, alt_km = (float(x) for x in geodesy.ecef_to_geodetic(pos))
    ray = camera.centre_ray()                   # CONVENTIONS: the boresight is the ray through the image centre
    bore_dir = r @ ray
    bp, ok = geodesy.ray_ellipsoid(pos, bore_dir)
    if bool(ok):
        bore_lat, bore_lon = (float(x) for x in geodesy.surface_to_geodetic(bp))
        yaw = yaw_of_attitude(r, bore_lat, bore_lon, ray)
        sun = float(fx.sun_elevation_deg(bore_lat, bore_lon, t))
    else:
        bore_lat = bore_lon = sun = None
        yaw = yaw_of_attitude(r, sub_lat, sub_lon, ray)
    up = geodesy.enu_basis(sub_lat, sub_lon)[2]
    tilt = math.degrees(math.acos(float(np.clip(-(bore_dir @ up), -1.0, 1.0))))
    land_clear = float(info.get("land_clear_frac", 0.0))
    return {
        "frame": frame,
        "time": iso(t),
        "ecef_km": [round(float(c), 5) for c in pos],
        "sub_lat": round(sub_lat, 6), "sub_lon": round(sub_lon, 6), "alt_km": round(alt_km, 4),
        "yaw_deg": round(yaw, 4),
        "bore_lat": _r(bore_lat, 6), "bore_lon": _r(bore_lon, 6),
        "footprint_half_width_km": round(camera.footprint_half_width_km(alt_km), 3),
        "sun_elev_deg": _r(sun, 3),
        "cloud_frac": round(float(info.get("cloud_frac", 0.0)), 4),
        "land_frac": round(float(info.get("land_frac", 0.0)), 4),
        "land_clear_frac": round(land_clear, 4),
        "eligible": bool(sun is not None and sun > 0.0 and land_clear >= 0.2),
        "q_cam2ecef_wxyz": [round(float(c), 10) for c in geodesy.quat_from_matrix(r)],
        "tilt_deg": round(tilt, 4),
        "velocity_ecef_km_s": None if vel_ecef_km_s is None else [round(float(c), 6) for c in vel_ecef_km_s],
    }


def attitude_for(pos_ecef_km, vel_ecef_km_s, attitude: str = "nadir", yaw_deg="track", rng=None,
                 tilt_deg: float = 10.0, jitter_deg: float = 0.3, yaw_noise_deg: float = 1.0) -> np.ndarray:
    """Camera -> ECEF rotation for an attitude law (see the module docstring)."""
    if attitude not in ATTITUDES:
        raise ValueError(f"attitude must be one of {', '.join(ATTITUDES)}, got {attitude!r}")
    rng = rng if rng is not None else np.random.default_rng(0)
    lat, lon, _ = (float(x) for x in geodesy.ecef_to_geodetic(pos_ecef_km))
    if yaw_deg == "track":
        yaw = track_azimuth_deg(pos_ecef_km, vel_ecef_km_s)
    elif yaw_deg == "random":
        yaw = float(rng.uniform(0.0, 360.0))
    else:
        yaw = float(yaw_deg)
    if attitude == "nadir":
        return nadir_attitude(lat, lon, yaw)
    if attitude == "tilt":
        return nadir_attitude(lat, lon, yaw) @ tilt_rotation(tilt_deg, float(rng.uniform(0.0, 360.0)))
    dx, dy = rng.normal(0.0, jitter_deg, 2)
    dyaw = float(rng.normal(0.0, yaw_noise_deg))
    return nadir_attitude(lat, lon, yaw + dyaw) @ tilt_rotation(math.hypot(dx, dy), math.degrees(math.atan2(dx, dy)))


@dataclass
class Scenario:
    """An orbit replay: ``frames()`` yields ``(image BGR uint8, truth dict)`` lazily, one per time step."""
    orbit: Orbit
    camera: Camera
    start: datetime | str
    duration: str | float = "95m"
    interval: str | float = "10s"
    attitude: str = "jitter"
    yaw_deg: str | float = "track"
    tilt_deg: float = 10.0
    jitter_deg: float = 0.3
    yaw_noise_deg: float = 1.0
    effects: fx.EffectsConfig = field(default_factory=fx.EffectsConfig.default)
    seed: int = 0
    basemap: Basemap | None = None
    frame_ext: str = "png"
    cloud_field: object | None = None      # a real field in place of the procedural one (sim.real_clouds)
    _clouds: fx.CloudField | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.attitude not in ATTITUDES:
            raise ValueError(f"attitude must be one of {', '.join(ATTITUDES)}, got {self.attitude!r}")
        if not (self.yaw_deg in ("track", "random") or isinstance(self.yaw_deg, (int, float))):
            raise ValueError(f"yaw_deg must be 'track', 'random' or a number, got {self.yaw_deg!r}")
        if not 0.0 <= float(self.tilt_deg) < 60.0:     # beyond, an 80 deg camera's far edge leaves the Earth
            raise ValueError(f"tilt_deg (--tilt-deg) must be in [0, 60) deg, got {self.tilt_deg:g}")
        self.start = parse_time(self.start)
        if self.basemap is None:
            self.basemap = Basemap.default()

    def times(self) -> list[datetime]:
        return times(self.start, self.duration, self.interval)

    def __len__(self) -> int:
        return len(self.times())

    @property
    def clouds(self) -> fx.CloudField | None:
        """The scenario's geo-anchored cloud field (built on first use, ~0.2 s), or ``cloud_field`` when given
        (a real one, ``sim.real_clouds.GlobalCloudField``: its own clouds where they lie; the cover is its own)."""
        if self.cloud_field is not None:
            return self.cloud_field if self.effects.clouds else None
        if self._clouds is None and self.effects.clouds and self.effects.cloud_cover > 0:
            self._clouds = fx.CloudField(self.seed, self.effects.cloud_cover)
        return self._clouds

    def frame(self, i: int, t: datetime | None = None) -> tuple[np.ndarray, dict]:
        """Frame ``i`` (at ``t``, default start + i * interval)."""
        if t is None:
            t = self.start + timedelta(seconds=i * parse_duration_s(self.interval))
        att_ss, fx_ss = np.random.SeedSequence([int(self.seed), int(i)]).spawn(2)
        pos, vel = self.orbit.state(t)
        r = attitude_for(pos, vel, self.attitude, self.yaw_deg, np.random.default_rng(att_ss),
                         self.tilt_deg, self.jitter_deg, self.yaw_noise_deg) @ self.camera.centring_rotation()
        view = render(self.basemap, self.camera, pos, r)
        img, info = fx.apply(view, t, self.effects, np.random.default_rng(fx_ss), clouds=self.clouds,
                             sun_dir=fx.sun_direction_ecef(t))
        truth = make_truth(self.camera, t, pos, r, info, f"frame_{i:05d}.{self.frame_ext}", vel)
        return img, truth

    def frames(self):
        """Yield ``(image, truth)`` for every time step, streaming (nothing is kept)."""
        for i, t in enumerate(self.times()):
            yield self.frame(i, t)


def single_frame(basemap: Basemap, camera: Camera, lat: float, lon: float, alt_km: float, yaw_deg: float,
                 tilt_deg: float = 0.0, tilt_az_deg: float = 0.0, t=None, effects: fx.EffectsConfig | None = None,
                 rng: np.random.Generator | None = None, clouds: fx.CloudField | None = None
                 ) -> tuple[np.ndarray, dict]:
    """Render one frame from a spacecraft at geodetic (``lat``, ``lon``, ``alt_km``).

    The camera points at nadir with image up at azimuth ``yaw_deg``, then tilts by ``tilt_deg`` towards
    the image direction ``tilt_az_deg`` (0 = up, 90 = right); the truth's ``yaw_deg`` is the CONVENTIONS
    yaw at the boresight point (equal to ``yaw_deg`` without tilt). ``effects`` None renders geometry
    only. ``t`` None: local solar noon at the March 2026 equinox (sun ~ 90 - |lat| deg high). Pass ``rng``
    for reproducible effects (default: fresh entropy) and ``clouds`` to anchor clouds to places (default:
    a shared field moved randomly per frame).
    """
    if t is None:
        t = datetime(2026, 3, 20, 12, 0, tzinfo=timezone.utc) - timedelta(hours=float(lon) / 15.0)
    t = parse_time(t)
    effects = effects if effects is not None else fx.EffectsConfig.clean()
    rng = rng if rng is not None else np.random.default_rng()
    pos = geodesy.geodetic_to_ecef(lat, lon, alt_km)
    r = nadir_attitude(lat, lon, yaw_deg)
    if tilt_deg:
        r = r @ tilt_rotation(tilt_deg, tilt_az_deg)
    r = r @ camera.centring_rotation()        # the boresight (image centre) where the law points the axis
    view = render(basemap, camera, pos, r)
    img, info = fx.apply(view, t, effects, rng, clouds=clouds)
    return img, make_truth(camera, t, pos, r, info)
