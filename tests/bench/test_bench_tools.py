"""The diagnostic benches' own helpers: a map's registration offsets (earthfix.tools.map_registration; its sign
conventions are what a reader of their tables relies on), the UTM scene reader (utm_scene), the weak prior-path
poses' comparison (bench_prior_poses), a real scene's ground set apart from its cloud (bench_real_scene) and the
paired A/B's summary (bench_paired)."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from earthfix.sim.basemap import shipped_maps_dir
from earthfix.tools.map_registration import Registration


def test_a_map_drawn_east_and_north_of_its_grid_reads_as_that_offset(tmp_path):
    ref = shipped_maps_dir() / "nasa-bmng-07_2048.jpg"
    img = cv2.imread(str(ref))
    moved = np.roll(img, shift=(-2, 3), axis=(0, 1))            # the ground drawn 3 px east and 2 px north
    path = tmp_path / "moved.png"
    cv2.imwrite(str(path), moved)
    reg = Registration.of_files(path, ref)
    lat, lon = 40.0, -110.0                                      # the Rockies: texture in any product
    east_km, north_km, resp = reg.offset_km(lat, lon)
    km_px = 360.0 / img.shape[1] * 111.2
    assert resp > 0.5
    assert abs(east_km - 3 * km_px * math.cos(math.radians(lat))) < 0.3 * km_px
    assert abs(north_km - 2 * km_px) < 0.3 * km_px
    same = Registration.of_files(ref, ref).offset_km(lat, lon)
    assert abs(same[0]) < 0.1 * km_px and abs(same[1]) < 0.1 * km_px


def test_a_map_drawn_far_off_its_grid_is_flagged_and_a_faithful_one_is_not():
    ref = cv2.imread(str(shipped_maps_dir() / "nasa-bmng-07_2048.jpg"))
    far = Registration(np.roll(ref, shift=3, axis=1), ref).summary(step_deg=20.0)     # 3 px: ~58 km at the equator
    assert far["windows"] > 20 and far["offset_p50_km"] > 25.0 and far["suspect"]
    near = Registration(cv2.GaussianBlur(ref, (0, 0), 1.0), ref).summary(step_deg=20.0)  # blurred, not moved
    assert near["windows"] > 20 and near["offset_p50_km"] < 5.0 and not near["suspect"]   # the floor: ~3.4 km


def _geotiff_tags(path, epsg: int, scale=(300.0, 300.0), tie=(0.0, 0.0, 101985.0, 2826915.0)):
    """A little-endian TIFF holding only the three GeoTIFF tags ``utm_scene.geotiff_utm`` reads."""
    import struct
    keys = (1, 1, 0, 1, 3072, 0, 1, epsg)
    entries = [(33550, 12, (*scale, 0.0)), (33922, 12, (tie[0], tie[1], 0.0, tie[2], tie[3], 0.0)), (34735, 3, keys)]
    data_at = 8 + 2 + 12 * len(entries) + 4
    ifd, blobs = b"", b""
    for tag, typ, vals in entries:
        fmt = "d" if typ == 12 else "H"
        ifd += struct.pack("<HHII", tag, typ, len(vals), data_at + len(blobs))
        blobs += struct.pack("<" + fmt * len(vals), *vals)
    path.write_bytes(b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", len(entries)) + ifd + b"\0\0\0\0" + blobs)
    return path


def test_utm_scene_projects_as_the_wgs84_utm_grid_and_reads_a_geotiffs_georeference(tmp_path):
    import utm_scene as u
    # the WGS84 meridian arc to 45 deg and to the pole (standard values, m)
    assert abs(u.meridian_arc_m(math.radians(45.0)) - 4_984_944.378) < 0.01
    assert abs(u.meridian_arc_m(math.radians(90.0)) - 10_001_965.729) < 0.01
    e, n = u.utm_from_geodetic(0.0, -75.0, 18)
    assert abs(e - 500_000.0) < 1e-6 and abs(n) < 1e-6
    e, n = u.utm_from_geodetic(-10.0, -75.0, 18, south=True)
    assert abs(n - (10_000_000.0 - 0.9996 * u.meridian_arc_m(math.radians(10.0)))) < 1e-3
    e_w, _ = u.utm_from_geodetic(25.0, -77.0, 18)
    e_e, _ = u.utm_from_geodetic(25.0, -73.0, 18)
    assert abs((e_w - 500_000.0) + (e_e - 500_000.0)) < 1e-6 and e_w < 500_000.0 < e_e
    for lat, lon in ((25.5, -78.96), (-33.9, 18.4), (60.0, -72.5)):
        zone = int((lon + 180.0) // 6) + 1
        back = u.geodetic_from_utm(*u.utm_from_geodetic(lat, lon, zone, lat < 0), zone, lat < 0)
        assert abs(back[0] - lat) < 1e-7 and abs(back[1] - lon) < 1e-7
    geo = u.geotiff_utm(_geotiff_tags(tmp_path / "s.tif", 32618))
    assert geo == {"x0_m": 101985.0, "y0_m": 2826915.0, "dx_m": 300.0, "dy_m": 300.0, "zone": 18, "south": False}
    assert u.geotiff_utm(_geotiff_tags(tmp_path / "s2.tif", 32733))["south"] is True
    with pytest.raises(ValueError, match="not WGS84 UTM"):
        u.geotiff_utm(_geotiff_tags(tmp_path / "g.tif", 4326))
    (tmp_path / "x.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="not a classic TIFF"):
        u.geotiff_utm(tmp_path / "x.tif")
    img = np.full((40, 50, 3), 200, np.uint8)
    out, (lon0, lon1, lat0, lat1) = u.to_equirectangular(img, geo, 0.01)
    assert lat0 < 25.506 < lat1 and lon0 < -78.959 < lon1            # the top-left corner (rasterio's Landsat scene)
    assert out.max() == 200 and out.min() == 0                        # the scene, and no-data around it


def test_prior_poses_sets_each_wrong_weak_prior_pose_against_the_right_ones():
    import bench_prior_poses as bp

    def rec(i, err, conf, inliers=7, prior=True, fix=True, spread=0.2):
        return {"camera": "1024x1024@40", "index": i, "fix": fix, "err_km": err if fix else None,
                "confidence": conf, "inliers": inliers, "from_prior": prior, "bore_sigma_km": 3.0,
                "pose": {"spread": spread, "matches": inliers + 2} if fix else None}
    recs = [rec(0, 2.0, 0.991), rec(1, 3.0, 0.999), rec(2, 4.0, 0.995, spread=0.4),
            rec(3, 1.0, 0.95, inliers=30, prior=False),          # a blind fix: right, not of the path
            rec(4, 1.0, 0.999, inliers=12),                      # a prior pose strong enough to end the search
            rec(5, 5116.0, 0.996, spread=0.09),                  # the wrong weak prior pose
            rec(6, None, 0.0, fix=False)]
    s = bp.summarise(recs, below_inliers=10)
    assert (s["frames"], s["fixes"], s["right_fixes"], s["weak_prior"], s["weak_prior_right"]) == (7, 6, 5, 4, 3)
    assert s["ranges"]["spread"]["max"] == 0.4 and s["ranges"]["spread"]["p50"] == 0.2
    assert s["ranges"]["inliers"]["max"] == 7.0       # the 12- and 30-inlier fixes are not weak prior poses
    (w,) = s["wrong"]
    assert w["index"] == 5 and w["values"]["spread"] == 0.09 and w["values"]["matches"] == 9.0
    # a bar at p 0.996 refuses the right fixes below it: 0.991, 0.995 (prior) and 0.95 (blind)
    assert (w["refused_all"], w["refused_prior"]) == (3, 2)


def test_prior_poses_scores_a_record_again_as_the_localizer_scored_its_evidence():
    import bench_prior_poses as bp
    from earthfix.onboard.confidence import FEATURES, ConfidenceModel
    from earthfix.tools.evaluate import POSE_EVIDENCE

    ev = {"ok": True, "inliers": 7, "matches": 8, "inlier_ratio": 0.875, "spread": 0.089, "reproj_rms_work_px": 1.41,
          "alt_out_of_range_km": 0.0, "inlier_margin": 7, "attitude_given": False, "tilt_deg": 0.63,
          "bore_sigma_km": 5.29, "from_prior": True}
    model = ConfidenceModel.load(Path(__file__).resolve().parents[2] / "models" / "confidence.json")
    rec = {"fix": True, "err_km": 5116.0, "confidence": model(ev), "inliers": 7, "bore_sigma_km": 5.29,
           "camera": "1024x1024@40", "index": 137, "pose": {k: ev.get(k) for k in POSE_EVIDENCE}}
    # the record's pose holds every input of the model: scored again, the same probability (0.99 here)
    r = bp.rescore([rec], model)
    assert r["right"] == 0 and r["wrong"] == [("1024x1024@40", 137, rec["confidence"], rec["confidence"])]
    assert rec["confidence"] > 0.9
    # the right fixes a stricter model takes below 0.9 are counted
    right = dict(rec, err_km=2.0, index=1)
    strict = ConfidenceModel(model.intercept - 4.0, {k: float(w) for k, w in zip(FEATURES, model.w)})
    assert bp.rescore([rec, right], strict)["right_below"] == 1
    assert bp.rescore([rec, right], model)["right_below"] == 0


def test_a_scenes_ground_is_told_from_its_cloud_under_one_mask(localizer, camera):
    import bench_real_scene as brs
    from support import under_cloud
    from earthfix.sim.basemap import Basemap
    from earthfix.sim.effects import EffectsConfig
    from earthfix.sim.scenario import single_frame

    def frame(lat, lon, seed, **tilt):
        return single_frame(Basemap.default(), camera, lat, lon, 600.0, 37.0, effects=EffectsConfig.default(),
                            rng=np.random.default_rng(seed), **tilt)
    img, truth = frame(35.0, -108.0, 0, tilt_deg=2.0, tilt_az_deg=45.0)
    assert brs.masked_true_place(localizer, img, img, camera, truth) == (True, True)
    # the scene shows other ground (a frame 600 km away): its frame fails, the control's ground holds
    other, _ = frame(33.0, -102.0, 1)
    assert brs.masked_true_place(localizer, other, img, camera, truth) == (False, True)
    # the scene's cloud over 70 % of the frame: the control keeps only the scene's clear ground, and that is too
    # little here, although the control alone is verified
    opacity = np.zeros(img.shape[:2] + (1,))
    opacity[:, : int(0.7 * img.shape[1])] = 1.0
    assert brs.masked_true_place(localizer, under_cloud(img, opacity), img, camera, truth) == (False, False)
    assert brs.either_look_fixed(localizer, img, camera, truth)


def test_the_paired_summary_counts_each_sides_frames_past_the_flights_deadline():
    import bench_paired as bpp

    def side(fix, err, ms):
        return {"fix": fix, "err_km": err, "ms": ms, "conf": 1.0 if fix else 0.0}
    rows = [{"scenario": "land256", "index": 0, "stress": False, "eligible": True,
             "A": side(True, 2.0, 20.0), "B": side(True, 2.0, 61.0)},
            {"scenario": "land256", "index": 1, "stress": False, "eligible": True,
             "A": side(False, None, 59.9), "B": side(True, 80.0, 75.5)},
            {"scenario": "stress_thin", "index": 0, "stress": True, "eligible": False,
             "A": side(False, None, 90.0), "B": side(False, None, 30.0)}]
    lines = bpp.summary(rows)
    main_a, main_b = lines[0], lines[1]
    assert "fixed 1 of 2 eligible, 0 false" in main_a and "0 over 60 ms (longest 59.9)" in main_a
    assert "fixed 2 of 2 eligible, 1 false" in main_b and "2 over 60 ms (longest 75.5)" in main_b
    assert "fixed by A only 0, by B only 1" in lines[2]
    assert "1 over 60 ms (longest 90.0)" in lines[3] and "2 over 60 ms (longest 75.5)" in lines[4]
    assert "2 over 50 ms (longest 90.0)" in bpp.summary(rows, deadline_ms=50.0)[3]
