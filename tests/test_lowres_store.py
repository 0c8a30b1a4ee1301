"""The bundle's low-resolution keypoint store (docs/VERIFICATION.md, "Low-resolution imagery"), on the tiny bundle:
what the bundle holds and records, refusals at load, and the frames it fixes and leaves alone."""
from __future__ import annotations

import shutil

import pytest
import yaml

from support import localizer_config, needs_model

# a 512 px frame of the home map area-averaged to 1024 px around the globe (39 km a pixel): the main store
# finds no pose on it, the low-resolution one does (found by a scan of the tiny region's whole degrees, seed-free:
# nadir renders; since the local descriptor's 9 x window, session 78, the main store fixes 86 of those 126 coarse
# frames, among them 33 N 105 W, this test's pose until then)
LAT, LON, ALT_KM, YAW_DEG = 33.0, -111.0, 600.0, 40.0


def _localizer(bundle, **cfg):
    from earthfix.onboard.localizer import Localizer
    # deadline-free: the answers below must not depend on the machine's speed
    return Localizer.load(bundle, config=dict(localizer_config(), deadline_ms=10000.0, **cfg))


def _frame(basemap, globe_px: int | None):
    from earthfix.onboard import geodesy
    from earthfix.onboard.camera import Camera, nadir_attitude
    from earthfix.sim import render
    cam = Camera.from_fov(512, 512, 60)
    world = basemap.coarsened(globe_px) if globe_px else basemap
    view = render.render(world, cam, geodesy.geodetic_to_ecef(LAT, LON, ALT_KM), nadir_attitude(LAT, LON, YAW_DEG))
    return view.image, cam


@needs_model
def test_the_bundle_holds_a_low_resolution_store_with_its_index_and_records_them(tiny_bundle):
    from earthfix.onboard.bundle import KEYINDEX_LOWRES_GRAPH, KEYSTORE_LOWRES, MANIFEST, Bundle
    from earthfix.tools.build_index import LOWRES_MAP_PX
    b = Bundle.load(tiny_bundle)
    assert b.keystore_lowres is not None and b.keyindex_lowres is not None
    assert b.keyindex_lowres.get_current_count() == len(b.keystore_lowres)
    # the same ground at the same sample, from maps 2.6x coarser: fewer blobs
    assert b.keystore_lowres.gsd_km == b.keystore.gsd_km
    assert 0 < len(b.keystore_lowres) < len(b.keystore)
    m = yaml.safe_load((tiny_bundle / MANIFEST).read_text())
    assert m["keystore"]["lowres_map_px"] == LOWRES_MAP_PX
    assert m["keystore"]["lowres_keypoints"] == len(b.keystore_lowres)
    assert m["keyindex_lowres"]["count"] == len(b.keystore_lowres)
    assert {KEYSTORE_LOWRES, KEYINDEX_LOWRES_GRAPH} <= set(m["files"])


def test_a_map_is_coarsened_to_its_share_of_the_globes_pixels(basemap):
    fine = basemap.coarsened(basemap.image.shape[1])
    assert fine is basemap                                      # no finer than asked: as it is
    c = basemap.coarsened(2048)
    assert c.image.shape[:2] == c.land.shape == (1024, 2048)
    assert abs(c.km_per_px - basemap.km_per_px * basemap.image.shape[1] / 2048) < 1e-6
    assert c.source.endswith("@2048px")


@needs_model
@pytest.mark.parametrize("drop", ["keystore_lowres.npz", "keyindex_lowres.graph"])
def test_a_low_resolution_store_without_its_index_or_the_reverse_is_refused(tiny_bundle, tmp_path, drop):
    from earthfix.onboard.bundle import MANIFEST, Bundle, BundleError, seal_manifest
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    m = yaml.safe_load((d / MANIFEST).read_text())
    del m["files"][drop]
    (d / MANIFEST).write_text(yaml.safe_dump(m, sort_keys=False))
    seal_manifest(d)
    with pytest.raises(BundleError, match="come together, the manifest lists one"):
        Bundle.load(d)


@needs_model
def test_a_frame_of_coarse_imagery_is_fixed_through_the_low_resolution_store(tiny_bundle, basemap):
    from earthfix.onboard import geodesy
    img, cam = _frame(basemap, 1024)
    fix = _localizer(tiny_bundle).locate(img, cam)
    assert fix.fix, fix.reason
    assert fix.evidence["source"] == "lowres"
    assert geodesy.great_circle_km(fix.lat, fix.lon, LAT, LON) < 15.0
    assert "lowres_vote_ms" in fix.stages_ms
    # before the encoder's places (session 74): a frame the store fixes never runs the encoder
    assert "encode_ms" not in fix.stages_ms and "encoder_places_ms" not in fix.stages_ms
    # its poses are held to their own, tighter precision gate
    loc = _localizer(tiny_bundle, lowres_max_bore_sigma_km=5.0)
    assert loc.locate(img, cam).fix
    assert {v.cfg.max_bore_sigma_km for v in loc._twins.values() if v.store is loc.bundle.keystore_lowres} == {5.0}
    assert not _localizer(tiny_bundle, lowres_max_bore_sigma_km=0.5).locate(img, cam).fix
    off = _localizer(tiny_bundle, lowres_store=False)
    assert off.lowres_voter is None
    assert not off.locate(img, cam).fix


@needs_model
def test_a_frame_the_main_store_fixes_never_reaches_the_low_resolution_store(tiny_bundle, basemap):
    from earthfix.onboard import geodesy
    img, cam = _frame(basemap, None)
    fix = _localizer(tiny_bundle).locate(img, cam)
    assert fix.fix and fix.evidence["source"] == "vote"
    assert geodesy.great_circle_km(fix.lat, fix.lon, LAT, LON) < 5.0
    assert "lowres_vote_ms" not in fix.stages_ms and "lowres_places_ms" not in fix.stages_ms


@needs_model
def test_a_config_that_never_uses_a_store_does_not_hold_it_but_still_checks_its_bytes(tiny_bundle, tmp_path):
    from earthfix.onboard.bundle import Bundle, BundleError
    off = _localizer(tiny_bundle, lowres_store=False, fine_store=False)
    assert off.bundle.keystore_lowres is None and off.bundle.keyindex_lowres is None
    assert off.bundle.keystore_fine is None and off.fine_verifier is None
    assert off.bundle.keyindex is not None and off.voter is not None
    # the low-resolution store is reached only through a vote: no vote, no store, no key index
    novote = _localizer(tiny_bundle, vote=False)
    assert novote.voter is None and novote.bundle.keyindex is None and novote.bundle.keystore_lowres is None
    assert novote.bundle.keystore_fine is not None
    # a part left unread is still part of the bundle: a damaged one refuses the load
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    raw = bytearray((d / "keystore_lowres.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "keystore_lowres.npz").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="keystore_lowres.npz"):
        Bundle.load(d, load_lowres=False)
