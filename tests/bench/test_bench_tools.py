"""The diagnostic benches' own helpers: a map's registration offsets (earthfix.tools.map_registration) and a
global cloud field laid where it lies (their sign conventions are what a reader of their tables relies on)."""
import math

import cv2
import numpy as np

from bench_real_clouds import GlobalClouds
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


def test_a_global_cloud_field_is_sampled_where_it_lies_and_wraps_at_the_dateline():
    field = np.zeros((180, 360), np.float32)                     # 1 deg per px, row 0 at 90 N, column 0 at 180 W
    field[90 - 21:90 - 19, 180 + 9:180 + 11] = 1.0               # a cloud at 20 N, 10 E
    field[90 - 1:90 + 1, 0:2] = 0.5                              # and one at the equator, just east of 180 W
    clouds = GlobalClouds(field)
    a, thick = clouds.sample_with_thickness(np.array([[20.0, 20.0, -20.0]]), np.array([[10.0, -10.0, 10.0]]))
    assert a[0, 0] > 0.9 and a[0, 1] == 0.0 and a[0, 2] == 0.0
    assert np.array_equal(a, thick)
    b, _ = clouds.sample_with_thickness(np.array([[0.0, 0.0]]), np.array([[-179.5, 180.5]]))
    assert b[0, 0] > 0.4 and b[0, 1] > 0.4


def test_a_map_drawn_far_off_its_grid_is_flagged_and_a_faithful_one_is_not():
    ref = cv2.imread(str(shipped_maps_dir() / "nasa-bmng-07_2048.jpg"))
    far = Registration(np.roll(ref, shift=3, axis=1), ref).summary(step_deg=20.0)     # 3 px: ~58 km at the equator
    assert far["windows"] > 20 and far["offset_p50_km"] > 25.0 and far["suspect"]
    near = Registration(cv2.GaussianBlur(ref, (0, 0), 1.0), ref).summary(step_deg=20.0)  # blurred, not moved
    assert near["windows"] > 20 and near["offset_p50_km"] < 5.0 and not near["suspect"]   # the floor: ~3.4 km
