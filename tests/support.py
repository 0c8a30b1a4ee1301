"""What several test modules share: where the encoder under test lives and the small regional bundle.

The model-dependent tests use the shipped encoder (models/encoder_int8.onnx) or ``EARTHFIX_TEST_MODELS=DIR``
(a directory holding encoder_int8.onnx and optionally confidence.json, e.g. an interim export); they are
skipped, with the reason, while neither exists. The fixtures built from these live in conftest.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("EARTHFIX_TEST_MODELS", REPO / "models"))
ENCODER = MODELS / "encoder_int8.onnx"
TINY_REGION = (30.0, 40.0, -115.0, -100.0)     # textured US south-west: ~185 views over 4 scales
needs_model = pytest.mark.skipif(not ENCODER.is_file(),
                                 reason=f"no encoder at {ENCODER}: export the model first "
                                        f"(or set EARTHFIX_TEST_MODELS=DIR)")


def under_cloud(image, opacity):
    """``image`` (uint8 BGR) under cloud of ``opacity`` (H x W x 1, 0..1): blended towards a 230 DN cloud top,
    as the simulator's thick clouds look."""
    import numpy as np
    return np.clip(image * (1.0 - opacity) + 230.0 * opacity + 0.5, 0, 255).astype(np.uint8)


def localizer_config() -> dict:
    """Localizer config for the encoder under test and its confidence model."""
    return {"encoder": str(ENCODER), "confidence": {"path": str(MODELS / "confidence.json")}}


def build_tiny_bundle(root: Path) -> Path:
    """The TINY_REGION bundle from ENCODER under ``root``, built once (about 10 s) and keyed by the encoder."""
    from earthfix.onboard.bundle import MANIFEST, sha256_file
    from earthfix.tools.build_index import build_bundle
    out = root / f"tiny_bundle_{sha256_file(ENCODER)[:12]}"
    if not (out / MANIFEST).is_file():
        build_bundle(out, encoder_path=ENCODER, region=TINY_REGION, progress=False, threads=1, log=lambda s: None)
    return out


def tilted_view(n=10, bunch=(10, 246), tilt_deg=3.0, noise_px=0.4, seed=0):
    """A 256 px camera 600 km above a place at 40 N, 20 E, tilted ``tilt_deg`` off nadir, and ``n`` ground
    points (ENU km at the place) seen in ``bunch`` with pixel noise: (enu, uv, k, rvec, tvec, basis, origin).
    The pose refit's test problem (tests/test_verify.py, tests/bench/test_bench_stages.py)."""
    import cv2
    import numpy as np
    from earthfix.onboard import geodesy
    from earthfix.onboard.camera import Camera
    cam = Camera.from_fov(256, 256, 80)
    k = np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]], np.float64)
    basis = geodesy.enu_basis(40.0, 20.0)
    origin = geodesy.geodetic_to_ecef(40.0, 20.0, 0.0)
    tilt, _ = cv2.Rodrigues(np.array([np.radians(tilt_deg), 0.0, 0.0]))
    r = tilt @ np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])          # ENU -> camera
    c_enu = np.array([5.0, -3.0, 600.0])
    rng = np.random.default_rng(seed)
    uv = rng.uniform(bunch[0], bunch[1], (n, 2))
    rays = np.linalg.solve(k, np.c_[uv, np.ones(n)].T).T @ r
    enu = c_enu + rays * (-c_enu[2] / rays[:, 2:3])
    rvec, _ = cv2.Rodrigues(r)
    tvec = (-r @ c_enu).reshape(3, 1)
    return enu, uv + rng.normal(0, noise_px, uv.shape), k, rvec, tvec, basis, origin
