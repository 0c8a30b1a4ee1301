"""Simulator effects: sun, night, clouds, clean = geometry, appearance, determinism, config."""
import math
from datetime import datetime, timezone

import numpy as np
import pytest

from earthfix.onboard import geodesy
from earthfix.onboard.camera import nadir_attitude
from earthfix.sim import effects as fx
from earthfix.sim.render import render
from earthfix.sim.scenario import single_frame


@pytest.fixture(scope="module")
def clouds():
    return fx.CloudField(seed=11, cover=0.3)


def view_at(basemap, cam, lat, lon, alt=600.0, yaw=0.0):
    pos = geodesy.geodetic_to_ecef(lat, lon, alt)
    return render(basemap, cam, pos, nadir_attitude(lat, lon, yaw))


# ---- the sun --------------------------------------------------------------------------------------

def test_sun_declination_and_subsolar_longitude():
    def decl_lon(t):
        s = fx.sun_direction_ecef(t)
        assert abs(np.linalg.norm(s) - 1) < 1e-12
        return math.degrees(math.asin(s[2])), math.degrees(math.atan2(s[1], s[0]))
    d, _ = decl_lon("2026-06-21T08:24:00Z")          # June solstice 2026: 08:24 UTC
    assert abs(d - 23.436) < 0.02
    d, _ = decl_lon("2026-12-21T20:50:00Z")          # December solstice 2026: 20:50 UTC
    assert abs(d + 23.436) < 0.02
    d, lon = decl_lon("2026-03-20T14:46:00Z")        # March equinox 2026: 14:46 UTC
    assert abs(d) < 0.02
    # equation of time on 20 March ~ -7.4 min: at 12:00 UTC the sun is still ~1.85 deg east of Greenwich
    _, lon = decl_lon("2026-03-20T12:00:00Z")
    assert abs(lon - 1.85) < 0.15


def test_sun_elevation_vectorised():
    t = datetime(2026, 3, 20, 12, tzinfo=timezone.utc)
    s = fx.sun_direction_ecef(t)
    lat0, lon0 = math.degrees(math.asin(s[2])), math.degrees(math.atan2(s[1], s[0]))
    el = fx.sun_elevation_deg(np.array([[lat0, -lat0]]), np.array([[lon0, lon0 + 180]]), t)
    assert el.shape == (1, 2)
    assert el[0, 0] > 89.8 and el[0, 1] < -89.8
    assert abs(float(fx.sun_elevation_deg(0.0, lon0 + 90.0, t))) < 0.5        # terminator


# ---- apply ----------------------------------------------------------------------------------------

def test_clean_is_pure_geometry(basemap, cam256):
    v = view_at(basemap, cam256, 40.0, -105.0)
    for t in ("2026-03-20T19:00:00Z", "2026-03-20T07:00:00Z"):            # day and night
        img, info = fx.apply(v, fx.parse_time(t), fx.EffectsConfig.clean(), np.random.default_rng(0))
        assert np.array_equal(img, v.image)
        assert info["cloud_frac"] == 0.0 and info["land_clear_frac"] == info["land_frac"] > 0.9


def test_night_frame_is_dark(basemap, cam256):
    cfg = fx.EffectsConfig.default()
    lat, lon = 25.0, 45.0                                                   # Arabia, local midnight
    night, tr = single_frame(basemap, cam256, lat, lon, 600, 0, t="2026-03-20T21:00:00Z", effects=cfg,
                             rng=np.random.default_rng(1))
    day, tr_day = single_frame(basemap, cam256, lat, lon, 600, 0, t="2026-03-20T09:00:00Z", effects=cfg,
                               rng=np.random.default_rng(1))
    assert tr["sun_elev_deg"] < -30 and not tr["eligible"]
    assert night.mean() < 6 and night.max() < 40                            # ~black, faint noise
    assert 0 < night.std() < 5
    assert tr_day["sun_elev_deg"] > 30 and day.mean() > 60


def test_low_sun_is_darker_than_high_sun(basemap, cam256):
    cfg = fx.EffectsConfig.clean()
    cfg.illumination = cfg.night = True
    v = view_at(basemap, cam256, 23.0, 12.0)                                # Sahara
    means = []
    for hour in (11.2, 8.0, 6.6):
        t = datetime(2026, 3, 20, int(hour), int(hour % 1 * 60), tzinfo=timezone.utc)
        img, info = fx.apply(v, t, cfg, np.random.default_rng(0))
        means.append((info["sun_elev_deg"], img.mean()))
    assert means[0][0] > means[1][0] > means[2][0]
    assert means[0][1] > means[1][1] > means[2][1]


