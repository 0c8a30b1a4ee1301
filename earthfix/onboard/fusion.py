"""Orbit determination from a stream of image fixes: robust initial orbit, batch least squares, prediction.

Frames and units (used throughout this module):

- **ECEF**: WGS84 Earth-fixed, km and km/s (velocity relative to the rotating Earth), as every Fix gives.
- **ECI**: the pseudo-inertial frame obtained by rotating ECEF about +z by the Greenwich mean sidereal time
  (IAU-82 formula, UT1 taken equal to UTC, no polar motion). That is the TEME frame of the SGP4 world,
  within polar motion. The J2 field is symmetric about +z, so the dynamics in it are exact for J2 and the
  frame's origin of right ascension only matters for the reported RAAN.
- **times**: UTC; a float is POSIX seconds (``datetime.timestamp()``), a datetime is taken as UTC when naive.
- **state**: ``[x, y, z, vx, vy, vz]`` in km and km/s; covariances in km², km²/s, km²/s².

Pipeline, refitted incrementally as fixes arrive (``OrbitFuser``):

1. *Initial orbit* (when there is no usable previous solution): RANSAC over pairs of fixes of a circular
   orbit through the Earth's centre (plane, radius, phase rate, with the J2 nodal regression), refined on
   its inliers. Gross outliers (a fix at the wrong place on Earth) cannot survive it.
2. *Batch least squares*: Levenberg-Marquardt on the 6-D ECI state at an epoch (the latest fix in the fit
   window), with a fixed-step RK4 propagator with J2 (30 s steps: 9 m of integration error over 6 h against
   2 s steps, far below the fixes' kilometres; 10 s steps cost 3x the time for 0.1 m).
   Measurements are weighted by an anisotropic covariance (horizontal / radial sigmas, the radial one
   larger because altitude comes from image scale) inflated for low confidence and for a boresight that
   verification pinned worse than the horizontal sigma (``evidence.bore_sigma_km``). A weak prior that the
   orbit is nearly circular keeps short arcs (a few fixes over a minute) well posed; long arcs overrule it.
3. *Gating*: after each solve, fixes whose Mahalanobis residual exceeds ``gate_sigma`` (scaled by the
   robust spread of the residuals when the sigmas are too optimistic) or whose horizontal residual exceeds
   ``gate_km`` are excluded and the solve repeated; a rejected fix comes back if a later fit agrees with it.
   A solution is kept only if it uses at least ``min_support`` of the window's fixes (and ``min_fixes``):
   among ~1,600 fixes at random places, 4 fit a circular orbit by chance (rms 16 km) and were served as the
   orbit, 4,000-13,000 km off; a true orbit among 90 % wrong fixes still uses 10 % (docs/RELIABILITY.md).
   *Altitude scale*: a camera whose focal length (fov_deg) is off by a few % scales every fix's altitude
   by as much, not its ground point, and an orbit fitted to such fixes bends to them (2 deg off: ~47 km).
   Once the window spans ``alt_scale_min_span_s`` (45 min: enough for the period to pin the radius), a
   scale s on the fixes' heights above the ellipsoid is fitted beside the state (prior 1 +- ``alt_scale_sigma``)
   and used when |s - 1| >= 4 sigma; otherwise the plain fit stands (tested again as the window grows by
   a quarter). ``Solution.alt_scale`` reports it: a camera calibration check from orbital dynamics.
4. *Prediction*: any time, through gaps, in ECEF, with the 6x6 covariance mapped by the state transition
   matrix (forward-difference bundle of 7 trajectories propagated together), and as osculating elements.

Flight code: numpy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from . import geodesy

MU_KM3_S2 = 398600.4418               # Earth's gravitational parameter (WGS84 / EGM96)
J2 = 1.08262668e-3                    # second zonal harmonic (EGM96)
RE_KM = geodesy.A_KM                  # reference radius of J2
OMEGA_EARTH_RAD_S = 7.292115146706979e-5

# forward-difference perturbations of the state for Jacobians and the transition matrix: 1 m and 1 mm/s,
# well inside the linear regime over hours and far above rounding (1e-12 km at 7000 km).
_DELTA = np.array([1e-3, 1e-3, 1e-3, 1e-6, 1e-6, 1e-6])
# the least-squares unknowns are scaled so that 1 unit of velocity (1 m/s) moves a prediction about as much
# as 1 km of position over the ~1000 s an arc spans: it keeps the normal matrix well conditioned.
_SCALE = np.array([1.0, 1.0, 1.0, 1e-3, 1e-3, 1e-3])
# the fixes' altitude scale (7th unknown when fitted): 1 unit = 0.1 % of the altitude, ~0.4-0.8 km in LEO
_SCALE_ALT = 1e-3


# ---- time and frames -----------------------------------------------------------------------------------

def to_posix_s(t) -> float:
    """UTC time (float POSIX seconds, aware or naive-UTC datetime, or numpy datetime64) to POSIX seconds."""
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(t, np.datetime64):
        return float((t - np.datetime64("1970-01-01T00:00:00")) / np.timedelta64(1, "us")) * 1e-6
    return float(t)


def gmst_rad(t_posix_s):
    """Greenwich mean sidereal time (IAU-82, UT1 = UTC), radians in [0, 2 pi); vectorised."""
    jd_ut1 = np.asarray(t_posix_s, dtype=np.float64) / 86400.0 + 2440587.5
    tut1 = (jd_ut1 - 2451545.0) / 36525.0
    sec = (-6.2e-6 * tut1 ** 3 + 0.093104 * tut1 ** 2
           + (876600.0 * 3600.0 + 8640184.812866) * tut1 + 67310.54841)
    return np.mod(np.radians(sec / 240.0), 2.0 * np.pi)


def _rot_z(theta) -> np.ndarray:
    """Rotation matrices (..., 3, 3) that turn vectors by +theta about z (ECEF -> ECI with theta = GMST)."""
    c, s = np.cos(theta), np.sin(theta)
    o, z = np.ones_like(c), np.zeros_like(c)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _state_transform_ecef_from_eci(theta) -> np.ndarray:
    """6x6 Jacobian of the ECI -> ECEF state map at GMST ``theta`` (for covariances)."""
    r = _rot_z(theta).T                                   # ECI -> ECEF
    w = np.array([[0.0, -OMEGA_EARTH_RAD_S, 0.0], [OMEGA_EARTH_RAD_S, 0.0, 0.0], [0.0, 0.0, 0.0]])
    t = np.zeros((6, 6))
    t[:3, :3] = r
    t[3:, 3:] = r
    t[3:, :3] = -w @ r                                    # v_ecef = R v_eci - omega x (R r_eci)
    return t


def ecef_to_eci(r_ecef_km, v_ecef_km_s, t):
    """ECEF position/velocity to ECI at UTC ``t`` (scalar time; arrays (3,) or (..., 3))."""
    rot = _rot_z(gmst_rad(to_posix_s(t)))
    r = np.asarray(r_ecef_km, dtype=float)
    v = np.asarray(v_ecef_km_s, dtype=float)
    w = np.array([0.0, 0.0, OMEGA_EARTH_RAD_S])
    return r @ rot.T, (v + np.cross(w, r)) @ rot.T


def eci_to_ecef(r_eci_km, v_eci_km_s, t):
    """ECI position/velocity to ECEF at UTC ``t`` (velocity relative to the rotating Earth)."""
    rot = _rot_z(gmst_rad(to_posix_s(t)))
    r = np.asarray(r_eci_km, dtype=float) @ rot
    v = np.asarray(v_eci_km_s, dtype=float) @ rot
    w = np.array([0.0, 0.0, OMEGA_EARTH_RAD_S])
    return r, v - np.cross(w, r)


# ---- dynamics ------------------------------------------------------------------------------------------

def accel_j2(r_km) -> np.ndarray:
    """Point mass + J2 gravitational acceleration in ECI, km/s², for positions (..., 3)."""
    x, y, z = r_km[..., 0], r_km[..., 1], r_km[..., 2]
    r2 = x * x + y * y + z * z
    k = -MU_KM3_S2 / (r2 * np.sqrt(r2))
    c = (1.5 * J2 * RE_KM * RE_KM) / r2
    cz = c * (5.0 * z * z / r2)
    fxy = k * (1.0 + c - cz)
    out = np.empty_like(r_km)
    out[..., 0] = fxy * x                 # filled in place: this runs ~10^5 times per fit
    out[..., 1] = fxy * y
    out[..., 2] = k * (1.0 + 3.0 * c - cz) * z
    return out


def _deriv(x):
    out = np.empty_like(x)
    out[..., :3] = x[..., 3:]
    out[..., 3:] = accel_j2(x[..., :3])
    return out


def rk4_step(x, h_s: float):
    """One classical Runge-Kutta step of the J2 dynamics for states (..., 6) over ``h_s`` seconds."""
    k1 = _deriv(x)
    k2 = _deriv(x + (0.5 * h_s) * k1)
    k3 = _deriv(x + (0.5 * h_s) * k2)
    k4 = _deriv(x + h_s * k3)
    return x + (h_s / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def propagate(x0, dt_s, step_s: float = 10.0) -> np.ndarray:
    """ECI state(s) ``x0`` (..., 6) propagated by ``dt_s`` seconds (either sign) with RK4 + J2."""
    x = np.asarray(x0, dtype=float)
    n = max(1, int(math.ceil(abs(dt_s) / step_s)))
    h = dt_s / n
    for _ in range(n if dt_s != 0 else 0):
        x = rk4_step(x, h)
    return x


def altitude_direction(r_km) -> tuple[np.ndarray, np.ndarray]:
    """(height above the ellipsoid along the radial (n,), radial unit vectors (n, 3)) for positions (n, 3) in
    ECI or ECEF (the ellipsoid is symmetric about z). The fixes' altitude bias is modelled along it."""
    d = np.linalg.norm(r_km, axis=1)
    u = r_km / d[:, None]
    rho = 1.0 / np.sqrt((u[:, 0] ** 2 + u[:, 1] ** 2) / geodesy.A_KM ** 2 + u[:, 2] ** 2 / geodesy.B_KM ** 2)
    return d - rho, u


