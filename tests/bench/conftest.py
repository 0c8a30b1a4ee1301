"""Fixtures of the per-stage benchmarks: one tiny regional bundle per session, one land frame, one thread.

The bundle is built from the shipped encoder (models/encoder_int8.onnx; ``EARTHFIX_TEST_MODELS=DIR``
selects another directory, e.g. an interim export) over a small textured region, once per session.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("EARTHFIX_TEST_MODELS", REPO / "models"))
BENCH_REGION = (30.0, 40.0, -115.0, -100.0)        # ~185 views over 4 scales
FRAME_SITE = (35.0, -108.0, 600.0, 37.0)           # sub-satellite lat, lon, alt_km, yaw_deg (inside the region)


@pytest.fixture(scope="session")
def one_thread():
    import cv2
    from earthfix.tools.evaluate import limit_blas_threads
    cv2.setNumThreads(1)
    limit_blas_threads(1)
    return 1


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def bench_bundle(tmp_path_factory, one_thread) -> Path:
    from earthfix.tools.build_index import build_bundle
    out = tmp_path_factory.mktemp("bench") / "bundle"
    return build_bundle(out, encoder_path=MODELS / "encoder_int8.onnx", region=BENCH_REGION, progress=False,
                        threads=1, log=lambda s: None)


@pytest.fixture(scope="session")
def localizer(bench_bundle, tmp_path_factory):
    from earthfix.onboard.localizer import Localizer
    return Localizer.load(bench_bundle, config={"threads": 1, "encoder": str(MODELS / "encoder_int8.onnx"),
                                                "confidence": {"path": str(MODELS / "confidence.json")}})


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