def test_cloud_field_cover_and_geo_anchoring(clouds):
    rng = np.random.default_rng(0)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 100_000)))               # area-uniform points
    lon = rng.uniform(-180, 180, 100_000)
    for cover in (0.1, 0.3, 0.6):
        share = float((clouds.sample(lat, lon, cover=cover) > 0.5).mean())
        assert abs(share - cover) < 0.03, (cover, share)
    op = clouds.sample(lat[:1000].reshape(20, 50), lon[:1000].reshape(20, 50))
    assert op.dtype == np.float32 and op.shape == (20, 50) and 0 <= op.min() and op.max() <= 1
    # same places, same clouds (any call order / shape); another seed, other clouds
    assert np.array_equal(op.ravel(), clouds.sample(lat[:1000], lon[:1000]))
    other = fx.CloudField(seed=12, cover=0.3).sample(lat[:1000], lon[:1000])
    assert np.abs(other - op.ravel()).mean() > 0.05
    # the date line is seamless: jumps across it are like jumps between neighbours elsewhere
    la = np.linspace(-60, 60, 2000)
    across = np.abs(clouds.value(la, np.full_like(la, 179.99)) - clouds.value(la, np.full_like(la, -179.99)))
    inside = np.abs(clouds.value(la, np.full_like(la, 10.01)) - clouds.value(la, np.full_like(la, 9.99)))
    assert across.mean() < 2 * inside.mean() + 1e-3
    assert np.all(clouds.sample(np.array([np.nan]), np.array([np.nan])) == 0)


def test_cloud_frac_grows_with_cover(basemap, cam256, clouds):
    places = [(30, 10), (45, 0), (-20, 135), (40, -100), (5, 20), (-30, -60)]
    views = [view_at(basemap, cam256, la, lo) for la, lo in places]
    t = datetime(2026, 3, 20, 12, tzinfo=timezone.utc)
    fracs = []
    for cover in (0.0, 0.1, 0.4, 0.8):
        cfg = fx.EffectsConfig.clean()
        cfg.clouds, cfg.cloud_cover = True, cover
        infos = [fx.apply(v, t, cfg, np.random.default_rng(0), clouds=clouds)[1] for v in views]
        fracs.append(np.mean([i["cloud_frac"] for i in infos]))
        for i in infos:
            assert 0 <= i["land_clear_frac"] <= i["land_frac"] <= 1
    assert fracs[0] == 0.0
    assert fracs[1] < fracs[2] < fracs[3] and fracs[3] > 0.5


def test_clouds_whiten_the_frame_and_cut_clear_land(basemap, cam256, clouds):
    v = view_at(basemap, cam256, 5.0, 20.0)                                 # dark green Central Africa
    cfg = fx.EffectsConfig.clean()
    cfg.clouds, cfg.cloud_cover = True, 0.7
    img, info = fx.apply(v, datetime(2026, 3, 20, 11, tzinfo=timezone.utc), cfg, np.random.default_rng(0),
                         clouds=clouds)
    cloudy = clouds.sample(v.lat, v.lon, cover=0.7) > 0.5
    assert cloudy.any() and (~cloudy).any()
    assert img[cloudy].mean() > 150 > img[~cloudy].mean()
    assert abs(info["land_clear_frac"] - float(((v.land > 0.5) & ~cloudy).mean())) < 1e-6


def test_effects_deterministic_given_rng(basemap, cam256):
    v = view_at(basemap, cam256, 46.5, 9.0)
    t = datetime(2026, 3, 20, 11, tzinfo=timezone.utc)
    cfg = fx.EffectsConfig.default()
    cfg.jpeg_quality = 85
    a = fx.apply(v, t, cfg, np.random.default_rng(3))[0]
    b = fx.apply(v, t, cfg, np.random.default_rng(3))[0]
    c = fx.apply(v, t, cfg, np.random.default_rng(4))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == v.image.shape and a.dtype == np.uint8


