"""Build the keypoint store (``earthfix.onboard.keystore``) from a basemap.

Method: render nadir tiles of the flattened basemap (``earthfix.sim.render``) over a lattice of centres,
detect features with the flight extractor (``earthfix.onboard.features``), convert each keypoint's pixel
position to geodetic lat/lon through the rendered ground points (bilinear), and keep a keypoint only in the
tile that *owns* its location (nearest lattice centre, great circle). Tiles overlap by a margin so that
owned keypoints are never near a tile border; storage therefore grows with the area covered.

No keypoint comes from open water: the basemap's water is flattened, and a keypoint is dropped where the
land fraction under it is below ``min_land``; keypoints near tile borders or off the Earth are dropped too.

Usage::

    python -m earthfix.tools.build_keystore --out keystore.npz [--bbox LAT0 LAT1 LON0 LON1] [--gsd-km 4]
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..onboard import geodesy
from ..onboard.camera import Camera, nadir_attitude
from ..onboard.features import FeatureConfig, extract_features
from ..onboard.keystore import KeypointStore, quantise
from ..onboard.localdesc import BUNDLE_FILE
from ..sim import render as render_mod
from ..sim.basemap import Basemap

LAND_AREA_KM2 = 148.9e6   # Earth's land area incl. Antarctica, for bytes/km2 figures


STORE_CLAHE_CLIP = 2.0    # the map is crisper than flight frames, which get 3 (features.FeatureConfig)


def store_feature_config(max_keypoints: int = 20000) -> FeatureConfig:
    """Extractor for reference tiles: same preprocessing and descriptor as flight, native tile
    resolution, every keypoint kept (no per-cell budget: density is what SIFT finds on the map), CLAHE
    at the map's own clip limit."""
    return FeatureConfig(max_keypoints=max_keypoints, work_side_px=None, grid_cells=0, clahe_clip=STORE_CLAHE_CLIP)


@dataclass
class BuildConfig:
    gsd_km: float = 6.0               # tile ground sample at the tile centre. 4, 6 and 8 km/px verified
                                      # alike on simulated frames (bench_verify --effects); 6 holds half
                                      # the keypoints of 4 (3.4 vs 7.2 MB global at 32-D), matching faster
    tile_px: int = 512
    tile_fov_deg: float = 30.0        # narrow: close to an orthographic view, little scale change across
    margin_km: float = 150.0          # owned area stays this far from tile borders
    min_land: float = 0.5             # keypoint dropped where the land fraction under it is lower
    min_tile_land: float = 0.002      # tiles with less land than this (fraction of pixels) are skipped
    pca_dim: int = 32                 # descriptor components kept (<= 128); 32 matched as well as 64
                                      # under appearance changes (bench_verify) at 0.7x the match time; for the
                                      # learned descriptor 64 match other imagery better but cost latency and
                                      # near-wrong poses (docs/VERIFICATION.md, "A 64-D store": withdrawn)
    pca_fit_max: int = 200_000        # descriptors used to fit the PCA
    q_sigmas: float = 4.0             # quantiser range: +-q_sigmas standard deviations per component
    cell_deg: float = 2.0
    max_kp_per_tile: int = 20000      # a safety cap; tiles hold ~2000 at 6 km/px
    density_per_1e4_km2: float = 0.0  # if > 0: keep at most this many keypoints per 10^4 km2 owned (strongest)
    bbox: tuple | None = None         # (lat_min, lat_max, lon_min, lon_max): a regional store
    feature: dict = field(default_factory=dict)   # overrides of store_feature_config()

    def feature_config(self) -> FeatureConfig:
        d = store_feature_config(self.max_kp_per_tile).to_dict()
        d.update(self.feature)
        return FeatureConfig.from_dict(d)

    @property
    def tile_extent_km(self) -> float:
        return self.tile_px * self.gsd_km

    @property
    def spacing_km(self) -> float:
        # owned Voronoi cell of a roughly square lattice reaches spacing/sqrt(2) from its centre
        return (self.tile_extent_km / 2.0 - self.margin_km) * math.sqrt(2.0)


