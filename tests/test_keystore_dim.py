"""The keypoint descriptors' PCA dimension is a build option (``earthfix build-index --keystore-dim``): both stores
and the vote's key index keep it, and the flight code reads it from the bundle (docs/VERIFICATION.md, "A 64-D
store")."""
from __future__ import annotations

import numpy as np

from support import ENCODER, TINY_REGION, localizer_config, needs_model


def test_build_refuses_a_dimension_the_descriptor_does_not_have_before_any_work(tmp_path, capsys):
    from earthfix.cli import main
    assert main(["build-index", "--keystore-dim", "0", "--out", str(tmp_path / "b")]) == 2
    assert "--keystore-dim must be 1-128" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@needs_model
def test_a_bundle_of_another_keypoint_dimension_is_built_and_flies(tmp_path, basemap):
    from earthfix.onboard import geodesy
    from earthfix.onboard.camera import Camera, nadir_attitude
    from earthfix.onboard.localizer import Localizer
    from earthfix.sim import render
    from earthfix.tools.build_index import build_bundle
    out = build_bundle(tmp_path / "b16", encoder_path=ENCODER, region=TINY_REGION, progress=False, threads=1,
                       log=lambda s: None, keystore_dim=16)
    loc = Localizer.load(out, config=localizer_config())
    b = loc.bundle
    assert b.keystore.dim == 16 and b.keystore_fine.dim == 16 and b.keyindex.dim == 16
    assert b.manifest["keyindex"]["dim"] == 16
    cam = Camera.from_fov(256, 256, 80.0)
    lat, lon = 34.0, -110.0
    view = render.render(basemap, cam, geodesy.geodetic_to_ecef(lat, lon, 600.0), nadir_attitude(lat, lon, 25.0))
    fix = loc.locate(view.image, cam)
    assert fix.fix, fix.reason
    assert geodesy.great_circle_km(fix.lat, fix.lon, lat, lon) < 5.0
    assert loc.voter is not None and np.isfinite(fix.confidence)

