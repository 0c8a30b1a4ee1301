"""Photometric effects applied to a geometric ``View``: sun illumination and night, geo-anchored clouds,
haze, appearance (colour/season) shifts, optics and sensor effects.

Conventions: images are BGR uint8; every random choice comes from the ``numpy.random.Generator`` passed
in, so a frame is reproducible from its seed. The sun is the flight code's (``earthfix.onboard.sun``: the
Astronomical Almanac's low-precision formulas, about 0.01 deg from 1950 to 2050), rotated to ECEF with the
same GMST as the orbits (``earthfix.sim.orbit.gmst_rad``). Sun elevations are geodetic (above the ellipsoid's tangent
plane), in degrees, without refraction.

Order of the pipeline (physical): ground reflectance (+ appearance shift) -> cloud shadows (optional,
``cloud_shadow``: the cloud field moved away from the sun by the cloud height) -> clouds (+ optional small
cumulus cells, ``cumulus``, and a thin veil above them, ``thin_cloud``) -> haze veil -> illumination ->
vignetting, exposure gain and white balance -> optical blur -> sensor noise -> 8-bit quantization ->
optional JPEG. Pixels off the Earth stay black (plus sensor noise).

Everything is vectorised with numpy float32 and OpenCV; a 256x256 frame costs a few milliseconds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..onboard import geodesy
from ..onboard import sun as onboard_sun
from .basemap import remap_any
from .orbit import gmst_rad, parse_time
from .render import centre_gsd_km

HAZE_BGR = (205.0, 190.0, 175.0)      # bluish-white atmospheric veil
CLOUD_EDGE = 0.8                      # the cloud field's opacity ramp, field units (EffectsConfig.cloud_edge 0)
CLOUD_GREY = 240.0                    # thick cloud top, fully lit (DN)
THIN_CLOUD_GREY = 225.0               # thin (cirrus-like) veil, fully lit (DN)
THIN_LON_OFFSET_DEG = 97.0            # where the thin layer samples the cloud field, relative to the thick
CUMULUS_LON_OFFSET_DEG = 211.0        # where the cumulus regions are read from the same field
SIN_TWILIGHT = math.sin(math.radians(-6.0))  # civil twilight: below this the ground is dark


# ---- configuration ---------------------------------------------------------------------------------

@dataclass
class EffectsConfig:
    """Switches and strengths of every effect (``clean()`` turns all of them off).

    Strengths are 0..1 unless a unit is given; jitters are standard deviations.
    """
    illumination: bool = True     # sun-angle shading of the day side, warm tint at low sun
    night: bool = True            # the side away from the sun goes ~black (sensor noise only)
    clouds: bool = True
    cloud_cover: float = 0.3      # share of the globe under cloud (opacity > 0.5)
    cloud_opacity: float = 1.0    # opacity of the thickest clouds
    cloud_edge: float = 0.0       # width of the clouds' translucent margin, in units of the cloud field (its
                                  # smoothstep from clear to opaque); 0: the field's own (0.8: crisp rims).
                                  # Wider margins are what real cloud fields have (docs/VERIFICATION.md, "Real
                                  # cloud shapes"); opacity 0.5 stays at the same place, so "cloudy" pixels,
                                  # cloud fraction and eligibility do not change
    haze: float = 0.06            # atmospheric veil at nadir; grows with the air mass off nadir
    noise_sigma: float = 2.0      # read noise, DN (shot noise adds sqrt(shot_noise * signal))
    shot_noise: float = 0.03      # DN of variance per DN of signal
    blur_sigma: float = 0.6       # optical PSF, pixels
    vignetting: float = 0.2       # relative light loss in the image corners
    exposure_jitter: float = 0.12  # log-gain standard deviation per frame
    exposure: float = 1.0         # the camera's exposure against the map's: a gain on every pixel's light (0.3: a
                                  # camera exposed for scenes ~3x brighter; > 1 saturates bright ground and cloud)
    white_balance_jitter: float = 0.03  # per-channel log-gain standard deviation per frame
    jpeg_quality: int | None = None     # None: no JPEG round trip
    appearance: float = 0.5       # strength of the per-frame colour/season/haze shift
    cloud_shadow: float = 0.0     # share of the light a cloud's shadow takes from the ground (0: no shadows)
    cloud_top_km: float = 3.0     # cloud height that sets how far from its cloud a shadow falls
    thin_cloud: float = 0.0       # peak opacity (0..0.5) of a thin, cirrus-like veil over half the globe,
                                  # above the thick clouds; it never makes a pixel "cloudy" (opacity > 0.5)
    cumulus: float = 0.0          # share (0..0.6) of the ground under small (2-6 km) fair-weather cumulus
                                  # cells where they occur (~30 % of the globe fully, ~70 % in part); a
                                  # pixel is as opaque as the share of it the cells cover, "cloudy" above
                                  # 0.5 like any cloud
    column_gain_sigma: float = 0.0  # a pushbroom's or CMOS column amplifiers' fixed pattern: each column's light
                                  # times 1 + N(0, sigma), the same pattern in every frame of a frame width (0: none)
    dead_columns: float = 0       # columns stuck at 0 or 255 in turn, at places fixed for a frame width (0: none)
    tone_gamma: float = 1.0       # the sensor's tone curve, out = 255 * (in / 255) ** tone_gamma over the whole
                                  # frame (ground and cloud), before quantisation: 1 none; ~2.2 a sensor that
                                  # delivers linear counts of an sRGB-like scene (dark, contrasty ground), ~0.5
                                  # a log-like stretch (bright, flat ground)

    @classmethod
    def default(cls) -> "EffectsConfig":
        return cls()

    @classmethod
    def clean(cls) -> "EffectsConfig":
        """Geometry only: the rendered basemap, untouched."""
        return cls(illumination=False, night=False, clouds=False, cloud_cover=0.0, haze=0.0,
                   noise_sigma=0.0, shot_noise=0.0, blur_sigma=0.0, vignetting=0.0, exposure_jitter=0.0,
                   white_balance_jitter=0.0, jpeg_quality=None, appearance=0.0)

    @property
    def is_clean(self) -> bool:
        c = self.clean()
        return all(getattr(self, f.name) == getattr(c, f.name) for f in fields(self) if f.name != "cloud_cover")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_yaml(cls, path) -> "EffectsConfig":
        """Settings from a YAML file (``yaml.safe_load``) over the defaults; ValueError with a one-line
        reason when the file cannot be read, is not YAML or holds an unknown key or a bad value."""
        import yaml
        try:
            d = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read effects file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"effects file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict | None, base: "EffectsConfig | None" = None) -> "EffectsConfig":
        """Build from a mapping (e.g. YAML); missing keys keep ``base`` (default: ``default()``).
        Raises ValueError with a one-line reason on unknown keys or bad values."""
        cfg = asdict(base if base is not None else cls.default())
        if d is None:
            return cls(**cfg)
        if not isinstance(d, dict):
            raise ValueError("effects: expected a mapping of effect names to values")
        known = {f.name: f for f in fields(cls)}
        for key, val in d.items():
            if key not in known:
                raise ValueError(f"effects: unknown key {key!r}; known: {', '.join(known)}")
            if key in ("illumination", "night", "clouds"):
                if not isinstance(val, bool):
                    raise ValueError(f"effects: {key!r} must be true or false, got {val!r}")
            elif key == "jpeg_quality":
                if val is not None and (not isinstance(val, int) or isinstance(val, bool) or not 1 <= val <= 100):
                    raise ValueError(f"effects: 'jpeg_quality' must be null or an integer 1..100, got {val!r}")
            else:
                if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val < 0:
                    raise ValueError(f"effects: {key!r} must be a non-negative number, got {val!r}")
                if key in ("cloud_cover", "cloud_opacity", "haze", "vignetting", "appearance", "cloud_shadow") and val > 1:
                    raise ValueError(f"effects: {key!r} must be in [0, 1], got {val!r}")
                if key == "thin_cloud" and val > 0.5:
                    raise ValueError(f"effects: 'thin_cloud' must be in [0, 0.5], got {val!r}")
                if key == "cloud_edge" and val > 10:
                    raise ValueError(f"effects: 'cloud_edge' must be in [0, 10], got {val!r}")
                if key == "exposure" and not 0.05 <= val <= 10:
                    raise ValueError(f"effects: 'exposure' must be in [0.05, 10], got {val!r}")
                if key == "tone_gamma" and not 0.2 <= val <= 5:
                    raise ValueError(f"effects: 'tone_gamma' must be in [0.2, 5], got {val!r}")
                if key == "column_gain_sigma" and val > 0.5:
                    raise ValueError(f"effects: 'column_gain_sigma' must be in [0, 0.5], got {val!r}")
                if key == "dead_columns" and (val > 64 or val != int(val)):
                    raise ValueError(f"effects: 'dead_columns' must be an integer 0..64, got {val!r}")
                if key == "cumulus" and val > 0.6:
                    raise ValueError(f"effects: 'cumulus' must be in [0, 0.6], got {val!r}")
                val = float(val)
            cfg[key] = val
        return cls(**cfg)


# ---- the sun ---------------------------------------------------------------------------------------

def sun_direction_ecef(t) -> np.ndarray:
    """Unit vector from the Earth's centre to the Sun in ECEF at UTC time ``t`` (ISO string or datetime).

    The flight code's Sun (``earthfix.onboard.sun``: Astronomical Almanac low-precision solar coordinates),
    turned about z by the GMST the orbits use (the TEME -> ECEF rotation of ``earthfix.sim.orbit``).
    """
    t = parse_time(t)
    return onboard_sun.sun_direction_ecef(t.timestamp(), gmst=gmst_rad(t))


sun_elevation_deg = onboard_sun.sun_elevation_deg


# ---- clouds ----------------------------------------------------------------------------------------

def _pyrup_wrap(f: np.ndarray) -> np.ndarray:
    """Double a lat/lon grid with a Gaussian pyramid step, periodic in longitude."""
    p = 3
    g = cv2.copyMakeBorder(f, 0, 0, p, p, cv2.BORDER_WRAP)
    g = cv2.pyrUp(g)
    return np.ascontiguousarray(g[:, 2 * p:-2 * p])


class CloudField:
    """A global, geo-anchored procedural cloud field: the same place sees the same clouds in every frame.

    Two layers of fractal noise: a global equirectangular grid (``width`` x ``width/2``, default ~10 km per
    texel at the equator) synthesised octave by octave (Gaussian pyramid upsampling, periodic in
    longitude, so the date line is seamless), plus a periodic fine-detail tile sampled at ~2.4 km per
    texel for ragged cloud edges. The field is thresholded with a soft step at the quantile that makes
    ``cover`` of the globe's area cloudy (opacity > 0.5). The grid stretches features east-west by
    1/cos(lat) at high latitudes (a known simplification).
    """

    def __init__(self, seed: int = 0, cover: float = 0.3, width: int = 4096, persistence: float = 0.9,
                 detail: float = 0.2, edge: float = CLOUD_EDGE):
        if not 0.0 <= cover <= 1.0:
            raise ValueError(f"cloud cover must be in [0, 1], got {cover}")
        self.seed, self.cover, self.edge = int(seed), float(cover), float(edge)
        rng = np.random.default_rng([0xC10D, self.seed])
        # octave synthesis: noise added down to ~40 km features, then two smoothing doublings
        f = rng.standard_normal((4, 8), dtype=np.float32)
        amp = 1.0
        while f.shape[1] < width:
            f = _pyrup_wrap(f)
            if f.shape[1] <= width // 4:
                amp *= persistence
                f += amp * rng.standard_normal(f.shape, dtype=np.float32)
        f = f[:, :width] if f.shape[1] > width else f
        f = (f - f.mean()) / (f.std() + 1e-6)
        self.width, self.height = f.shape[1], f.shape[0]
        self._pad = 2
        self.base = cv2.copyMakeBorder(cv2.copyMakeBorder(f, 0, 0, 2, 2, cv2.BORDER_WRAP), 2, 2, 0, 0,
                                       cv2.BORDER_REPLICATE)
        # periodic detail tile: band-passed white noise (FFT filtering is periodic by construction)
        n = 512
        self.tile_px = n
        self.tiles_per_turn = 32          # 32 * 512 texels per 360 deg: ~2.4 km per texel
        w = rng.standard_normal((n, n))
        k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.rfftfreq(n), indexing="ij"))
        # difference of Gaussians (sigma 2.5 and 12 texels: ~6..30 km structures), periodic via the FFT
        band = np.exp(-2.0 * (np.pi * 2.5 * k) ** 2) - np.exp(-2.0 * (np.pi * 12.0 * k) ** 2)
        d = np.fft.irfft2(np.fft.rfft2(w) * band, s=(n, n))
        self.tile = ((d - d.mean()) / (d.std() + 1e-9) * detail).astype(np.float32)
        # quantiles of the combined field over area-uniform points -> threshold for any cover
        qr = np.random.default_rng([0xC10E, self.seed])
        lat = np.degrees(np.arcsin(qr.uniform(-1.0, 1.0, 20000)))
        lon = qr.uniform(-180.0, 180.0, 20000)
        v = self.value(lat, lon)
        self._qs = np.linspace(0.0, 1.0, 201)
        self._qv = np.quantile(v, self._qs)
        self._cu_raw = None               # the cumulus tile, built on first use (``cumulus``)
        self._cu_cache: dict = {}

    def threshold(self, cover: float) -> float:
        """Field value above which a share ``cover`` of the globe lies (cover 0: none, 1: all)."""
        if cover <= 0.0:
            return 1e9
        if cover >= 1.0:
            return -1e9
        return float(np.interp(1.0 - float(cover), self._qs, self._qv))

    def value(self, lat_deg, lon_deg, lon_offset_deg: float = 0.0, flip_lat: bool = False) -> np.ndarray:
        """Raw field value (about zero mean, unit spread) at geodetic points, float32; NaN points get -50
        (never cloud)."""
        lat = np.asarray(lat_deg, dtype=np.float64)
        lon = np.asarray(lon_deg, dtype=np.float64)
        if flip_lat:
            lat = -lat
        # texel coordinates in float32 (< 1e-3 texel error), wrapped with floor (np.mod is slow)
        lon_u = lon.astype(np.float32)
        lon_u += np.float32(180.0 + lon_offset_deg)                      # degrees east of the date line
        if lon_offset_deg or np.any(lon_u < 0) or np.any(lon_u > 360):  # (render gives -180..180)
            lon_u -= np.float32(360.0) * np.floor(lon_u * np.float32(1 / 360.0))
        colat = np.float32(90.0) - lat.astype(np.float32)
        bad = np.isnan(lon_u)
        bad |= np.isnan(colat)
        if bad.any():
            lon_u[bad] = -1e5             # outside the grid: border value, no cloud
            colat[bad] = -1e5
        mx = lon_u * np.float32(self.width / 360.0) + np.float32(self._pad - 0.5)
        my = colat * np.float32(self.height / 180.0) + np.float32(self._pad - 0.5)
        v = remap_any(self.base, mx, my, border_value=-50.0)
        # detail tile, period 360/tiles_per_turn degrees; coordinates reduced into the tile for remap's
        # fast path (BORDER_WRAP only handles the last half texel)
        n = np.float32(self.tile_px)
        tpx = np.float32(self.tile_px * self.tiles_per_turn / 360.0)
        tx = lon_u * tpx
        tx -= n * np.floor(tx * (1 / n))
        ty = colat * tpx
        ty -= n * np.floor(ty * (1 / n))
        v += remap_any(self.tile, tx, ty, border_mode=cv2.BORDER_WRAP)
        return v

    def veil(self, lat_deg, lon_deg, peak: float, lon_offset_deg: float = 0.0, flip_lat: bool = False,
             cover: float = 0.5, edge: float = 2.5) -> np.ndarray:
        """A thin, soft-edged layer (float32 opacity, 0..``peak``): the field over its ``cover`` quantile,
        ramped over ``edge`` units of the field (the thick clouds' ramp is ``self.edge``), so it thins out
        gradually like cirrus rather than ending at a rim."""
        v = self.value(lat_deg, lon_deg, lon_offset_deg, flip_lat)
        v -= np.float32(self.threshold(cover))
        v *= np.float32(1.0 / edge)
        v += np.float32(0.5)
        np.clip(v, 0.0, 1.0, out=v)
        v *= np.float32(peak)
        return v

    # fair-weather cumulus: a periodic tile of ~1 km texels (80 tiles of 512 per turn, a 500 km period),
    # built on first use from its own random stream so that frames without cumulus stay as they were
    CU_TILES_PER_TURN = 80

    @property
    def cumulus_texel_km(self) -> float:
        return 2.0 * math.pi * geodesy.A_KM / (self.CU_TILES_PER_TURN * 512)

    def _cumulus_tile(self, cover: float, sigma_texels: float) -> np.ndarray:
        """Binary cells covering ``cover`` of the tile, blurred by ``sigma_texels`` (periodic): a pixel
        wider than a cell sees the share of it the cells cover, not an aliased speckle."""
        key = (round(cover, 3), round(sigma_texels * 4) / 4)
        cache = self._cu_cache
        tile = cache.get(key)
        if tile is None:
            raw = self._cu_raw
            if raw is None:
                n = 512
                w = np.random.default_rng([0xC110, self.seed]).standard_normal((n, n))
                k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.rfftfreq(n), indexing="ij"))
                # difference of Gaussians, sigma 1.2 and 4 texels: cells of ~2-6 km
                band = np.exp(-2.0 * (np.pi * 1.2 * k) ** 2) - np.exp(-2.0 * (np.pi * 4.0 * k) ** 2)
                raw = self._cu_raw = np.fft.irfft2(np.fft.rfft2(w) * band, s=(n, n)).astype(np.float32)
            tile = (raw > np.quantile(raw, 1.0 - key[0])).astype(np.float32)
            s = key[1]
            if s >= 0.25:
                pad = int(math.ceil(3 * s)) + 1
                big = cv2.copyMakeBorder(tile, pad, pad, pad, pad, cv2.BORDER_WRAP)
                tile = np.ascontiguousarray(cv2.GaussianBlur(big, (0, 0), s)[pad:-pad, pad:-pad])
            if len(cache) > 16:
                cache.clear()
            cache[key] = tile
        return tile

    def cumulus(self, lat_deg, lon_deg, cover: float, gsd_km: float, lon_offset_deg: float = 0.0,
                flip_lat: bool = False) -> np.ndarray:
        """Opacity (float32, 0..1) of small cumulus cells covering ``cover`` of the ground where they
        occur: regions read from the field elsewhere (``CUMULUS_LON_OFFSET_DEG``; ~30 % of the globe fully,
        ~70 % in part, soft-edged). ``gsd_km``: the frame's pixel size, to average cells smaller than a pixel."""
        tile = self._cumulus_tile(cover, 0.5 * gsd_km / self.cumulus_texel_km)
        region = self.veil(lat_deg, lon_deg, 1.0, lon_offset_deg + CUMULUS_LON_OFFSET_DEG, not flip_lat,
                           cover=0.5, edge=1.0)
        lat = np.asarray(lat_deg, dtype=np.float32)
        lon = np.asarray(lon_deg, dtype=np.float32) + np.float32(180.0 + lon_offset_deg)
        if flip_lat:
            lat = -lat
        n = np.float32(512)
        tpx = np.float32(512 * self.CU_TILES_PER_TURN / 360.0)
        tx = lon * tpx
        tx -= n * np.floor(tx * (1 / n))
        ty = (np.float32(90.0) - lat) * tpx
        ty -= n * np.floor(ty * (1 / n))
        bad = ~(np.isfinite(tx) & np.isfinite(ty))
        if bad.any():
            tx[bad] = 0.0
            ty[bad] = 0.0
        c = remap_any(tile, tx, ty, border_mode=cv2.BORDER_WRAP)
        c *= region
        if bad.any():
            c[bad] = 0.0
        return c

    def sample(self, lat_deg, lon_deg, cover: float | None = None, lon_offset_deg: float = 0.0,
               flip_lat: bool = False) -> np.ndarray:
        """Cloud opacity (float32, 0..1) at geodetic points; 0 at NaN points.

        ``cover`` overrides the field's cover; ``lon_offset_deg``/``flip_lat`` move the whole field
        (for frames that should not share clouds with a place)."""
        return self.sample_with_thickness(lat_deg, lon_deg, cover, lon_offset_deg, flip_lat)[0]

    def sample_with_thickness(self, lat_deg, lon_deg, cover=None, lon_offset_deg=0.0, flip_lat=False, edge=None):
        """(opacity, thickness): thickness (0..1) grows towards the cores of clouds (brighter tops). ``edge``:
        the opacity ramp's width in field units instead of the field's own ``self.edge``."""
        thr = np.float32(self.threshold(self.cover if cover is None else cover))
        v = self.value(lat_deg, lon_deg, lon_offset_deg, flip_lat)
        v -= thr
        x = v * np.float32(1.0 / (self.edge if edge is None else edge)) + np.float32(0.5)
        np.clip(x, 0.0, 1.0, out=x)
        opacity = x * x * (np.float32(3.0) - np.float32(2.0) * x)  # smoothstep: 0.5 exactly at the threshold
        v *= np.float32(1.0 / 1.5)
        np.clip(v, 0.0, 1.0, out=v)
        return opacity, v


@lru_cache(maxsize=4)
def shared_cloud_field(seed: int = 0) -> CloudField:
    """A cached field for frames rendered one by one (move it with a random offset per frame)."""
    return CloudField(seed)


# ---- appearance ------------------------------------------------------------------------------------

def appearance_shift(img: np.ndarray, rng: np.random.Generator, strength: float = 0.5) -> np.ndarray:
    """A random per-frame colour/season/sensor shift of a BGR uint8 image (``strength`` 0..1).

    Hue rotation, selective green -> yellow/brown "season" shift, saturation and value gamma,
    contrast and brightness, a random near-identity channel mix (another sensor's spectral bands) and a
    thin haze veil. Two OpenCV colour conversions, one LUT and one matrix transform: about 1 ms at 256x256.
    """
    if strength <= 0:
        return img
    s = float(strength)
    n = rng.standard_normal(9)
    u = rng.uniform(size=3)
    i = np.arange(256, dtype=np.float32)
    # hue (OpenCV 0..179): global shift + a bump that drags greens (~60) towards yellow/brown (~25)
    dh = 6.0 * s * n[0]
    season = 28.0 * s * u[0] * (1.0 if u[1] < 0.7 else -0.4)     # mostly browner, sometimes greener
    h = i[:180]
    bump = np.exp(-0.5 * ((h - 62.0) / 20.0) ** 2)
    hue = np.mod(h + dh - season * bump, 180.0)
    hue = np.concatenate([hue, np.zeros(76, np.float32)])
    sat = 255.0 * (i / 255.0) ** math.exp(0.35 * s * n[1]) * math.exp(0.25 * s * n[2])
    gamma = math.exp(0.25 * s * n[3])
    contrast = math.exp(0.2 * s * n[4])
    val = 255.0 * (i / 255.0) ** gamma
    val = (val - 128.0) * contrast + 128.0 + 12.0 * s * n[5]
    lut = np.stack([hue, sat, val], axis=-1)
    lut = np.clip(lut + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    out = cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2BGR)
    # channel mixing with rows summing to 1 (greys stay grey), then a thin veil
    mix = np.eye(3) + 0.08 * s * rng.standard_normal((3, 3))
    mix /= mix.sum(axis=1, keepdims=True)
    veil = 0.2 * s * u[2]
    m = np.zeros((3, 4))
    m[:, :3] = (1.0 - veil) * mix
    m[:, 3] = veil * np.array(HAZE_BGR) * (1.0 + 0.05 * n[6:9])
    return cv2.transform(out, m)


# ---- the pipeline ----------------------------------------------------------------------------------

_VIGNETTE_CACHE: dict = {}


def _vignette(h: int, w: int, strength: float) -> np.ndarray:
    key = (h, w, round(strength, 6))
    v = _VIGNETTE_CACHE.get(key)
    if v is None:
        if len(_VIGNETTE_CACHE) > 16:
            _VIGNETTE_CACHE.clear()
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
        v = (1.0 - strength * r2).astype(np.float32)       # smooth cos^4-like fall-off, 1 - strength at corners
        _VIGNETTE_CACHE[key] = v
    return v


def boresight_latlon(view) -> tuple[float, float] | None:
    """Geodetic (lat, lon) where the boresight (the ray through the image centre) meets the ellipsoid, None
    if it misses. Uses the view's pose when known, else the ground point of the centre pixel."""
    if view.pos_ecef_km is not None and view.r_cam2ecef is not None:
        ray = np.array([0.0, 0.0, 1.0]) if view.centre_ray is None else view.centre_ray
        p, ok = geodesy.ray_ellipsoid(view.pos_ecef_km, np.asarray(view.r_cam2ecef) @ ray)
        if not bool(ok):
            return None
        lat, lon = geodesy.surface_to_geodetic(p)
        return float(lat), float(lon)
    h, w = view.hit.shape
    if not view.hit[h // 2, w // 2]:
        return None
    return float(view.lat[h // 2, w // 2]), float(view.lon[h // 2, w // 2])


_NOISE_BANK: dict = {}


def _noise(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Unit Gaussian noise, H x W x 3 float32: a random window (offsets from ``rng``) of a fixed bank twice
    the frame size, so a frame costs no random generation (~0.4 ms saved at 256x256); frames get
    independent-looking noise and stay reproducible from ``rng``."""
    bank = _NOISE_BANK.get((h, w))
    if bank is None:
        if len(_NOISE_BANK) > 4:
            _NOISE_BANK.clear()
        bank = np.random.default_rng(0x5E4503).standard_normal((2 * h, 2 * w, 3), dtype=np.float32)
        _NOISE_BANK[(h, w)] = bank
    y, x = rng.integers(0, h + 1), rng.integers(0, w + 1)
    return bank[y:y + h, x:x + w]


def _ellipsoid_normal(p: np.ndarray) -> np.ndarray:
    """Unit outward normals of the WGS84 ellipsoid at ECEF points ``p`` (..., 3) km (zero rows stay zero)."""
    n = p * np.array([1 / geodesy.A_KM ** 2, 1 / geodesy.A_KM ** 2, 1 / geodesy.B_KM ** 2])
    return n / (np.linalg.norm(n, axis=-1, keepdims=True) + 1e-300)


def _sun_and_airmass(view, s_dir, need_airmass: bool):
    """Per-pixel sin(sun elevation) and air mass (1 / cos of the view zenith angle, capped at ~6.7), float32.

    Both are smooth over the ground: when the whole frame is Earth they are computed on a grid 8x coarser
    (block-averaged ground points) and interpolated back (< 0.01 deg of sun elevation); when the limb is
    in view, per pixel (0 off the Earth)."""
    h, w = view.hit.shape
    coarse = bool(view.hit.all()) and min(h, w) >= 32
    if coarse:
        p = cv2.resize(view.points, (max(w // 8, 2), max(h // 8, 2)), interpolation=cv2.INTER_AREA)
    else:
        p = np.where(view.hit[..., None], view.points, 0.0)
    n = _ellipsoid_normal(p)
    sin_el = (n @ np.asarray(s_dir, dtype=np.float64)).astype(np.float32)
    airmass = None
    if need_airmass:
        rel = p - np.asarray(view.pos_ecef_km, dtype=np.float64)
        cos_vz = -np.einsum("...i,...i->...", rel, n) / (np.linalg.norm(rel, axis=-1) + 1e-300)
        airmass = (1.0 / np.maximum(cos_vz, 0.15)).astype(np.float32)
    if coarse:
        sin_el = cv2.resize(sin_el, (w, h), interpolation=cv2.INTER_LINEAR)
        if airmass is not None:
            airmass = cv2.resize(airmass, (w, h), interpolation=cv2.INTER_LINEAR)
    return sin_el, airmass


def _shadow_shift_px(view, s_dir, top_km: float):
    """Image offset (dx, dy) px from a cloud to its shadow on the ground: ``top_km / tan(sun elevation)``
    away from the sun, mapped through the ground points around the frame centre (one offset per frame).
    None when the centre misses the Earth or the sun is below 2 deg there."""
    h, w = view.hit.shape
    cy, cx = h // 2, w // 2
    if cx + 1 >= w or cy + 1 >= h or not view.hit[cy:cy + 2, cx:cx + 2].all():
        return None
    p = np.asarray(view.points[cy, cx], np.float64)
    n = _ellipsoid_normal(p)
    s = np.asarray(s_dir, np.float64) / np.linalg.norm(s_dir)
    sin_el = float(s @ n)
    if sin_el < math.sin(math.radians(2.0)):
        return None
    horiz = s - sin_el * n
    away = -horiz / max(np.linalg.norm(horiz), 1e-12) * (top_km / math.tan(math.asin(min(sin_el, 1.0))))
    j = np.stack([view.points[cy, cx + 1] - p, view.points[cy + 1, cx] - p], axis=1)      # km per px, 3 x 2
    dxy, *_ = np.linalg.lstsq(j, away, rcond=None)
    return float(dxy[0]), float(dxy[1])


def apply(view, t, cfg: EffectsConfig, rng: np.random.Generator, clouds: CloudField | None = None,
          sun_dir=None) -> tuple[np.ndarray, dict]:
    """Apply the effects of ``cfg`` to a rendered ``View`` at UTC time ``t``.

    ``clouds``: a geo-anchored ``CloudField`` (pass the same one for all frames of a replay); if None and
    ``cfg.clouds``, a shared field is used with a random per-frame offset (clouds not tied to places). A field
    that carries its own cover (``carries_cover``: a real one, ``sim.real_clouds``) is drawn whatever
    ``cfg.cloud_cover`` says; a procedural one is drawn only with a cover above 0.

    Returns (BGR uint8 image, info) with info:
    - ``sun_elev_deg``: sun elevation at the boresight point (None if the boresight misses the Earth);
    - ``cloud_frac``: share of Earth pixels whose cloud opacity exceeds 0.5;
    - ``land_frac``: share of all pixels that are land (land fraction > 0.5);
    - ``land_clear_frac``: share of all pixels that are land and not cloud-covered (CONVENTIONS'
      eligible frame needs >= 0.2 of it in daylight).
    """
    h, w = view.hit.shape
    hit = view.hit
    n_pix = float(h * w)
    s_dir = sun_direction_ecef(t) if sun_dir is None else np.asarray(sun_dir, dtype=np.float64)
    bore = boresight_latlon(view)
    sun_elev = None if bore is None else float(sun_elevation_deg(bore[0], bore[1], sun_dir=s_dir))
    land_mask = view.land > 0.5

    alpha = thin = None
    own_cover = clouds is not None and getattr(clouds, "carries_cover", False)
    if cfg.clouds and (cfg.cloud_cover > 0 or cfg.cumulus > 0 or own_cover) and cfg.cloud_opacity > 0:
        if clouds is None:
            field, lon_off, flip = shared_cloud_field(), float(rng.uniform(0, 360)), bool(rng.uniform() < 0.5)
        else:
            field, lon_off, flip = clouds, 0.0, False
        # a wider translucent margin is asked for only when set (a custom field need not take ``edge``)
        edge = {"edge": cfg.cloud_edge} if cfg.cloud_edge > 0 else {}
        alpha, thick = field.sample_with_thickness(view.lat, view.lon, cfg.cloud_cover, lon_off, flip, **edge)
        if cfg.thin_cloud > 0:          # the same field elsewhere (no extra random draw), soft-edged
            thin = field.veil(view.lat, view.lon, cfg.thin_cloud, lon_off + THIN_LON_OFFSET_DEG, not flip)
        if cfg.cumulus > 0:             # small bright cells, opaque as far as they cover a pixel
            gsd_km = centre_gsd_km(view.points, view.hit)
            cu = field.cumulus(view.lat, view.lon, cfg.cumulus, 4.0 if gsd_km is None else gsd_km, lon_off, flip)
            alpha += cu * (np.float32(1.0) - alpha)
            np.maximum(thick, cu, out=thick)
        if cfg.cloud_opacity != 1.0:
            alpha *= np.float32(cfg.cloud_opacity)
        all_hit = bool(hit.all())
        if not all_hit:
            alpha[~hit] = 0.0
            if thin is not None:
                thin[~hit] = 0.0
        cloudy = alpha > 0.5
        n_hit = h * w if all_hit else int(np.count_nonzero(hit))
        cloud_frac = float(np.count_nonzero(cloudy)) / n_hit if n_hit else 0.0
        land_clear = float(np.count_nonzero(land_mask & ~cloudy)) / n_pix
    else:
        cloud_frac = 0.0
        land_clear = float(np.count_nonzero(land_mask)) / n_pix
    info = {"sun_elev_deg": sun_elev, "cloud_frac": cloud_frac,
            "land_frac": float(np.count_nonzero(land_mask)) / n_pix, "land_clear_frac": land_clear}

    if cfg.is_clean and alpha is None:
        return view.image.copy(), info

    ground = view.image
    if cfg.appearance > 0:
        ground = appearance_shift(ground, rng, cfg.appearance)

    # Clouds, haze, illumination, vignetting, exposure and white balance are all per-pixel affine maps of
    # the ground colour: out_c = ground_c * A_c + B_c, with A and B built on cheap H x W planes (numpy
    # broadcasting of planes over 3 channels is slow; cv2.merge is not).
    need_sun = cfg.illumination or cfg.night
    need_airmass = cfg.haze > 0 and view.pos_ecef_km is not None
    if need_sun or need_airmass:
        sin_el, airmass = _sun_and_airmass(view, s_dir, need_airmass)
    gain = np.ones((h, w), np.float32) if cfg.vignetting <= 0 else _vignette(h, w, cfg.vignetting).copy()
    colour = np.ones(3)
    if need_sun:
        if cfg.illumination:
            k = np.clip((sin_el + np.float32(0.03)) * np.float32(1 / 1.03), 0.0, 1.0)
            np.sqrt(k, out=k)                           # brighter than Lambert: exposure set for low sun too
            if not cfg.night:
                np.maximum(k, np.float32(0.35), out=k)  # no night: the dark side looks like low sun
            gain *= k
            if sun_elev is not None:                    # warm light at low sun, frame-wide
                d = float(np.clip(math.sin(math.radians(max(sun_elev, 0.0))) / 0.35, 0.0, 1.0))
                colour *= np.array([0.78 + 0.22 * d, 0.92 + 0.08 * d, 1.0])
        if cfg.night:                                   # civil twilight down to black
            gain *= np.clip((sin_el - np.float32(SIN_TWILIGHT)) * np.float32(1 / (0.03 - SIN_TWILIGHT)), 0.0, 1.0)
    if cfg.exposure_jitter > 0:
        colour *= math.exp(cfg.exposure_jitter * rng.standard_normal())
    colour *= cfg.exposure                              # no random draw: the other effects keep their streams
    if cfg.white_balance_jitter > 0:
        colour *= np.exp(cfg.white_balance_jitter * rng.standard_normal(3))
    if not hit.all():
        gain[~hit] = 0.0                                # space is black
    a_plane, b_cloud, b_haze = gain, None, None
    if cfg.haze > 0:
        if need_airmass:
            hz = np.minimum(np.float32(cfg.haze) * airmass, np.float32(0.7))   # veil grows with air mass
        else:
            hz = np.full((h, w), min(cfg.haze, 0.7), np.float32)
        b_haze = hz * gain
        a_plane = gain - b_haze                          # gain * (1 - hz)
    if alpha is not None:
        np.sqrt(thick, out=thick)                       # thin, broken cloud is grey; thick cores bright
        b_cloud = (thick * np.float32(0.3 * CLOUD_GREY) + np.float32(0.7 * CLOUD_GREY)) * alpha * a_plane
        lit = a_plane
        a_plane = a_plane - alpha * a_plane             # * (1 - alpha)
        if thin is not None:                            # a thin veil above: over ground and thick cloud
            b_cloud = b_cloud * (np.float32(1.0) - thin) + thin * np.float32(THIN_CLOUD_GREY) * lit
            a_plane = a_plane * (np.float32(1.0) - thin)
        shift = _shadow_shift_px(view, s_dir, cfg.cloud_top_km) if cfg.cloud_shadow > 0 else None
        if shift is not None:                           # the ground (not the cloud) under a cloud's shadow
            m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            shadow = cv2.warpAffine(alpha, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
            a_plane = a_plane * (np.float32(1.0) - np.float32(cfg.cloud_shadow) * shadow)
    img = ground.astype(np.float32)
    img *= cv2.merge([a_plane * np.float32(c) for c in colour])
    if b_cloud is not None or b_haze is not None:
        offs = []
        for c, hc in zip(colour, HAZE_BGR):
            b = b_cloud if b_haze is None else (b_haze * np.float32(hc) if b_cloud is None
                                                 else b_cloud + b_haze * np.float32(hc))
            offs.append(b * np.float32(c))
        img += cv2.merge(offs)

    if cfg.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), cfg.blur_sigma)
    if cfg.column_gain_sigma > 0:                       # the sensor's own pattern: not from the frame's stream
        gains = 1.0 + cfg.column_gain_sigma * np.random.default_rng([0xC01, w]).standard_normal(w)
        img *= gains.astype(np.float32)[None, :, None]
    if cfg.noise_sigma > 0 or cfg.shot_noise > 0:
        noise = _noise(h, w, rng)
        if cfg.shot_noise > 0:
            sigma = cv2.max(img, 0.0)
            sigma *= np.float32(cfg.shot_noise)
            sigma += np.float32(cfg.noise_sigma ** 2)
            np.sqrt(sigma, out=sigma)
            sigma *= noise
            img += sigma
        else:
            img += noise * np.float32(cfg.noise_sigma)
    if cfg.tone_gamma != 1.0:                           # the sensor's tone curve on its full range
        img = np.clip(img, 0.0, 255.0) * np.float32(1.0 / 255.0)   # (cv2.min's scalar would clip band 0 only)
        cv2.pow(img, float(cfg.tone_gamma), dst=img)
        img *= np.float32(255.0)
    out = cv2.convertScaleAbs(cv2.max(img, 0.0))        # round and saturate to uint8 (negatives -> 0 first)
    if cfg.dead_columns > 0:
        cols = np.random.default_rng([0xDEAD, w]).choice(w, min(int(cfg.dead_columns), w), replace=False)
        for j, c in enumerate(cols):
            out[:, c] = 0 if j % 2 == 0 else 255
    if cfg.jpeg_quality is not None:
        _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out, info
