"""The diagnostic benches' own helpers: a map's registration offsets (earthfix.tools.map_registration; its sign
conventions are what a reader of their tables relies on)."""
import math

import cv2
import numpy as np

from earthfix.sim.basemap import shipped_maps_dir
from earthfix.tools.map_registration import Registration


def test_a_map_drawn_east_and_north_of_its_grid_reads_as_that_offset(tmp_path):
    ref = shipped_maps_dir() / "nasa-bmng-07_2048.jpg"
    img = cv2.imread(str(ref))
    moved = np.roll(img, shift=(-2, 3), axis=(0, 1))            # the ground drawn 3 px east and 2 px north
    path = tmp_path / "moved.png"
    cv2.imwrite(str(path), moved)
    reg = Registration.of_files(path, ref)
    lat, lon = 40.0, -110.0                                      # the Rockies: texture in any product
    east_km, north_km, resp = reg.offset_km(lat, lon)
    km_px = 360.0 / img.shape[1] * 111.2
    assert resp > 0.5
    assert abs(east_km - 3 * km_px * math.cos(math.radians(lat))) < 0.3 * km_px
    assert abs(north_km - 2 * km_px) < 0.3 * km_px
    same = Registration.of_files(ref, ref).offset_km(lat, lon)
    assert abs(same[0]) < 0.1 * km_px and abs(same[1]) < 0.1 * km_px


def test_a_map_drawn_far_off_its_grid_is_flagged_and_a_faithful_one_is_not():
    ref = cv2.imread(str(shipped_maps_dir() / "nasa-bmng-07_2048.jpg"))
    far = Registration(np.roll(ref, shift=3, axis=1), ref).summary(step_deg=20.0)     # 3 px: ~58 km at the equator
    assert far["windows"] > 20 and far["offset_p50_km"] > 25.0 and far["suspect"]
    near = Registration(cv2.GaussianBlur(ref, (0, 0), 1.0), ref).summary(step_deg=20.0)  # blurred, not moved
    assert near["windows"] > 20 and near["offset_p50_km"] < 5.0 and not near["suspect"]   # the floor: ~3.4 km
