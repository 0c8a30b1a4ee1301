"""Orbits: TLE presets and Keplerian elements propagated with the ``sgp4`` library, then TEME -> ECEF.

TEME -> ECEF is a rotation about z by the Greenwich mean sidereal time (IAU-82, ``sgp4.propagation.gstime``).
Polar motion (< 15 m) and the equation of the equinoxes (< 1.2 arcsec, < 40 m at the ground) are
neglected: both are far below the 7 km/pixel of the default basemap. UT1 is taken equal to UTC
(< 0.9 s, < 0.4 km along track at ground speed), the same in the simulator and in every check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sgp4.api import SGP4_ERRORS, Satrec, WGS72, jday
from sgp4.propagation import gstime

from ..onboard import geodesy
from ..onboard.sun import parse_utc

# Real two-line element sets (the epoch is in each line 1). Propagation months from the epoch drifts
# from the true ISS (reboosts) but stays a physically valid orbit of that shape.
PRESETS: dict[str, dict] = {
    "iss": {
        "name": "ISS (ZARYA)",
        "line1": "1 25544U 98067A   25313.96830531  .00008626  00000+0  16179-3 0  9997",
        "line2": "2 25544  51.6342 304.7042 0004075  52.7615 307.3745 15.49490024537771",
        "note": "International Space Station, ~420 km, 51.6 deg; epoch 2025-11-09",
        # a fixed, reproducible start whose first orbit crosses a lot of daylit land (scanned over 2025-11-10
        # in half-hour steps, sun above 10 deg, land under the sub-satellite point): daylit land after 9 min,
        # Africa and Asia. The TLE epoch's orbit has no eligible frame in its first 95 min.
        "start": "2025-11-10T19:00:00Z",
    },
    "sso": {
        "name": "SENTINEL-2A",
        "line1": "1 40697U 15028A   25225.66220237  .00000108  00000-0  57680-4 0  9995",
        "line2": "2 40697  98.5664 299.9242 0001176  96.3963 263.7354 14.30826489529757",
        "note": "Sentinel-2A, ~786 km sun-synchronous (10:30 descending node); epoch 2025-08-13",
        "start": "2025-11-10T08:30:00Z",         # daylit land from the first minute
    },
}


class OrbitError(ValueError):
    """An orbit that cannot be built or propagated."""


def _preset_entry(name: str) -> dict:
    key = name.lower()
    if key not in PRESETS:
        raise OrbitError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]


def parse_time(text) -> datetime:
    """ISO 8601 UTC string (or datetime) to an aware UTC datetime (the flight code's ``onboard.sun.parse_utc``);
    OrbitError otherwise."""
    try:
        return parse_utc(text)
    except ValueError:
        raise OrbitError(f"not an ISO 8601 time: {text!r}") from None


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_duration_s(text) -> float:
    """'95m', '2h', '10s', '1.5h', '90' (seconds) to seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip().lower()
    units = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u):
            try:
                return float(s[: -len(u)]) * units[u]
            except ValueError:
                break
    try:
        return float(s)
    except ValueError:
        raise OrbitError(f"not a duration (e.g. 95m, 2h, 10s): {text!r}") from None


def gmst_rad(t: datetime) -> float:
    jd, fr = jday(t.year, t.month, t.day, t.hour, t.minute, t.second + t.microsecond * 1e-6)
    return gstime(jd + fr)


def teme_to_ecef(r_teme, v_teme, t: datetime) -> tuple[np.ndarray, np.ndarray]:
    """Rotate TEME position/velocity (km, km/s) to ECEF (velocity relative to the rotating Earth)."""
    th = gmst_rad(t)
    c, s = math.cos(th), math.sin(th)
    rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    r = rot @ np.asarray(r_teme, dtype=float)
    omega = np.array([0.0, 0.0, 7.292115146706979e-5])
    v = rot @ np.asarray(v_teme, dtype=float) - np.cross(omega, r)
    return r, v


