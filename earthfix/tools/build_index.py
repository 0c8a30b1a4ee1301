"""Build the reference bundle: render the global grid of views, encode them, compress, index, verify data.

    earthfix build-index [--basemap PATH --bounds ...] [--encoder models/encoder_int8.onnx] --out DIR
    earthfix info [--bundle DIR] --json

Steps: (1) the Fibonacci-lattice grid of view centres per footprint scale (``grid.py``), land and coasts
only; (2) each view rendered nadir/north-up from the basemap (water flattened) and encoded by the INT8
encoder with its own preprocessing; (3) PCA to ``pca_dim`` (fitted on the reference descriptors), each
component divided by the square root of its standard deviation (``WHITEN_POWER``), and re-normalisation;
(4) an hnswlib inner-product graph; (5) the area keypoint store for verification (from the basemap's tiles
and, in the default recipe, the same tiles of the shipped maps ``DEFAULT_KEYSTORE_EXTRA``) and the key index
over its descriptors for keypoint voting (``build_keyindex``), a finer store for narrow cameras, and a
low-resolution store with its own key index from the same maps area-averaged to ``LOWRES_MAP_PX`` around the
globe; (6) manifest.yaml with every file's SHA-256.
The default bundle is built on first use into the user cache (``$EARTHFIX_HOME`` or ``~/.cache/earthfix``)
and rebuilt when the shipped encoder or this recipe (``WHITEN_POWER``, the shipped maps, ...) changes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from ..onboard.bundle import (FORMAT_VERSION, KEYINDEX_GRAPH, KEYINDEX_LOWRES_GRAPH, KEYSTORE_LOWRES, MANIFEST, Bundle,
                              BundleError, check_encoder_record, reduce_descriptors, seal_manifest, sha256_file)
from ..onboard.hnsw_file import pack_graph
from . import grid
from .build_keyindex import DEFAULT_KEYINDEX

DEFAULT_INDEX = {"space": "ip", "M": 16, "ef_construction": 200, "ef": 64}   # docs/BUNDLE.md: sweep
DEFAULT_PCA_DIM = 64
TURNED_PCA_DIM = 32   # references stored at 4 turns: 4x the rows, so half the dimension keeps the default
                      # bundle within its 64 MB (bench_retrieval.py --pca 64 32: the same recall within 2 frames)
WHITEN_POWER = 0.5    # partial PCA whitening: the few dominant directions stop outvoting the rest;
                      # +2 to +5 points R@1 over plain PCA (docs/BUNDLE.md, bench_retrieval.py --whiten)
DEFAULT_KEYSTORE_EXTRA = ("nasa-bmng-07_2048.jpg",)   # shipped maps (maps/) whose keypoints join the default
                             # bundle's stores: imagery without the default map's relief shading, so that
                             # frames of other products and seasons find keypoints they share (docs/VERIFICATION.md,
                             # "A second map in the keypoint store")
DEFAULT_SNOW_SEASON = True   # the default map under a painted snow season joins the default bundle's stores where
                             # snow lies (tools/season_map.py; docs/VERIFICATION.md, "A snow season in the keypoint
                             # store")
LOWRES_MAP_PX = 2048         # keystore_lowres.npz: the maps area-averaged to 2048 px around the globe (19.6 km
                             # a pixel), for frames of low-resolution imagery (docs/VERIFICATION.md)
FINE_KEYSTORE_GSD_KM = 4.0   # keystore_fine.npz, for cameras finer than the 6 km store: 1024 px at 40 deg
                             # fixes +9 points with it (docs/VERIFICATION.md, "Store sample per camera")


def models_dir() -> Path:
    import earthfix.models as m
    return Path(list(m.__path__)[0])


def default_encoder_path() -> Path:
    return models_dir() / "encoder_int8.onnx"


def earthfix_home() -> Path:
    return Path(os.environ.get("EARTHFIX_HOME", Path.home() / ".cache" / "earthfix"))


def default_bundle_dir() -> Path:
    return earthfix_home() / "bundles" / "default"


def turned(xs: np.ndarray, turns: int) -> np.ndarray:
    """N x 3 x S x S inputs -> N*turns inputs, each view's turns consecutive (row = view * turns + turn)."""
    from ..onboard.preprocess import rotations
    if turns <= 1:
        return xs
    # preprocess.rotations stacks turn-major (turn * N + view); the index wants view-major
    return np.ascontiguousarray(rotations(xs, turns).reshape((turns,) + xs.shape).swapaxes(0, 1)
                                .reshape((-1,) + xs.shape[1:]))


