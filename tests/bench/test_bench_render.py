"""Render + effects for one 256x256 frame, one thread (budget: median <= 10 ms).

    python -m pytest tests/bench --benchmark-enable
"""
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera, nadir_attitude, tilt_rotation
from earthfix.sim import effects as fx
from earthfix.sim.basemap import Basemap
from earthfix.sim.render import render


@pytest.fixture(scope="module")
def setup():
    cv2.setNumThreads(1)
    bm = Basemap.default()
    bm.pyramid(0)                                       # build the pyramid outside the timing
    cam = Camera.from_fov(256, 256, 80)
    clouds = fx.CloudField(seed=0, cover=0.3)
    t = datetime(2026, 3, 20, 11, tzinfo=timezone.utc)
    lat, lon = 30.0, 10.0
    pos = geodesy.geodetic_to_ecef(lat, lon, 500.0)
    r = nadir_attitude(lat, lon, 37.0) @ tilt_rotation(0.3, 45.0)
    return bm, cam, clouds, t, pos, r


@pytest.mark.parametrize("effects", ["default", "clean"])
def test_bench_render_effects_256(benchmark, setup, effects):
    bm, cam, clouds, t, pos, r = setup
    cfg = fx.EffectsConfig.default() if effects == "default" else fx.EffectsConfig.clean()
    rng = np.random.default_rng(0)
    sun = fx.sun_direction_ecef(t)

    def frame():
        view = render(bm, cam, pos, r)
        return fx.apply(view, t, cfg, rng, clouds=clouds, sun_dir=sun)

    img, info = benchmark(frame)
    assert img.shape == (256, 256, 3) and info["sun_elev_deg"] > 0