class Trajectory:
    """A bundle of ECI trajectories on a uniform time grid around an epoch, extended on demand.

    Row 0 of the bundle is the nominal state, rows 1..6 the nominal perturbed by ``_DELTA`` along each
    state axis, so that the state transition matrix comes for the cost of one vectorised propagation.
    Between grid nodes states are cubic-Hermite interpolated (position with velocity as slope, velocity with
    acceleration): for 30 s nodes in LEO that is a few cm.
    """

    def __init__(self, x_eci, epoch_posix_s: float, step_s: float = 10.0, bundle: bool = True):
        x = np.asarray(x_eci, dtype=float)
        if bundle:
            x = np.vstack([x, x + np.diag(_DELTA)])
        self.epoch = float(epoch_posix_s)
        self.step = float(step_s)
        self.k_min = 0
        self._fwd = [x]          # nodes k = 0, 1, 2, ...
        self._bwd = []           # nodes k = -1, -2, ...
        self._cache = None

    def cover(self, t_lo: float, t_hi: float) -> None:
        """Make sure the grid spans [t_lo, t_hi] (POSIX seconds), one node beyond each end."""
        k_hi = int(math.ceil((t_hi - self.epoch) / self.step)) + 1
        k_lo = int(math.floor((t_lo - self.epoch) / self.step)) - 1
        grew = False
        while len(self._fwd) - 1 < k_hi:
            self._fwd.append(rk4_step(self._fwd[-1], self.step))
            grew = True
        while -len(self._bwd) > k_lo:
            self._bwd.append(rk4_step(self._bwd[-1] if self._bwd else self._fwd[0], -self.step))
            grew = True
        if grew or self._cache is None:
            states = np.stack(self._bwd[::-1] + self._fwd)          # (nodes, bundle, 6)
            acc = accel_j2(states[..., :3])
            self._cache = (states, acc)
            self.k_min = -len(self._bwd)

    def sample(self, t_posix_s) -> np.ndarray:
        """Interpolated states at times (n,) -> (n, bundle, 6), extending the grid as needed."""
        t = np.atleast_1d(np.asarray(t_posix_s, dtype=float))
        self.cover(float(t.min()), float(t.max()))
        states, acc = self._cache
        u = (t - self.epoch) / self.step - self.k_min
        i = np.clip(np.floor(u).astype(int), 0, len(states) - 2)
        s = (u - i)[:, None, None]
        h = self.step
        h00 = 2 * s ** 3 - 3 * s ** 2 + 1
        h10 = s ** 3 - 2 * s ** 2 + s
        h01 = -2 * s ** 3 + 3 * s ** 2
        h11 = s ** 3 - s ** 2
        x0, x1 = states[i], states[i + 1]
        a0, a1 = acc[i], acc[i + 1]
        r = h00 * x0[..., :3] + h10 * h * x0[..., 3:] + h01 * x1[..., :3] + h11 * h * x1[..., 3:]
        v = h00 * x0[..., 3:] + h10 * h * a0 + h01 * x1[..., 3:] + h11 * h * a1
        return np.concatenate([r, v], axis=-1)

    @staticmethod
    def stm(bundle_states) -> np.ndarray:
        """State transition matrices (n, 6, 6) d x(t) / d x(epoch) from sampled bundles (n, 7, 6)."""
        return np.transpose((bundle_states[:, 1:, :] - bundle_states[:, :1, :]) / _DELTA[None, :, None],
                            (0, 2, 1))