def encode_views(basemap, encoder, lat, lon, scale, progress=True, batch=64, turns: int = 1):
    """Render and encode every reference view: (N * turns, dim), row = view * turns + turn."""
    from tqdm import tqdm
    from ..onboard.preprocess import standardise
    from .train_encoder import render_reference
    out = np.zeros((len(lat) * turns, encoder.dim), np.float32)
    it = range(0, len(lat), batch)
    for s in tqdm(it, desc="encode views", unit="batch", disable=not progress, file=sys.stderr):
        xs = np.stack([standardise(render_reference(basemap, float(lat[i]), float(lon[i]), int(scale[i]),
                                                    size=encoder.input_px).image)
                       for i in range(s, min(s + batch, len(lat)))])
        out[s * turns:(s + len(xs)) * turns] = encoder.encode_batch(turned(xs, turns))
    return out


def fit_pca(desc: np.ndarray, dim: int, whiten_power: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and projection (D, dim) of ``desc``; each principal direction is divided by its standard
    deviation to the power ``whiten_power`` (0: plain PCA, 1: full whitening). Flight only applies the
    projection (``Bundle.reduce``), so the power is a build-time choice recorded in the manifest."""
    mean = desc.mean(axis=0)
    _, s, vt = np.linalg.svd(desc - mean, full_matrices=False)
    comps = vt[:dim].T
    if whiten_power:
        sd = s[:dim] / np.sqrt(len(desc))
        comps = comps / np.maximum(sd, 1e-6 * sd[0]) ** whiten_power   # the floor keeps null directions finite
    return mean.astype(np.float32), comps.astype(np.float32)


def build_hnsw(vectors: np.ndarray, params: dict, threads: int = 1):
    """hnswlib graph over ``vectors`` (labels = rows); ``params``: space, M, ef_construction, ef[, seed].
    One thread (the default) builds the same graph, byte for byte, every time; more insert in a racing order
    (the default bundle's 26,374 views: 2.1 s on one thread, 1.1 s on two, each two-thread graph another)."""
    import hnswlib
    index = hnswlib.Index(space=params["space"], dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), ef_construction=int(params["ef_construction"]), M=int(params["M"]),
                     random_seed=int(params.get("seed", 100)))
    index.set_num_threads(threads)
    index.add_items(vectors, np.arange(len(vectors)))
    index.set_ef(int(params["ef"]))
    return index


def build_bundle(out_dir, basemap=None, encoder_path=None, pca_dim=None, index_params=None,
                 keystore=True, progress=True, region=None, threads=2, log=None, keyindex=True,
                 keyindex_params=None, keystore_gsd_km=None, fine_keystore_gsd_km=FINE_KEYSTORE_GSD_KM,
                 local_descriptor=None, keystore_extra_basemaps=(), keystore_dim=None,
                 lowres_map_px=LOWRES_MAP_PX, snow_season=None) -> Path:
    """Build a bundle into ``out_dir`` (written to a temporary sibling, then renamed: never half-written).

    ``pca_dim`` None: ``DEFAULT_PCA_DIM``, or ``TURNED_PCA_DIM`` when the encoder's references are stored at
    several turns. ``region`` = (lat_min, lat_max, lon_min, lon_max) restricts the grid (small regional bundles for tests).
    ``keyindex`` (with ``keystore``): also the voting index ``keyindex.graph`` (``build_keyindex``, built on
    one thread so that it is reproducible; ~10 s for the global store), parameters in manifest 'keyindex'.
    ``keystore_gsd_km``: the keypoint store's tile sample (None: ``BuildConfig.gsd_km``).
    ``keystore_dim``: PCA components each stored keypoint descriptor keeps, in both stores and the key index
    (None: ``BuildConfig.pca_dim``, 32; 64 votes better on other imagery at a cost: docs/VERIFICATION.md, "A
    64-D store").
    ``fine_keystore_gsd_km`` (with ``keystore``; None or 0: none): also ``keystore_fine.npz`` at that sample,
    for cameras whose working pixel is finer than the main store's (``Localizer.verifier_for``).
    ``lowres_map_px`` (with ``keystore`` and ``keyindex``; None or 0: none): also ``keystore_lowres.npz`` and
    its voting index ``keyindex_lowres.graph``, the same maps area-averaged to that many pixels around the
    globe (``Basemap.coarsened``), at the main store's sample, for frames of imagery coarser than the maps
    (``Localizer._lowres_look``).
    ``snow_season`` (with ``keystore``; a ``season_map.load_snow_colours`` record, None: none): the basemap under
    a painted snow season also joins the keypoint stores, its keypoints kept only where snow lies
    (``season_map.snow_map``); recorded in manifest 'keystore' 'snow_season'.
    ``local_descriptor`` (with ``keystore``): the learned local descriptor's ONNX (None: the shipped
    ``models/localdesc.onnx`` if there is one; "none": RootSIFT); copied into the bundle as ``localdesc.onnx``
    and recorded in manifest 'local_descriptor'.
    """
    from ..onboard.encoder import Encoder, rotation_handling
    from ..sim.basemap import Basemap
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if keystore_dim is not None and not 1 <= int(keystore_dim) <= 128:      # before any work
        raise ValueError(f"--keystore-dim must be 1-128 (the local descriptor's size), got {keystore_dim}")
    t0 = time.time()
    out_dir = Path(out_dir)
    basemap = basemap or Basemap.default()
    encoder_path = Path(encoder_path or default_encoder_path())
    if not encoder_path.is_file():
        raise FileNotFoundError(f"encoder not found: {encoder_path}")
    rot = rotation_handling(encoder_path)
    encoder = Encoder.from_file(encoder_path, threads=threads, rotations=rot["rotations"])
    turns = rot["reference_turns"]
    pca_dim = pca_dim or (DEFAULT_PCA_DIM if turns == 1 else TURNED_PCA_DIM)
    params = dict(DEFAULT_INDEX, **(index_params or {}))
    lat, lon, scale = grid.reference_grid()
    if region is not None:
        la0, la1, lo0, lo1 = region
        keep = (lat >= la0) & (lat <= la1) & (lon >= lo0) & (lon <= lo1)
        lat, lon, scale = lat[keep], lon[keep], scale[keep]
    if len(lat) < 2:
        raise ValueError("the grid has fewer than 2 views in that region")
    log(f"build-index: {len(lat)} views over {len(grid.SCALES_KM)} scales"
        + (f", each stored at {turns} turns" if turns > 1 else ""))
    desc = encode_views(basemap, encoder, lat, lon, scale, progress, turns=turns)
    d = min(pca_dim, desc.shape[1], len(desc))
    mean, comps = fit_pca(desc, d, WHITEN_POWER)
    red = reduce_descriptors(desc, mean, comps)
    index = build_hnsw(red, params)     # one thread: a bundle's graph is the same on every build

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.savez(tmp / "views.npz", lat=lat.astype(np.float32), lon=lon.astype(np.float32), scale=scale.astype(np.int16))
    np.savez(tmp / "pca.npz", mean=mean, components=comps)
    np.save(tmp / "descriptors.npy", red.astype(np.float16))
    index.save_index(str(tmp / "index.hnsw"))
    n_kp = 0
    keyindex_meta = keystore_meta = keyindex_lowres_meta = None
    local_meta = None
    if keystore:
        from ..onboard.localdesc import BUNDLE_FILE
        from .build_keystore import BuildConfig, build_keystore, load_describer
        describer = load_describer(local_descriptor, threads=1)
        if describer is not None:
            shutil.copyfile(describer.name, tmp / BUNDLE_FILE)
            local_meta = {"file": BUNDLE_FILE, "kind": "patchnet", "sha256": describer.sha256,
                          "source": Path(describer.name).name}
        kcfg = BuildConfig(bbox=tuple(region) if region else None)
        extra_maps = tuple(keystore_extra_basemaps)
        if snow_season is not None:
            from .season_map import snow_map
            extra_maps += (snow_map(basemap, snow_season),)
        if keystore_gsd_km is not None:
            kcfg = replace(kcfg, gsd_km=float(keystore_gsd_km))
        if keystore_dim is not None:
            kcfg = replace(kcfg, pca_dim=int(keystore_dim))
        store = build_keystore(basemap, kcfg, progress=progress, describer=describer, extra_basemaps=extra_maps)
        store.save(tmp / "keystore.npz")
        n_kp = len(store)
        if fine_keystore_gsd_km:
            if not 0 < fine_keystore_gsd_km < kcfg.gsd_km:
                raise ValueError(f"the fine keypoint store's sample ({fine_keystore_gsd_km:g} km) must be finer "
                                 f"than the main store's ({kcfg.gsd_km:g} km)")
            fine = build_keystore(basemap, replace(kcfg, gsd_km=float(fine_keystore_gsd_km)), progress=progress,
                                  describer=describer, extra_basemaps=extra_maps)
            fine.save(tmp / "keystore_fine.npz")
            keystore_meta = {"gsd_km": kcfg.gsd_km, "fine_gsd_km": float(fine_keystore_gsd_km),
                             "fine_keypoints": len(fine)}
        else:
            keystore_meta = {"gsd_km": kcfg.gsd_km, "fine_gsd_km": None, "fine_keypoints": 0}
        keystore_meta["extra_basemaps"] = [{"source": Path(b.source).name, "sha256": sha256_file(Path(b.source))}
                                           for b in keystore_extra_basemaps]
        keystore_meta["snow_season"] = None if snow_season is None else {
            k: snow_season.get(k) for k in ("sha256", "fitted_on", "r2_bgr")} | snow_season_recipe()
        if keyindex:
            keyindex_meta = _write_keyindex(store, keyindex_params, tmp, KEYINDEX_GRAPH)
            keyindex_meta["vectors"] = "the coarse keypoint store's, decoded"
            keystore_meta["lowres_map_px"] = None
            if lowres_map_px:
                lowres = build_keystore(basemap.coarsened(int(lowres_map_px)), kcfg, progress=progress,
                                        describer=describer, extra_basemaps=tuple(
                                            b.coarsened(int(lowres_map_px)) for b in extra_maps))
                lowres.save(tmp / KEYSTORE_LOWRES)
                keyindex_lowres_meta = _write_keyindex(lowres, keyindex_params, tmp, KEYINDEX_LOWRES_GRAPH)
                keyindex_lowres_meta["vectors"] = f"{KEYSTORE_LOWRES}'s, decoded"
                keystore_meta.update(lowres_map_px=int(lowres_map_px), lowres_keypoints=len(lowres))
    files = {}
    for f in sorted(tmp.iterdir()):
        files[f.name] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "encoder": {"file": encoder_path.name, "sha256": encoder.sha256, "descriptor_dim": int(desc.shape[1]),
                    "rotations": encoder.rotations, "input_px": encoder.input_px},
        "basemap": {"source": Path(basemap.source).name, "sha256": sha256_file(Path(basemap.source)) if Path(basemap.source).is_file() else None,
                    "bounds": [basemap.lon_min, basemap.lon_max, basemap.lat_min, basemap.lat_max],
                    "km_per_px": round(basemap.km_per_px, 3), "water": "flattened (GSHHS land mask)"},
        "grid": {"kind": "fibonacci", "scales_km": list(grid.SCALES_KM), "spacing_frac": grid.SPACING_FRAC,
                 "ref_fov_deg": grid.REF_FOV_DEG, "region": list(region) if region else None},
        "index": dict(params, dim=int(red.shape[1]), library="hnswlib", turns=int(turns)),
        **({"keyindex": keyindex_meta} if keyindex_meta else {}),
        **({"keyindex_lowres": keyindex_lowres_meta} if keyindex_lowres_meta else {}),
        **({"keystore": keystore_meta} if keystore_meta else {}),
        **({"local_descriptor": local_meta} if local_meta else {}),
        "pca": {"dim_in": int(desc.shape[1]), "dim_out": int(red.shape[1]), "whiten_power": WHITEN_POWER},
        "counts": {"views": int(len(lat)), "views_per_scale": np.bincount(scale, minlength=len(grid.SCALES_KM)).tolist(),
                   "keypoints": int(n_kp)},
        "build_seconds": round(time.time() - t0, 1),
        "files": files,
    }
    (tmp / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))
    seal_manifest(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log(f"build-index: wrote {out_dir} ({sum(v['bytes'] for v in files.values()) / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
    return out_dir


def _write_keyindex(store, params, tmp: Path, name: str) -> dict:
    """The voting index over ``store`` (``build_keyindex``, one thread: reproducible) written as ``tmp / name``
    without its vectors (the store's own descriptors, put back at load), compressed; returns its manifest record."""
    from .build_keyindex import build_keyindex
    kindex, meta = build_keyindex(store, params, threads=1)
    raw = tmp / (name + ".hnsw")
    kindex.save_index(str(raw))
    (tmp / name).write_bytes(pack_graph(raw.read_bytes(), meta["dim"]))
    raw.unlink()
    return dict(meta, file=name)


def ensure_default_bundle(progress=True) -> Path:
    """The default bundle (embedded basemap + shipped encoder), built on first use or after an encoder or
    recipe change."""
    out = default_bundle_dir()
    enc = default_encoder_path()
    if (out / MANIFEST).is_file():
        try:
            if is_current(yaml.safe_load((out / MANIFEST).read_text()), sha256_file(enc), shipped_local_sha256()):
                return out
        except Exception:
            pass
        print(f"earthfix: default bundle at {out} is stale or unreadable; rebuilding", file=sys.stderr)
    else:
        print(f"earthfix: building the default bundle into {out} (first use, a few minutes)", file=sys.stderr)
    # a corrupted shipped encoder would otherwise be built into a bundle that then vouches for it
    check_encoder_record(enc)
    out.parent.mkdir(parents=True, exist_ok=True)
    return build_bundle(out, progress=progress, keystore_extra_basemaps=default_keystore_extra(),
                        snow_season=default_snow_season())


def default_keystore_extra() -> tuple:
    """The shipped maps of the default recipe (``DEFAULT_KEYSTORE_EXTRA``), each checked against its SHA-256."""
    from ..sim.basemap import Basemap
    return tuple(Basemap.shipped(name) for name in DEFAULT_KEYSTORE_EXTRA)


def default_snow_season() -> dict | None:
    """The shipped snow season's colour map (``maps/snow_colours.yaml``, SHA-256 checked), or None when the default
    recipe has none."""
    if not DEFAULT_SNOW_SEASON:
        return None
    from .season_map import load_snow_colours
    return load_snow_colours()


def snow_season_recipe() -> dict:
    """What besides the colour map decides the snow-season map (manifest 'keystore' 'snow_season')."""
    from . import season_map as sm
    return {"seed": sm.SNOW_SEED, "snowline_deg": sm.SNOWLINE_DEG, "wander_deg": sm.SNOWLINE_WANDER_DEG,
            "ramp_deg": sm.SNOW_RAMP_DEG, "keep_cover": sm.SNOW_KEEP}


def shipped_local_sha256() -> str | None:
    from .build_keystore import shipped_local_descriptor
    p = shipped_local_descriptor()
    return sha256_file(p) if p is not None else None


def is_current(manifest: dict, encoder_sha256: str, local_sha256: str | None = None) -> bool:
    """A cached default bundle is reused only if built with this encoder, this local descriptor (None:
    RootSIFT) and this recipe (whitening, the fine and low-resolution keypoint stores, the key index's graph and its
    compact file and dimension, the shipped maps in the keypoint stores)."""
    from ..sim.basemap import SHIPPED_MAPS
    from .build_keystore import BuildConfig
    from .season_map import SNOW_COLOURS_SHA256
    extra = [e.get("sha256") for e in (manifest.get("keystore") or {}).get("extra_basemaps") or []]
    return (manifest.get("encoder", {}).get("sha256") == encoder_sha256
            and extra == [SHIPPED_MAPS[n] for n in DEFAULT_KEYSTORE_EXTRA]
            and _snow_sha(manifest) == (SNOW_COLOURS_SHA256 if DEFAULT_SNOW_SEASON else None)
            and (manifest.get("local_descriptor") or {}).get("sha256") == local_sha256
            and float(manifest.get("pca", {}).get("whiten_power", 0.0)) == WHITEN_POWER
            and (manifest.get("keystore") or {}).get("fine_gsd_km") == FINE_KEYSTORE_GSD_KM
            and (manifest.get("keystore") or {}).get("lowres_map_px") == LOWRES_MAP_PX
            and (manifest.get("keyindex") or {}).get("file") == KEYINDEX_GRAPH
            and (manifest.get("keyindex") or {}).get("dim", 32) == BuildConfig.pca_dim
            and all((manifest.get("keyindex") or {}).get(k) == DEFAULT_KEYINDEX[k] for k in ("M", "ef_construction")))


def _snow_sha(manifest: dict) -> str | None:
    """The SHA-256 of the snow season's colour map a manifest records if built with this recipe ("another recipe"
    if not; None: no snow season)."""
    snow = (manifest.get("keystore") or {}).get("snow_season")
    if not snow:
        return None
    return snow.get("sha256") if all(snow.get(k) == v for k, v in snow_season_recipe().items()) else "another recipe"


def bundle_info(bundle_dir: Path, encoder_path: Path) -> dict:
    from ..onboard.encoder import sha256_bytes
    enc_sha = sha256_bytes(Path(encoder_path).read_bytes())
    b = Bundle.load(bundle_dir, encoder_sha256=enc_sha, load_keystore=False)
    m = b.manifest

    def get(*keys):
        # descriptive fields the loader does not need may be absent from an unsealed manifest: None, not a KeyError
        d = m
        for k in keys:
            d = d.get(k) if isinstance(d, dict) else None
        return d

    return {"bundle_dir": str(Path(bundle_dir).resolve()), "bundle_bytes": b.bytes, "views": b.views,
            "descriptor_dim": int(m["index"]["dim"]), "encoder_descriptor_dim": get("encoder", "descriptor_dim"),
            "encoder": str(Path(encoder_path).resolve()), "encoder_sha256": enc_sha,
            "format_version": get("format_version"), "scales_km": get("grid", "scales_km"),
            "views_per_scale": get("counts", "views_per_scale"), "keypoints": get("counts", "keypoints") or 0,
            "keystore": get("keystore"),
            "local_descriptor": get("local_descriptor") or {"kind": "rootsift"},
            "index": m["index"], "basemap": get("basemap", "source"),
            "files": {k: v["bytes"] for k, v in m["files"].items()}}


def register(sub):
    p = sub.add_parser("build-index", help="build a reference bundle (views, HNSW index, keypoints)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="bundle directory (default: the default bundle location)")
    p.add_argument("--basemap", default=None, help="equirectangular image (default: Blue Marble NG)")
    p.add_argument("--keystore-extra-basemap", action="append", default=None, metavar="WORLD.jpg",
                   help="another global image of the same ground (another product or season) whose keypoints join "
                        "the keypoint stores', under one PCA (repeatable; default: the shipped "
                        f"{', '.join(DEFAULT_KEYSTORE_EXTRA)} when --basemap is not given, none otherwise; 'none': "
                        "none; docs/VERIFICATION.md, 'A second map in the keypoint store')")
    p.add_argument("--snow-season", default=None, metavar="COLOURS.yaml",
                   help="paint a snow season on the basemap with this colour map (earthfix fit-snow) and add its "
                        "snow-covered ground's keypoints to the keypoint stores (default: the shipped "
                        "maps/snow_colours.yaml when --basemap is not given, none otherwise; 'none': none; "
                        "docs/VERIFICATION.md, 'A snow season in the keypoint store')")
    p.add_argument("--bounds", nargs=4, type=float, default=[-180, 180, -90, 90],
                   metavar=("LON_MIN", "LON_MAX", "LAT_MIN", "LAT_MAX"))
    p.add_argument("--encoder", default=None, help="ONNX encoder (default: the shipped INT8 model)")
    p.add_argument("--pca-dim", type=int, default=None,
                   help=f"index dimension (default {DEFAULT_PCA_DIM}; {TURNED_PCA_DIM} for references stored at 4 turns)")
    p.add_argument("--M", type=int, default=DEFAULT_INDEX["M"])
    p.add_argument("--ef-construction", type=int, default=DEFAULT_INDEX["ef_construction"])
    p.add_argument("--ef", type=int, default=DEFAULT_INDEX["ef"])
    p.add_argument("--region", nargs=4, type=float, default=None, metavar=("LAT_MIN", "LAT_MAX", "LON_MIN", "LON_MAX"))
    p.add_argument("--no-keystore", action="store_true")
    p.add_argument("--no-keyindex", action="store_true", help="no keypoint-voting index (keyindex.graph)")
    p.add_argument("--keystore-gsd-km", type=float, default=None,
                   help="keypoint store tile sample, km per pixel (default: build_keystore's)")
    p.add_argument("--keystore-dim", type=int, default=None, metavar="N",
                   help="PCA components each stored keypoint descriptor keeps (default: build_keystore's; 64 "
                        "fixed up to 7 points more frames of other imagery for +12 MB, ~+3 ms a frame and a "
                        "near-wrong fix in 9,000: docs/VERIFICATION.md, 'A 64-D store'). A bundle of another "
                        "dimension in the default location is rebuilt on its next use")
    p.add_argument("--fine-keystore-gsd-km", type=float, default=FINE_KEYSTORE_GSD_KM,
                   help="sample of the fine keypoint store for narrow cameras, km per pixel "
                        f"(default {FINE_KEYSTORE_GSD_KM:g}; 0: none)")
    p.add_argument("--lowres-map-px", type=int, default=LOWRES_MAP_PX,
                   help="the low-resolution keypoint store's maps, area-averaged to this many pixels around the "
                        f"globe, for frames of low-resolution imagery (default {LOWRES_MAP_PX}: 19.6 km a pixel; "
                        "0: none)")
    p.add_argument("--local-descriptor", default=None,
                   help="learned local descriptor ONNX for the keypoint stores (default: the shipped "
                        "models/localdesc.onnx; 'none': RootSIFT)")
    p.set_defaults(func=run_build)

    q = sub.add_parser("info", help="describe the bundle and encoder that locate would use")
    q.add_argument("--bundle", default=None)
    q.add_argument("--encoder", default=None)
    q.add_argument("--json", action="store_true", help="one JSON object on stdout")
    q.set_defaults(func=run_info)


def run_build(args) -> int:
    from ..sim.basemap import Basemap, BasemapError
    try:
        basemap = Basemap.load(args.basemap, tuple(args.bounds)) if args.basemap else None
        extra_paths = args.keystore_extra_basemap
        if extra_paths is None:
            extra = default_keystore_extra() if basemap is None else ()
        else:
            extra = tuple(Basemap.load(p) for p in extra_paths if p.lower() != "none")
        if args.snow_season is None:
            snow = default_snow_season() if basemap is None else None
        elif args.snow_season.lower() == "none":
            snow = None
        else:
            from .season_map import load_snow_colours
            snow = load_snow_colours(args.snow_season)
    except BasemapError as exc:
        print(f"earthfix build-index: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_bundle_dir()
    try:
        build_bundle(out, basemap, args.encoder, args.pca_dim,
                     {"M": args.M, "ef_construction": args.ef_construction, "ef": args.ef},
                     keystore=not args.no_keystore, region=args.region, keyindex=not args.no_keyindex,
                     keystore_gsd_km=args.keystore_gsd_km, fine_keystore_gsd_km=args.fine_keystore_gsd_km,
                     local_descriptor=args.local_descriptor, keystore_extra_basemaps=extra,
                     keystore_dim=args.keystore_dim, lowres_map_px=args.lowres_map_px, snow_season=snow)
    except (FileNotFoundError, ValueError) as exc:
        print(f"earthfix build-index: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


def run_info(args) -> int:
    encoder = Path(args.encoder) if args.encoder else default_encoder_path()
    try:
        bundle = Path(args.bundle) if args.bundle else ensure_default_bundle()
        info = bundle_info(bundle, encoder)
    except (BundleError, FileNotFoundError) as exc:
        print(f"earthfix info: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>24}: {v}")
    return 0
