"""The snow season painted on the default map for the keypoint stores (``tools/season_map.py``): where the snow
lies, the colour map's fit and its shipped file, and that the stores keep the painted map's keypoints only under
snow (docs/VERIFICATION.md, "A snow season in the keypoint store")."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from earthfix.sim.basemap import Basemap, BasemapError
from earthfix.tools import season_map as sm
from earthfix.tools.build_keystore import BuildConfig, build_keystore


def _lat(h):
    return 90.0 - (np.arange(h) + 0.5) * 180.0 / h


def test_the_snow_lies_north_of_a_wandering_line_and_is_the_same_each_time():
    cover = sm.snow_cover(540, 1080)
    lat = _lat(540)
    assert np.array_equal(cover, sm.snow_cover(540, 1080))                   # seeded
    assert cover[lat < 35.0].max() == 0.0                                    # line >= 37 N, ramp's patches +-1.2 deg
    assert cover[lat > 55.0].min() == 1.0
    band = cover[(lat > 42.0) & (lat < 43.0)]
    assert 0.1 < band.mean() < 0.9 and band.std() > 0.1                     # the line wanders with longitude
    assert not np.array_equal(cover, sm.snow_cover(540, 1080, seed=1))


def test_the_colour_fit_recovers_a_known_map_from_summer_to_winter():
    summer = Basemap.default()
    import cv2
    s = cv2.resize(summer.raw, (1024, 512), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
    winter = np.clip(255.0 * (0.25 + 0.6 * s ** 2 + 0.1 * s[..., ::-1]), 0, 255).astype(np.uint8)
    fit = sm.fit_snow_colours(summer, winter)
    assert np.asarray(fit["coefficients"]).shape == (3, 20) and fit["pixels"] > 10000
    assert min(fit["r2_bgr"]) > 0.97                     # a cubic holds a quadratic: only the resampling is left
    with pytest.raises(BasemapError, match="2:1"):
        sm.fit_snow_colours(summer, winter[:, :700])


def test_the_shipped_colour_map_loads_only_as_recorded(tmp_path, monkeypatch):
    c = sm.load_snow_colours()
    assert c["sha256"] == sm.SNOW_COLOURS_SHA256 and np.asarray(c["coefficients"]).shape == (3, 20)
    assert c["fitted_on"]["file"] == "nasa-bmng-01_2048.jpg"           # the winter map is not itself shipped
    bad = dict(c, coefficients=np.asarray(c["coefficients"])[:, :19].tolist())
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(BasemapError, match="3 x 20"):
        sm.load_snow_colours(p)
    p.write_text("coefficients: [")
    with pytest.raises(BasemapError, match="unreadable"):
        sm.load_snow_colours(p)
    with pytest.raises(BasemapError, match="missing"):
        sm.load_snow_colours(tmp_path / "none.yaml")
    # the shipped file with one byte changed is refused, and a missing one named as the package's
    shipped = tmp_path / "maps"
    shipped.mkdir()
    (shipped / sm.SNOW_COLOURS_FILE).write_text((sm.shipped_maps_dir() / sm.SNOW_COLOURS_FILE).read_text() + " ")
    monkeypatch.setattr(sm, "shipped_maps_dir", lambda: shipped)
    with pytest.raises(BasemapError, match="corrupted"):
        sm.load_snow_colours()
    (shipped / sm.SNOW_COLOURS_FILE).unlink()
    with pytest.raises(BasemapError, match="reinstall"):
        sm.load_snow_colours()


def test_the_snow_map_changes_only_snowy_ground_and_keeps_its_keypoints_there():
    base = Basemap.default()
    snow = sm.snow_map(base, sm.load_snow_colours())
    lat = _lat(base.raw.shape[0])
    south = lat < 35.0
    assert np.array_equal(snow.raw[south], base.raw[south])
    assert np.abs(snow.raw[lat > 55.0].astype(int) - base.raw[lat > 55.0]).mean() > 40    # snow is brighter
    assert snow.keeps_keypoints([60.0, 20.0], [100.0, 100.0]).tolist() == [True, False]
    assert base.keeps_keypoints([60.0, 20.0], [100.0, 100.0]).tolist() == [True, True]
    coarse = snow.coarsened(2048)                                     # the low-resolution store's copy keeps it
    assert coarse.keypoint_mask.shape == coarse.land.shape
    assert coarse.keeps_keypoints([60.0, 20.0], [100.0, 100.0]).tolist() == [True, False]
    # a store over ground that straddles the snowline keeps the snow map's keypoints only under snow
    cfg = BuildConfig(bbox=(30.0, 62.0, 60.0, 66.0))
    one = build_keystore(base, cfg, progress=False)
    both = build_keystore(base, cfg, progress=False, extra_basemaps=(snow,))
    assert len(both) > len(one)
    # projected with the summer keypoints' PCA and quantiser: every summer keypoint is stored as it was
    assert np.array_equal(both.pca_components, one.pca_components) and np.array_equal(both.qstep, one.qstep)
    added_lat = np.setdiff1d(np.round(both.lat, 4), np.round(one.lat, 4))
    assert added_lat.min() > 35.0 and (added_lat > 55.0).any()