# ---- elements ------------------------------------------------------------------------------------------

def eccentricity_vector(r, v, mu: float = MU_KM3_S2) -> np.ndarray:
    r = np.asarray(r, dtype=float)
    v = np.asarray(v, dtype=float)
    rn = np.linalg.norm(r)
    return ((v @ v - mu / rn) * r - (r @ v) * v) / mu


def rv_to_elements(r_km, v_km_s, mu: float = MU_KM3_S2) -> dict:
    """Osculating Keplerian elements of an inertial state: a_km, e, i_deg, raan_deg, argp_deg, nu_deg,
    plus arg_lat_deg (well defined when e ~ 0), mean_anomaly_deg and period_s."""
    r = np.asarray(r_km, dtype=float)
    v = np.asarray(v_km_s, dtype=float)
    rn = np.linalg.norm(r)
    h = np.cross(r, v)
    hn = np.linalg.norm(h)
    hh = h / hn
    node = np.cross([0.0, 0.0, 1.0], h)
    nn = np.linalg.norm(node)
    nh = node / nn if nn > 1e-12 * hn else np.array([1.0, 0.0, 0.0])   # equatorial: node along x
    ev = eccentricity_vector(r, v, mu)
    e = float(np.linalg.norm(ev))
    energy = v @ v / 2.0 - mu / rn
    a = -mu / (2.0 * energy) if abs(energy) > 1e-12 else math.inf

    def ang(u, w):  # angle from u to w about the orbit normal, [0, 360)
        return math.degrees(math.atan2(np.cross(u, w) @ hh, u @ w)) % 360.0

    rh = r / rn
    if e > 1e-9:
        eh = ev / e
        argp, nu = ang(nh, eh), ang(eh, rh)
    else:
        argp, nu = 0.0, ang(nh, rh)
    out = {"a_km": float(a), "e": e, "i_deg": math.degrees(math.acos(np.clip(hh[2], -1.0, 1.0))),
           "raan_deg": math.degrees(math.atan2(nh[1], nh[0])) % 360.0, "argp_deg": argp, "nu_deg": nu,
           "arg_lat_deg": ang(nh, rh)}
    if e < 1.0:
        nu_r = math.radians(nu)
        ea = 2.0 * math.atan2(math.sqrt(1 - e) * math.sin(nu_r / 2), math.sqrt(1 + e) * math.cos(nu_r / 2))
        out["mean_anomaly_deg"] = math.degrees(ea - e * math.sin(ea)) % 360.0
        out["period_s"] = 2.0 * math.pi * math.sqrt(a ** 3 / mu)
    return out


# ---- measurements --------------------------------------------------------------------------------------

def fix_position_ecef_km(fix):
    """Spacecraft ECEF position (km) a fix measures, or None: ``ecef_km`` when given, else from
    ``sub_lat``/``sub_lon``/``alt_km``. Accepts a Fix, a dict (a locate JSON line), or a 3-vector."""
    if fix is None:
        return None
    if isinstance(fix, (list, tuple, np.ndarray)):
        p = np.asarray(fix, dtype=float).reshape(-1)
        return p if p.size == 3 and np.isfinite(p).all() else None
    get = fix.get if isinstance(fix, dict) else (lambda k, d=None: getattr(fix, k, d))
    if not get("fix", False):
        return None
    p = get("ecef_km", None)
    if p is not None:
        p = np.asarray(p, dtype=float).reshape(-1)
        if p.size == 3 and np.isfinite(p).all():
            return p
    lat, lon, alt = get("sub_lat", None), get("sub_lon", None), get("alt_km", None)
    if None in (lat, lon, alt) or not all(math.isfinite(float(x)) for x in (lat, lon, alt)):
        return None
    return geodesy.geodetic_to_ecef(float(lat), float(lon), float(alt))


def position_sigma_km(cov) -> float:
    """1-sigma 3-D position uncertainty (km) of a 6x6 state covariance: sqrt of the position block's trace."""
    return float(math.sqrt(max(np.trace(np.asarray(cov)[:3, :3]), 0.0)))


def _positive(x) -> float | None:
    """``x`` as a finite positive float, or None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _fix_confidence(fix) -> float | None:
    return _positive(fix.get("confidence") if isinstance(fix, dict) else getattr(fix, "confidence", None))


def _fix_bore_sigma_km(fix) -> float | None:
    """The fix's verification 1-sigma at the boresight (``evidence.bore_sigma_km``), or None."""
    ev = fix.get("evidence") if isinstance(fix, dict) else getattr(fix, "evidence", None)
    return _positive(ev.get("bore_sigma_km")) if isinstance(ev, dict) else None


# ---- the fuser -----------------------------------------------------------------------------------------

