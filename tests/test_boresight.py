"""CONVENTIONS' boresight is the ray through the image centre, also for a calibrated camera whose principal
point is off the centre: the Localizer reports where the image centre looks, and takes "nadir" as that ray."""
from __future__ import annotations

import numpy as np

from support import localizer_config

LAT, LON, ALT_KM, YAW_DEG = 34.0, -110.0, 600.0, 37.0


def test_an_off_centre_camera_is_located_at_its_image_centre(tiny_bundle, basemap):
    from earthfix.onboard import geodesy
    from earthfix.onboard.camera import Camera, nadir_attitude, yaw_of_attitude
    from earthfix.onboard.localizer import Localizer
    from earthfix.sim import render
    cam = Camera(256, 256, 152.5, 150.0, 157.5, 107.5)        # principal point 30 px right, 20 px up
    pos = geodesy.geodetic_to_ecef(LAT, LON, ALT_KM)
    r = nadir_attitude(LAT, LON, YAW_DEG) @ cam.centring_rotation()
    # where the image centre looks, cast here from the camera's own numbers: straight down
    d = r @ np.array([(127.5 - 157.5) / 152.5, (127.5 - 107.5) / 150.0, 1.0])
    bp, ok = geodesy.ray_ellipsoid(pos, d / np.linalg.norm(d))
    blat, blon = (float(x) for x in geodesy.surface_to_geodetic(bp))
    assert ok and geodesy.great_circle_km(blat, blon, LAT, LON) < 1e-3
    # the optical axis looks ~150 km away: a fix there would be a false one
    ap, _ = geodesy.ray_ellipsoid(pos, r[:, 2])
    assert geodesy.great_circle_km(*geodesy.surface_to_geodetic(ap), LAT, LON) > 100.0
    view = render.render(basemap, cam, pos, r)
    fix = Localizer.load(tiny_bundle, config=localizer_config()).locate(view.image, cam)
    assert fix.fix, fix.reason
    assert geodesy.great_circle_km(fix.lat, fix.lon, blat, blon) < 5.0
    assert geodesy.great_circle_km(fix.sub_lat, fix.sub_lon, LAT, LON) < 5.0
    assert abs(fix.alt_km - ALT_KM) < 15.0
    yaw = yaw_of_attitude(r, blat, blon, cam.centre_ray())
    assert abs((fix.yaw_deg - yaw + 180.0) % 360.0 - 180.0) < 1.0
    assert fix.evidence["tilt_deg"] < 3.0           # nadir is the image centre's, not the axis's (~12 deg off)
