"""A snow-season copy of the default map for the keypoint stores (ground segment).

The default basemap is a northern summer. Ground under winter snow keeps its coasts and relief but little of
the summer texture a store of summer keypoints matches (docs/VERIFICATION.md, "Winter's north", "A snow
season in the keypoint store"). This module paints the snow season onto the default map itself, so that the
store also holds keypoints of snow-covered ground at the default map's own sample:

- **the colours**: a smooth map from a summer pixel's colour to the same ground's colour under snow (a cubic
  polynomial in B, G, R, 20 terms a band), fitted by least squares over land 50-70 deg N of a real winter
  composite against the default map (``fit_snow_colours``; the fit is shipped as ``maps/snow_colours.yaml`` with
  its source and command, ``load_snow_colours`` checks its SHA-256). Smooth, because a look-up table's steps
  would paint edges that are keypoints of nothing.
- **where**: a synthetic snowline (``snow_cover``) that wanders 37-47 deg N with longitude, with a 6 deg ramp and
  patches near the line, seeded: not the fitted map's own snow, so that no one winter's extent is learnt.
- **which keypoints**: only those under snow (cover >= 0.5, ``Basemap.keypoint_mask``); elsewhere the copy is the
  default map and its keypoints would be twins of the default map's.

Coordinates: the maps' equirectangular grid, row 0 at 90 deg N, column 0 at 180 deg W.
"""
from __future__ import annotations

import argparse
import sys
from itertools import combinations_with_replacement
from pathlib import Path

import cv2
import numpy as np
import yaml

from ..onboard.bundle import sha256_file
from ..sim.basemap import Basemap, BasemapError, flatten, read_image, shipped_maps_dir

SNOW_COLOURS_FILE = "snow_colours.yaml"
# maps/snow_colours.yaml's SHA-256 (maps/README.md): the bundle's manifest records it, a changed file is refused
SNOW_COLOURS_SHA256 = "f149c2bc5131c747848fa288293f21daefb0eb072840193389758e38a7ebfd26"
SNOW_SEED = 77
SNOWLINE_DEG = 42.0          # mean snowline, deg N
SNOWLINE_WANDER_DEG = 5.0    # the line's excursion with longitude
SNOW_RAMP_DEG = 6.0          # from no snow to full cover
SNOW_KEEP = 0.5              # keypoints kept where the cover is at least this
FIT_LAT_DEG = (50.0, 70.0)   # the winter map's land the colour map is fitted on
PREBLUR_PX = 0.6             # the summer map's JPEG blocks, which the steep dark end of the fit would amplify


def colour_terms(bgr01: np.ndarray) -> np.ndarray:
    """The fit's 20 terms (1, B, G, R, their products of degree 2 and 3) of N x 3 colours in 0..1."""
    cols = [np.ones(len(bgr01))]
    for degree in (1, 2, 3):
        for c in combinations_with_replacement(range(3), degree):
            cols.append(np.prod(bgr01[:, list(c)], axis=1))
    return np.stack(cols, axis=1)


def fit_snow_colours(summer: Basemap, winter_bgr: np.ndarray, lat_deg=FIT_LAT_DEG) -> dict:
    """Least-squares coefficients (20 x 3) from the summer map's colours to the winter image's, over land
    between ``lat_deg`` (the summer map area-averaged to the winter image's global grid)."""
    h, w = winter_bgr.shape[:2]
    if w != 2 * h:
        raise BasemapError(f"the winter map must be a global equirectangular image (2:1), got {w} x {h}")
    raw = summer.image if summer.raw is None else summer.raw
    s = cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA)
    land = Basemap._land_for_grid(w, h, -180.0, 180.0, -90.0, 90.0)
    lat = 90.0 - (np.arange(h) + 0.5) * 180.0 / h
    sel = (land > 0.99) & ((lat >= lat_deg[0]) & (lat <= lat_deg[1]))[:, None]
    x = colour_terms(s[sel].astype(np.float64) / 255.0)
    y = winter_bgr[sel].astype(np.float64) / 255.0
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1.0 - ((y - x @ coef) ** 2).mean(axis=0) / y.var(axis=0)
    return {"coefficients": coef.T.round(6).tolist(), "r2_bgr": [round(float(v), 3) for v in r2],
            "pixels": int(sel.sum()), "lat_deg": [float(v) for v in lat_deg]}


def snow_colours(coefficients, bgr: np.ndarray) -> np.ndarray:
    """An H x W x 3 uint8 image's colours under snow (float32, 0..255), through the fitted map."""
    coef = np.asarray(coefficients, np.float64).T        # 20 x 3
    x = bgr.reshape(-1, 3)
    out = np.empty((len(x), 3), np.float32)
    step = 1 << 20
    for i in range(0, len(x), step):
        out[i:i + step] = colour_terms(x[i:i + step].astype(np.float64) / 255.0) @ coef
    return out.reshape(bgr.shape) * 255.0


