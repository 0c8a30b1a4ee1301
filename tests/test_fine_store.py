"""The bundle's fine keypoint store and which cameras verify on it (docs/VERIFICATION.md, "Store sample per
camera"), on the tiny bundle."""
from __future__ import annotations

import shutil

import pytest
import yaml

from support import localizer_config, needs_model

LAT, LON, ALT_KM, YAW_DEG = 34.0, -108.0, 600.0, 20.0


def _localizer(bundle, **cfg):
    from earthfix.onboard.localizer import Localizer
    return Localizer.load(bundle, config=dict(localizer_config(), **cfg))


@needs_model
def test_the_bundle_has_a_finer_store_and_records_it(tiny_bundle):
    from earthfix.onboard.bundle import MANIFEST, Bundle
    from earthfix.tools.build_index import FINE_KEYSTORE_GSD_KM, LOWRES_MAP_PX
    b = Bundle.load(tiny_bundle)
    assert b.keystore_fine is not None and b.keystore_fine.gsd_km == FINE_KEYSTORE_GSD_KM < b.keystore.gsd_km
    # a finer sample of the same ground holds more keypoints
    assert len(b.keystore_fine) > len(b.keystore)
    m = yaml.safe_load((tiny_bundle / MANIFEST).read_text())
    # (built by build_bundle without other maps or a snow season: the default recipe's are added by its callers)
    assert m["keystore"] == {"gsd_km": b.keystore.gsd_km, "fine_gsd_km": FINE_KEYSTORE_GSD_KM,
                             "fine_keypoints": len(b.keystore_fine), "extra_basemaps": [], "snow_season": None,
                             "lowres_map_px": LOWRES_MAP_PX, "lowres_keypoints": len(b.keystore_lowres)}


@needs_model
def test_cameras_finer_than_the_coarse_store_verify_on_the_fine_one(tiny_bundle):
    from earthfix.onboard.camera import Camera
    loc = _localizer(tiny_bundle)
    wide, c512, narrow = Camera.from_fov(256, 256, 80), Camera.from_fov(512, 512, 60), Camera.from_fov(1024, 1024, 40)
    assert loc.verifier_for(wide) is loc.verifier                       # 7.9 km working pixels
    assert loc.verifier_for(c512) is loc.fine_verifier                  # 5.4 km
    assert loc.verifier_for(narrow) is loc.fine_verifier                # 3.4 km
    assert loc.fill_verifier(narrow).store is loc.bundle.keystore_fine
    assert loc.fill_verifier(wide).store is loc.bundle.keystore
    off = _localizer(tiny_bundle, fine_store=False)
    assert off.fine_verifier is None and off.verifier_for(narrow) is off.verifier


@needs_model
def test_a_narrow_camera_fixes_through_the_fine_store(tiny_bundle, basemap):
    from earthfix.onboard import geodesy
    from earthfix.onboard.camera import Camera, nadir_attitude
    from earthfix.sim import render
    cam = Camera.from_fov(1024, 1024, 40)
    view = render.render(basemap, cam, geodesy.geodetic_to_ecef(LAT, LON, ALT_KM), nadir_attitude(LAT, LON, YAW_DEG))
    fix = _localizer(tiny_bundle).locate(view.image, cam)
    assert fix.fix, fix.reason
    assert geodesy.great_circle_km(fix.lat, fix.lon, LAT, LON) < 5.0


@needs_model
def test_a_fine_store_that_is_not_finer_is_refused(tiny_bundle, tmp_path):
    from earthfix.onboard.bundle import MANIFEST, Bundle, BundleError, seal_manifest, sha256_file
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    shutil.copy(d / "keystore.npz", d / "keystore_fine.npz")       # the coarse store under the fine name
    m = yaml.safe_load((d / MANIFEST).read_text())
    m["files"]["keystore_fine.npz"] = {"sha256": sha256_file(d / "keystore_fine.npz"),
                                       "bytes": (d / "keystore_fine.npz").stat().st_size}
    (d / MANIFEST).write_text(yaml.safe_dump(m, sort_keys=False))
    seal_manifest(d)
    with pytest.raises(BundleError, match="keystore_fine.npz .* is not finer than keystore.npz"):
        Bundle.load(d)
