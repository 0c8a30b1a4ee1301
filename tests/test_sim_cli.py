"""The ``earthfix sim`` contract, checked against an independent renderer written here from scratch."""
import json
import math

import cv2
import numpy as np
import pytest
import yaml

from earthfix.cli import main

CONTRACT_KEYS = {"frame", "time", "ecef_km", "sub_lat", "sub_lon", "alt_km", "yaw_deg", "bore_lat", "bore_lon",
                 "sun_elev_deg", "cloud_frac", "land_clear_frac"}
EXTRA_KEYS = {"footprint_half_width_km", "land_frac", "eligible", "q_cam2ecef_wxyz", "tilt_deg",
              "velocity_ecef_km_s"}


# ---- independent renderer: own WGS84, own quaternion, own ray/ellipsoid, own bilinear lookup ----------

A, F = 6378.137, 1 / 298.257223563
B, E2 = A * (1 - F), F * (2 - F)


def quat_to_matrix(q):
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z]])


def independent_render(cam: dict, ecef_km, q_wxyz, image: np.ndarray, land: np.ndarray):
    """Pinhole rays -> WGS84 ellipsoid -> geodetic -> bilinear lookup in a global plate carree image."""
    w, h = cam["width"], cam["height"]
    if "fx" in cam:
        fx, fy, cx, cy = cam["fx"], cam["fy"], cam["cx"], cam["cy"]
    else:
        fx = fy = (w / 2) / math.tan(math.radians(cam["fov_deg"]) / 2)
        cx, cy = (w - 1) / 2, (h - 1) / 2
    v, u = np.mgrid[0:h, 0:w].astype(float)
    d = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
    d = d @ quat_to_matrix(q_wxyz).T                                     # camera -> ECEF
    o = np.asarray(ecef_km, float)
    k = np.array([1 / A ** 2, 1 / A ** 2, 1 / B ** 2])
    qa = (d * d * k).sum(-1)
    qb = 2 * (d * o * k).sum(-1)
    qc = (o * o * k).sum() - 1
    disc = qb * qb - 4 * qa * qc
    hit = disc > 0
    t = (-qb - np.sqrt(np.where(hit, disc, 0))) / (2 * qa)
    p = o + t[..., None] * d
    lat = np.degrees(np.arctan2(p[..., 2], (1 - E2) * np.hypot(p[..., 0], p[..., 1])))
    lon = np.degrees(np.arctan2(p[..., 1], p[..., 0]))
    H, W = image.shape[:2]
    x = (lon + 180) / 360 * W - 0.5
    y = (90 - lat) / 180 * H - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx_, fy_ = (x - x0)[..., None], (y - y0)[..., None]
    y0c, y1c = np.clip(y0, 0, H - 1), np.clip(y0 + 1, 0, H - 1)
    x0w, x1w = x0 % W, (x0 + 1) % W
    img = image.astype(float)
    out = ((1 - fy_) * ((1 - fx_) * img[y0c, x0w] + fx_ * img[y0c, x1w])
           + fy_ * ((1 - fx_) * img[y1c, x0w] + fx_ * img[y1c, x1w]))
    out[~hit] = 0
    ld = land[np.clip(np.round(y).astype(int), 0, H - 1), np.round(x).astype(int) % W]
    return out, hit, np.where(hit, ld, 0.0)


def centre_ground(cam: dict, ecef_km, q_wxyz):
    """Geodetic (lat, lon) of the ground the image centre ((w-1)/2, (h-1)/2) sees: the CONVENTIONS boresight."""
    w, h = cam["width"], cam["height"]
    d = quat_to_matrix(q_wxyz) @ np.array([((w - 1) / 2 - cam["cx"]) / cam["fx"], ((h - 1) / 2 - cam["cy"]) / cam["fy"], 1.0])
    o = np.asarray(ecef_km, float)
    k = np.array([1 / A ** 2, 1 / A ** 2, 1 / B ** 2])
    qa, qb, qc = (d * d * k).sum(), 2 * (d * o * k).sum(), (o * o * k).sum() - 1
    p = o + (-qb - math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa) * d
    return (math.degrees(math.atan2(p[2], (1 - E2) * math.hypot(p[0], p[1]))), math.degrees(math.atan2(p[1], p[0])))