@dataclass
class Solution:
    """A fitted orbit: ECI state at ``epoch`` (POSIX s), its 6x6 covariance, and the fit's bookkeeping."""
    epoch: float
    x_eci: np.ndarray
    cov_eci: np.ndarray
    traj: Trajectory = field(repr=False)
    n_used: int = 0
    n_rejected: int = 0
    rms_km: float = float("nan")           # RMS 3-D residual of the used fixes
    noise_scale: tuple = (1.0, 1.0)        # (horizontal, radial) residual spread / assumed sigma, >= 1
    used_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    rejected_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    source: str = ""                       # "ransac" or "warm"
    alt_scale: float = 1.0                 # the fixes' altitudes / the orbit's (1 when not fitted)
    alt_scale_sigma: float = 0.0

    def state_eci(self, t_posix_s):
        """(states (n, 6), covariances (n, 6, 6)) in ECI at times (n,)."""
        b = self.traj.sample(t_posix_s)
        phi = Trajectory.stm(b)
        return b[:, 0, :], phi @ self.cov_eci @ np.transpose(phi, (0, 2, 1))


ALT_SCALE_SIGNIFICANT = 4.0    # fitted altitude scales nearer 1 than this many sigmas are not used
PRUNE_MIN = 4096               # fixes kept before the first prune (a 2.5 h replay never reaches it)
UNSUPPORTED = "unsupported"    # _fit's answer when the window has fixes enough but no orbit that enough of them agree on