@dataclass
class Orbit:
    """An sgp4 satellite record with a name; ``state(t)`` gives ECEF km and km/s."""
    satrec: Satrec
    name: str = "satellite"
    line1: str = ""
    line2: str = ""

    @classmethod
    def from_tle(cls, line1: str, line2: str, name: str = "satellite") -> "Orbit":
        try:
            sat = Satrec.twoline2rv(line1.strip(), line2.strip())
        except Exception as exc:  # sgp4 raises ValueError with long messages
            raise OrbitError(f"invalid TLE: {str(exc).splitlines()[0]}") from None
        return cls(sat, name, line1.strip(), line2.strip())

    @classmethod
    def from_tle_text(cls, text: str) -> "Orbit":
        lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
        l1 = [i for i, ln in enumerate(lines) if ln.startswith("1 ")]
        if not l1 or l1[0] + 1 >= len(lines) or not lines[l1[0] + 1].startswith("2 "):
            raise OrbitError("TLE text needs a line starting with '1 ' followed by one starting with '2 '")
        i = l1[0]
        name = lines[i - 1].strip() if i > 0 else "satellite"
        return cls.from_tle(lines[i], lines[i + 1], name)

    @classmethod
    def preset(cls, name: str) -> "Orbit":
        p = _preset_entry(name)
        return cls.from_tle(p["line1"], p["line2"], p["name"])

    @staticmethod
    def preset_start(name: str) -> datetime:
        """The preset's default start (UTC): an orbit over daylit land, the same for sim, replay and soak."""
        return parse_time(_preset_entry(name)["start"])

    @classmethod
    def with_start(cls, preset: str | None = None, tle_path=None, start=None) -> tuple["Orbit", datetime]:
        """The orbit of a preset or a TLE file and where a run on it begins, as the commands take them:
        ``start`` when given, else the preset's start over daylit land, else the TLE's own epoch. The
        orbit is propagated once at that start, so that a decayed or invalid orbit fails here, as an
        OrbitError (an unreadable TLE file too)."""
        if preset:
            orbit = cls.preset(preset)
        else:
            try:
                text = Path(tle_path).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise OrbitError(f"cannot read TLE file {tle_path}: {why}") from None
            orbit = cls.from_tle_text(text)
        if start:
            t0 = parse_time(start)
        else:
            t0 = cls.preset_start(preset) if preset else orbit.epoch
        orbit.state(t0)
        return orbit, t0

    @classmethod
    def from_kepler(cls, epoch, alt_km: float, inc_deg: float, raan_deg: float = 0.0, ecc: float = 0.0,
                    argp_deg: float = 0.0, mean_anomaly_deg: float = 0.0, name: str = "kepler") -> "Orbit":
        """Mean Keplerian elements (semi-major axis from ``alt_km`` above the equatorial radius)."""
        epoch = parse_time(epoch)
        a_km = geodesy.A_KM + alt_km
        mu = 398600.4418
        n_rad_min = math.sqrt(mu / a_km**3) * 60.0
        jd, fr = jday(epoch.year, epoch.month, epoch.day, epoch.hour, epoch.minute,
                      epoch.second + epoch.microsecond * 1e-6)
        sat = Satrec()
        sat.sgp4init(WGS72, "i", 99999, (jd + fr) - 2433281.5, 0.0, 0.0, 0.0, ecc,
                     math.radians(argp_deg), math.radians(inc_deg), math.radians(mean_anomaly_deg),
                     n_rad_min, math.radians(raan_deg))
        return cls(sat, name)

    @property
    def epoch(self) -> datetime:
        jd = self.satrec.jdsatepoch + self.satrec.jdsatepochF
        return datetime(2000, 1, 1, 12, tzinfo=timezone.utc) + timedelta(days=jd - 2451545.0)

    def state_teme(self, t: datetime) -> tuple[np.ndarray, np.ndarray]:
        jd, fr = jday(t.year, t.month, t.day, t.hour, t.minute, t.second + t.microsecond * 1e-6)
        err, r, v = self.satrec.sgp4(jd, fr)
        if err:
            raise OrbitError(f"sgp4 error {err} at {iso(t)}: {SGP4_ERRORS.get(err, 'unknown')}")
        return np.array(r), np.array(v)

    def state(self, t) -> tuple[np.ndarray, np.ndarray]:
        """ECEF position (km) and Earth-relative velocity (km/s) at UTC time ``t``."""
        t = parse_time(t)
        r, v = self.state_teme(t)
        return teme_to_ecef(r, v, t)


def times(start, duration, interval) -> list[datetime]:
    """Sample times from ``start`` over ``duration`` every ``interval`` (strings like '95m', '10s')."""
    t0 = parse_time(start)
    dur = parse_duration_s(duration)
    step = parse_duration_s(interval)
    if step <= 0:
        raise OrbitError("interval must be positive")
    n = int(math.floor(dur / step + 1e-9))
    return [t0 + timedelta(seconds=i * step) for i in range(max(n, 1))]
