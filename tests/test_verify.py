"""Geometric verification: keypoint store, features, pose from a frame (fast: one small regional store)."""
from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera, nadir_attitude
from earthfix.onboard.features import (FeatureConfig, cloud_mask, despeckle_clouds, extract, extract_features,
                                       fill_clouds, white_balanced)
from earthfix.onboard.keystore import KeypointStore
from earthfix.onboard.verify import Verifier, VerifyConfig
from earthfix.sim import render
from earthfix.sim.effects import CloudField
from earthfix.tools.build_keystore import BuildConfig, build_keystore
from support import tilted_view, under_cloud

# North Africa and Arabia: textured desert, coasts (Mediterranean, Red Sea, Gulf), wide enough that a
# candidate 2000 km from a frame is still inside the store
REGION = (12.0, 36.0, -5.0, 45.0)


@pytest.fixture(scope="module")
def store(basemap, tmp_path_factory):
    cv2.setNumThreads(2)
    st = build_keystore(basemap, BuildConfig(bbox=REGION), progress=False)
    path = tmp_path_factory.mktemp("ks") / "region.npz"
    st.save(path)
    return KeypointStore.load(path, mmap=True)


@pytest.fixture(scope="module")
def verifier(store):
    return Verifier(store, VerifyConfig())


def appearance(img, seed=0):
    """Our own sensor change: gamma, colour balance, offset, slight blur, noise."""
    rng = np.random.default_rng(seed)
    f = img.astype(np.float32) / 255.0
    f = f ** 1.3
    f = f * np.array([0.85, 1.0, 1.15], np.float32) + 0.04
    f = cv2.GaussianBlur(f, (0, 0), 0.7)
    f += rng.normal(0, 0.02, f.shape).astype(np.float32)
    return np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8)


def frame(basemap, cam, lat, lon, alt_km, yaw_deg):
    pos = geodesy.geodetic_to_ecef(lat, lon, alt_km)
    return render.render(basemap, cam, pos, nadir_attitude(lat, lon, yaw_deg)).image


def yaw_err(a, b):
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_store_has_no_water_keypoints_and_index_works(store, basemap):
    assert len(store) > 2000
    assert store.meta["stats"]["bytes_per_km2"] < 0.5
    # every keypoint on land (0.5 at the rendered resolution; allow for the map's finer coastline)
    x, y = basemap.to_pixel(np.asarray(store.lat, float), np.asarray(store.lon, float))
    land = cv2.remap(basemap.land, x.astype(np.float32)[:, None], y.astype(np.float32)[:, None],
                     cv2.INTER_LINEAR).ravel()
    assert land.min() > 0.2 and np.mean(land > 0.5) > 0.97
    lat, lon = np.asarray(store.lat), np.asarray(store.lon)
    assert lat.min() >= REGION[0] and lat.max() <= REGION[1] and lon.min() >= REGION[2] and lon.max() <= REGION[3]
    # grid query == brute force
    for qlat, qlon, r in ((24.0, 20.0, 700.0), (35.0, 44.0, 300.0), (13.0, -4.0, 1200.0)):
        got = store.query(qlat, qlon, r)
        d = geodesy.great_circle_km(qlat, qlon, lat.astype(float), lon.astype(float))
        assert np.array_equal(got, np.flatnonzero(d <= r))


def test_features_deterministic_and_in_input_pixels(basemap):
    cam = Camera.from_fov(512, 512, 60)
    img = frame(basemap, cam, 24.0, 15.0, 450.0, 37.0)
    a = extract_features(img, FeatureConfig())
    b = extract_features(img.copy(), FeatureConfig())
    assert len(a) > 50 and np.array_equal(a.xy, b.xy) and np.array_equal(a.desc, b.desc)
    assert a.xy[:, 0].max() > 300          # coordinates are in the 512-px input, not the working image
    xy, desc, size = extract(img)
    assert xy.dtype == np.float32 and desc.shape == (len(xy), 128) and size.shape == (len(xy),)


def test_valid_mask_keeps_keypoints_off_invalid_pixels(basemap):
    """A partial ``valid`` mask (space, or cloud in experiments) drops keypoints whose support touches it."""
    cam = Camera.from_fov(256, 256, 80)
    img = frame(basemap, cam, 24.0, 15.0, 600.0, 0.0)
    valid = np.ones(img.shape[:2], bool)
    valid[:, 128:] = False
    full = extract_features(img, FeatureConfig())
    half = extract_features(img, FeatureConfig(), valid=valid)
    assert len(full) > 50 and 0 < len(half) < len(full)
    # radius in input pixels: half the keypoint diameter, at least the border margin (4 working px)
    margin = np.maximum(0.5 * half.size, 4.0 * 256 / 128)
    assert np.all(half.xy[:, 0] + margin <= 128 + 1.0)