class OrbitFuser:
    """Streaming orbit estimator from timestamped fixes (see the module docstring for frames and units).

        fuser = OrbitFuser()
        fuser.add(t, fix)                   # every frame; ignored unless fix.fix and a position
        est = fuser.estimate(t)             # None, or (r_ecef_km (3,), v_ecef_km_s (3,), cov_ecef (6, 6))

    Refits happen lazily in ``estimate``/``elements``: on every new fix while the solution is young
    (< ``young_fixes`` used), then every max(``refit_every``, 5 % of the used fixes, or of the window's
    fixes when fewer than half are used) new fixes, so a per-frame call costs one interpolation most of the
    time.

    Measurement sigmas (``sigma_h_km`` horizontal, ``sigma_r_km`` radial) are the measured scatter of the
    spacecraft positions that verification's PnP gives on a 2 h ISS replay (radial 2.8 km; horizontal 3.1
    along / 4.3 across track, 3.5 km used): a loose radial sigma (15 km, the first default) threw away the
    radial information that pins the semi-major axis: over the second orbit of that replay 16 % of frames had a
    fused error within 2 km with it, 41 % with these (RMS 2.70 vs 2.67 km; docs/REPLAY.md).
    """

    def __init__(self, *, sigma_h_km: float = 3.5, sigma_r_km: float = 2.8, min_fixes: int = 4,
                 min_span_s: float = 60.0, gate_sigma: float = 4.0, gate_km: float = 25.0,
                 window_s: float = 6 * 3600.0, step_s: float = 30.0, refit_every: int = 5,
                 young_fixes: int = 20, ecc_prior_sigma: float | None = 0.01,
                 ransac_threshold_km: float = 150.0, ransac_iters: int = 300, min_support: float = 0.02,
                 alt_scale_sigma: float | None = 0.02, alt_scale_min_span_s: float = 2700.0, seed: int = 0):
        self.sigma_h_km = float(sigma_h_km)
        self.sigma_r_km = float(sigma_r_km)
        self.min_fixes = int(min_fixes)
        self.min_span_s = float(min_span_s)
        self.gate_sigma = float(gate_sigma)
        self.gate_km = float(gate_km)
        self.window_s = float(window_s)
        self.step_s = float(step_s)
        self.refit_every = int(refit_every)
        self.young_fixes = int(young_fixes)
        self.ecc_prior_sigma = ecc_prior_sigma
        self.ransac_threshold_km = float(ransac_threshold_km)
        self.ransac_iters = int(ransac_iters)
        self.min_support = float(min_support)
        self.alt_scale_sigma = alt_scale_sigma
        self.alt_scale_min_span_s = float(alt_scale_min_span_s)
        self._rng = np.random.default_rng(seed)
        # the fixes that may still enter a fit; older ones are pruned (a flight run never ends: kept, they
        # grew memory by ~0.5 KB and every refit's bookkeeping by their count, fix after fix)
        self._t: list[float] = []                 # POSIX s
        self._r_eci: list[np.ndarray] = []        # measured position, ECI km
        self._sig_mult: list[float] = []          # sigma inflation from confidence
        self._id: list[int] = []                  # order of addition (fix_status, Solution.used_ids)
        self._n_added = 0
        self._next_prune = PRUNE_MIN
        self._window_n = 0                        # fixes in the last fit's window
        self._t_newest = float("-inf")            # time of the newest fix added: the window ends there
        self._scale_on = False                    # the last fit found the fixes' altitudes scaled
        self._scale_test_at = 0                   # window size at which to test for a scale again
        self.solution: Solution | None = None
        self._new_since_fit = 0
        self.n_fits = 0

    # ---- input ---------------------------------------------------------------------------------------
    def add(self, t, fix) -> bool:
        """Add one frame's result at UTC ``t``. ``fix`` is a Fix, a locate JSON dict, or an ECEF 3-vector;
        frames without a fix are ignored. Returns True when a position measurement was added."""
        p = fix_position_ecef_km(fix)
        if p is None:
            return False
        ts = to_posix_s(t)
        r_eci, _ = ecef_to_eci(p, np.zeros(3), ts)
        conf = _fix_confidence(fix) if not isinstance(fix, (list, tuple, np.ndarray)) else None
        self._t.append(ts)
        self._r_eci.append(r_eci)
        # a low-confidence fix is trusted less: sigma / sqrt(confidence), floored so it still counts
        mult = 1.0 if conf is None else 1.0 / math.sqrt(max(min(conf, 1.0), 0.1))
        # and one whose boresight verification pins worse than the assumed horizontal sigma, by that ratio
        bs = _fix_bore_sigma_km(fix)
        if bs is not None:
            mult = max(mult, bs / self.sigma_h_km)
        self._sig_mult.append(mult)
        self._id.append(self._n_added)
        self._t_newest = ts
        self._n_added += 1
        self._new_since_fit += 1
        if len(self._t) >= self._next_prune:
            self._prune()
        return True

    def _prune(self) -> None:
        """Forget fixes older than any fit window can reach: before the window of the newest fix, and of the
        current solution (whose used / rejected fixes fix_status still names). Amortised O(1) per fix: the
        next prune waits until the kept fixes have doubled."""
        t_ref = self._t_newest
        if self.solution is not None:
            t_ref = min(t_ref, self.solution.epoch)
        keep = [i for i, ti in enumerate(self._t) if ti >= t_ref - self.window_s]
        self._t = [self._t[i] for i in keep]
        self._r_eci = [self._r_eci[i] for i in keep]
        self._sig_mult = [self._sig_mult[i] for i in keep]
        self._id = [self._id[i] for i in keep]
        self._next_prune = max(PRUNE_MIN, 2 * len(self._t))

    # ---- bookkeeping ---------------------------------------------------------------------------------
    @property
    def n_fixes(self) -> int:
        """Fix measurements added so far."""
        return self._n_added

    @property
    def n_used(self) -> int:
        """Fixes used by the current solution."""
        return self.solution.n_used if self.solution else 0

    @property
    def n_rejected(self) -> int:
        """Fixes of the current fit window gated out as outliers by the current solution."""
        return self.solution.n_rejected if self.solution else 0

    def fix_status(self) -> list[str]:
        """Per added fix, in order of addition: 'used', 'rejected', 'outside' (out of the fit window) or
        'pending' (not yet fitted / no solution)."""
        if self.solution is None:
            return ["pending"] * self._n_added
        out = ["outside"] * self._n_added                    # pruned fixes lie before any window
        t_lo = self.solution.epoch - self.window_s
        for i, ti in zip(self._id, self._t):
            out[i] = "outside" if ti < t_lo or ti > self._t_newest else "pending"
        for i in self.solution.used_ids:
            out[i] = "used"
        for i in self.solution.rejected_ids:
            out[i] = "rejected"
        return out

    # ---- output --------------------------------------------------------------------------------------
    def estimate(self, t):
        """(r_ecef_km (3,), v_ecef_km_s (3,), cov_ecef (6, 6)) at UTC ``t`` or None before the first
        solution (fewer than ``min_fixes`` consistent fixes over ``min_span_s``)."""
        sol = self._current()
        if sol is None:
            return None
        ts = to_posix_s(t)
        x, cov = sol.state_eci([ts])
        r, v = eci_to_ecef(x[0, :3], x[0, 3:], ts)
        tr = _state_transform_ecef_from_eci(gmst_rad(ts))
        return r, v, tr @ cov[0] @ tr.T

    def estimate_eci(self, t):
        """(x_eci (6,), cov_eci (6, 6)) at UTC ``t`` or None."""
        sol = self._current()
        if sol is None:
            return None
        x, cov = sol.state_eci([to_posix_s(t)])
        return x[0], cov[0]

    def elements(self, t=None) -> dict | None:
        """Osculating Keplerian elements in ECI at ``t`` (default: the solution epoch), with ``epoch_posix_s``
        and 1-sigma position/velocity uncertainties; None without a solution."""
        sol = self._current()
        if sol is None:
            return None
        ts = sol.epoch if t is None else to_posix_s(t)
        x, cov = sol.state_eci([ts])
        out = rv_to_elements(x[0, :3], x[0, 3:])
        out["epoch_posix_s"] = ts
        out["sigma_pos_km"] = position_sigma_km(cov[0])
        out["sigma_vel_km_s"] = float(math.sqrt(max(np.trace(cov[0][3:, 3:]), 0.0)))
        return out

    def fit(self) -> Solution | None:
        """Refit now on the fixes of the window; returns the new solution (also kept) or None. Without enough
        fixes in the window (a gap) the previous solution is kept and predicts; when the window's fixes do not
        support any orbit (``min_support``), the previous one is dropped too: they contradict it."""
        self._new_since_fit = 0
        sol = self._fit()
        self.n_fits += 1
        if sol is UNSUPPORTED:
            self.solution = None
        elif sol is not None:
            self.solution = sol
        return self.solution

    def _current(self) -> Solution | None:
        if self._new_since_fit:
            # refit on every fix while the orbit is young, but not forever: fixes that keep disagreeing
            # (few used among many) would otherwise cost a full refit per frame
            young = ((self.solution is None or self.solution.n_used < self.young_fixes)
                     and self._n_added < 3 * self.young_fixes)
            # a fit costs about the window's length: refit less often as the window fills, so that the
            # total cost of a long run grows roughly linearly with its length. Counted in used fixes while
            # they are most of the window (the cadence the replays were measured with), else in the window's:
            # fixes that mostly disagree would cost a refit every refit_every fixes (0.5-2.4 s each with
            # ~500-2,000 in the window; tests/bench/bench_fusion.py)
            n_window = self._window_n + self._new_since_fit    # the last fit's window and the fixes since
            count = self.n_used if self.n_used >= 0.5 * n_window else n_window
            every = max(self.refit_every, int(0.05 * count))
            if young or self._new_since_fit >= every:
                self.fit()
        return self.solution

    # ---- fitting -------------------------------------------------------------------------------------
    def _window(self):
        """The fixes of the fit window, in time order: the ``window_s`` before the newest fix's time. The
        newest added, not the latest stamped: one fix stamped far in the future (a clock glitch) would
        otherwise put every later fix before the window for good."""
        t = np.asarray(self._t)
        ids = np.nonzero((t >= self._t_newest - self.window_s) & (t <= self._t_newest))[0]
        order = ids[np.argsort(t[ids], kind="stable")]
        return order, t[order], np.asarray(self._r_eci)[order], np.asarray(self._sig_mult)[order]

    def _fit(self) -> Solution | str | None:
        """A new solution; None when the window has too few fixes or too short a span to fit (a gap: the
        previous solution goes on predicting); UNSUPPORTED when it has enough but no orbit fits enough of them."""
        if len(self._t) < self.min_fixes:
            return None
        ids, t, r, mult = self._window()
        self._window_n = len(ids)
        if len(ids) < self.min_fixes or t[-1] - t[0] < self.min_span_s:
            return None
        epoch = float(t[-1])
        meas = (t, r, mult, r / np.linalg.norm(r, axis=1, keepdims=True))
        # the fixes' altitude scale only once the arc is long enough for the dynamics to pin the orbit's
        # radius (its period): on shorter arcs it trades against the radius and costs kilometres
        fit_scale = self._fits_scale() and t[-1] - t[0] >= self.alt_scale_min_span_s

        # tried while it was significant, else again only once the window has grown by a quarter: a test
        # costs a second fit
        try_scale = fit_scale and (self._scale_on or len(ids) >= self._scale_test_at)
        if try_scale and not self._scale_on:
            self._scale_test_at = int(1.25 * len(ids)) + 1
        best = self._best_fit(meas, epoch, try_scale)
        if best is UNSUPPORTED:
            return UNSUPPORTED
        self._scale_on = try_scale and abs(best["alt_scale"] - 1.0) >= ALT_SCALE_SIGNIFICANT * best["alt_scale_sigma"]
        if try_scale and not self._scale_on:
            # no evidence that the fixes' altitudes are scaled: the plain fit, which keeps all their radial
            # information (fitting the scale anyway cost 0.7 -> 3.0 km over the last half hour of the 2 h
            # ISS replay)
            best = self._best_fit(meas, epoch, False)
            if best is UNSUPPORTED:
                return UNSUPPORTED
        m = best["mask"]
        return Solution(epoch=epoch, x_eci=best["x"], cov_eci=best["cov"], traj=best["traj"],
                        n_used=int(m.sum()), n_rejected=int((~m).sum()), rms_km=best["rms_km"],
                        noise_scale=best["scale"], used_ids=np.asarray(self._id)[ids[m]],
                        rejected_ids=np.asarray(self._id)[ids[~m]],
                        source=best["source"], alt_scale=best["alt_scale"], alt_scale_sigma=best["alt_scale_sigma"])

    def _best_fit(self, meas, epoch, fit_scale: bool):
        """The best of a warm-started fit and, when that cannot explain the data, a RANSAC restart; or
        UNSUPPORTED when neither uses ``min_support`` of the window's fixes (``meas``)."""
        t, r, mult, _ = meas
        tries = []
        if self.solution is not None:
            sol = self.solution
            x0 = sol.state_eci([epoch])[0][0]
            # innovation gate: a fix enters the warm-started fit only if the prediction (with its
            # covariance) agrees with it. Without this, one false fix far along a poorly known orbit would
            # be fitted exactly (a lever arm that no post-fit residual can expose).
            b = sol.traj.sample(t)
            phi_r = Trajectory.stm(b)[:, :3, :]
            s_pred = phi_r @ sol.cov_eci @ np.transpose(phi_r, (0, 2, 1)) + self._meas_cov(meas, *sol.noise_scale)
            innov = r - self._measured(b[:, 0, :3], sol.alt_scale)
            d2 = np.einsum("ni,ni->n", innov, np.linalg.solve(s_pred, innov[..., None])[..., 0])
            res = self._robust_solve(x0, epoch, meas, d2 < self.gate_sigma ** 2,
                                     sol.alt_scale if fit_scale else None)
            if res is not None:
                res["source"] = "warm"
                tries.append(res)
        # start again from scratch when the warm start cannot explain the data: too many fixes rejected
        # overall, or the newest three or more (a poor short-arc orbit that the next pass contradicts;
        # they are corroborated, or not, by a consensus over all fixes)
        if tries:
            m = tries[0]["mask"]
            trailing = len(m) - (int(np.nonzero(m)[0].max()) + 1)
        if not tries or tries[0]["mask"].mean() < 0.6 or trailing >= 3:
            init = self._ransac(t, r, mult)
            if init is not None:
                x0, mask = init
                res = self._robust_solve(x0, epoch, meas, mask, 1.0 if fit_scale else None)
                if res is not None:
                    res["source"] = "ransac"
                    tries.append(res)
        # chance agreement: a few fixes among many that do not agree are no orbit
        need = max(self.min_fixes, math.ceil(self.min_support * len(t)))
        tries = [d for d in tries if int(d["mask"].sum()) >= need]
        if not tries:
            return UNSUPPORTED
        best = max(tries, key=lambda d: (int(d["mask"].sum()), -d["cost"]))
        return best

    def _fits_scale(self) -> bool:
        return bool(self.alt_scale_sigma)

    def _unknown_scale(self) -> np.ndarray:
        return np.append(_SCALE, _SCALE_ALT) if self._fits_scale() else _SCALE

    @staticmethod
    def _measured(pred, alt_scale: float) -> np.ndarray:
        """What a fix would measure at the orbit's positions ``pred``: its altitude scaled by ``alt_scale``
        (a camera whose focal length is off by a few % scales every fix's altitude so, not its ground point)."""
        if alt_scale == 1.0:
            return pred
        alt, u = altitude_direction(pred)
        return pred + ((alt_scale - 1.0) * alt)[:, None] * u

    def _linearize(self, x, epoch, meas, w):
        """Whitened residuals (n, 3) and their Jacobian (n, 3, 6 or 7) w.r.t. the scaled unknowns (the state,
        then the altitude scale when fitted), plus the trajectory bundle and the predicted measurements."""
        t, r = meas[0], meas[1]
        traj = Trajectory(x[:6], epoch, self.step_s)
        b = traj.sample(t)
        pos = b[:, 0, :3]
        phi_r = Trajectory.stm(b)[:, :3, :]                       # d r(t) / d x(epoch)
        scale = float(x[6]) if len(x) > 6 else 1.0
        pred = self._measured(pos, scale)
        res = np.einsum("nij,nj->ni", w, r - pred)
        jac = -np.einsum("nij,njk->nik", w, phi_r) * _SCALE      # d/dx of the (scale - 1) term neglected
        if len(x) > 6:
            alt, u = altitude_direction(pos)
            jac_s = -np.einsum("nij,nj->ni", w, alt[:, None] * u) * _SCALE_ALT
            jac = np.concatenate([jac, jac_s[:, :, None]], axis=2)
        return res, jac, traj, pred

    def _meas_cov(self, meas, scale_h: float = 1.0, scale_r: float = 1.0) -> np.ndarray:
        """Measurement covariance per fix (n, 3, 3), km²: sigma_h² (I - u u^T) + sigma_r² u u^T."""
        _, _, mult, u = meas
        uu = u[:, :, None] * u[:, None, :]
        m2 = (mult ** 2)[:, None, None]
        return ((np.eye(3)[None] - uu) * (self.sigma_h_km * scale_h) ** 2
                + uu * (self.sigma_r_km * scale_r) ** 2) * m2

    def _whitening(self, meas, scale_h: float, scale_r: float) -> np.ndarray:
        """W = Sigma^(-1/2) = (I - u u^T) / sigma_h + u u^T / sigma_r per fix (n, 3, 3), u radial."""
        _, _, mult, u = meas
        uu = u[:, :, None] * u[:, None, :]
        return ((np.eye(3)[None] - uu) / (self.sigma_h_km * scale_h)
                + uu / (self.sigma_r_km * scale_r)) / mult[:, None, None]

    def _prior(self, x):
        """Priors as residuals and their Jacobian w.r.t. the scaled unknowns: the orbit is near-circular
        (eccentricity vector / sigma), and the fixes' altitude scale is near 1 (when fitted)."""
        n = len(x)
        rows, jacs = [], []
        if self.ecc_prior_sigma:
            s = float(self.ecc_prior_sigma)
            xs = x[:6]
            e0 = eccentricity_vector(xs[:3], xs[3:]) / s
            jac = np.zeros((3, n))
            for k in range(6):
                dx = np.zeros(6)
                dx[k] = _DELTA[k]
                jac[:, k] = (eccentricity_vector((xs + dx)[:3], (xs + dx)[3:]) / s - e0) / _DELTA[k] * _SCALE[k]
            rows.append(e0)
            jacs.append(jac)
        if n > 6:
            sig = float(self.alt_scale_sigma)
            jac = np.zeros((1, n))
            jac[0, 6] = _SCALE_ALT / sig
            rows.append(np.array([(x[6] - 1.0) / sig]))
            jacs.append(jac)
        if not rows:
            return np.zeros(0), np.zeros((0, n))
        return np.concatenate(rows), np.vstack(jacs)

    def _lm(self, x, epoch, meas, w, mask, max_iter: int = 12):
        """Levenberg-Marquardt on the masked measurements; returns (x, res_all, jac_masked, traj, pred, cost)."""
        def evaluate(xc):
            res, jac, traj, pred = self._linearize(xc, epoch, meas, w)
            pr, pj = self._prior(xc)
            rv = np.concatenate([res[mask].ravel(), pr])
            jv = np.vstack([jac[mask].reshape(-1, len(xc)), pj])
            return rv, jv, res, traj, pred

        unit = self._unknown_scale()[: len(x)]
        rv, jv, res_all, traj, pred = evaluate(x)
        cost = float(rv @ rv)
        lam = 1e-4
        for _ in range(max_iter):
            a = jv.T @ jv
            g = jv.T @ rv
            try:
                dz = np.linalg.solve(a + lam * np.diag(np.diag(a)), -g)
            except np.linalg.LinAlgError:
                break
            xn = x + dz * unit
            if not np.isfinite(xn).all() or np.linalg.norm(xn[:3]) < RE_KM * 0.5:
                lam *= 10.0
                if lam > 1e8:
                    break
                continue
            out = evaluate(xn)
            cn = float(out[0] @ out[0])
            if cn <= cost:
                small = np.abs(dz * unit)
                x, (rv, jv, res_all, traj, pred) = xn, out
                # converged: the step moves the orbit by < 1 m / 1 mm/s (and the altitude scale by < 1e-6), or
                # the cost no longer drops
                done = (cost - cn) <= 1e-6 * max(cost, 1.0) or (small[:3].max() < 1e-3 and small[3:6].max() < 1e-6
                                                                 and small[6:].max(initial=0.0) < 1e-6)
                cost = cn
                lam = max(lam / 10.0, 1e-9)
                if done:
                    break
            else:
                lam *= 10.0
                if lam > 1e8:
                    break
        return x, res_all, jv, traj, pred, cost

    def _robust_solve(self, x0, epoch, meas, mask, alt_scale0: float | None = None):
        """Alternate LM solves, noise-level estimation and residual gating until the set of used fixes
        and the noise levels stop changing. With ``alt_scale0`` the fixes' altitude scale is fitted beside
        the state, from that value."""
        t, r, mult, u = meas
        mask = np.asarray(mask, bool).copy()
        x = np.asarray(x0, float)
        if alt_scale0 is not None:
            x = np.append(x, alt_scale0)
        scale_h = scale_r = 1.0
        seen = set()
        for _ in range(8):
            if mask.sum() < self.min_fixes or t[mask].max() - t[mask].min() < self.min_span_s:
                return None
            w = self._whitening(meas, scale_h, scale_r)
            x, res_all, jv, traj, pred, cost = self._lm(x, epoch, meas, w, mask)
            err = r - pred
            rad = np.sum(err * u, axis=1)
            horiz = np.linalg.norm(err - rad[:, None] * u, axis=1)
            zr = np.abs(rad) / (self.sigma_r_km * mult)           # residuals in units of the assumed sigmas
            zh = horiz / (self.sigma_h_km * mult)
            # the assumed sigmas are a floor: when the residuals are wider (e.g. altitudes noisier than
            # sigma_r), widen that component, so that weights, gates and covariance stay honest.
            # Robust spreads: median |N(0,1)| = 0.6745, median of a 2-D Rayleigh = 1.1774.
            new_h = max(1.0, float(np.median(zh[mask])) / 1.1774)
            new_r = max(1.0, float(np.median(zr[mask])) / 0.6745)
            d = np.hypot(zh / new_h, zr / new_r)                  # Mahalanobis norm per fix
            new = (d < self.gate_sigma) & (horiz < self.gate_km)
            steady = abs(new_h / scale_h - 1.0) < 0.1 and abs(new_r / scale_r - 1.0) < 0.1
            if (np.array_equal(new, mask) and steady) or new.tobytes() in seen:
                break                                             # converged, or cycling: keep this fit
            seen.add(mask.tobytes())
            mask, scale_h, scale_r = new, new_h, new_r
        dof = max(jv.shape[0] - 6, 1)
        try:
            cov_z = np.linalg.inv(jv.T @ jv)
        except np.linalg.LinAlgError:
            return None
        chi2_red = cost / dof
        # never shrink the covariance below what the (floored) sigmas give; inflate when residuals say so
        unit = self._unknown_scale()[: len(x)]
        cov = cov_z * np.outer(unit, unit) * max(1.0, chi2_red)
        rms = float(np.sqrt(np.mean(np.sum((r - pred)[mask] ** 2, axis=1))))
        fitted = len(x) > 6
        return {"x": x[:6], "cov": cov[:6, :6], "traj": traj, "mask": mask, "cost": cost, "rms_km": rms,
                "scale": (scale_h, scale_r), "alt_scale": float(x[6]) if fitted else 1.0,
                "alt_scale_sigma": float(np.sqrt(cov[6, 6])) if fitted else 0.0}

    # ---- initial orbit -------------------------------------------------------------------------------
    def _ransac(self, t, r, mult):
        """Circular-orbit RANSAC; returns (x_eci at t[-1] (6,), inlier mask) or None."""
        n = len(t)
        if n < self.min_fixes:
            return None
        thr = self.ransac_threshold_km
        weights = 1.0 / np.asarray(mult) ** 2                     # confidence, as sampling weights
        p = weights / weights.sum()
        best = None
        pairs = set()
        for _ in range(self.ransac_iters):
            i, j = self._rng.choice(n, size=2, replace=False, p=p)
            if t[i] > t[j]:
                i, j = j, i
            if (i, j) in pairs or t[j] - t[i] < 20.0:
                continue
            pairs.add((i, j))
            for hyp in _circle_hypotheses(t[i], r[i], t[j], r[j]):
                e = np.linalg.norm(_circle_positions(hyp, t) - r, axis=1)
                score = float(np.sum(np.minimum(e, thr) ** 2))       # MSAC
                if best is None or score < best[0]:
                    best = (score, hyp)
            if len(pairs) >= n * (n - 1) // 2:
                break
        if best is None:
            return None
        hyp = best[1]
        for _ in range(3):
            mask = np.linalg.norm(_circle_positions(hyp, t) - r, axis=1) < thr
            if mask.sum() < 3:
                return None
            hyp = _refine_circle(hyp, t[mask], r[mask])
        mask = np.linalg.norm(_circle_positions(hyp, t) - r, axis=1) < thr
        if mask.sum() < self.min_fixes:
            return None
        te = float(t[-1])
        pos = _circle_positions(hyp, np.array([te - 0.5, te, te + 0.5]))
        return np.concatenate([pos[1], pos[2] - pos[0]]), mask


