"""The encoder's descriptor averages a frame with its cleaned views (config ``encoder_views``: the cloud-filled
and the despeckled frame the looks make anyway), and a frame left without a pose reports every look's vote
places as candidates (docs/VERIFICATION.md, "The encoder sees the cleaned frame too")."""
from __future__ import annotations

import numpy as np
import pytest

from support import localizer_config, under_cloud

LAT, LON, ALT_KM, YAW_DEG = 34.0, -110.0, 600.0, 37.0


@pytest.fixture(scope="module")
def loc(tiny_bundle):
    from earthfix.onboard.localizer import Localizer
    return Localizer.load(tiny_bundle, config=localizer_config())


@pytest.fixture(scope="module")
def frames(basemap):
    """The same place clear and under the simulator's broken cloud (cover 0.6)."""
    from earthfix.onboard import geodesy
    from earthfix.onboard.camera import Camera, nadir_attitude
    from earthfix.sim import render
    from earthfix.sim.effects import CloudField
    cam = Camera.from_fov(256, 256, 80)
    view = render.render(basemap, cam, geodesy.geodetic_to_ecef(LAT, LON, ALT_KM), nadir_attitude(LAT, LON, YAW_DEG))
    cloudy = under_cloud(view.image, CloudField(seed=3).sample(view.lat, view.lon, 0.6)[..., None])
    return cam, view.image, cloudy


def test_encode_views_is_the_normalised_mean_of_the_views_descriptors(loc, frames):
    from earthfix.onboard.preprocess import preprocess
    _, clear, cloudy = frames
    enc = loc.encoder
    a, b = (preprocess(im, enc.input_px) for im in (clear, cloudy))
    assert np.array_equal(enc.encode_views(a), enc.encode_input(a))
    both = enc.encode_views(np.concatenate([a, b]))
    mean = enc.encode_input(a) + enc.encode_input(b)
    assert np.linalg.norm(both) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(both, mean / np.linalg.norm(mean), atol=1e-4)
    assert float(both @ enc.encode_input(a)) < 0.9999


def test_a_cloudy_frame_is_encoded_with_its_filled_view_and_a_clear_one_alone(loc, frames, tiny_bundle):
    from earthfix.onboard.preprocess import preprocess
    cam, clear, cloudy = frames
    views, _ = loc.encoder_images(cloudy, cam)
    assert len(views) == 2 and views[0] is not views[1] and views[1].shape == cloudy.shape
    assert not np.array_equal(views[0], views[1])
    assert len(loc.encoder_images(clear, cam)[0]) == 1
    # what locate searches with is that mean: the encoder's places made first equal encoder_candidates
    from earthfix.onboard.localizer import Localizer
    first = Localizer.load(tiny_bundle, config=dict(localizer_config(), encoder_places="first"))
    fix = first.locate(cloudy, cam)
    assert [c.view for c in fix.encoder_candidates] == [c.view for c in loc.encoder_candidates(cloudy, cam)]
    x = np.concatenate([preprocess(v, loc.encoder.input_px) for v in views])
    assert [c.view for c in fix.encoder_candidates] == [
        c.view for c in loc.candidates(loc.encoder.encode_views(x), 10, loc.spacing_km(cam))]
    # switched off: the frame alone
    alone = Localizer.load(tiny_bundle, config=dict(localizer_config(), encoder_views=[]))
    assert len(alone.encoder_images(cloudy, cam)[0]) == 1


def test_encoder_views_config_names_its_key():
    from earthfix.onboard.config import ConfigError, load_config
    assert load_config(None, {"encoder_views": ["despeckled"]})["encoder_views"] == ["despeckled"]
    for bad in (["crop"], "filled", [1]):
        with pytest.raises(ConfigError, match="encoder_views"):
            load_config(None, {"encoder_views": bad})


def test_a_frame_without_a_pose_lists_later_looks_vote_places_after_the_first_looks(loc, cam256):
    from earthfix.onboard.fix import Candidate
    sp = loc.spacing_km(cam256)
    first = [Candidate(10.0, 20.0, 5, source="vote"), Candidate(-30.0, 40.0, 3, source="vote")]
    enc = [Candidate(float(i), 100.0, 0.5 - 0.01 * i, view=i) for i in range(8)]
    later = [Candidate(10.0, 20.5, 4, source="vote"),     # ~50 km from the first look's first: the same place
             Candidate(50.0, -60.0, 2, source="vote")]
    out = loc._with_votes(first + enc, later, cam256)
    assert sp > 60.0
    assert [(c.lat, c.lon) for c in out[:3]] == [(10.0, 20.0), (-30.0, 40.0), (50.0, -60.0)]
    assert out[3:] == enc[:7] and len(out) == loc.cfg["top_k"]