def lattice(cfg: BuildConfig) -> np.ndarray:
    """Tile centres (lat, lon) in rows of constant latitude; N x 2 float64, covering the globe."""
    s = cfg.spacing_km
    dlat = math.degrees(s / geodesy.R_MEAN_KM)
    n_rows = int(math.ceil(180.0 / dlat))
    lats = -90.0 + (np.arange(n_rows) + 0.5) * (180.0 / n_rows)
    out = []
    for i, la in enumerate(lats):
        circ = 2 * math.pi * geodesy.R_MEAN_KM * math.cos(math.radians(la))
        n = max(1, int(math.ceil(circ / s)))
        off = 0.5 * (i % 2)                  # stagger rows: closer to a hexagonal lattice
        lons = -180.0 + (np.arange(n) + off) * (360.0 / n)
        out.extend((la, geodesy.wrap_lon(lo)) for lo in lons)
    return np.array(out, dtype=np.float64)


def _unit(lat, lon):
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _in_bbox(lat, lon, bbox):
    if bbox is None:
        return np.ones(np.shape(lat), bool)
    la0, la1, lo0, lo1 = bbox
    return (lat >= la0) & (lat <= la1) & (lon >= lo0) & (lon <= lo1)


def _bilinear(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of a (H x W [x C]) array at float pixel positions (x=col, y=row)."""
    h, w = a.shape[:2]
    x = np.clip(x, 0, w - 1.001)
    y = np.clip(y, 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    if a.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    return ((a[y0, x0] * (1 - fx) + a[y0, x0 + 1] * fx) * (1 - fy)
            + (a[y0 + 1, x0] * (1 - fx) + a[y0 + 1, x0 + 1] * fx) * fy)


def render_tile(basemap: Basemap, cfg: BuildConfig, lat0: float, lon0: float):
    """The nadir map tile centred on (lat0, lon0), north up, ``cfg.gsd_km`` per pixel at its centre
    (``render.View``)."""
    cam = Camera.from_fov(cfg.tile_px, cfg.tile_px, cfg.tile_fov_deg)
    pos = geodesy.geodetic_to_ecef(lat0, lon0, cfg.gsd_km * cam.fx)
    return render_mod.render(basemap, cam, pos, nadir_attitude(lat0, lon0, 0.0))


def tile_keypoints(basemap: Basemap, cfg: BuildConfig, lat0: float, lon0: float, fcfg: FeatureConfig,
                   describer=None):
    """Render one nadir tile and return its keypoints with ground positions.

    Returns dict of arrays: lat, lon, desc (RootSIFT, or ``describer``'s), size_km, azimuth_deg, response,
    land.
    """
    view = render_tile(basemap, cfg, lat0, lon0)
    f = extract_features(view.image, fcfg, valid=view.hit, describer=describer)
    if len(f) == 0:
        return None
    x, y = f.xy[:, 0].astype(np.float64), f.xy[:, 1].astype(np.float64)
    pts = np.where(view.hit[..., None], view.points, 0.0)
    p = _bilinear(pts, x, y)
    lat, lon = geodesy.surface_to_geodetic(p)
    land = _bilinear(view.land, x, y)
    # local image -> ground Jacobian (ECEF km per pixel) by central differences of the ground points
    px = _bilinear(pts, x + 1, y) - _bilinear(pts, x - 1, y)
    py = _bilinear(pts, x, y + 1) - _bilinear(pts, x, y - 1)
    gsd = 0.5 * np.sqrt(np.linalg.norm(px, axis=1) * np.linalg.norm(py, axis=1))
    a = np.radians(f.angle.astype(np.float64))
    disp = 0.5 * (px * np.cos(a)[:, None] + py * np.sin(a)[:, None])   # ground step along the orientation
    enu = geodesy.enu_basis(lat, lon)
    az = np.degrees(np.arctan2(np.einsum("ni,ni->n", disp, enu[:, 0]),
                               np.einsum("ni,ni->n", disp, enu[:, 1]))) % 360.0
    return {"lat": lat, "lon": lon, "desc": f.desc, "size_km": f.size * gsd, "azimuth_deg": az,
            "response": f.response, "land": land}


def build_keystore(basemap: Basemap, cfg: BuildConfig | None = None, progress: bool = True,
                   describer=None, extra_basemaps: tuple = ()) -> KeypointStore:
    """Build a :class:`KeypointStore` for the basemap (or ``cfg.bbox`` of it). ``describer``: a
    ``localdesc.PatchDescriber`` (the learned local descriptor, recorded in the store's meta and attached
    to it), or None for RootSIFT. ``extra_basemaps``: other global images of the same ground (another
    product or season) whose tiles' keypoints join the store's, under one PCA (each map's density cap
    applies to its own keypoints; a map's ``keypoint_mask`` limits where its keypoints are kept, and such a map's
    keypoints are projected with the PCA of the others)."""
    cfg = cfg or BuildConfig()
    fcfg = cfg.feature_config()
    centres = lattice(cfg)
    cu = _unit(centres[:, 0], centres[:, 1])
    half_km = cfg.tile_extent_km / 2.0
    # tiles to render: those that may own land inside the bbox
    todo = []
    for i, (la, lo) in enumerate(centres):
        reach = cfg.spacing_km / math.sqrt(2.0) * 1.05 + 50.0
        if cfg.bbox is not None:
            la0, la1, lo0, lo1 = cfg.bbox
            # distance from the centre to the bbox (coarse: clamp in degrees, then great circle)
            cl = min(max(la, la0), la1)
            cm = min(max(lo, lo0), lo1)
            if geodesy.great_circle_km(la, lo, cl, cm) > reach:
                continue
        if _land_near(basemap, la, lo, reach) < cfg.min_tile_land:
            continue
        todo.append(i)
    it = todo
    if progress:
        from tqdm import tqdm
        it = tqdm(todo, desc="keystore tiles", unit="tile")
    parts = []
    n_detected = 0
    for i, bm in ((i, bm) for i in it for bm in (basemap, *extra_basemaps)):
        la, lo = centres[i]
        if bm.keypoint_mask is not None and not _keeps_near(bm, la, lo, half_km):
            continue        # a tile where this map keeps no keypoint: not rendered
        kp = tile_keypoints(bm, cfg, la, lo, fcfg, describer)
        if kp is None:
            continue
        n_detected += len(kp["lat"])
        keep = (kp["land"] >= cfg.min_land) & _in_bbox(kp["lat"], kp["lon"], cfg.bbox)
        keep &= bm.keeps_keypoints(kp["lat"], kp["lon"])
        keep &= geodesy.great_circle_km(la, lo, kp["lat"], kp["lon"]) < half_km - cfg.margin_km
        if not keep.any():
            continue
        ku = _unit(kp["lat"][keep], kp["lon"][keep])
        # ownership: nearest lattice centre; candidates are centres within two spacings
        near = np.flatnonzero(cu @ cu[i] > math.cos(2.5 * cfg.spacing_km / geodesy.R_MEAN_KM))
        owner = near[np.argmax(ku @ cu[near].T, axis=1)]
        sel = np.flatnonzero(keep)[owner == i]
        if cfg.density_per_1e4_km2 > 0 and len(sel):
            area = _owned_area_km2(cfg)
            cap = int(cfg.density_per_1e4_km2 * area / 1e4)
            sel = sel[np.argsort(-kp["response"][sel], kind="stable")[:cap]]
        parts.append(dict({k: v[sel] for k, v in kp.items()},
                          seasonal=np.full(len(sel), bm.keypoint_mask is not None)))
    if not parts:
        raise ValueError("no keypoints: the region has no textured land")
    allk = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    desc = allk["desc"].astype(np.float32)
    # PCA and quantiser on a deterministic subsample of the whole maps' keypoints: a map painted on part of the
    # globe (a keypoint_mask: the snow season) is projected with them, so that adding it leaves every other
    # keypoint's stored descriptor as it was
    whole = ~allk.pop("seasonal")
    if not whole.any():
        whole[:] = True
    rng = np.random.default_rng(0)
    fit = desc[whole]
    sub = fit if len(fit) <= cfg.pca_fit_max else fit[rng.choice(len(fit), cfg.pca_fit_max, replace=False)]
    mean = sub.mean(axis=0)
    _, sv, vt = np.linalg.svd(sub - mean, full_matrices=False)
    dim = int(min(cfg.pca_dim, desc.shape[1]))
    comps = vt[:dim].astype(np.float32)
    # deterministic sign: largest-magnitude loading positive
    sgn = np.sign(comps[np.arange(dim), np.argmax(np.abs(comps), axis=1)])
    comps *= sgn[:, None]
    # the whole maps' keypoints projected in a product of their own: a BLAS product's rows can round differently
    # with other rows beside them (OpenBLAS's AVX-512 kernels do), and a seasonal map must not move them by a bit
    proj = np.empty((len(desc), dim), np.float32)
    proj[whole] = (desc[whole] - mean) @ comps.T
    if not whole.all():
        proj[~whole] = (desc[~whole] - mean) @ comps.T
    std = proj[whole].std(axis=0) + 1e-6
    qstep = (cfg.q_sigmas * std / 127.0).astype(np.float32)
    desc_q = quantise(proj, qstep)
    var_kept = float((sv[:dim] ** 2).sum() / (sv ** 2).sum())
    # no build time in the store (the bundle's manifest keeps the build's): its file is the same bytes on every build
    meta = {"build": _jsonable(asdict(cfg)), "feature": fcfg.to_dict(), "basemap": basemap.source,
            "extra_basemaps": [b.source for b in extra_basemaps],
            "tiles": len(todo), "keypoints_detected": int(n_detected), "pca_variance_kept": var_kept,
            "descriptor": ({"kind": "rootsift"} if describer is None else
                           {"kind": "patchnet", "sha256": describer.sha256, "file": Path(describer.name).name})}
    store = KeypointStore.from_unsorted(allk["lat"], allk["lon"], desc_q, allk["size_km"],
                                        np.round(allk["azimuth_deg"] * 256.0 / 360.0).astype(np.int64) % 256,
                                        mean, comps, qstep, cfg.cell_deg, meta)
    store.meta["stats"] = store_stats(store, basemap, cfg.bbox)
    if describer is not None:
        store.attach_describer(describer)
    return store


def shipped_local_descriptor() -> Path | None:
    """The shipped learned local descriptor, or None if the package has none: ``models/localdesc_int8.onnx``
    (the INT8 copy, ``earthfix quantize-localdesc``) where there is one, else ``models/localdesc.onnx``."""
    from ..onboard.localizer import shipped_models_dir
    from .train_localdesc import INT8_FILE
    for name in (INT8_FILE, BUNDLE_FILE):
        p = shipped_models_dir() / name
        if p.is_file():
            return p
    return None


def load_describer(path=None, threads: int = 1):
    """A ``PatchDescriber`` from ``path`` (None: the shipped one, if any; "none": None, RootSIFT)."""
    from ..onboard.localdesc import PatchDescriber
    if path is not None and str(path).lower() == "none":
        return None
    p = Path(path) if path is not None else shipped_local_descriptor()
    if p is None:
        return None
    if not p.is_file():
        raise FileNotFoundError(f"local descriptor not found: {p}")
    return PatchDescriber(p.read_bytes(), threads=threads, name=str(p))


def load_store(path, local_descriptor=None) -> KeypointStore:
    """A saved store outside a bundle (benches): a patchnet store gets its network from ``local_descriptor``
    (None: the shipped one), refused if it is not the one the store was built with."""
    store = KeypointStore.load(path)
    if store.descriptor["kind"] != "rootsift":
        d = load_describer(local_descriptor)
        if d is None:
            raise FileNotFoundError(f"{path} was built with a learned local descriptor; none is shipped: "
                                    "pass its ONNX")
        store.attach_describer(d)
    return store


def _owned_area_km2(cfg: BuildConfig) -> float:
    # a staggered lattice of spacing s owns ~ s * s * sqrt(3)/2 per tile
    return cfg.spacing_km ** 2 * math.sqrt(3.0) / 2.0


def _polar_grid(lat, lon, radius_km, n=24):
    """(lat, lon) of a coarse polar grid of points within ``radius_km`` of (lat, lon): ``n`` azimuths x 8 ranges."""
    A, R = np.meshgrid(np.linspace(0, 360, n, endpoint=False), np.linspace(0, radius_km, 8))
    return geodesy.destination(lat, lon, A.ravel(), R.ravel())


def _land_near(basemap: Basemap, lat, lon, radius_km, n=24) -> float:
    """Land fraction on a coarse polar grid of points within ``radius_km`` of (lat, lon)."""
    la, lo = _polar_grid(lat, lon, radius_km, n)
    x, y = basemap.to_pixel(la, lo)
    h, w = basemap.land.shape
    xi = np.clip(np.round(x).astype(int), 0, w - 1)
    yi = np.clip(np.round(y).astype(int), 0, h - 1)
    return float(basemap.land[yi, xi].mean())


def _keeps_near(basemap: Basemap, lat, lon, radius_km, n=24) -> bool:
    """Whether ``basemap`` keeps keypoints anywhere on a polar grid of points within ``radius_km`` of (lat, lon)."""
    return bool(basemap.keeps_keypoints(*_polar_grid(lat, lon, radius_km, n)).any())


def land_area_km2(basemap: Basemap, bbox=None) -> float:
    """Land area (km2) of the basemap's land mask, optionally inside a bbox."""
    h, w = basemap.land.shape
    lat, lon = basemap.to_latlon(np.arange(w)[None, :] * np.ones((h, 1)), np.arange(h)[:, None] * np.ones((1, w)))
    dlon, dlat = basemap.deg_per_px
    cell = (np.radians(dlat) * geodesy.R_MEAN_KM) * (np.radians(dlon) * geodesy.R_MEAN_KM * np.cos(np.radians(lat)))
    m = _in_bbox(lat, lon, bbox)
    return float((basemap.land * cell * m).sum())


def store_stats(store: KeypointStore, basemap: Basemap | None = None, bbox=None) -> dict:
    st = store.stats()
    if basemap is not None:
        area = land_area_km2(basemap, bbox)
        st["land_km2"] = area
        st["bytes_per_km2"] = st["bytes"] / max(area, 1.0)
        st["keypoints_per_1e4_km2"] = 1e4 * st["keypoints"] / max(area, 1.0)
        st["global_bytes_extrapolated"] = st["bytes_per_km2"] * LAND_AREA_KM2 if bbox is not None else st["bytes"]
    return st


def _jsonable(d):
    return json.loads(json.dumps(d, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bbox", nargs=4, type=float, metavar=("LAT0", "LAT1", "LON0", "LON1"))
    ap.add_argument("--gsd-km", type=float, default=BuildConfig.gsd_km)
    ap.add_argument("--pca-dim", type=int, default=BuildConfig.pca_dim)
    ap.add_argument("--density", type=float, default=BuildConfig.density_per_1e4_km2,
                    help="max keypoints per 10^4 km2 (0: no cap)")
    ap.add_argument("--max-kp-per-tile", type=int, default=BuildConfig.max_kp_per_tile)
    ap.add_argument("--basemap", default=None, help="equirectangular global image (default: Blue Marble)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--local-descriptor", default=None,
                    help="learned local descriptor ONNX (default: the shipped models/localdesc.onnx; 'none': RootSIFT)")
    a = ap.parse_args(argv)
    cv2.setNumThreads(a.threads)
    bm = Basemap.load(a.basemap) if a.basemap else Basemap.default()
    cfg = BuildConfig(gsd_km=a.gsd_km, pca_dim=a.pca_dim, density_per_1e4_km2=a.density,
                      max_kp_per_tile=a.max_kp_per_tile,
                      bbox=tuple(a.bbox) if a.bbox else None)
    store = build_keystore(bm, cfg, describer=load_describer(a.local_descriptor, a.threads))
    store.save(a.out)
    print(json.dumps(store.meta["stats"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