def ncc(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def read_truth(out):
    return [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]


# ---- the contract -----------------------------------------------------------------------------------

def test_sim_contract_clean_nadir(tmp_path, cam256_path, basemap):
    out = tmp_path / "run"
    rc = main(["sim", "--preset", "iss", "--start", "2026-03-20T12:00:00", "--duration", "30m",
               "--interval", "60s", "--camera", str(cam256_path), "--attitude", "nadir", "--clean",
               "--out", str(out)])
    assert rc == 0
    cam = yaml.safe_load((out / "camera.yaml").read_text())
    assert cam["width"] == 256 and cam["height"] == 256 and abs(cam["fov_deg"] - 80) < 1e-9
    truth = read_truth(out)
    assert len(truth) == 30
    for i, tr in enumerate(truth):
        assert CONTRACT_KEYS | EXTRA_KEYS <= set(tr)
        assert tr["frame"] == f"frame_{i:05d}.png"
        assert tr["time"].startswith("2026-03-20T12:") and tr["time"].endswith("Z")
        img = cv2.imread(str(out / tr["frame"]), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == (256, 256, 3)
        assert tr["cloud_frac"] == 0 and tr["tilt_deg"] < 1e-4
        assert abs(tr["bore_lat"] - tr["sub_lat"]) < 1e-5
        assert abs(np.linalg.norm(tr["ecef_km"]) - 6378 - tr["alt_km"]) < 25
        assert tr["eligible"] == (tr["sun_elev_deg"] > 0 and tr["land_clear_frac"] >= 0.2)
    _check_against_independent_renderer(out, truth, basemap, min_frames=2)


def test_sim_tilted_frames_over_land_match_independent_renderer(tmp_path, cam256_path, basemap):
    out = tmp_path / "tilt"
    rc = main(["sim", "--preset", "iss", "--start", "2026-03-20T12:47:00", "--duration", "8m",
               "--interval", "60s", "--camera", str(cam256_path), "--attitude", "tilt", "--tilt-deg", "25",
               "--yaw", "random", "--clean", "--seed", "3", "--out", str(out)])
    assert rc == 0
    truth = read_truth(out)
    assert all(abs(t["tilt_deg"] - 25) < 1e-3 for t in truth)
    _check_against_independent_renderer(out, truth, basemap, min_frames=5)


def test_sim_nadir_points_the_image_centre_of_an_off_centre_camera_at_nadir(tmp_path, basemap):
    """CONVENTIONS: the boresight is the ray through the image centre, and --attitude nadir points it at
    nadir, also for a calibrated camera whose principal point is off the centre (here 30 / -20 px)."""
    cam_path = tmp_path / "cam.yaml"
    cam_path.write_text("width: 256\nheight: 256\nfx: 152.5\nfy: 150.0\ncx: 157.5\ncy: 107.5\n")
    out = tmp_path / "off"
    rc = main(["sim", "--preset", "iss", "--start", "2026-03-20T12:00:00", "--duration", "30m", "--interval", "60s",
               "--camera", str(cam_path), "--attitude", "nadir", "--clean", "--out", str(out)])
    assert rc == 0
    truth = read_truth(out)
    cam = yaml.safe_load((out / "camera.yaml").read_text())
    assert (cam["cx"], cam["cy"], cam["fy"]) == (157.5, 107.5, 150.0)
    for tr in truth:
        # the truth's boresight is where the image centre looks, by this file's own ray casting ...
        lat, lon = centre_ground(cam, tr["ecef_km"], tr["q_cam2ecef_wxyz"])
        assert abs(tr["bore_lat"] - lat) < 1e-6 and abs(tr["bore_lon"] - lon) < 1e-6
        # ... and nadir points it straight down
        assert abs(tr["bore_lat"] - tr["sub_lat"]) < 1e-5 and abs(tr["bore_lon"] - tr["sub_lon"]) < 1e-5
        assert tr["tilt_deg"] < 1e-4
    _check_against_independent_renderer(out, truth, basemap, min_frames=2)


def _check_against_independent_renderer(out, truth, basemap, min_frames):
    cam = yaml.safe_load((out / "camera.yaml").read_text())
    checked = water_checked = 0
    for tr in truth:
        img = cv2.imread(str(out / tr["frame"]))
        ref, hit, land = independent_render(cam, tr["ecef_km"], tr["q_cam2ecef_wxyz"], basemap.image, basemap.land)
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(float)
        gr = cv2.cvtColor(np.clip(ref, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(float)
        assert ((g > 0) | ~hit).mean() > 0.99                        # Earth where the rays hit it
        lm = (land > 0.5) & hit
        if lm.mean() >= 0.2 and gr[lm].std() > 4:                    # textured land frame
            assert ncc(g[lm], gr[lm]) >= 0.8, tr["frame"]
            # pixel by pixel: 1 deg of yaw or 10 km of position already costs 2-4 DN here
            assert np.abs(g[lm] - gr[lm]).mean() < 1.5, tr["frame"]
            checked += 1
        # open water is flattened: one uniform colour, no sea-floor relief
        ocean = cv2.erode((land == 0).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & hit
        if ocean.sum() > 500:
            assert img[ocean].std(axis=0).max() < 1.0
            water_checked += 1
    assert checked >= min_frames and water_checked >= 1


def test_sim_keep_water_renders_a_scenes_sea_as_it_is(tmp_path, cam256_path):
    """A real scene's sea (sun glint, clouds over it) is kept with --keep-water and flattened without."""
    from earthfix.sim.basemap import Basemap
    rng = np.random.default_rng(5)
    scene = cv2.resize(rng.integers(0, 256, (90, 180, 3), dtype=np.uint8), (720, 360), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), scene)
    land = Basemap.load(path, flatten_water=False).land
    stds = {}
    for keep in (False, True):
        out = tmp_path / f"keep{keep}"
        rc = main(["sim", "--preset", "iss", "--start", "2026-03-20T12:00:00", "--duration", "10m",
                   "--interval", "60s", "--camera", str(cam256_path), "--attitude", "nadir", "--clean",
                   "--basemap", str(path), *(["--keep-water"] if keep else []), "--out", str(out)])
        assert rc == 0
        cam = yaml.safe_load((out / "camera.yaml").read_text())
        stds[keep] = []
        for tr in read_truth(out):
            img = cv2.imread(str(out / tr["frame"]))
            ref, hit, ld = independent_render(cam, tr["ecef_km"], tr["q_cam2ecef_wxyz"], scene, land)
            ocean = cv2.erode((ld == 0).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & hit
            if ocean.sum() > 500:
                stds[keep].append(float(img[ocean].std(axis=0).max()))
                if keep:   # the scene itself, pixel by pixel, over the sea
                    assert np.abs(img[ocean].astype(float) - ref[ocean]).mean() < 2.0, tr["frame"]
    assert stds[False] and max(stds[False]) < 1.0
    assert stds[True] and min(stds[True]) > 10.0


def test_sim_default_effects_jpeg_and_contact_sheet(tmp_path, cam256_path):
    out = tmp_path / "fx"
    rc = main(["sim", "--preset", "sso", "--start", "2026-03-20T10:00:00", "--duration", "3m", "--interval", "60s",
               "--camera", str(cam256_path), "--jpeg", "--contact-sheet", "--seed", "2", "--cloud-cover", "0.5",
               "--out", str(out)])
    assert rc == 0
    truth = read_truth(out)
    assert [t["frame"] for t in truth] == [f"frame_{i:05d}.jpg" for i in range(3)]
    assert all((out / t["frame"]).exists() for t in truth)
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 100


def test_sim_tle_file(tmp_path, cam256_path):
    from earthfix.sim.orbit import PRESETS
    p = PRESETS["iss"]
    tle = tmp_path / "iss.tle"
    tle.write_text(f"ISS (ZARYA)\n{p['line1']}\n{p['line2']}\n")
    out = tmp_path / "tle"
    assert main(["sim", "--tle", str(tle), "--start", "2026-03-20T12:00:00", "--duration", "60s", "--interval",
                 "60s", "--camera", str(cam256_path), "--clean", "--out", str(out)]) == 0
    ref = tmp_path / "ref"
    assert main(["sim", "--preset", "iss", "--start", "2026-03-20T12:00:00", "--duration", "60s", "--interval",
                 "60s", "--camera", str(cam256_path), "--clean", "--out", str(ref)]) == 0
    assert read_truth(out) == read_truth(ref)


def test_sim_camera_intrinsics_and_effects_file(tmp_path):
    cam = tmp_path / "cam.yaml"
    cam.write_text("width: 200\nheight: 150\nfx: 180.0\nfy: 185.0\ncx: 101.25\ncy: 73.5\n")
    fxy = tmp_path / "fx.yaml"
    fxy.write_text("clouds: false\nnoise_sigma: 0\nshot_noise: 0\njpeg_quality: 70\n")
    out = tmp_path / "cam"
    assert main(["sim", "--preset", "sso", "--start", "2026-03-20T10:00:00", "--duration", "60s", "--interval",
                 "60s", "--camera", str(cam), "--effects", str(fxy), "--out", str(out)]) == 0
    from earthfix.onboard.camera import Camera
    assert Camera.from_yaml(out / "camera.yaml") == Camera(200, 150, 180.0, 185.0, 101.25, 73.5)
    (tr,) = read_truth(out)
    assert cv2.imread(str(out / tr["frame"])).shape == (150, 200, 3) and tr["cloud_frac"] == 0


@pytest.mark.parametrize("args,needle", [
    (["--preset", "mars"], "unknown preset"),
    (["--tle", "/nonexistent/x.tle"], "cannot read TLE"),
    (["--preset", "iss", "--start", "yesterday"], "ISO 8601"),
    (["--preset", "iss", "--duration", "ten minutes"], "duration"),
    (["--preset", "iss", "--cloud-cover", "2"], "cloud_cover"),
    (["--preset", "iss", "--clean", "--effects", "x.yaml"], "contradicts"),
    (["--preset", "iss", "--effects", "/nonexistent/fx.yaml"], "cannot read effects"),
    (["--preset", "iss", "--basemap", "/nonexistent/map.jpg"], "cannot read basemap"),
    (["--preset", "iss", "--yaw", "north"], "--yaw"),
    (["--preset", "iss", "--attitude", "tilt", "--tilt-deg", "75"], "--tilt-deg"),
    (["--preset", "iss", "--keep-water"], "--keep-water needs --basemap"),
    (["--preset", "iss", "--cloud-field", "/nonexistent/clouds.png"], "cannot read cloud field"),
    (["--preset", "iss", "--clean", "--cloud-field", "/nonexistent/clouds.png"], "contradicts --clean"),
])
def test_sim_bad_inputs_fail_in_one_line(tmp_path, capsys, cam256_path, args, needle):
    rc = main(["sim", *args, "--camera", str(cam256_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("earthfix sim: error:") and needle in err, err


def test_a_map_that_is_not_an_image_is_refused_in_one_line_also_below_python(tmp_path, capfd, cam256_path):
    # capfd, not capsys: cv2.imread warned on file descriptor 2 itself before the refusal (two lines)
    text = tmp_path / "map.jpg"
    text.write_text("not a JPEG")
    for path in ("/nonexistent/map.jpg", str(text), str(tmp_path)):
        rc = main(["sim", "--preset", "iss", "--basemap", path, "--camera", str(cam256_path), "--out", str(tmp_path / "o")])
        err = capfd.readouterr().err.strip()
        assert rc == 2 and err.splitlines() == [f"earthfix sim: error: cannot read basemap image {path}"], err
    rc = main(["sim", "--preset", "iss", "--cloud-field", str(text), "--camera", str(cam256_path), "--out", str(tmp_path / "o")])
    err = capfd.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "cannot read cloud field" in err, err


@pytest.mark.parametrize("content,needle", [
    (None, "not found"), ("width: 256\n", "height"), ("width: 256\nheight: 256\nfov_deg: 200\n", "fov_deg"),
    ("width: [\n", "YAML"),
])
def test_sim_bad_camera_file(tmp_path, capsys, content, needle):
    cam = tmp_path / "cam.yaml"
    if content is not None:
        cam.write_text(content)
    rc = main(["sim", "--preset", "iss", "--camera", str(cam), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_sim_bad_tle_content(tmp_path, capsys, cam256_path):
    tle = tmp_path / "bad.tle"
    tle.write_text("hello\nworld\n")
    rc = main(["sim", "--tle", str(tle), "--camera", str(cam256_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "TLE" in err, err


def test_a_preset_without_start_begins_over_daylit_land_as_replay_does(tmp_path, cam256_path):
    """`earthfix sim --preset iss` with no --start used the TLE epoch, whose first 95 min hold no eligible
    frame (night and ocean); it now starts where replay and demo start, over daylit land."""
    from earthfix.sim.orbit import Orbit, parse_time
    assert Orbit.preset_start("iss") == parse_time("2025-11-10T19:00:00Z")
    assert Orbit.preset_start("SSO") == parse_time("2025-11-10T08:30:00Z")
    rc = main(["sim", "--preset", "iss", "--duration", "0s", "--interval", "10s", "--camera", str(cam256_path),
               "--out", str(tmp_path / "o")])
    assert rc == 0
    first = json.loads((tmp_path / "o" / "truth.jsonl").read_text().splitlines()[0])
    assert parse_time(first["time"]) == Orbit.preset_start("iss")


def test_sim_cloud_field_lays_a_real_field_where_it_lies(tmp_path, cam256_path):
    """``--cloud-field``: an overcast field makes every daylit frame's ground cloud (cloud_frac 1, no eligible
    frame); a clear one leaves none; the frames' poses are the simulator's either way."""
    truths = {}
    for name, alpha in (("overcast", 255), ("clear", 0)):
        field = np.zeros((90, 180, 4), np.uint8)
        field[..., 3] = alpha
        cv2.imwrite(str(tmp_path / f"{name}.png"), field)
        out = tmp_path / name
        assert main(["sim", "--preset", "iss", "--duration", "120s", "--interval",        # the preset's daylit start
                     "60s", "--camera", str(cam256_path), "--cloud-field", str(tmp_path / f"{name}.png"),
                     "--out", str(out)]) == 0
        truths[name] = [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]
    lit = [t["sun_elev_deg"] > 0 for t in truths["overcast"]]
    assert any(lit)
    assert all(t["cloud_frac"] > 0.99 and not t["eligible"] for t, day in zip(truths["overcast"], lit) if day)
    assert all(t["cloud_frac"] == 0.0 for t in truths["clear"])
    assert [t["bore_lat"] for t in truths["overcast"]] == [t["bore_lat"] for t in truths["clear"]]
