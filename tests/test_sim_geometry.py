"""Simulator geometry: rays, orbits, yaw convention, attitude laws, determinism."""
import math
from datetime import datetime

import cv2
import numpy as np
import pytest

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera, nadir_attitude, tilt_rotation, yaw_of_attitude
from earthfix.sim import effects as fx
from earthfix.sim.orbit import PRESETS, Orbit
from earthfix.sim.render import ground_points, project_ground, render
from earthfix.sim.scenario import Scenario, single_frame


def ncc(a, b, mask=None):
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def grey(img):
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(float)


# ---- rays -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tilt_deg", [0.0, 12.0, 35.0, 70.0])
def test_pixel_ground_pixel_round_trip(tilt_deg):
    rng = np.random.default_rng(int(tilt_deg))
    cam = Camera(320, 240, 300.0, 310.0, 161.3, 118.7)         # non-square, off-centre principal point
    for _ in range(3):
        lat, lon, alt = rng.uniform(-70, 70), rng.uniform(-180, 180), rng.uniform(300, 1500)
        pos = geodesy.geodetic_to_ecef(lat, lon, alt)
        r = nadir_attitude(lat, lon, rng.uniform(0, 360)) @ tilt_rotation(tilt_deg, rng.uniform(0, 360))
        pts, hit = ground_points(cam, pos, r)
        assert hit.any()
        assert np.isnan(pts[~hit]).all()
        # points lie on the ellipsoid
        p = pts[hit]
        q = (p[:, 0] ** 2 + p[:, 1] ** 2) / geodesy.A_KM ** 2 + p[:, 2] ** 2 / geodesy.B_KM ** 2
        assert np.abs(q - 1).max() < 1e-12
        u, v = project_ground(cam, pos, r, pts[hit])
        vv, uu = np.nonzero(hit)
        assert np.isfinite(u).all()
        assert np.abs(u - uu).max() < 1e-6 and np.abs(v - vv).max() < 1e-6


def test_render_view_consistent_with_ground_points(basemap, cam256):
    lat, lon = 36.0, 138.0
    pos = geodesy.geodetic_to_ecef(lat, lon, 700.0)
    r = nadir_attitude(lat, lon, 20.0) @ tilt_rotation(50.0, 90.0)   # sees the limb
    view = render(basemap, cam256, pos, r)
    pts, hit = ground_points(cam256, pos, r)
    assert (view.hit == hit).all() and 0.1 < hit.mean() < 1.0
    assert np.allclose(view.points[hit], pts[hit], atol=1e-9)
    la, lo = geodesy.ecef_to_geodetic(pts[hit])[:2]
    assert np.abs(view.lat[hit] - la).max() < 1e-8 and np.abs(view.lon[hit] - lo).max() < 1e-8
    assert (view.image[~hit] == 0).all() and (view.land[~hit] == 0).all()


# ---- orbit: independent sgp4 + GMST + geodetic ----------------------------------------------------

def _independent_sub_point(line1, line2, t):
    from sgp4.api import Satrec, jday
    from sgp4.propagation import gstime
    sat = Satrec.twoline2rv(line1, line2)
    jd, fr = jday(t.year, t.month, t.day, t.hour, t.minute, t.second + t.microsecond * 1e-6)
    err, r, _ = sat.sgp4(jd, fr)
    assert err == 0
    th = gstime(jd + fr)
    x = math.cos(th) * r[0] + math.sin(th) * r[1]
    y = -math.sin(th) * r[0] + math.cos(th) * r[1]
    z = r[2]
    a, f = 6378.137, 1 / 298.257223563
    e2 = f * (2 - f)
    p = math.hypot(x, y)
    lat = math.atan2(z, p * (1 - e2))
    for _ in range(10):                       # fixed-point iteration on the geodetic latitude
        n = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
        h = p / math.cos(lat) - n
        lat = math.atan2(z, p * (1 - e2 * n / (n + h)))
    n = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    return (x, y, z), math.degrees(lat), math.degrees(math.atan2(y, x)), p / math.cos(lat) - n


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sub_satellite_point_matches_direct_sgp4(preset, cam256, basemap):
    p = PRESETS[preset]
    scen = Scenario(Orbit.preset(preset), cam256, "2026-03-20T12:00:00", "40m", "8m", attitude="nadir",
                    effects=fx.EffectsConfig.clean(), basemap=basemap)
    n = 0
    for _, truth in scen.frames():
        t = datetime.fromisoformat(truth["time"].replace("Z", "+00:00"))
        xyz, lat, lon, h = _independent_sub_point(p["line1"], p["line2"], t)
        assert np.allclose(truth["ecef_km"], xyz, atol=1e-4)
        assert abs(truth["sub_lat"] - lat) < 1e-5
        assert abs((truth["sub_lon"] - lon + 180) % 360 - 180) < 1e-5
        assert abs(truth["alt_km"] - h) < 1e-3
        # nadir: the boresight point is the sub-satellite point
        assert abs(truth["bore_lat"] - lat) < 1e-5 and abs((truth["bore_lon"] - lon + 180) % 360 - 180) < 1e-5
        assert truth["tilt_deg"] < 1e-4
        n += 1
    assert n == 5


