"""Shared fixtures: the default basemap (loaded once, ~2 s) and the reference cameras."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CAMERAS = REPO / "configs" / "cameras"


@pytest.fixture(scope="session")
def basemap():
    from earthfix.sim.basemap import Basemap
    return Basemap.default()


@pytest.fixture(scope="session")
def cam256():
    from earthfix.onboard.camera import Camera
    return Camera.from_yaml(CAMERAS / "cam256_fov80.yaml")


@pytest.fixture(scope="session")
def cam256_path():
    return CAMERAS / "cam256_fov80.yaml"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """The small regional bundle (support.TINY_REGION) built once per session from the encoder under test."""
    from support import ENCODER, build_tiny_bundle
    if not ENCODER.is_file():
        pytest.skip(f"no encoder at {ENCODER}")
    return build_tiny_bundle(tmp_path_factory.getbasetemp())