def test_each_effect_changes_the_image(basemap, cam256):
    v = view_at(basemap, cam256, 46.5, 9.0)
    t = datetime(2026, 3, 20, 11, tzinfo=timezone.utc)
    for key, val in [("haze", 0.2), ("noise_sigma", 3.0), ("blur_sigma", 1.0), ("vignetting", 0.3),
                     ("exposure_jitter", 0.2), ("white_balance_jitter", 0.1), ("jpeg_quality", 30),
                     ("appearance", 1.0)]:
        cfg = fx.EffectsConfig.from_dict({key: val}, base=fx.EffectsConfig.clean())
        img = fx.apply(v, t, cfg, np.random.default_rng(0))[0]
        assert np.abs(img.astype(int) - v.image).mean() > 0.3, key


def _hazy_frame(basemap, cam):
    """A function of effect keys giving the Alps frame through the clean effects with a 0.1 haze and those keys
    (the same random stream each time)."""
    v = view_at(basemap, cam, 46.5, 9.0)
    t = datetime(2026, 3, 20, 11, tzinfo=timezone.utc)
    clean = fx.EffectsConfig.clean()
    return lambda **keys: fx.apply(v, t, fx.EffectsConfig.from_dict(dict(haze=0.1, **keys), base=clean),
                                   np.random.default_rng(0))[0]


def test_the_sensor_tone_curve_maps_every_pixel_by_the_same_power(basemap, cam256):
    """``tone_gamma``: out = 255 (in / 255) ** gamma on the whole frame, after everything else; 1 (the
    default) leaves frames as they were, bit for bit."""
    hazy = _hazy_frame(basemap, cam256)
    assert fx.EffectsConfig.default().tone_gamma == 1.0
    ref = hazy()
    assert np.array_equal(ref, hazy(tone_gamma=1.0))
    x = ref.astype(float)
    for gamma in (2.2, 0.5):
        img = hazy(tone_gamma=gamma)
        # the curve of the unrounded frame: within a DN of the curve of the rounded one, times its slope
        slope = np.maximum(1.0, gamma * (np.maximum(x, 1.0) / 255.0) ** (gamma - 1.0))
        assert np.all(np.abs(img - 255.0 * (x / 255.0) ** gamma) <= 0.5 + 0.5 * slope + 1e-6), gamma
        mid = (x > 60) & (x < 190)
        assert mid.sum() > 1000
        assert (img[mid].mean() < x[mid].mean() - 30) if gamma > 1 else (img[mid].mean() > x[mid].mean() + 30)
    for bad in (0, 0.1, 6.0):
        with pytest.raises(ValueError, match="tone_gamma"):
            fx.EffectsConfig.from_dict({"tone_gamma": bad})