def snow_cover(h: int, w: int, seed: int = SNOW_SEED) -> np.ndarray:
    """Snow cover 0..1 on an h x w global grid: full north of a line that wanders about ``SNOWLINE_DEG`` with
    longitude, none south of it, a ramp with random patches between."""
    rng = np.random.default_rng(seed)
    lat = 90.0 - (np.arange(h, dtype=np.float32) + 0.5) * 180.0 / h
    wander = cv2.resize(rng.standard_normal((1, 25)).astype(np.float32), (w, 1), interpolation=cv2.INTER_CUBIC)
    line = SNOWLINE_DEG + SNOWLINE_WANDER_DEG * np.clip(wander, -1.0, 1.0)
    patch = cv2.resize(rng.random((max(2, h // 40), max(2, w // 40))).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC)
    return np.clip((lat[:, None] - line) / SNOW_RAMP_DEG + 0.4 * (patch - 0.5), 0.0, 1.0)


def snow_map(base: Basemap, colours: dict, seed: int = SNOW_SEED) -> Basemap:
    """``base`` under the snow season: its colours mapped through ``colours`` where ``snow_cover`` says, water
    flattened as ever, and a ``keypoint_mask`` of the snow-covered ground (cover >= ``SNOW_KEEP``)."""
    if (base.lon_min, base.lon_max, base.lat_min, base.lat_max) != (-180.0, 180.0, -90.0, 90.0):
        raise BasemapError("the snow season is painted on a global map only")
    raw = base.image if base.raw is None else base.raw
    h, w = raw.shape[:2]
    cover = snow_cover(h, w, seed)[..., None]
    snowy = snow_colours(colours["coefficients"], cv2.GaussianBlur(raw, (0, 0), PREBLUR_PX))
    img = np.clip(raw.astype(np.float32) * (1.0 - cover) + snowy * cover, 0, 255).astype(np.uint8)
    mask = (cover[..., 0] >= SNOW_KEEP).astype(np.float32)
    return Basemap(flatten(img, base.land), base.land, -180.0, 180.0, -90.0, 90.0, f"{base.source}#snow", img,
                   keypoint_mask=mask)


def load_snow_colours(path=None) -> dict:
    """The shipped colour map (``maps/snow_colours.yaml``), refused if its SHA-256 is not the recorded one, or the
    one at ``path`` (``earthfix fit-snow --out``); either refused if its coefficients are not 3 x 20 numbers. The
    record returned carries the file's ``sha256`` (the bundle's manifest keeps it)."""
    p = Path(path) if path is not None else shipped_maps_dir() / SNOW_COLOURS_FILE
    if not p.is_file():
        raise BasemapError(f"snow colour map {p} is missing" + ("" if path else ": reinstall earthfix"))
    if path is None and sha256_file(p) != SNOW_COLOURS_SHA256:
        raise BasemapError(f"snow colour map {p} is corrupted (SHA-256 does not match the recorded one): "
                           "reinstall earthfix")
    try:
        d = yaml.safe_load(p.read_text())
        coef = np.asarray(d["coefficients"], np.float64)
    except Exception as exc:
        raise BasemapError(f"snow colour map {p} is unreadable: {exc}") from None
    if coef.shape != (3, 20) or not np.isfinite(coef).all():
        raise BasemapError(f"snow colour map {p}: coefficients must be 3 x 20 finite numbers, got {coef.shape}")
    return dict(d, sha256=sha256_file(p))


def register(sub) -> None:
    p = sub.add_parser("fit-snow", help="fit the snow season's colour map on a winter map (maps/snow_colours.yaml)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--winter", required=True, metavar="WORLD.jpg",
                   help="a global equirectangular winter composite (e.g. the Blue Marble's January)")
    p.add_argument("--out", default=None, help=f"output YAML (default: the package's maps/{SNOW_COLOURS_FILE})")
    p.set_defaults(func=main)


def main(args) -> int:
    winter = read_image(args.winter)
    if winter is None:
        raise BasemapError(f"cannot read winter map {args.winter}")
    fit = fit_snow_colours(Basemap.default(), winter)
    out = Path(args.out or shipped_maps_dir() / SNOW_COLOURS_FILE)
    head = (f"# The snow season's colour map (earthfix/tools/season_map.py): a summer colour (B, G, R in 0..1) to\n"
            f"# the same ground's under snow, a cubic polynomial per band (terms: colour_terms).\n"
            f"# Made by: earthfix fit-snow --winter {Path(args.winter).name}\n")
    rec = {"fitted_on": {"file": Path(args.winter).name, "sha256": sha256_file(Path(args.winter))},
           "against": Path(Basemap.default().source).name, **fit}
    out.write_text(head + yaml.safe_dump(rec, sort_keys=False, default_flow_style=None, width=120))
    print(f"fit-snow: wrote {out} (R² B/G/R {fit['r2_bgr']}, {fit['pixels']} pixels, sha256 {sha256_file(out)})",
          file=sys.stderr)
    return 0