def test_cloud_mask_and_fill_rules(basemap):
    cam = Camera.from_fov(256, 256, 80)
    img = frame(basemap, cam, 24.0, 15.0, 600.0, 0.0)
    cfg = FeatureConfig()
    clear = cloud_mask(img, cfg)
    assert clear is not None and clear.mean() < 0.02            # coloured ground is not cloud
    cloudy = img.copy()
    cv2.circle(cloudy, (80, 90), 30, (228, 230, 232), -1)       # a grey-white cloud
    cv2.circle(cloudy, (190, 170), 12, (200, 200, 205), -1)
    mask = cloud_mask(cloudy, cfg)
    disc = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(disc, (80, 90), 30, 1, -1)
    cv2.circle(disc, (190, 170), 12, 1, -1)
    assert mask[disc > 0].mean() > 0.98 and mask[disc == 0].mean() < 0.05
    filled, m2 = fill_clouds(cloudy, cfg)
    assert np.array_equal(m2, mask) and np.array_equal(filled[~mask], cloudy[~mask])   # clear pixels kept
    # the cloud is replaced by ground colour: no longer cloud-like, close to the ground around it
    assert cloud_mask(filled, cfg)[disc > 0].mean() < 0.05
    assert abs(float(filled[disc > 0].mean()) - float(img[disc == 0].mean())) < 25.0
    # no colour (a panchromatic sensor): brightness alone, with the wider margin, finds the same clouds...
    grey = cv2.cvtColor(cv2.cvtColor(cloudy, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    gmask = cloud_mask(grey, cfg)
    # (the brightest Saharan sand here, 55 DN above the frame's floor, goes with them: 8 % of the ground;
    # the plain look is what sees such frames as they are)
    assert gmask[disc > 0].mean() > 0.98 and gmask[disc == 0].mean() < 0.10
    assert cloud_mask(grey, FeatureConfig(cloud_grey_margin_dn=0)) is None     # 0: no mask without colour
    # ...and ground a little brighter than the floor is not cloud there (it is with the colour rule's margin)
    ramp = np.repeat(np.linspace(40, 40 + cfg.cloud_grey_margin_dn - 5, 256).astype(np.uint8)[None, :], 256, 0)
    assert not cloud_mask(cv2.merge([ramp] * 3), cfg).any()
    # a colour frame with hardly any colour left (haze over all of it) is not taken for a grey one: no mask
    washed = cv2.addWeighted(cloudy, 0.1, grey, 0.9, 0)
    assert cloud_mask(washed, cfg) is None and fill_clouds(washed, cfg)[0] is washed
    # no light: nothing can be told apart, nothing is filled
    assert cloud_mask(np.zeros_like(img), cfg) is None
    # outside the share range the input object comes back unfilled
    assert fill_clouds(cloudy, cfg, share=(0.5, 0.8))[0] is cloudy


def test_tone_lift_inverts_a_steeper_curve_and_leaves_a_bright_enough_frame_alone(basemap):
    """``features.tone_lifted``: a frame whose 25th-percentile grey is under ``low_dn`` goes through the power
    that takes it there (so a frame darkened by x ** 2.2 comes back close to itself), capped at
    ``max_lift``; a frame at or over it (black pixels aside), and any frame with ``low_dn`` 0, is returned as
    it is."""
    from earthfix.onboard.features import tone_lifted
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(70, 25, (64, 64, 3)), 0, 255).astype(np.uint8)          # p25 ~53 DN
    same, g = tone_lifted(x, 20.0)
    assert same is x and g == 1.0
    assert tone_lifted(x, 0.0)[0] is x
    dark = np.clip(255.0 * (x / 255.0) ** 2.2 + 0.5, 0, 255).astype(np.uint8)       # p25 ~9 DN
    lifted, g = tone_lifted(dark, 20.0)
    assert 0.5 < g < 0.9 and lifted.shape == dark.shape and lifted.dtype == np.uint8
    p25 = np.percentile(cv2.cvtColor(lifted, cv2.COLOR_BGR2GRAY), 25)
    assert 17 <= p25 <= 23                                                          # lifted to ~20 DN
    # monotone: the order of grey levels is kept, and the lift moved the frame towards the original
    assert np.corrcoef(lifted.ravel(), x.ravel())[0, 1] > np.corrcoef(dark.ravel(), x.ravel())[0, 1]
    # black pixels (space past the limb, a scene's edge) do not make a frame dark: 40 % of it black, the rest
    # the bright frame, is left alone; the same black beside the dark frame is lifted as the dark frame is
    edge = x.copy()
    edge[:26] = 1
    assert tone_lifted(edge, 20.0)[0] is edge
    edge_dark = dark.copy()
    edge_dark[:26] = 1
    assert tone_lifted(edge_dark, 20.0)[1] < 0.9
    black = np.zeros((64, 64), np.uint8)
    black[::2] = 3
    out, g = tone_lifted(black, 20.0, max_lift=2.0)
    assert g == pytest.approx(0.5) and out.ndim == 2 and out.max() > 3 * black.max()  # capped; grey frames too


def test_an_underexposed_frame_is_scaled_up_and_a_well_exposed_one_left_alone():
    """``features.exposure_stretched``: a frame whose brightest band's 99.5th percentile (black pixels aside)
    is under ``below_dn`` is multiplied by the gain that takes it to ``to_dn`` (capped at ``max_gain``, 2 by
    default); a frame
    at or over it, a black (blank) frame, and any frame with ``below_dn`` 0, are returned as they are."""
    from earthfix.onboard.features import EXPOSURE_MAX_GAIN, exposure_stretched
    rng = np.random.default_rng(1)
    x = np.clip(rng.normal(120, 35, (64, 64, 3)), 0, 255).astype(np.uint8)         # p99.5 of the brightest ~220
    same, k = exposure_stretched(x, 110.0, 180.0)
    assert same is x and k == 1.0 and exposure_stretched(x, 0.0)[0] is x
    dim = np.round(x * 0.3).astype(np.uint8)                                      # exposed for 3x the light
    assert exposure_stretched(dim)[1] == EXPOSURE_MAX_GAIN == 2.0                 # the flight's cap
    out, k = exposure_stretched(dim, 110.0, 180.0, max_gain=4.0)
    bright = out.max(axis=2)
    assert 2.0 < k < 3.5 and out.dtype == np.uint8 and out.shape == dim.shape
    assert 170 <= np.percentile(bright, 99.5) <= 190                              # its brightest pixels to ~180
    assert np.abs(out.astype(int) - np.round(dim * k)).max() <= 1 and np.corrcoef(out.ravel(), x.ravel())[0, 1] > 0.99
    # black pixels (space past the limb) do not count; a frame black but for noise is not stretched, and
    # a nearly black one is capped
    edge = x.copy()
    edge[:40] = 0
    assert exposure_stretched(edge, 110.0, 180.0)[0] is edge
    assert exposure_stretched(np.zeros((64, 64), np.uint8), 110.0)[1] == 1.0
    faint = np.full((64, 64), 10, np.uint8)
    assert exposure_stretched(faint, 110.0, 180.0, max_gain=4.0)[1] == 4.0


def test_blur_ratio_tells_a_blurred_frame_and_only_that_one_is_sharpened(basemap):
    """``features.blur_ratio`` (the 1-2 over the 2-4 working-pixel octave's variance) is well over 0.47 on a
    frame of the map and under it once the frame is blurred by 3 px; ``features.sharpened`` unsharp-masks the
    blurred frame only (the sharp one comes back as the same object; ``below`` 0: never), which raises its
    ratio again."""
    from earthfix.onboard.features import blur_ratio, sharpened
    cam = Camera.from_fov(256, 256, 80)
    img = frame(basemap, cam, 35.0, -108.0, 600.0, 37.0)
    soft = cv2.GaussianBlur(img, (0, 0), 3.0)
    assert blur_ratio(img) > 0.6 and blur_ratio(soft) < 0.4
    same, r = sharpened(img)
    assert same is img and r == pytest.approx(blur_ratio(img))
    assert sharpened(soft, below=0.0)[0] is soft
    sharp, r = sharpened(soft)
    assert sharp is not soft and sharp.dtype == np.uint8 and sharp.shape == soft.shape
    assert r < 0.47 and blur_ratio(sharp) > r + 0.05 and np.abs(sharp.astype(int) - soft).mean() > 1.0
    grey = cv2.cvtColor(soft, cv2.COLOR_BGR2GRAY)
    assert sharpened(grey)[0].ndim == 2


def test_a_sensors_stuck_lines_and_column_gains_are_mended_and_a_clean_frame_is_left_alone(basemap):
    """``features.repair_lines``: four columns and a row stuck dark or bright take the lines beside them; a 5 %
    column gain pattern is equalised to under a fifth of itself (the lines' mean gains, until session 73, left a
    quarter); a frame of the map as rendered comes back as the same object (no line found, no striping beyond its
    texture's scatter); ``striping_above`` 0 turns it off."""
    from earthfix.onboard.features import repair_lines
    cam = Camera.from_fov(256, 256, 80)
    img = frame(basemap, cam, 35.0, -108.0, 600.0, 37.0)
    same, found = repair_lines(img)
    assert same is img and found["lines"] == 0 and found["striping"] < 0.02
    stuck = img.copy()
    for j, c in enumerate((40, 41, 130, 200)):
        stuck[:, c] = 0 if j % 2 else 255
    stuck[90] = 0
    mended, found = repair_lines(stuck)
    assert found["lines"] == 5, found
    assert np.abs(mended.astype(int) - img).mean() < 0.1 * np.abs(stuck.astype(int) - img).mean()
    assert repair_lines(stuck, striping_above=0.0)[0] is stuck
    gains = 1.0 + np.random.default_rng(0).normal(0.0, 0.05, 256)
    striped = np.clip(img * gains[None, :, None], 0, 255).astype(np.uint8)
    mended, found = repair_lines(striped)
    assert found["striping"] > 0.03 and found["lines"] == 0, found
    assert np.abs(mended.astype(int) - img).mean() < 0.6 * np.abs(striped.astype(int) - img).mean()

    def pattern(a):       # the columns' gains against the frame as rendered, their 9-column trend taken out
        r = a.astype(np.float64).mean(axis=(0, 2)) / np.maximum(img.astype(np.float64).mean(axis=(0, 2)), 1.0)
        return float(np.std(r - np.convolve(np.pad(r, 4, mode="edge"), np.ones(9) / 9, mode="valid")))

    assert pattern(mended) < 0.18 * pattern(striped), (pattern(mended), pattern(striped))
    grey = cv2.cvtColor(stuck, cv2.COLOR_BGR2GRAY)
    assert repair_lines(grey)[0].ndim == 2


def test_a_colour_cast_hides_clouds_from_the_mask_and_the_balance_gives_them_back(basemap):
    """Another sensor's band gains give a white cloud their colour: the mask misses it. Balanced by each
    band's brightest pixels (the cloud's), the mask finds it again; a balanced or grey frame needs none."""
    cam = Camera.from_fov(256, 256, 80)
    img = frame(basemap, cam, 24.0, 15.0, 600.0, 0.0)
    cfg = FeatureConfig()
    cloudy = img.copy()
    cv2.circle(cloudy, (80, 90), 30, (228, 230, 232), -1)
    cv2.circle(cloudy, (190, 170), 12, (200, 200, 205), -1)
    disc = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(disc, (80, 90), 30, 1, -1)
    cv2.circle(disc, (190, 170), 12, 1, -1)
    for gains in ((0.8, 1.0, 1.2), (0.75, 1.1, 1.0)):               # BGR: a warm and a green cast
        cast = cv2.convertScaleAbs(cloudy.astype(np.float32) * np.float32(gains))
        assert cloud_mask(cast, cfg)[disc > 0].mean() < 0.05          # the cloud is no longer cloud-like
        bal = white_balanced(cast)
        mask = cloud_mask(bal, cfg)
        assert mask[disc > 0].mean() > 0.98 and mask[disc == 0].mean() < 0.05
        filled, m2 = fill_clouds(cast, cfg, balance=True)
        assert np.array_equal(m2, mask) and np.array_equal(filled[~mask], cast[~mask])   # the cast frame filled
        assert fill_clouds(cast, cfg)[0] is cast
    assert white_balanced(cloudy) is None                             # balanced already
    out, m3 = fill_clouds(cloudy, cfg, balance=True)
    assert out is cloudy and m3 is None
    assert white_balanced(cv2.cvtColor(cv2.cvtColor(cloudy, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)) is None
    assert white_balanced(np.zeros_like(img)) is None                 # unlit
    # a clear desert's brightest pixels are sand: balanced, most of it looks like cloud (why the Localizer
    # keeps this for a last look, after the frame as it came)
    assert cloud_mask(img, cfg).mean() < 0.02 and cloud_mask(white_balanced(img), cfg).mean() > 0.5


def test_cloud_fill_recovers_a_frame_under_broken_cloud(verifier, basemap):
    """Broken cloud from the simulator's cloud field over the Sahara: the cloud-filled look verifies
    where the plain one fails, and it finds more inliers where both verify."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 24.0, 12.0
    pos = geodesy.geodetic_to_ecef(lat, lon, 600.0)
    view = render.render(basemap, cam, pos, nadir_attitude(lat, lon, 37.0))
    field = CloudField(seed=3)
    out = {}
    for cover in (0.5, 0.6):
        a = field.sample(view.lat, view.lon, cover)[..., None]
        img = under_cloud(view.image, a)
        plain = verifier.verify(verifier.extract(img), cam, [(lat, lon)])
        filled = fill_clouds(img, verifier.cfg.feature)[0]
        fill = verifier.verify(verifier.extract(filled), cam, [(lat, lon)])
        assert fill.ok, fill.reason
        assert geodesy.great_circle_km(fill.lat, fill.lon, lat, lon) < 5.0
        out[cover] = (plain, fill)
    plain, fill = out[0.5]
    assert plain.ok and fill.inliers >= 1.5 * plain.inliers
    plain, fill = out[0.6]
    assert not plain.ok


def test_despeckle_takes_cumulus_cells_out_and_leaves_other_frames_alone(verifier, basemap):
    """Fair-weather cumulus from the simulator's field (cells of 2-6 km, 30 % of the ground) over a 512 px /
    60 deg frame: eroding the frame over 5 px (6.8 km, ``Localizer``'s size for this camera) gives back the
    ground between the cells; the frame then verifies at its place with many times the inliers, where the
    speckled frame fails or barely holds. A frame without cumulus, or with one big cloud, is left alone."""
    from earthfix.onboard.localizer import despeckle_geometry
    from earthfix.onboard.verify import native_km_per_px
    cam = Camera.from_fov(512, 512, 60)
    shrink, k = despeckle_geometry(verifier.cfg, cam)
    assert (shrink, k) == (1, 5)
    field = CloudField(seed=3)
    for lat, lon in ((34.0, 14.0), (31.0, 11.0)):         # inside a cumulus region of this field
        view = render.render(basemap, cam, geodesy.geodetic_to_ecef(lat, lon, 600.0), nadir_attitude(lat, lon, 30.0))
        cells = field.cumulus(view.lat, view.lon, 0.3, native_km_per_px(verifier.cfg, cam))
        img = under_cloud(view.image, cells[..., None])
        out, speckle = despeckle_clouds(img, img, k, verifier.cfg.feature)
        assert speckle > 0.09 and out is not img and out.shape == img.shape
        before = verifier.verify(verifier.extract(img), cam, [(lat, lon)])
        after = verifier.verify(verifier.extract(out), cam, [(lat, lon)])
        assert after.ok and geodesy.great_circle_km(after.lat, after.lon, lat, lon) < 3.0
        assert after.inliers >= 4 * max(before.inliers, 1)
        # a finer camera's frame is judged and eroded shrunk by an integer factor, and comes back whole
        half, s2 = despeckle_clouds(img, img, 3, verifier.cfg.feature, shrink=2)
        assert s2 > 0.09 and half.shape == img.shape and half.mean() < img.mean() - 5
        same, s0 = despeckle_clouds(view.image, view.image, k, verifier.cfg.feature)
        assert same is view.image and s0 < 0.02
    cloudy = view.image.copy()
    cv2.circle(cloudy, (200, 260), 120, (228, 230, 232), -1)   # one big cloud: no speckle
    assert despeckle_clouds(cloudy, cloudy, k, verifier.cfg.feature)[0] is cloudy


@pytest.mark.parametrize("w,fov,alt_km,lat,lon", [(256, 80.0, 600.0, 24.0, 12.0), (512, 60.0, 450.0, 27.0, 30.0)])
def test_true_candidate_verifies(verifier, basemap, w, fov, alt_km, lat, lon):
    cam = Camera.from_fov(w, w, fov)
    img = appearance(frame(basemap, cam, lat, lon, alt_km, 37.0))
    f = verifier.extract(img)
    # the candidate is off by a third of the footprint half-width, as retrieval hits are
    clat, clon = geodesy.destination(lat, lon, 120.0, cam.footprint_half_width_km(alt_km) / 3)
    v = verifier.verify(f, cam, [(float(clat), float(clon))])
    assert v.ok, v.reason
    assert geodesy.great_circle_km(v.lat, v.lon, lat, lon) < 5.0
    assert geodesy.great_circle_km(v.sub_lat, v.sub_lon, lat, lon) < 10.0
    assert abs(v.alt_km - alt_km) < 20.0
    assert yaw_err(v.yaw_deg, 37.0) < 1.5
    assert v.inliers >= 30 and v.spread > 0.2 and v.candidate == 0
    for key in ("inliers", "inlier_ratio", "spread", "reproj_rms_px", "alt_out_of_range_km", "tilt_deg",
                "second_inliers"):
        assert key in v.evidence


def test_the_pnp_robust_model_verifies_the_true_place_and_not_a_wrong_one(store, basemap):
    """``fit: pnp`` (AP3P RANSAC on the ground points instead of the gnomonic homography) is a configuration
    option: it must reach the same pose at the true place and none 2,000 km away."""
    ver = Verifier(store, VerifyConfig(fit="pnp"))
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, alt_km = 24.0, 12.0, 600.0
    f = ver.extract(appearance(frame(basemap, cam, lat, lon, alt_km, 37.0)))
    v = ver.verify(f, cam, [(lat + 0.5, lon - 0.5)])
    assert v.ok, v.reason
    assert geodesy.great_circle_km(v.lat, v.lon, lat, lon) < 5.0 and abs(v.alt_km - alt_km) < 20.0
    assert yaw_err(v.yaw_deg, 37.0) < 1.5 and v.inliers >= 30
    far = ver.verify(f, cam, [geodesy.destination(lat, lon, 90.0, 2000.0)])
    assert not far.ok and far.inliers < 10


def test_wrong_candidate_and_ranking(verifier, basemap):
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 24.0, 5.0
    f = verifier.extract(appearance(frame(basemap, cam, lat, lon, 600.0, 37.0), seed=1))
    far = geodesy.destination(lat, lon, 90.0, 2000.0)
    v = verifier.verify(f, cam, [far])
    assert not v.ok and v.inliers < 10
    # wrong first, right second: the right one wins and the wrong one is the second-best evidence
    v2 = verifier.verify(f, cam, [far, (lat + 1.0, lon - 1.0)])
    assert v2.ok and v2.candidate == 1 and v2.second_inliers < 10
    assert geodesy.great_circle_km(v2.lat, v2.lon, lat, lon) < 5.0


def test_known_attitude(verifier, basemap):
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, alt = 22.0, 38.0, 700.0
    r = nadir_attitude(lat, lon, 200.0)
    img = appearance(render.render(basemap, cam, geodesy.geodetic_to_ecef(lat, lon, alt), r).image, seed=2)
    v = verifier.verify(verifier.extract(img), cam, [(lat, lon)], attitude=geodesy.quat_from_matrix(r))
    assert v.ok and geodesy.great_circle_km(v.sub_lat, v.sub_lon, lat, lon) < 5.0 and abs(v.alt_km - alt) < 10


def test_a_known_attitude_far_off_nadir_is_the_star_trackers_tilt_not_a_bent_fit(verifier, basemap):
    """An agile imager looks 40 deg off nadir with its attitude known: the pose's tilt is then the star tracker's,
    so the tilt gate (``max_tilt_deg`` 30, against fits bent into tilt without an attitude) and the confidence's
    tilt term leave it alone (before session 68 every such frame was refused: "implausible tilt 40 deg")."""
    from earthfix.onboard.camera import tilt_rotation
    from earthfix.onboard.confidence import FEATURES, features
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, alt = 22.0, 30.0, 500.0
    r = nadir_attitude(lat, lon, 200.0) @ tilt_rotation(40.0, 250.0)
    pos = geodesy.geodetic_to_ecef(lat, lon, alt)
    bore, hit = geodesy.ray_ellipsoid(pos, r @ cam.centre_ray())
    assert hit
    blat, blon = geodesy.surface_to_geodetic(bore)
    img = appearance(render.render(basemap, cam, pos, r).image, seed=2)
    v = verifier.verify(verifier.extract(img), cam, [(float(blat), float(blon))], attitude=geodesy.quat_from_matrix(r))
    assert v.ok, v.reason
    assert v.tilt_deg > verifier.cfg.max_tilt_deg and abs(v.tilt_deg - 40.0) < 2.0
    assert geodesy.great_circle_km(v.lat, v.lon, blat, blon) < 5.0
    assert geodesy.great_circle_km(v.sub_lat, v.sub_lon, lat, lon) < 5.0 and abs(v.alt_km - alt) < 10
    assert verifier.cfg.nadir_prior_deg > 0 and np.array_equal(v.position_ecef_km, v.ecef_km)  # not drawn to nadir
    assert v.bore_sigma_km <= v.sub_sigma_km < 5.0 and 0 < v.alt_sigma_km < 10.0     # the star tracker's tilt: held
    assert v.evidence["attitude_given"] and features(v.evidence)[FEATURES.index("tilt_10deg")] == 0.0
    # without the attitude the same tilt is a fit's, and counts
    assert features(dict(v.evidence, attitude_given=False))[FEATURES.index("tilt_10deg")] == pytest.approx(
        v.tilt_deg / 10.0)


def test_water_blank_and_noise_give_nothing(verifier, basemap):
    cam = Camera.from_fov(256, 256, 80)
    cand = [(24.0, 12.0), (28.0, 30.0)]
    water = appearance(frame(basemap, cam, 30.0, -40.0, 600.0, 37.0), seed=3)   # mid-Atlantic
    blank = np.full((256, 256, 3), 128, np.uint8)
    noise = np.random.default_rng(4).integers(0, 256, (256, 256, 3)).astype(np.uint8)
    for img in (water, blank, noise):
        v = verifier.verify(verifier.extract(img), cam, cand)
        assert not v.ok and v.inliers < 10


def test_store_roundtrip_bytes_and_truncation(store, tmp_path):
    path = tmp_path / "s.npz"
    store.save(path)
    a = KeypointStore.load(path, mmap=False)
    b = KeypointStore.from_bytes(path.read_bytes())
    for s in (a, b):
        assert len(s) == len(store) and np.array_equal(s.desc, store.desc) and np.array_equal(s.lat, store.lat)
        assert np.array_equal(s.query(24.0, 20.0, 500.0), store.query(24.0, 20.0, 500.0))
    t = store.truncated(32)
    assert t.dim == 32 and np.array_equal(t.desc, np.asarray(store.desc)[:, :32])
    cfg = VerifyConfig(**{"feature": {"max_keypoints": 150}, "alt_range_km": [200, 2000]})
    assert cfg.feature.max_keypoints == 150 and cfg.alt_range_km == (200, 2000)


def test_grid_query_across_antimeridian_and_poles():
    rng = np.random.default_rng(0)
    n = 20000
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    d = 8
    st = KeypointStore.from_unsorted(lat, lon, rng.integers(0, 256, (n, d)), np.ones(n), np.zeros(n, np.int64),
                                     np.zeros(128), np.zeros((d, 128)), np.ones(d), cell_deg=2.0)
    slat, slon = np.asarray(st.lat, float), np.asarray(st.lon, float)
    for qlat, qlon, r in ((10.0, 179.5, 900.0), (-5.0, -179.9, 400.0), (88.0, 30.0, 700.0), (-89.5, -100.0, 300.0),
                          (70.0, 178.0, 1500.0)):
        got = st.query(qlat, qlon, r)
        want = np.flatnonzero(geodesy.great_circle_km(qlat, qlon, slat, slon) <= r)
        assert np.array_equal(got, want), (qlat, qlon, r)


def test_candidates_merge_and_deadline(verifier, basemap):
    import time
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 26.0, 20.0
    f = verifier.extract(appearance(frame(basemap, cam, lat, lon, 600.0, 300.0), seed=5))
    far = geodesy.destination(lat, lon, 0.0, 2000.0)
    near = geodesy.destination(lat, lon, 45.0, 100.0)
    v = verifier.verify(f, cam, [far, (lat, lon), near])
    assert v.ok and v.evidence["groups_total"] == 2 and v.candidate == 1
    v = verifier.verify(f, cam, [far, (lat, lon)], deadline=time.perf_counter())
    assert not v.ok and v.groups_evaluated == 1 and v.evidence["deadline_hit"]


def test_a_candidate_merged_into_a_place_does_not_widen_its_search(verifier):
    """A vote place (469 km circle) and an encoder view 200 km from it (563 km): one search, within the vote
    place's circle; widened to cover both (765 km) the place's few right matches lost the ratio test to the
    hundreds of store keypoints it added (season256 frame 16 of the release)."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 26.0, 20.0
    near = geodesy.destination(lat, lon, 45.0, 200.0)
    far = geodesy.destination(lat, lon, 0.0, 2000.0)
    groups = verifier._groups([(lat, lon, 469.0), (*near, 563.0), (*far, 563.0)], cam)
    assert [(g.members, g.radius_km) for g in groups] == [([0, 1], 469.0), ([2], 563.0)]
    assert (groups[0].lat, groups[0].lon) == (lat, lon)


@pytest.mark.parametrize("own_fits_first", [True, False])
def test_a_place_is_started_only_when_the_slowest_so_far_would_end_before_the_deadline(store, basemap, own_fits_first):
    """A place runs to its end once started, so the deadline admits the next place only if a place as slow
    as the slowest so far would still finish in time (places made 50 ms slow here), and a later look's first
    place only if one as slow as the earlier look's slowest would. A place is its own fit when the rescues
    come after every place's (``own_fits_first``), else its own fit and its rescue."""
    import time
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 26.0, 20.0
    ver = Verifier(store, VerifyConfig(own_fits_first=own_fits_first))
    f = ver.extract(appearance(frame(basemap, cam, lat, lon, 600.0, 300.0), seed=5))
    name = "_own_fit" if own_fits_first else "_verify_group"
    slow = getattr(ver, name)
    setattr(ver, name, lambda *a, **k: (time.sleep(0.05), slow(*a, **k))[1])
    wrong = [geodesy.destination(lat, lon, az, 2500.0) for az in (0.0, 120.0, 240.0)]
    v = ver.verify(f, cam, wrong)
    assert v.groups_evaluated == 3 and not v.evidence["deadline_hit"]
    # 75 ms: the second place would start at ~50 ms, before the deadline, but end at ~100 ms, after it
    v = ver.verify(f, cam, wrong, deadline=time.perf_counter() + 0.075)
    assert v.groups_evaluated == 1 and v.evidence["deadline_hit"]
    assert v.slowest_place_s >= 0.05
    # a later look at the same frame (the Localizer's second look) hands over how slow a place was: with
    # 30 ms left, not even its first place starts; without the hint the first always runs
    v2 = ver.verify(f, cam, wrong, deadline=time.perf_counter() + 0.03, place_s=v.slowest_place_s)
    assert v2.groups_evaluated == 0 and v2.evidence["deadline_hit"] and v2.reason == "deadline"
    v3 = ver.verify(f, cam, wrong, deadline=time.perf_counter() + 0.03)
    assert v3.groups_evaluated == 1


def test_a_clear_pose_ends_the_search_and_a_weaker_one_does_not(store, basemap):
    """A pose of ``early_inliers`` well-spread inliers at the first place ends verification there; below that
    count every later place is verified too, and the answer is the same pose."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 26.0, 20.0
    base = VerifyConfig()
    assert base.early_inliers == 20
    ver = Verifier(store, base)
    img = appearance(frame(basemap, cam, lat, lon, 600.0, 300.0), seed=5).astype(np.float32)
    hazy = np.clip(0.14 * img + 0.86 * 170.0, 0, 255).astype(np.uint8)     # ~25 inliers instead of ~130
    f = ver.extract(hazy)
    places = [(lat, lon)] + [geodesy.destination(lat, lon, az, 2500.0) for az in (0.0, 120.0, 240.0)]
    v = ver.verify(f, cam, places)
    assert v.ok and v.group == 0 and v.spread >= base.early_spread, (v.reason, v.spread)
    assert base.early_inliers <= v.inliers < 40, v.inliers     # the range session 30 stopped early for
    assert v.groups_evaluated == 1
    stricter = Verifier(store, replace(base, early_inliers=v.inliers + 1))
    w = stricter.verify(f, cam, places)
    assert w.ok and w.groups_evaluated == 4 and w.group == 0
    assert (w.lat, w.lon, w.inliers) == (v.lat, v.lon, v.inliers)


@pytest.mark.parametrize("own_fits_first", [True, False])
def test_a_search_resumed_with_more_places_answers_as_one_search_with_them_all(store, basemap, own_fits_first):
    """``resume(v, longer)`` verifies only the places ``v`` had not: its answer (pose, evidence, the candidate
    it names) is that of one ``verify`` with the longer list; a search a clear pose or the deadline ended is
    not resumable and ``resume`` returns it as it was."""
    import time
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 26.0, 20.0
    img = appearance(frame(basemap, cam, lat, lon, 600.0, 300.0), seed=5).astype(np.float32)
    hazy = np.clip(0.14 * img + 0.86 * 170.0, 0, 255).astype(np.uint8)
    far = [geodesy.destination(lat, lon, az, 2500.0) for az in (0.0, 120.0, 240.0)]
    ver = Verifier(store, VerifyConfig())
    f = ver.extract(hazy)
    v = ver.verify(f, cam, [(lat, lon)])
    assert v.ok and v.clear and not v.resumable and ver.resume(v, [(lat, lon)] + far) is v
    open_ = Verifier(store, replace(VerifyConfig(), early_inliers=10 ** 6,     # nothing is ever clear
                                    own_fits_first=own_fits_first))
    key = lambda w: (w.ok, w.lat, w.lon, w.inliers, w.second_inliers, w.groups_evaluated, w.candidate,
                     w.evidence["groups_total"], w.evidence["inlier_margin"])
    verified = []
    name = "_own_fit" if own_fits_first else "_verify_group"     # a place begins there
    slow = getattr(open_, name)
    setattr(open_, name, lambda *a, **k: (verified.append(a[3].lat), slow(*a, **k))[1])
    # (places given first, places resume verifies, groups in all): a repeated place is one group
    for first, new, total in (([], 3, 3), ([far[1]], 2, 3), ([(lat, lon)], 3, 4), ([(lat, lon), far[0]], 2, 4)):
        w = open_.verify(f, cam, first)
        assert w.resumable and not w.clear
        verified.clear()
        r = open_.resume(w, first + far)
        assert len(verified) == new
        one = open_.verify(f, cam, first + far)
        assert key(r) == key(one) and r.groups_evaluated == total
        assert r.ok == ((lat, lon) in first)                   # the far places hold no pose
    # a place as slow as one elsewhere (place_s) would not end before the deadline: no new place starts
    w = open_.verify(f, cam, [(lat, lon)])
    verified.clear()
    r = open_.resume(w, [(lat, lon)] + far, deadline=time.perf_counter() + 0.03, place_s=0.05)
    assert not verified and r.evidence["deadline_hit"] and r.groups_evaluated == 1
    # the deadline ends a search for good
    gone = open_.verify(f, cam, [(lat, lon)] + far, deadline=time.perf_counter() - 1.0, place_s=0.01)
    assert gone.evidence["deadline_hit"] and not gone.resumable


def test_boresight_sigma_grows_when_inliers_bunch_in_a_corner():
    from earthfix.onboard.verify import _fitted_pose_cov, _ground_cov_km, _pose_ground_enu, _sigma_km
    cam = Camera.from_fov(256, 256, 80)
    k = np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]], np.float64)
    # camera 600 km above the ENU origin looking down (camera x east, y south, z down)
    r = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])
    rvec, _ = cv2.Rodrigues(r)
    tvec = -r @ np.array([0.0, 0.0, 600.0])
    rng = np.random.default_rng(0)

    def sigma(u_lo, u_hi, n=12):
        uv = rng.uniform(u_lo, u_hi, (n, 2))
        rays = np.linalg.solve(k, np.c_[uv, np.ones(n)].T).T @ r       # camera rays in ENU
        enu = np.array([0, 0, 600.0]) + rays * (-600.0 / rays[:, 2:3])  # on the ground plane u = 0
        err = np.full(n, 0.5)
        tv = tvec.reshape(3, 1)
        cov = _ground_cov_km(_pose_ground_enu, rvec, tv, _fitted_pose_cov(enu, k, rvec, tv, err, 0.3))
        return _sigma_km(cov, 0, 2)                                     # the boresight's (east, north)

    spread, corner = sigma(10, 246), sigma(200, 246)
    assert spread < 3.0
    assert corner > 5 * spread


def test_the_sub_satellite_offset_is_drawn_toward_nadir_by_as_much_as_the_pose_leaves_its_tilt_unknown():
    """The spacecraft's offset from above the boresight point (here 31 km: 3 deg off nadir at 600 km) is kept
    where many spread inliers pin the tilt, drawn toward nadir where a few bunched ones leave it loose (a
    coarse map's pose), and left as fitted where the pose has no covariance; the boresight point and the
    altitude stay the pose's."""
    from earthfix.onboard.verify import _fitted_pose_cov, _ground_cov_km, _pose_ground_enu, _toward_nadir

    def offsets(n, bunch):
        enu, uv, k, rvec, tvec, _, _ = tilted_view(n=n, bunch=bunch, tilt_deg=3.0)
        err = np.hypot(*(cv2.projectPoints(enu, rvec, tvec, k, None)[0].reshape(-1, 2) - uv).T)
        ground = _pose_ground_enu(np.r_[rvec.ravel(), tvec.ravel()])
        c = np.array([5.0, -3.0, 600.0])                                 # tilted_view's camera centre
        assert np.allclose(np.r_[ground[:2] + ground[2:4], ground[4]], c)
        cov = _ground_cov_km(_pose_ground_enu, rvec, tvec, _fitted_pose_cov(enu, k, rvec, tvec, err, 0.3))[2:4, 2:4]
        s, post = _toward_nadir(ground, cov, 600.0, ((1.0, 2.0),))
        assert s[2] == ground[4]
        assert np.trace(post) < min(np.trace(cov), 2 * (600.0 * np.tan(np.radians(2.0))) ** 2)  # narrower than both
        fitted_pos, none = _toward_nadir(ground, None, 600.0, ((1.0, 2.0),))
        assert np.allclose(fitted_pos, c) and none is None
        flat, same = _toward_nadir(ground, np.zeros((2, 2)), 0.0, ((1.0, 2.0),))         # degenerate: as fitted, no error
        assert np.allclose(flat, c) and np.array_equal(same, np.zeros((2, 2)))
        return np.linalg.norm(ground[2:4]), np.linalg.norm(s[:2] - ground[:2])

    with pytest.raises(ValueError, match="nadir_prior_deg"):
        VerifyConfig(nadir_prior_deg=-1.0)
    fitted, pinned = offsets(40, (10, 246))
    assert fitted == pytest.approx(31.4, abs=0.1)
    assert pinned > 0.99 * fitted
    _, loose = offsets(6, (210, 246))
    assert loose < 0.75 * fitted


def test_a_wide_share_of_the_nadir_prior_leaves_a_tilt_far_beyond_the_narrow_one_nearly_as_fitted():
    """Six bunched inliers, 3 deg and 12 deg off nadir: under the narrow prior alone both offsets are drawn toward
    nadir; with a tenth of the prior 15 deg wide (``nadir_prior_wide_share``) the 3 deg one is drawn as before and
    the 12 deg one (127 km), far beyond what 2 deg explains, is left nearly as fitted."""
    from earthfix.onboard.verify import _fitted_pose_cov, _ground_cov_km, _pose_ground_enu, _toward_nadir
    narrow, mixed = ((1.0, 2.0),), ((0.9, 2.0), (0.1, 15.0))
    drawn = {}
    for tilt_deg in (3.0, 12.0):
        enu, uv, k, rvec, tvec, _, _ = tilted_view(n=6, bunch=(210, 246), tilt_deg=tilt_deg)
        err = np.hypot(*(cv2.projectPoints(enu, rvec, tvec, k, None)[0].reshape(-1, 2) - uv).T)
        ground = _pose_ground_enu(np.r_[rvec.ravel(), tvec.ravel()])
        cov = _ground_cov_km(_pose_ground_enu, rvec, tvec, _fitted_pose_cov(enu, k, rvec, tvec, err, 0.3))[2:4, 2:4]
        drawn[tilt_deg] = [np.linalg.norm(_toward_nadir(ground, cov, 600.0, p)[0][:2] - ground[:2]) /
                           np.linalg.norm(ground[2:4]) for p in (narrow, mixed)]
    assert drawn[3.0][0] < 0.75 and drawn[3.0][1] == pytest.approx(drawn[3.0][0], abs=0.02)
    assert drawn[12.0][0] < 0.9 and drawn[12.0][1] > 0.98
    with pytest.raises(ValueError, match="nadir_prior_wide_share"):
        VerifyConfig(nadir_prior_wide_share=1.0)


def test_the_tilt_priors_analytic_jacobian_is_its_residuals_derivative():
    from earthfix.onboard.verify import _tilt_prior_residuals
    enu, uv, k, rvec, tvec, basis, origin = tilted_view()
    resid = _tilt_prior_residuals(enu, uv, k, basis, origin, 0.5, 5.0)
    p = np.r_[rvec.ravel(), tvec.ravel()] + np.r_[0.01, -0.02, 0.015, 2.0, -1.0, 3.0]
    r, jac = resid(p, True)
    assert np.array_equal(r, resid(p))
    num = np.empty_like(jac)
    for j, h in enumerate([1e-7] * 3 + [1e-4] * 3):           # central differences
        q1, q0 = p.copy(), p.copy()
        q1[j] += h
        q0[j] -= h
        num[:, j] = (resid(q1) - resid(q0)) / (2 * h)
    scale = np.abs(num).max(axis=0)
    assert np.all(np.abs(jac - num).max(axis=0) <= 1e-4 * scale)
    assert np.abs(jac[-3:]).max() > 0                             # the prior moves with the pose


def test_the_tilt_prior_refit_reaches_the_finite_difference_fits_pose():
    from earthfix.onboard.verify import _refine_with_tilt_prior, _tilt_prior_residuals
    for seed, bunch in [(0, (10, 246)), (1, (150, 246)), (2, (200, 246))]:   # spread, then bunched
        enu, uv, k, rvec, tvec, basis, origin = tilted_view(bunch=bunch, seed=seed)
        resid = _tilt_prior_residuals(enu, uv, k, basis, origin, 0.5, 5.0)
        start = np.r_[rvec.ravel(), tvec.ravel()] + np.r_[0.003, -0.002, 0.001, 1.0, -0.5, 2.0]
        rv, tv = _refine_with_tilt_prior(enu, uv, k, start[:3].reshape(3, 1), start[3:].reshape(3, 1),
                                         basis, origin, 0.5, 5.0, iters=50)
        got = np.r_[rv.ravel(), tv.ravel()]
        # the reference: Gauss-Newton with forward differences, the refit's method until session 34
        p = start.copy()
        for _ in range(50):
            r = resid(p)
            jac = np.stack([(resid(p + np.eye(6)[j] * h) - r) / h
                            for j, h in enumerate([1e-6] * 3 + [1e-4] * 3)], axis=1)
            p = p - np.linalg.lstsq(jac, r, rcond=None)[0]
        cost = lambda q: float(resid(q) @ resid(q))
        assert cost(got) <= cost(p) * (1 + 1e-6) + 1e-9
        assert cost(got) < cost(start)
        # the same pose: boresight ground point within metres
        assert np.abs(got[3:] - p[3:]).max() < 0.05 and np.abs(got[:3] - p[:3]).max() < 1e-4


def test_a_pose_carries_its_inliers_frame_pixels_and_ground(store, basemap):
    """The evidence names each inlier (frame pixel, store keypoint's ground): what a wrong pose is studied from
    on the ground (tests/bench/bench_pose_residuals.py). Through the true pose each ground point lands on its
    pixel."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, alt_km, yaw_deg = 24.0, 12.0, 600.0, 37.0
    v = Verifier(store, VerifyConfig())
    out = v.verify(v.extract(appearance(frame(basemap, cam, lat, lon, alt_km, yaw_deg), seed=5)), cam, [(lat, lon)])
    assert out.ok, out.reason
    px, ll = np.asarray(out.evidence["inlier_px"]), np.asarray(out.evidence["inlier_latlon"])
    assert px.shape == ll.shape == (out.inliers, 2)
    pos = geodesy.geodetic_to_ecef(lat, lon, alt_km)
    u, w = cam.project((geodesy.geodetic_to_ecef(ll[:, 0], ll[:, 1], 0.0) - pos) @ nadir_attitude(lat, lon, yaw_deg))
    assert np.median(np.hypot(u - px[:, 0], w - px[:, 1])) < 2.0


def test_imprecise_pose_is_refused(store, basemap):
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 24.0, 12.0
    img = appearance(frame(basemap, cam, lat, lon, 600.0, 37.0), seed=5)
    corner = np.zeros_like(img)
    corner[:80, :80] = img[:80, :80]                    # only one corner of ground is seen
    v = Verifier(store, VerifyConfig())
    full = v.verify(v.extract(img), cam, [(lat, lon)])
    part = Verifier(store, VerifyConfig(max_bore_sigma_km=1e6))
    few = part.verify(part.extract(corner), cam, [(lat, lon)])
    assert full.ok and few.ok, (full.reason, few.reason)
    assert full.evidence["bore_sigma_km"] < 2.0
    assert few.bore_sigma_km > 2 * full.bore_sigma_km
    gate = (full.bore_sigma_km + few.bore_sigma_km) / 2
    strict = Verifier(store, VerifyConfig(max_bore_sigma_km=gate))
    out = strict.verify(strict.extract(corner), cam, [(lat, lon)])
    assert not out.ok and out.reason.startswith("imprecise pose")


def _lever_scene(far_uv):
    """Fifteen pixels bunched in a 256 px / 80 deg frame's corner and ``far_uv`` far from them, their ground points
    (local plane, nadir, north-up, 480 km), 0.3 px of noise on the pixels: (k, basis, origin, rvec, tvec, enu,
    uv_obs). The lever tests' scene."""
    cam = Camera.from_fov(256, 256, 80)
    k = np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1.0]])
    lat, lon = 26.0, 20.0
    r_w2c = np.diag([1.0, -1.0, -1.0])                      # nadir, north-up: ENU -> camera
    rvec, _ = cv2.Rodrigues(r_w2c)
    tvec = (-r_w2c @ np.array([0.0, 0.0, 480.0])).reshape(3, 1)
    rng = np.random.default_rng(3)
    uv = np.r_[rng.uniform([16, 170], [86, 246], (15, 2)), np.asarray(far_uv, float)]
    rays = np.c_[(uv - [cam.cx, cam.cy]) / [cam.fx, cam.fy], np.ones(len(uv))] @ r_w2c   # ENU directions
    c = np.array([0.0, 0.0, 480.0])
    enu = c + rays * (-c[2] / rays[:, 2:3])
    return (k, geodesy.enu_basis(lat, lon), geodesy.geodetic_to_ecef(lat, lon, 0.0), rvec, tvec, enu,
            uv + rng.normal(0, 0.3, uv.shape))


def _judged(store, cfg, scene, uv_):
    """(held, Verification with lever and sigma, reprojection errors) of the pose fitted to ``scene`` with the
    pixels ``uv_``."""
    from earthfix.onboard import verify as V
    k, basis, origin, rvec, tvec, enu, _ = scene
    ver = Verifier(store, cfg)
    pose = ver._pose(enu, uv_, k, None, basis, origin, rvec, tvec)
    err = np.hypot(*(cv2.projectPoints(enu, *pose, k, None)[0].reshape(-1, 2) - uv_).T)
    out = V.Verification()
    cov = V._ground_cov_km(V._pose_ground_enu, *pose, V._fitted_pose_cov(enu, k, *pose, err, 0.15))
    out.bore_sigma_km = V._sigma_km(cov, 0, 2)
    return ver._held_by_one(out, enu, uv_, k, None, basis, origin, *pose, 1.0), out, err


def test_one_wrong_far_match_cannot_hold_a_pose(store):
    """Fifteen right matches bunched in a corner and one wrong match far from them: the pose bends around the
    wrong one (scale and tilt) and its reprojection noise model, which trusts every inlier, still calls it
    precise. Leaving the far match out moves the boresight far and the others' pose misses it: refused. With
    the far match right, leaving it out moves the boresight little: kept, unless the move exceeds
    ``max_lever_km`` (a fix that one match moves that far rests on it, whatever the others' pose says)."""
    import math
    scene = _lever_scene([[204.0, 104.0]])
    uv_obs = scene[-1]
    held, out, _ = _judged(store, VerifyConfig(), scene, uv_obs)
    assert not held and out.lever_km < 3.0 and math.isfinite(out.bore_sigma_km)
    assert out.lever_km > 0.1
    held, _, _ = _judged(store, VerifyConfig(max_lever_km=0.1), scene, uv_obs)
    assert held                                             # the same right match, a move over the cap
    wrong = uv_obs.copy()
    wrong[-1] += [20.0, -18.0]                              # the far match now points 27 px off
    held, out, err = _judged(store, VerifyConfig(), scene, wrong)
    assert err.max() < 4.0                                  # the bent pose still takes it as an inlier...
    assert held and out.lever_km > 8.0                      # ...but without it the boresight moves far, and
                                                            # the others' pose misses it


def test_two_neighbouring_wrong_far_matches_cannot_hold_a_pose(store):
    """Two neighbouring frame keypoints paired with the same wrong neighbouring feature agree with each other:
    leaving either out alone moves the bent pose little (the other still holds it), so the one-match lever
    passes it. Left out together (``lever_group_work_px``), the others' pose misses both: refused. Two right
    neighbouring far matches are kept (session 58: such a pair held a pose 53.6 km off at p 0.997)."""
    scene = _lever_scene([[204.0, 104.0], [208.0, 101.0]])
    uv_obs = scene[-1]
    assert VerifyConfig().lever_group_work_px >= 5.0        # on in flight: the pair is 5 px apart
    held, out, _ = _judged(store, VerifyConfig(), scene, uv_obs)
    assert not held and out.group_lever_km > 0.0            # right pair: tried, kept
    wrong = uv_obs.copy()
    wrong[-2:] += [20.0, -18.0]                             # both point 27 px off, the same way
    held, out, err = _judged(store, VerifyConfig(lever_group_work_px=0.0), scene, wrong)
    assert err.max() < 4.0 and not held                     # the bent pose takes both; one at a time, each
    assert out.lever_km < VerifyConfig().max_bore_sigma_km  # moves it too little to be looked at
    held, out, _ = _judged(store, VerifyConfig(), scene, wrong)
    assert held and out.group_held == 2 and out.group_lever_km > 8.0


def test_one_inlier_per_frame_position_and_per_ground_point():
    """SIFT gives a blob several orientations at one position and each can match: the inlier count (and so
    the inlier floor and the boresight's sigma) keeps one match per frame position and per ground point,
    the one that fits best."""
    from earthfix.onboard.verify import _distinct
    uv = np.array([[10.0, 20.0], [10.2, 20.1], [50.0, 60.0], [70.0, 80.0], [90.0, 10.0], [30.0, 30.0]])
    enu = np.array([[1.0, 2.0, 0.0], [1.5, 2.0, 0.0], [3.0, 4.0, 0.0], [3.0, 4.0, 0.0], [5.0, 6.0, 0.0],
                    [7.0, 8.0, 0.0]])
    err = np.array([0.9, 0.4, 0.5, 1.1, 0.3, 0.2])
    mask = np.array([True, True, True, True, True, False])
    kept = _distinct(mask, uv, enu, err)
    # 0 and 1: one frame position (0.2 px apart), 1 fits better; 2 and 3: one ground point, 2 fits better;
    # 5 was not an inlier
    assert kept.tolist() == [False, True, True, False, True, False]
    assert _distinct(mask & False, uv, enu, err).sum() == 0


def test_a_wide_cameras_filled_look_can_be_capped_but_never_below_the_plain_look():
    """cloud_fill_config: the store's sample; with fill_max_work_px > 0 at most that, at least the plain look."""
    from earthfix.onboard.camera import Camera
    from earthfix.onboard.verify import VerifyConfig, cloud_fill_config

    def side(cam, cfg):
        return cfg.feature.work_scale * max(cam.width, cam.height)

    base = VerifyConfig()
    eval_cam, wide = Camera.from_fov(256, 256, 80), Camera.from_fov(256, 256, 100)
    assert side(eval_cam, cloud_fill_config(base, eval_cam)) == pytest.approx(167.8, abs=0.1)
    assert side(wide, cloud_fill_config(base, wide)) == pytest.approx(238.4, abs=0.2)      # default: no cap
    capped_cfg = replace(base, fill_max_work_px=168.0)
    assert side(eval_cam, cloud_fill_config(capped_cfg, eval_cam)) == pytest.approx(167.8, abs=0.1)   # under it
    capped = cloud_fill_config(capped_cfg, wide)
    assert side(wide, capped) == pytest.approx(168.0)
    # pixel tolerances keep their ground size at the capped sample
    assert capped.ransac_thresh_work_px == pytest.approx(base.ransac_thresh_work_px * 168.0 / 128.0)
    assert side(wide, cloud_fill_config(replace(base, fill_max_work_px=64.0), wide)) == pytest.approx(128.0)


def test_the_filled_look_keeps_the_fainter_blobs_of_hazy_ground(basemap):
    """cloud_fill_config lowers SIFT's contrast threshold (fill_contrast_threshold, 0.01 against the plain
    look's 0.02): a frame under a 70 % haze keeps more keypoints in its filled look; 0 keeps the plain one's."""
    from earthfix.onboard.verify import cloud_fill_config
    cam = Camera.from_fov(256, 256, 80)
    img = frame(basemap, cam, 26.0, 20.0, 600.0, 30.0).astype(np.float32)
    hazy = np.clip(0.3 * img + 0.7 * 170.0, 0, 255).astype(np.uint8)
    base = VerifyConfig()
    assert base.feature.contrast_threshold == 0.02
    low = cloud_fill_config(base, cam)
    same = cloud_fill_config(replace(base, fill_contrast_threshold=0.0), cam)
    assert low.feature.contrast_threshold == 0.01 and same.feature.contrast_threshold == 0.02
    assert low.feature.work_scale == same.feature.work_scale
    n_low = len(extract_features(hazy, low.feature))
    n_same = len(extract_features(hazy, same.feature))
    assert n_low > 1.2 * n_same, (n_low, n_same)


def test_a_pose_tilted_beyond_the_gate_is_refused(store, basemap):
    # a frame 12 deg off nadir verifies under the default gate (30 deg) and is refused under a 6 deg one:
    # poses bent into tilt by bunched matches are what the gate keeps out (docs/VERIFICATION.md)
    from earthfix.onboard.camera import tilt_rotation
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 24.0, 12.0
    pos = geodesy.geodetic_to_ecef(lat, lon, 600.0)
    img = render.render(basemap, cam, pos, nadir_attitude(lat, lon, 37.0) @ tilt_rotation(12.0, 60.0)).image
    v = Verifier(store, VerifyConfig())
    assert VerifyConfig().max_tilt_deg == 30.0
    ok = v.verify(v.extract(img), cam, [(lat, lon, 600.0)])
    assert ok.ok and 9.0 < ok.tilt_deg < 15.0, (ok.reason, ok.tilt_deg)
    strict = Verifier(store, VerifyConfig(max_tilt_deg=6.0))
    out = strict.verify(strict.extract(img), cam, [(lat, lon, 600.0)])
    assert not out.ok and out.reason.startswith("implausible tilt")


def test_an_imprecise_pose_is_matched_again_where_it_puts_the_keypoints(store, basemap, monkeypatch):
    """Matches only in one corner (as broken cloud leaves them) fit a pose too loosely pinned to trust; matched
    again where that pose puts the store keypoints, the whole frame holds a precise pose."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 24.0, 12.0
    img = appearance(frame(basemap, cam, lat, lon, 600.0, 37.0), seed=5)
    f = Verifier(store, VerifyConfig()).extract(img)
    full = Verifier(store, VerifyConfig()).verify(f, cam, [(lat, lon)])
    whole = Verifier._match

    def corner_only(self, qdesc, sdesc):
        qi, si = whole(self, qdesc, sdesc)
        keep = (f.xy[qi, 0] < 90) & (f.xy[qi, 1] < 90)
        return qi[keep], si[keep]

    monkeypatch.setattr(Verifier, "_match", corner_only)
    loose = Verifier(store, VerifyConfig(max_bore_sigma_km=1e6, guided_work_px=0.0)).verify(f, cam, [(lat, lon)])
    assert full.ok and loose.ok and loose.bore_sigma_km > 2 * full.bore_sigma_km, (loose.reason, loose.bore_sigma_km)
    gate = (full.bore_sigma_km + loose.bore_sigma_km) / 2
    plain = Verifier(store, VerifyConfig(max_bore_sigma_km=gate, guided_work_px=0.0)).verify(f, cam, [(lat, lon)])
    assert not plain.ok and plain.reason.startswith("imprecise pose") and not plain.guided
    cfg = VerifyConfig(max_bore_sigma_km=gate, guided_above_sigma_km=gate, guided_max_sigma_km=2 * loose.bore_sigma_km)
    assert cfg.guided_work_px > 0                       # on in flight
    again = Verifier(store, cfg).verify(f, cam, [(lat, lon)])
    assert again.ok and again.guided and again.evidence["guided"], again.reason
    assert again.inliers > 2 * loose.inliers and again.bore_sigma_km < gate
    assert geodesy.great_circle_km(again.lat, again.lon, lat, lon) < 5.0
    # a first pose pinned worse than guided_max_sigma_km is not matched again, nor is a guided pose kept
    # beyond guided_max_tilt_deg
    for kw in ({"guided_max_sigma_km": gate}, {"guided_max_tilt_deg": 0.0}):
        cfg = VerifyConfig(max_bore_sigma_km=gate, guided_above_sigma_km=gate, **kw)
        assert not Verifier(store, cfg).verify(f, cam, [(lat, lon)]).ok
    # the guided pass starts only with guided_budget_ms left before the deadline (a place, once started, runs
    # to its end): 10 s left, it runs; less than the budget left, the place ends on its first pose
    import time
    cfg = VerifyConfig(max_bore_sigma_km=gate, guided_above_sigma_km=gate, guided_max_sigma_km=2 * loose.bore_sigma_km)
    assert cfg.guided_budget_ms > 0
    assert Verifier(store, cfg).verify(f, cam, [(lat, lon)], deadline=time.perf_counter() + 10.0).guided
    late = Verifier(store, cfg).verify(f, cam, [(lat, lon)], deadline=time.perf_counter() + cfg.guided_budget_ms / 2e3)
    assert not late.ok and not late.guided and late.reason.startswith("imprecise pose")
    # each round after the first starts only when the longest round so far still ends before the deadline:
    # rounds made to last 0.3 s, 0.5 s left, the second round is left out (and said so); not with the
    # admission off, nor without a deadline
    real = Verifier._guided
    rounds = []

    def slow_round(self, *a, **k):
        rounds.append(1)
        time.sleep(0.3)
        return real(self, *a, **k)

    monkeypatch.setattr(Verifier, "_guided", slow_round)
    for admission, deadline_s, n_rounds, cut in ((True, 0.5, 1, True), (False, 0.5, 2, False), (True, None, 2, False)):
        rounds.clear()
        cfg = VerifyConfig(max_bore_sigma_km=gate, guided_above_sigma_km=gate,
                           guided_max_sigma_km=2 * loose.bore_sigma_km, guided_round_admission=admission)
        got = Verifier(store, cfg).verify(f, cam, [(lat, lon)], deadline=None if deadline_s is None
                                          else time.perf_counter() + deadline_s)
        assert len(rounds) == n_rounds and got.evidence["guided_cut"] is cut, (admission, deadline_s, len(rounds))


def test_matching_again_at_a_wrong_place_finds_no_pose(store, basemap):
    """The guided pass only looks where a pose says: at a place the frame does not show, the keypoints it
    pairs up are chance and no pose passes the checks."""
    from earthfix.onboard.verify import Verification, _Group
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 24.0, 12.0
    v = Verifier(store, VerifyConfig())
    f = v.extract(appearance(frame(basemap, cam, lat, lon, 600.0, 37.0), seed=6))
    qdesc = store.project(f.desc)
    wscale = v.work_scale((cam.height, cam.width))

    def guided(clat, clon, hyp):
        idx = store.query(clat, clon, 900.0)
        ground = geodesy.geodetic_to_ecef(store.lat[idx].astype(float), store.lon[idx].astype(float), 0.0)
        return v._guided(f, qdesc, cam, _Group(clat, clon, 900.0, [0]), idx, store.decode(idx), ground, hyp, None,
                         wscale, True)

    for wlat, wlon in ((27.0, 20.0), (18.0, 30.0), (30.0, 2.0)):
        hyp = Verification(ecef_km=geodesy.geodetic_to_ecef(wlat, wlon, 600.0),
                           r_cam2ecef=nadir_attitude(wlat, wlon, 37.0), yaw_deg=37.0)
        out = guided(wlat, wlon, hyp)
        assert out is None or not out.ok, (wlat, wlon, out.inliers)
    # the same pass at the true place finds it
    hyp = Verification(ecef_km=geodesy.geodetic_to_ecef(lat + 0.05, lon, 600.0),
                       r_cam2ecef=nadir_attitude(lat + 0.05, lon, 38.0), yaw_deg=38.0)
    out = guided(lat, lon, hyp)
    assert out is not None and out.ok and geodesy.great_circle_km(out.lat, out.lon, lat, lon) < 5.0


def test_pairs_within_a_radius_are_all_found():
    from earthfix.onboard.verify import pairs_within
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-20, 276, (150, 2)), rng.uniform(-20, 276, (900, 2))
    i, j = pairs_within(a, b, 9.0)
    d = np.hypot(*(a[:, None] - b[None]).transpose(2, 0, 1))
    assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(*map(list, np.nonzero(d < 9.0))))
    assert len(pairs_within(a[:0], b, 9.0)[0]) == 0


def test_guided_ratio_matches_are_the_same_by_pairs_and_by_the_dense_matrix(monkeypatch):
    """Guided matching takes the pairs within reach when they are few and a dense frame x store matrix when a
    wide reach covers much of the store: the same matches either way, and the slow reference below (each
    frame keypoint's two closest in descriptor among the store keypoints within reach) agrees with both."""
    from earthfix.onboard import verify as V
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 256, (200, 2)).astype(np.float32)
    uv = rng.uniform(-40, 296, (1500, 2))
    q = rng.normal(size=(200, 32)).astype(np.float32)
    s = rng.normal(size=(1500, 32)).astype(np.float32)
    s[:200] = q + rng.normal(0, 0.3, (200, 32)).astype(np.float32)    # true partners...
    uv[:200] = xy + rng.normal(0, 2.0, (200, 2))                     # ...where a pose puts them
    for reach, win in ((18.0, 6.0), (48.0, 24.0)):
        want = []
        for i in range(len(xy)):
            j = np.flatnonzero(np.hypot(*(uv - xy[i]).T) < reach)
            if len(j) < 2:
                continue
            d = np.linalg.norm(s[j] - q[i], axis=1)
            o = np.argsort(d)
            if np.hypot(*(uv[j[o[0]]] - xy[i])) < win and d[o[0]] < 0.9 * d[o[1]]:
                want.append((i, int(j[o[0]])))
        got = {}
        for share in (1.0, 0.0):                                        # pairs always / the matrix always
            monkeypatch.setattr(V, "DENSE_REACH_SHARE", share)
            qi, sj, dist = V.ratio_matches_within(xy, uv, q, s, win, reach, 0.9)
            got[share] = list(zip(qi.tolist(), sj.tolist()))
            assert np.allclose(dist, np.linalg.norm(q[qi] - s[sj], axis=1), atol=1e-4)
        assert got[1.0] == got[0.0] == want and len(want) > 50, (reach, len(want))
    assert V.ratio_matches_within(xy, uv, q, s, 6.0, 18.0, 0.9, min_pairs=10 ** 6) is None


def test_a_guided_pose_never_outranks_one_the_places_own_matches_hold(store, monkeypatch):
    from earthfix.onboard.features import Features
    from earthfix.onboard.verify import Verification
    cam = Camera.from_fov(256, 256, 80)
    made = iter([Verification(ok=True, inliers=20, guided=True, lat=24.0, lon=12.0),
                 Verification(ok=True, inliers=8, lat=27.0, lon=20.0),
                 Verification(ok=False, inliers=30, reason="imprecise pose")])
    monkeypatch.setattr(Verifier, "_own_fit", lambda self, *a, **k: (next(made), None))
    n = 50
    f = Features(np.random.default_rng(0).uniform(0, 255, (n, 2)).astype(np.float32),
                 np.ones((n, 128), np.float32), np.full(n, 4, np.float32), np.zeros(n, np.float32),
                 np.zeros(n, np.float32), (256, 256))
    v = Verifier(store, VerifyConfig()).verify(f, cam, [(24.0, 12.0), (27.0, 20.0), (18.0, 30.0)])
    assert v.ok and not v.guided and v.inliers == 8 and v.group == 1


def test_a_vote_places_own_pose_holds_a_place_its_matches_cannot(store, basemap, monkeypatch):
    """A place whose ratio-test matches are too few for any pose, but which comes with its own rough nadir pose
    (a vote peak: centre, yaw, implied altitude), is matched where that pose puts the store keypoints and
    holds a precise pose; without the prior, or with the pass off, it stays unfixed; at places the frame does
    not show, the same prior finds no pose."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, yaw = 24.0, 12.0, 37.0
    img = appearance(frame(basemap, cam, lat, lon, 600.0, yaw), seed=5)
    f = Verifier(store, VerifyConfig()).extract(img)
    whole = Verifier._match

    def five_only(self, qdesc, sdesc):           # as broken cloud leaves a right place: a handful of matches
        qi, si = whole(self, qdesc, sdesc)
        return qi[:5], si[:5]

    monkeypatch.setattr(Verifier, "_match", five_only)
    cfg = VerifyConfig()
    assert cfg.prior_work_px > 0                                    # on in flight
    # the vote's pose is rough: centre ~10 km off, yaw 8 deg, altitude 15 %
    plat, plon = geodesy.destination(lat, lon, 120.0, 10.0)
    place = (float(plat), float(plon), 500.0, yaw + 8.0, 600.0 * 1.15)
    v = Verifier(store, cfg).verify(f, cam, [place])
    assert v.ok and v.guided and v.from_prior and v.evidence["from_prior"], v.reason
    assert geodesy.great_circle_km(v.lat, v.lon, lat, lon) < 5.0 and abs(v.alt_km - 600.0) < 30.0
    for verifier, p in ((Verifier(store, VerifyConfig(prior_work_px=0.0)), place), (Verifier(store, cfg), place[:3])):
        off = verifier.verify(f, cam, [p])
        assert not off.ok and off.reason.startswith("few matches"), off.reason
    for wlat, wlon in ((27.0, 20.0), (18.0, 30.0), (30.0, 2.0)):
        wrong = Verifier(store, cfg).verify(f, cam, [(wlat, wlon, 500.0, yaw, 600.0)])
        assert not wrong.ok, (wlat, wlon, wrong.inliers)


def test_every_places_own_fit_comes_before_any_rescue(store, basemap, monkeypatch):
    """With ``own_fits_first`` (flight) a search fits each place on its own matches before it rescues any: a
    wrong first place bound for its prior's rescue (8-50 ms in flight) no longer keeps waiting a right second
    place that its own matches fix clearly; place by place, the wrong place's rescue runs first. Both give the
    same answer, and where no pose is clear both verify every place and every rescue, alike."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, yaw = 24.0, 12.0, 37.0
    f = Verifier(store, VerifyConfig()).extract(appearance(frame(basemap, cam, lat, lon, 600.0, yaw), seed=5))
    places = [(18.0, 30.0, 500.0, yaw, 600.0), (lat, lon, 500.0, yaw + 8.0, 600.0)]    # vote places: own priors
    rescued = []
    real = Verifier._rescue
    monkeypatch.setattr(Verifier, "_rescue", lambda self, *a, **k: (rescued.append(a[3].lat), real(self, *a, **k))[1])
    key = lambda v: (v.ok, v.group, v.lat, v.lon, v.inliers, v.yaw_deg, v.second_inliers, v.groups_evaluated)
    for early, want_rescued in ((20, {True: [], False: [18.0]}), (10 ** 6, {True: [18.0], False: [18.0]})):
        answers = {}
        for first in (True, False):
            rescued.clear()
            v = Verifier(store, VerifyConfig(own_fits_first=first, early_inliers=early)).verify(f, cam, places)
            assert v.ok and v.group == 1 and not v.guided and v.clear == (early == 20), (first, early, v.reason)
            assert geodesy.great_circle_km(v.lat, v.lon, lat, lon) < 5.0
            assert rescued == want_rescued[first], (first, early, rescued)
            answers[first] = key(v)
        assert answers[True] == answers[False]
    # a rescue starts only with guided_budget_ms (20) left: with 15 ms the own fits answer and the search has ended
    import time
    rescued.clear()
    v = Verifier(store, VerifyConfig(early_inliers=10 ** 6)).verify(f, cam, places, deadline=time.perf_counter() + 0.015)
    assert rescued == [] and v.evidence["deadline_hit"] and not v.resumable


def test_a_pose_whose_altitude_disagrees_with_its_vote_places_is_refused(store, basemap):
    """A vote place comes with the altitude its keypoints' scale implies: a pose of few inliers fitted there at
    an altitude more than ``max_prior_alt_log`` (|ln ratio|) from it is a bent fit and refused; within it, with
    the check off, at a place without its own pose, or for a pose of ``prior_alt_below_inliers`` or more, the same
    frame's right pose stands."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, yaw = 24.0, 12.0, 37.0
    img = appearance(frame(basemap, cam, lat, lon, 600.0, yaw), seed=5)
    cfg = VerifyConfig()
    assert 0 < cfg.max_prior_alt_log < math.log(1.5) and cfg.prior_alt_below_inliers > cfg.min_inliers   # on
    f = Verifier(store, cfg).extract(img)
    every = VerifyConfig(prior_alt_below_inliers=10 ** 6)            # this frame's pose counted as a few-match one
    for alt_prior in (600.0, 600.0 * 1.2, 600.0 / 1.2):
        v = Verifier(store, every).verify(f, cam, [(lat, lon, 500.0, yaw, alt_prior)])
        assert v.ok and abs(v.alt_km - 600.0) < 30.0, (alt_prior, v.reason)
    for alt_prior in (900.0, 380.0):
        v = Verifier(store, every).verify(f, cam, [(lat, lon, 500.0, yaw, alt_prior)])
        assert not v.ok and v.reason.startswith("altitude ") and f"its place's {alt_prior:.0f} km" in v.reason, v.reason
    held = Verifier(store, cfg).verify(f, cam, [(lat, lon, 500.0, yaw, 900.0)])
    assert held.ok and held.inliers >= cfg.prior_alt_below_inliers        # a well-held pose outranks the vote
    for verifier, place in ((Verifier(store, replace(every, max_prior_alt_log=0.0)), (lat, lon, 500.0, yaw, 900.0)),
                            (Verifier(store, every), (lat, lon, 500.0))):
        assert verifier.verify(f, cam, [place]).ok


def test_a_first_pose_that_rests_on_one_match_is_not_matched_again(store, basemap, monkeypatch):
    """A first pose refused because leaving one match out moves its boresight more than ``max_lever_km`` may be
    anywhere: the guided pass does not start from it (``guided_max_lever_km``), though from the same pose it
    would find the place."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon = 24.0, 12.0
    img = appearance(frame(basemap, cam, lat, lon, 600.0, 37.0), seed=5)
    f = Verifier(store, VerifyConfig()).extract(img)
    real = Verifier._held_by_one
    calls = []

    def first_rests_on_one(self, out, *a, **k):
        calls.append(1)
        if len(calls) == 1:                       # the place's first pose: one match moves it 124 km
            out.lever_km = 124.0
            return True
        return real(self, out, *a, **k)

    monkeypatch.setattr(Verifier, "_held_by_one", first_rests_on_one)
    cfg = VerifyConfig()
    assert cfg.guided_max_lever_km < 124.0 and cfg.guided_work_px > 0      # on in flight
    v = Verifier(store, cfg).verify(f, cam, [(lat, lon)])
    assert not v.ok and not v.guided and v.reason.startswith("pose held by one match"), v.reason
    calls.clear()
    again = Verifier(store, VerifyConfig(guided_max_lever_km=float("inf"))).verify(f, cam, [(lat, lon)])
    assert again.ok and again.guided, again.reason
    assert geodesy.great_circle_km(again.lat, again.lon, lat, lon) < 5.0


def test_a_pose_from_a_higher_orbit_counts_nothing_against_its_altitude_within_low_earth_orbit(verifier, basemap):
    """Low Earth orbit reaches 2,000 km: a pose from 1,500 km lies inside the default plausible band, so the
    confidence counts nothing against its altitude; under the band of before session 68 (300-1,000 km) the same
    right pose of 20 inliers was refused by that term alone (docs/VERIFICATION.md, "Higher orbits")."""
    from earthfix.onboard.confidence import ConfidenceModel
    from support import MODELS
    cam = Camera.from_fov(512, 512, 60)
    lat, lon, alt_km = 24.0, 20.0, 1500.0
    f = verifier.extract(appearance(frame(basemap, cam, lat, lon, alt_km, 37.0)))
    f = f.subset(np.arange(60))      # the 60 strongest keypoints: a frame with little clear ground
    place = [(lat + 0.5, lon - 0.5)]
    v = verifier.verify(f, cam, place)
    assert v.ok, v.reason
    assert geodesy.great_circle_km(v.lat, v.lon, lat, lon) < 8.0 and abs(v.alt_km - alt_km) < 40.0
    assert verifier.cfg.alt_plausible_km == (300.0, 2000.0) and v.evidence["alt_out_of_range_km"] == 0.0
    old = Verifier(verifier.store, replace(verifier.cfg, alt_plausible_km=(300.0, 1000.0))).verify(f, cam, place)
    assert old.ok and old.evidence["alt_out_of_range_km"] == pytest.approx(old.alt_km - 1000.0)
    conf = ConfidenceModel.load(MODELS / "confidence.json")
    assert conf(v.evidence) >= 0.9 > conf(old.evidence)


def test_a_place_with_a_precision_gate_of_its_own_refuses_a_pose_pinned_worse_than_it(store, basemap):
    """A candidate ``(lat, lon, radius, yaw, alt, max_sigma_km)`` (a vote place from split bins,
    ``vote_split_max_sigma_km``) holds its pose to that gate as well as the verifier's: a pose pinned worse than
    it is refused as imprecise, and the same pose passes a looser gate unchanged."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, yaw = 24.0, 12.0, 37.0
    img = appearance(frame(basemap, cam, lat, lon, 600.0, yaw), seed=5)
    ver = Verifier(store, VerifyConfig())
    f = ver.extract(img)
    place = (lat, lon, 500.0, yaw, 600.0)
    v = ver.verify(f, cam, [place])
    assert v.ok and 0.0 < v.bore_sigma_km < ver.cfg.max_bore_sigma_km, v.reason
    tight = ver.verify(f, cam, [place + (0.5 * v.bore_sigma_km,)])
    assert not tight.ok and tight.reason.startswith("imprecise pose"), tight.reason
    loose = ver.verify(f, cam, [place + (2.0 * v.bore_sigma_km,)])
    assert loose.ok and (loose.lat, loose.lon, loose.inliers) == (v.lat, v.lon, v.inliers)


def test_a_pose_matched_from_a_places_prior_is_held_to_its_own_precision_gate(store, basemap, monkeypatch):
    """``prior_max_sigma_km``: a pose whose matches were sought where a vote place's prior put them (``from_prior``)
    is a fix only when pinned within it (else the place ends as its own matches left it); the place's own
    matches' poses are not held to it."""
    cam = Camera.from_fov(256, 256, 80)
    lat, lon, yaw = 24.0, 12.0, 37.0
    img = appearance(frame(basemap, cam, lat, lon, 600.0, yaw), seed=5)
    f = Verifier(store, VerifyConfig()).extract(img)
    plat, plon = geodesy.destination(lat, lon, 120.0, 10.0)
    place = (float(plat), float(plon), 500.0, yaw + 8.0, 600.0 * 1.15)
    whole = Verifier._match
    own = Verifier(store, VerifyConfig(prior_max_sigma_km=0.01)).verify(f, cam, [place])
    assert own.ok and not own.from_prior                         # its own matches: the gate does not apply

    def five_only(self, qdesc, sdesc):
        qi, si = whole(self, qdesc, sdesc)
        return qi[:5], si[:5]

    monkeypatch.setattr(Verifier, "_match", five_only)
    assert VerifyConfig.prior_max_sigma_km == 7.0
    v = Verifier(store, VerifyConfig(prior_max_sigma_km=float("inf"))).verify(f, cam, [place])
    assert v.ok and v.from_prior, v.reason
    tight = Verifier(store, VerifyConfig(prior_max_sigma_km=0.5 * v.bore_sigma_km)).verify(f, cam, [place])
    assert not tight.ok and not tight.from_prior and tight.reason.startswith("few matches"), tight.reason
    loose = Verifier(store, VerifyConfig(prior_max_sigma_km=2.0 * v.bore_sigma_km)).verify(f, cam, [place])
    assert loose.ok and loose.from_prior and (loose.lat, loose.lon) == (v.lat, v.lon)