def test_a_sensors_line_defects_are_its_own_pattern_and_the_flight_code_mends_them(basemap, cam256):
    """``column_gain_sigma`` and ``dead_columns``: the same column pattern in every frame of a width (not drawn
    from the frame's stream), off by default bit for bit; ``features.repair_lines`` finds the stuck columns."""
    from earthfix.onboard.features import repair_lines
    hazy = _hazy_frame(basemap, cam256)
    d = fx.EffectsConfig.default()
    assert d.column_gain_sigma == 0.0 and d.dead_columns == 0
    ref = hazy()
    assert np.array_equal(ref, hazy(column_gain_sigma=0.0, dead_columns=0))
    stuck = hazy(dead_columns=4)
    cols = np.flatnonzero(np.any(stuck != ref, axis=(0, 2)))
    assert len(cols) == 4 and all(np.all(stuck[:, c] == 0) or np.all(stuck[:, c] == 255) for c in cols)
    assert np.array_equal(np.delete(stuck, cols, axis=1), np.delete(ref, cols, axis=1))
    assert np.array_equal(stuck, hazy(dead_columns=4))
    mended, found = repair_lines(stuck)
    assert found["lines"] == 4 and np.abs(mended.astype(int) - ref).mean() < 0.5
    striped = hazy(column_gain_sigma=0.04).astype(float)
    ratio = np.median((striped + 1) / (ref.astype(float) + 1), axis=(0, 2))
    assert 0.02 < np.std(ratio) < 0.06
    for bad in ({"column_gain_sigma": 0.6}, {"dead_columns": 2.5}, {"dead_columns": 65}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fx.EffectsConfig.from_dict(bad)


def test_the_cameras_exposure_scales_every_pixels_light(basemap, cam256):
    """``exposure``: a gain on the light before the sensor (noise and quantisation after it); 1 (the default)
    leaves frames as they were, bit for bit; above 1 bright pixels saturate."""
    hazy = _hazy_frame(basemap, cam256)
    assert fx.EffectsConfig.default().exposure == 1.0
    ref = hazy()
    assert np.array_equal(ref, hazy(exposure=1.0))
    x = ref.astype(float)
    dim = hazy(exposure=0.3)
    assert np.all(np.abs(dim - 0.3 * x) <= 0.5 + 0.3 * 0.5 + 1e-6)       # rounding of either frame
    hot = hazy(exposure=3.0)
    assert (hot == 255).mean() > (ref == 255).mean() + 0.1
    for bad in (0, 0.01, 11.0):
        with pytest.raises(ValueError, match="exposure"):
            fx.EffectsConfig.from_dict({"exposure": bad})


def test_appearance_shift():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert fx.appearance_shift(img, rng, 0.0) is img
    outs = [fx.appearance_shift(img, np.random.default_rng(s), 1.0) for s in range(4)]
    for o in outs:
        assert o.shape == img.shape and o.dtype == np.uint8
        assert np.abs(o.astype(int) - img).mean() > 2
    assert not np.array_equal(outs[0], outs[1])


def test_effects_config_dict_round_trip():
    cfg = fx.EffectsConfig.default()
    assert fx.EffectsConfig.from_dict(cfg.to_dict()) == cfg
    assert fx.EffectsConfig.clean().is_clean and not cfg.is_clean
    assert fx.EffectsConfig.from_dict({"cloud_cover": 0.5}).cloud_cover == 0.5
    for bad in ({"cloud_covr": 0.5}, {"cloud_cover": 1.5}, {"night": "yes"}, {"jpeg_quality": 0},
                {"noise_sigma": -1}):
        with pytest.raises(ValueError):
            fx.EffectsConfig.from_dict(bad)


def test_cloud_shadows_darken_the_ground_away_from_the_sun(basemap, cam256):
    """``cloud_shadow``: the ground (not the cloud) is darkened where the cloud field, moved by
    ``cloud_top_km / tan(sun elevation)`` away from the sun, lies; off by default."""
    import cv2
    lat, lon = 34.0, -108.0
    view = render(basemap, cam256, geodesy.geodetic_to_ecef(lat, lon, 600.0), nadir_attitude(lat, lon, 0.0))
    t = datetime(2026, 3, 20, 15, 0, tzinfo=timezone.utc)          # ~08 local solar time: sun in the east
    assert fx.EffectsConfig.default().cloud_shadow == 0.0
    base = dict(cloud_cover=0.4, haze=0.0, noise_sigma=0.0, shot_noise=0.0, blur_sigma=0.0, appearance=0.0,
                exposure_jitter=0.0, white_balance_jitter=0.0)
    plain, _ = fx.apply(view, t, fx.EffectsConfig(**base), np.random.default_rng(1))
    shaded, _ = fx.apply(view, t, fx.EffectsConfig(**base, cloud_shadow=0.6, cloud_top_km=12.0),
                         np.random.default_rng(1))
    dx, dy = fx._shadow_shift_px(view, fx.sun_direction_ecef(t), 12.0)
    assert dx < -5.0 and abs(dy) < abs(dx)                  # north-up frame, morning sun: shadows fall west
    alpha, _ = fx.shared_cloud_field().sample_with_thickness(view.lat, view.lon, 0.4, *_cloud_offsets(1))
    shadow = cv2.warpAffine(alpha, np.float32([[1, 0, dx], [0, 1, dy]]), alpha.shape[::-1],
                            borderMode=cv2.BORDER_REPLICATE)
    diff = plain.astype(float).mean(axis=2) - shaded.astype(float).mean(axis=2)
    assert diff.min() >= -1.0                               # shadows only ever darken
    ground_in_shadow = (shadow > 0.9) & (alpha < 0.1)
    clear = (shadow < 0.005) & (alpha < 0.1)
    assert ground_in_shadow.sum() > 200 and clear.sum() > 200
    ratio = shaded.astype(float).mean(axis=2)[ground_in_shadow] / np.maximum(plain.astype(float).mean(axis=2)[ground_in_shadow], 1)
    assert 0.35 < np.median(ratio) < 0.45                   # 60 % of the light taken (no haze veil here)
    assert np.abs(diff[clear]).max() <= 1.0                 # untouched outside the shadows


def _cloud_offsets(seed):
    """The per-frame cloud offset ``effects.apply`` draws first from its rng (shared field, no geo anchor)."""
    rng = np.random.default_rng(seed)
    return float(rng.uniform(0, 360)), bool(rng.uniform() < 0.5)


def test_a_wider_cloud_edge_makes_translucent_margins_at_the_same_cloud_fraction(basemap, cam256):
    """``cloud_edge``: the clouds' opacity ramps from clear to opaque over that many field units instead of the
    field's own 0.8: more pixels are partly transparent, none changes side of opacity 0.5 (cloud fraction and
    eligibility stay), and 0 (the default) leaves frames as they were."""
    lat, lon = 34.0, -108.0
    view = render(basemap, cam256, geodesy.geodetic_to_ecef(lat, lon, 600.0), nadir_attitude(lat, lon, 0.0))
    t = datetime(2026, 3, 20, 19, 0, tzinfo=timezone.utc)
    assert fx.EffectsConfig.default().cloud_edge == 0.0
    base = dict(cloud_cover=0.4, haze=0.0, noise_sigma=0.0, shot_noise=0.0, blur_sigma=0.0, appearance=0.0,
                exposure_jitter=0.0, white_balance_jitter=0.0)
    plain, info0 = fx.apply(view, t, fx.EffectsConfig(**base), np.random.default_rng(26))
    own, _ = fx.apply(view, t, fx.EffectsConfig(**base, cloud_edge=fx.shared_cloud_field().edge), np.random.default_rng(26))
    assert np.array_equal(plain, own)
    soft, info1 = fx.apply(view, t, fx.EffectsConfig(**base, cloud_edge=3.0), np.random.default_rng(26))
    assert info1 == info0                                   # cloud_frac, land_clear_frac
    off, flip = _cloud_offsets(26)
    field = fx.shared_cloud_field()
    a0, _ = field.sample_with_thickness(view.lat, view.lon, 0.4, off, flip)
    a1, _ = field.sample_with_thickness(view.lat, view.lon, 0.4, off, flip, edge=3.0)
    assert np.array_equal(a0 > 0.5, a1 > 0.5)
    part0 = ((a0 > 0.05) & (a0 < 0.95)).mean()
    part1 = ((a1 > 0.05) & (a1 < 0.95)).mean()
    assert part0 > 0.01 and part1 > 2.0 * part0             # wider translucent margins (a test of the test first)
    assert not np.array_equal(plain, soft)
    with pytest.raises(ValueError, match="cloud_edge"):
        fx.EffectsConfig.from_dict({"cloud_edge": 50})


def test_thin_cloud_veils_the_ground_without_making_it_cloudy(basemap, cam256):
    """``thin_cloud``: a soft, cirrus-like veil of at most that opacity, sampled from the same field as the
    thick clouds elsewhere (no extra random draw): it brightens and flattens the ground where the field says
    so, never counts as cloud (eligibility is unchanged), and off by default leaves frames as they were."""
    lat, lon = 34.0, -108.0
    view = render(basemap, cam256, geodesy.geodetic_to_ecef(lat, lon, 600.0), nadir_attitude(lat, lon, 0.0))
    t = datetime(2026, 3, 20, 19, 0, tzinfo=timezone.utc)           # ~12 local solar time
    assert fx.EffectsConfig.default().thin_cloud == 0.0
    base = dict(cloud_cover=0.3, haze=0.0, noise_sigma=0.0, shot_noise=0.0, blur_sigma=0.0, appearance=0.0,
                exposure_jitter=0.0, white_balance_jitter=0.0)
    plain, info0 = fx.apply(view, t, fx.EffectsConfig(**base), np.random.default_rng(25))
    again, _ = fx.apply(view, t, fx.EffectsConfig(**base, thin_cloud=0.0), np.random.default_rng(25))
    assert np.array_equal(plain, again)
    veiled, info1 = fx.apply(view, t, fx.EffectsConfig(**base, thin_cloud=0.4), np.random.default_rng(25))
    assert info1 == info0                                   # cloud_frac, land_clear_frac: thick cloud only
    off, flip = _cloud_offsets(25)
    field = fx.shared_cloud_field()
    thick = field.sample(view.lat, view.lon, 0.3, off, flip)
    veil = field.veil(view.lat, view.lon, 0.4, off + fx.THIN_LON_OFFSET_DEG, not flip)
    assert 0.0 <= veil.min() and veil.max() <= 0.4 + 1e-6
    diff = veiled.astype(float).mean(axis=2) - plain.astype(float).mean(axis=2)
    under = (veil > 0.3) & (thick < 0.05)
    bare = (veil == 0.0) & (thick < 0.05)
    assert under.sum() > 2000 and bare.sum() > 2000     # this frame has both (a test of the test)
    assert np.median(diff[under]) > 20                      # ground under the veil is brighter (0.3-0.4 of
                                                            # the way from the ground to the veil's 225 DN)...
    assert np.abs(diff[bare]).max() <= 1.0                  # ...ground without it untouched
    g0 = plain.astype(float).mean(axis=2)[under]
    g1 = veiled.astype(float).mean(axis=2)[under]
    assert g1.std() < g0.std()                              # and flatter (the ground's contrast is veiled)
    with pytest.raises(ValueError, match="thin_cloud"):
        fx.EffectsConfig.from_dict({"thin_cloud": 0.6})


def test_cumulus_cells_cover_their_share_and_average_within_a_pixel(basemap, cam256):
    """``cumulus``: small cells covering that share of the ground where they occur; a pixel wider than a
    cell is as opaque as the share of it they cover (no aliased speckle), counts as cloud above 0.5 like
    any cloud; off by default, and frames without it stay as they were (its own random stream)."""
    field = fx.CloudField(seed=0)
    lat0, lon0 = 10.0, 20.0
    out = {}
    for gsd_km in (0.4, 4.0):
        step = gsd_km / 111.0
        lat, lon = np.meshgrid(np.arange(lat0 - 2, lat0 + 2, step),
                               np.arange(lon0 - 2, lon0 + 2, step / math.cos(math.radians(lat0))), indexing="ij")
        region = field.veil(lat, lon, 1.0, fx.CUMULUS_LON_OFFSET_DEG, True, cover=0.5, edge=1.0)
        full = region > 0.999
        assert full.sum() > 500 and (region < 0.001).sum() > 500      # both inside and outside (test of test)
        c = field.cumulus(lat, lon, 0.3, gsd_km)
        assert c.min() >= 0.0 and c.max() <= 1.0 + 1e-6
        assert abs(float(c[full].mean()) - 0.3) < 0.03                 # the share, at any pixel size
        assert c[region == 0.0].max() == 0.0                            # none outside their regions
        out[gsd_km] = float((c[full] > 0.5).mean())
    assert 0.25 < out[0.4] < 0.35 and out[4.0] < 0.2                   # resolved cells vs mixed pixels
    assert fx.EffectsConfig.default().cumulus == 0.0
    with pytest.raises(ValueError, match="cumulus"):
        fx.EffectsConfig.from_dict({"cumulus": 0.7})
    # in a frame: off leaves it as it was; on brightens some pixels and makes some of them cloudy
    lat, lon = -18.0, -54.0                                            # a cumulus region of seed 0's field
    view = render(basemap, cam256, geodesy.geodetic_to_ecef(lat, lon, 600.0), nadir_attitude(lat, lon, 0.0))
    t = datetime(2026, 3, 20, 15, 30, tzinfo=timezone.utc)             # ~12 local solar time
    base = dict(cloud_cover=0.0, haze=0.0, noise_sigma=0.0, shot_noise=0.0, blur_sigma=0.0, appearance=0.0,
                exposure_jitter=0.0, white_balance_jitter=0.0)
    plain, info0 = fx.apply(view, t, fx.EffectsConfig(**base), np.random.default_rng(5), clouds=field)
    again, _ = fx.apply(view, t, fx.EffectsConfig(**base, cumulus=0.0), np.random.default_rng(5), clouds=field)
    assert np.array_equal(plain, again)
    cu, info1 = fx.apply(view, t, fx.EffectsConfig(**base, cumulus=0.5), np.random.default_rng(5), clouds=field)
    diff = cu.astype(float).mean(axis=2) - plain.astype(float).mean(axis=2)
    assert (diff > 20).mean() > 0.2 and diff.min() >= -1.0
    assert info1["cloud_frac"] > 0.02 and info1["land_clear_frac"] < info0["land_clear_frac"]