# ---- yaw convention -------------------------------------------------------------------------------

@pytest.mark.parametrize("tilt_deg,tilt_az_deg", [(5.0, 45.0), (20.0, 130.0), (30.0, 300.0)])
def test_yaw_is_the_image_up_direction_on_the_ground_also_off_nadir(cam256, tilt_deg, tilt_az_deg):
    """CONVENTIONS: the azimuth of the image's up direction (towards row 0) at the boresight ground point:
    where that point moves on the ground as the ray steps from the image centre towards row 0. Off nadir it
    is not the camera's up axis projected on the horizontal (4 deg apart here at 20 deg of tilt)."""
    lat, lon, alt = 45.0, 7.0, 600.0
    pos = geodesy.geodetic_to_ecef(lat, lon, alt)
    for cam in (cam256, Camera(256, 256, 152.5, 150.0, 157.5, 107.5)):
        r = nadir_attitude(lat, lon, 70.0) @ tilt_rotation(tilt_deg, tilt_az_deg)
        c = (cam.width - 1) / 2.0, (cam.height - 1) / 2.0
        ground = []
        for dv in (0.0, -0.01):                               # the centre pixel, and a hundredth of a row up
            p, ok = geodesy.ray_ellipsoid(pos, r @ cam.pixel_rays(np.float64(c[0]), np.float64(c[1] + dv)))
            ground.append(p)
        blat, blon = (float(x) for x in geodesy.surface_to_geodetic(ground[0]))
        e, n, _ = geodesy.enu_basis(blat, blon)
        step = ground[1] - ground[0]
        expected = math.degrees(math.atan2(step @ e, step @ n)) % 360.0
        got = yaw_of_attitude(r, blat, blon, cam.centre_ray())
        assert abs((got - expected + 180.0) % 360.0 - 180.0) < 0.01


@pytest.mark.parametrize("yaw", [0.0, 37.0, 90.0, 200.0])
def test_yaw_convention_north_direction(cam256, yaw):
    lat, lon, alt = 45.0, 7.0, 600.0
    pos = geodesy.geodetic_to_ecef(lat, lon, alt)
    r = nadir_attitude(lat, lon, yaw)
    assert abs((yaw_of_attitude(r, lat, lon) - yaw + 180) % 360 - 180) < 1e-9
    c = np.array([cam256.cx, cam256.cy])
    pts = []
    for az in (0.0, 90.0):                                    # 100 km north, 100 km east of the boresight
        la, lo = geodesy.destination(lat, lon, az, 100.0)
        pts.append(geodesy.geodetic_to_ecef(la, lo, 0.0))
    (un, vn), (ue, ve) = [np.array(project_ground(cam256, pos, r, p)) - c for p in pts]
    # image "up" is -v; north appears at angle -yaw (counter-clockwise) from up, east at 90 - yaw
    ang_n = math.degrees(math.atan2(un, -vn))                 # clockwise angle from image up
    ang_e = math.degrees(math.atan2(ue, -ve))
    assert abs((ang_n + yaw + 180) % 360 - 180) < 0.5
    assert abs((ang_e - (90 - yaw) + 180) % 360 - 180) < 0.5
    if yaw == 0.0:
        assert vn < -20 and abs(un) < 1.0                     # moving north moves up the image