# ---- circular orbit model (initial orbit only) --------------------------------------------------------
# hypothesis: dict(t0, p, q, radius, omega, node_rate): r(t) = Rz(node_rate dt) radius (cos(w dt) p + sin(w dt) q)

def _node_rate(radius, omega, cos_i):
    """Secular J2 regression of the node, rad/s."""
    return -1.5 * omega * J2 * (RE_KM / radius) ** 2 * cos_i


def _circle_hypotheses(t1, r1, t2, r2):
    """Circular orbits through two fixes, one per sense of motion, with the number of revolutions
    between them chosen by Kepler's third law at their mean radius."""
    n1, n2 = np.linalg.norm(r1), np.linalg.norm(r2)
    c = np.cross(r1, r2)
    sin_a = np.linalg.norm(c) / (n1 * n2)
    if sin_a < 0.02 or n1 < RE_KM * 0.9:      # >= ~1.1 deg of arc, ~140 km in LEO
        return []
    alpha = math.atan2(sin_a * n1 * n2, float(r1 @ r2))   # (0, pi)
    radius = 0.5 * (n1 + n2)
    wk = math.sqrt(MU_KM3_S2 / radius ** 3)
    dt = t2 - t1
    out = []
    for sense, ang in ((1.0, alpha), (-1.0, 2.0 * math.pi - alpha)):
        k = round((wk * dt - ang) / (2.0 * math.pi))
        omega = (ang + 2.0 * math.pi * max(k, 0)) / dt
        if abs(omega / wk - 1.0) > 0.15:
            continue
        h = sense * c / np.linalg.norm(c)
        p = r1 / n1
        out.append({"t0": t1, "p": p, "q": np.cross(h, p), "radius": radius, "omega": omega,
                    "node_rate": _node_rate(radius, omega, h[2])})
    return out


