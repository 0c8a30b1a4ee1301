"""Fixtures of the per-stage benchmarks: one land frame, one thread, and a Localizer on the session's tiny
regional bundle (``tests/conftest.py``: built once from the encoder under test, see ``tests/support.py``).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from support import MODELS, localizer_config

FRAME_SITE = (35.0, -108.0, 600.0, 37.0)           # sub-satellite lat, lon, alt_km, yaw_deg (inside the region)


@pytest.fixture(scope="session")
def one_thread():
    from earthfix.onboard.threads import limit_threads
    limit_threads(1)
    return 1


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def localizer(tiny_bundle, one_thread):
    """The Localizer on the session's tiny regional bundle (conftest ``tiny_bundle``, ~185 views), one thread."""
    from earthfix.onboard.localizer import Localizer
    return Localizer.load(tiny_bundle, config=dict(localizer_config(), threads=1))


@pytest.fixture(scope="session")
def camera():
    from earthfix.onboard.camera import Camera
    return Camera.from_fov(256, 256, 80.0)


@pytest.fixture(scope="session")
def frame(camera):
    """A 256 x 256 land frame with the simulator's default effects (fixed seed)."""
    import numpy as np
    from earthfix.sim.effects import EffectsConfig
    from earthfix.sim.scenario import single_frame
    from earthfix.sim.basemap import Basemap
    lat, lon, alt, yaw = FRAME_SITE
    img, truth = single_frame(Basemap.default(), camera, lat, lon, alt, yaw, tilt_deg=2.0, tilt_az_deg=45.0,
                              effects=EffectsConfig.default(), rng=np.random.default_rng(0))
    return img


@pytest.fixture(scope="session")
def frame_png(frame) -> bytes:
    import cv2
    ok, buf = cv2.imencode(".png", frame)
    assert ok
    return buf.tobytes()