def test_yaw_37_is_an_image_rotation(basemap, cam256):
    lat, lon, alt = 46.5, 9.0, 500.0                          # the Alps: texture everywhere
    im0, _ = single_frame(basemap, cam256, lat, lon, alt, 0.0)
    im37, tr = single_frame(basemap, cam256, lat, lon, alt, 37.0)
    assert abs(tr["yaw_deg"] - 37.0) < 1e-6
    c = (cam256.cx, cam256.cy)
    yy, xx = np.mgrid[0:cam256.height, 0:cam256.width]
    disk = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 < (0.45 * cam256.width) ** 2
    rot = lambda img, a: cv2.warpAffine(img, cv2.getRotationMatrix2D(c, a, 1.0), (cam256.width, cam256.height),
                                        flags=cv2.INTER_LINEAR)
    good = ncc(grey(rot(im0, 37.0)), grey(im37), disk)        # positive angle = counter-clockwise content
    bad = ncc(grey(rot(im0, -37.0)), grey(im37), disk)
    assert good > 0.97, good
    assert good - bad > 0.2, (good, bad)


# ---- attitude laws and footprint ------------------------------------------------------------------

@pytest.mark.parametrize("attitude,tilt", [("nadir", 0.0), ("tilt", 5.0), ("jitter", 0.0)])
def test_boresight_inside_footprint(attitude, tilt, cam256, basemap):
    scen = Scenario(Orbit.preset("sso"), cam256, "2026-03-20T10:00:00", "30m", "5m", attitude=attitude,
                    tilt_deg=tilt, effects=fx.EffectsConfig.clean(), basemap=basemap, seed=4)
    for _, tr in scen.frames():
        d = geodesy.great_circle_km(tr["sub_lat"], tr["sub_lon"], tr["bore_lat"], tr["bore_lon"])
        assert d <= tr["footprint_half_width_km"]
        assert abs(tr["footprint_half_width_km"] - tr["alt_km"] * math.tan(math.radians(40))) < 1e-2
        if attitude == "tilt":
            assert abs(tr["tilt_deg"] - 5.0) < 1e-3
            assert d > 0.8 * tr["alt_km"] * math.tan(math.radians(5.0))
        if attitude == "jitter":
            assert tr["tilt_deg"] < 2.0


def bearing_deg(lat1, lon1, lat2, lon2):
    p1, l1, p2, l2 = map(math.radians, (lat1, lon1, lat2, lon2))
    return math.degrees(math.atan2(math.sin(l2 - l1) * math.cos(p2),
                                   math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(l2 - l1)))


def test_track_yaw_follows_ground_track(cam256, basemap):
    scen = Scenario(Orbit.preset("iss"), cam256, "2026-03-20T12:00:00", "3m", "60s", attitude="nadir",
                    effects=fx.EffectsConfig.clean(), basemap=basemap)
    trs = [tr for _, tr in scen.frames()]
    for a, b in zip(trs, trs[1:]):
        # azimuth of the sub-point's motion, mid-way, vs the yaws at both ends
        az = bearing_deg(a["sub_lat"], a["sub_lon"], b["sub_lat"], b["sub_lon"])
        mid = math.degrees(math.atan2(math.sin(math.radians(a["yaw_deg"])) + math.sin(math.radians(b["yaw_deg"])),
                                      math.cos(math.radians(a["yaw_deg"])) + math.cos(math.radians(b["yaw_deg"]))))
        assert abs((az - mid + 180) % 360 - 180) < 1.0


def test_truth_quaternion_and_velocity(cam256, basemap):
    scen = Scenario(Orbit.preset("iss"), cam256, "2026-03-20T12:00:00", "2m", "60s", attitude="tilt",
                    tilt_deg=20.0, effects=fx.EffectsConfig.clean(), basemap=basemap, seed=1)
    for _, tr in scen.frames():
        r = geodesy.matrix_from_quat(tr["q_cam2ecef_wxyz"])
        assert abs(yaw_of_attitude(r, tr["bore_lat"], tr["bore_lon"]) - tr["yaw_deg"]) < 1e-3
        pb, ok = geodesy.ray_ellipsoid(np.array(tr["ecef_km"]), r[:, 2])
        la, lo = geodesy.surface_to_geodetic(pb)
        assert ok and abs(la - tr["bore_lat"]) < 1e-5 and abs(lo - tr["bore_lon"]) < 1e-5
        assert 7.0 < np.linalg.norm(tr["velocity_ecef_km_s"]) < 8.0