def _circle_positions(hyp, t):
    dt = np.asarray(t, dtype=float) - hyp["t0"]
    ph = hyp["omega"] * dt
    pos = hyp["radius"] * (np.cos(ph)[:, None] * hyp["p"] + np.sin(ph)[:, None] * hyp["q"])
    return np.einsum("nij,nj->ni", _rot_z(hyp["node_rate"] * dt), pos)


def _refine_circle(hyp, t, r):
    """Least-squares plane, radius and phase line of a circular orbit through inlier positions."""
    dt = t - hyp["t0"]
    # undo the nodal regression, so that the points lie in one fixed plane
    rr = np.einsum("nji,nj->ni", _rot_z(hyp["node_rate"] * dt), r)
    h_old = np.cross(hyp["p"], hyp["q"])
    if len(rr) >= 3:
        _, _, vt = np.linalg.svd(rr, full_matrices=False)
        h = vt[-1] if vt[-1] @ h_old > 0 else -vt[-1]
        if abs(h @ h_old) < 0.9:          # degenerate (nearly collinear points): keep the old plane
            h = h_old
    else:
        h = h_old
    p = hyp["p"] - (hyp["p"] @ h) * h
    p /= np.linalg.norm(p)
    q = np.cross(h, p)
    radius = float(np.median(np.linalg.norm(rr, axis=1)))
    theta = np.arctan2(rr @ q, rr @ p)
    d = np.angle(np.exp(1j * (theta - hyp["omega"] * dt)))      # phase residual, wrapped
    if len(t) >= 3 and np.ptp(dt) > 0:
        slope, icpt = np.polyfit(dt, d, 1)
    else:
        slope, icpt = 0.0, float(np.mean(d))
    omega = hyp["omega"] + slope
    # rotate the basis by the phase offset so that phase = omega * dt again
    p2 = math.cos(icpt) * p + math.sin(icpt) * q
    q2 = np.cross(h, p2)
    return {"t0": hyp["t0"], "p": p2, "q": q2, "radius": radius, "omega": omega,
            "node_rate": _node_rate(radius, omega, h[2])}