def test_single_frame_pose(basemap, cam256):
    img, tr = single_frame(basemap, cam256, -23.5, 133.0, 550.0, 123.0)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    assert abs(tr["bore_lat"] + 23.5) < 1e-6 and abs(tr["bore_lon"] - 133.0) < 1e-6
    assert abs(tr["alt_km"] - 550.0) < 1e-6 and abs(tr["yaw_deg"] - 123.0) < 1e-6
    assert tr["sun_elev_deg"] > 60                       # default time: local noon at the equinox
    _, tr2 = single_frame(basemap, cam256, -23.5, 133.0, 550.0, 123.0, tilt_deg=10.0, tilt_az_deg=0.0)
    assert abs(tr2["tilt_deg"] - 10.0) < 1e-6
    # tilting towards image up (yaw 123) moves the boresight towards azimuth 123 from the sub-point
    assert abs((bearing_deg(-23.5, 133.0, tr2["bore_lat"], tr2["bore_lon"]) - 123.0 + 180) % 360 - 180) < 1.0
    _, tr3 = single_frame(basemap, cam256, -23.5, 133.0, 550.0, 123.0, tilt_deg=10.0, tilt_az_deg=90.0)
    assert abs((bearing_deg(-23.5, 133.0, tr3["bore_lat"], tr3["bore_lon"]) - 213.0 + 180) % 360 - 180) < 1.0


# ---- determinism ----------------------------------------------------------------------------------

def test_determinism_by_seed(cam256, basemap):
    def run(seed):
        scen = Scenario(Orbit.preset("iss"), cam256, "2026-03-20T12:47:00", "3m", "60s", seed=seed, basemap=basemap)
        return [(im.tobytes(), tr) for im, tr in scen.frames()], scen
    a, scen = run(5)
    b, _ = run(5)
    c, _ = run(6)
    assert [x[0] for x in a] == [x[0] for x in b] and [x[1] for x in a] == [x[1] for x in b]
    assert all(x[0] != y[0] for x, y in zip(a, c, strict=True))
    # random access gives the same frame as the stream
    im1, tr1 = scen.frame(1)
    assert im1.tobytes() == a[1][0] and tr1 == a[1][1]


def test_basemap_sample_any_shape(basemap):
    rng = np.random.default_rng(2)
    lat = rng.uniform(-80, 80, 40_000)                       # 1-D and longer than remap's 32767 rows
    lon = rng.uniform(-540, 540, 40_000)                     # any longitude wraps on a global map
    img, land = basemap.sample(lat, lon, 1.5)
    assert img.shape == (40_000, 3) and land.shape == (40_000,)
    img2, land2 = basemap.sample(lat[:1000].reshape(40, 25), lon[:1000].reshape(40, 25), 1.5)
    # (2-D maps go through fixed-point maps, others through float maps: rounding may differ by 1 DN)
    assert np.abs(img2.reshape(-1, 3).astype(int) - img[:1000]).max() <= 1
    assert np.allclose(land2.ravel(), land[:1000], atol=1e-3)
    # nearest texel agrees with a direct lookup at level 0 (away from texel edges it is the texel)
    x, y = basemap.to_pixel(lat[:50], lon[:50])
    direct = basemap.image[np.round(y).astype(int), np.round(x).astype(int) % basemap.image.shape[1]]
    near = basemap.sample(lat[:50], lon[:50], 0.0)[0]
    assert np.median(np.abs(direct.astype(int) - near)) < 20
    nan_img, nan_land = basemap.sample(np.array([np.nan, 10.0]), np.array([np.nan, 10.0]))
    assert (nan_img[0] == 0).all() and nan_land[0] == 0 and nan_img[1].any()
