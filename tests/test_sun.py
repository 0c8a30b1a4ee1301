"""The Sun of the flight code (earthfix.onboard.sun), shared with the simulator, and what the frame's time does to
a fix: a pose whose boresight point is dark at that time is no fix (config ``min_sun_elev_deg``), and retrieval
keeps to ground lit then (config ``daylight_search``)."""
from __future__ import annotations

import pytest

from support import localizer_config, needs_model

LAT, LON, ALT_KM, YAW_DEG = 33.0, -105.0, 600.0, 40.0    # the tiny bundle's ground (tests/test_lowres_store.py)
NOON = "2025-06-21T19:00:00Z"                             # about local noon at 105 W
MIDNIGHT = "2025-06-22T07:00:00Z"
DUSK = "2025-06-22T02:30:00Z"                             # the Sun -4.1 deg there: twilight, still a fix
NIGHTFALL = "2025-06-22T03:30:00Z"                        # the Sun -14 deg there


def test_the_sun_is_where_the_almanac_puts_it_and_the_simulator_lights_with_the_same():
    from datetime import datetime, timezone

    import numpy as np

    from earthfix.onboard import sun
    from earthfix.sim import effects
    # the March 2025 equinox (09:01 UTC): the Sun overhead on the equator where it is apparent noon, 12:07 local
    # mean time (the equation of time then is -7.4 min): 46.6 E
    assert sun.sun_elevation_deg(0.0, (12.0 + 7.4 / 60 - 9.0 - 1 / 60) * 15.0, "2025-03-20T09:01:00Z") > 89.5
    assert sun.sun_elevation_deg(LAT, LON, NOON) > 70.0 and sun.sun_elevation_deg(LAT, LON, MIDNIGHT) < -30.0
    t = datetime(2026, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    assert np.allclose(effects.sun_direction_ecef(t), sun.sun_direction_ecef(t), atol=1e-7)
    assert sun.utc_posix_s("2025-11-10T19:00:00Z") == sun.utc_posix_s(t.replace(2025, 11, 10, 19, 0, 0)) \
        == 1762801200.0
    for bad in ("yesterday", None, float("nan"), True):
        with pytest.raises(ValueError):
            sun.utc_posix_s(bad)


@needs_model
def test_a_pose_in_the_dark_at_the_frames_time_is_no_fix(tiny_bundle, basemap):
    from earthfix.onboard import geodesy
    from earthfix.onboard.camera import Camera, nadir_attitude
    from earthfix.onboard.localizer import Localizer
    from earthfix.sim import render
    cam = Camera.from_fov(512, 512, 60)
    img = render.render(basemap, cam, geodesy.geodetic_to_ecef(LAT, LON, ALT_KM),
                        nadir_attitude(LAT, LON, YAW_DEG)).image
    loc = Localizer.load(tiny_bundle, config=dict(localizer_config(), deadline_ms=10000.0))
    day = loc.locate(img, cam, time=NOON)
    assert day.fix and geodesy.great_circle_km(day.lat, day.lon, LAT, LON) < 5.0
    assert day.evidence["sun_elev_deg"] > 70.0
    dusk = loc.locate(img, cam, time=DUSK)               # the place and its neighbours still searched
    assert dusk.fix and -6.0 < dusk.evidence["sun_elev_deg"] < -3.0
    # the same frame said to be taken at night there: lit ground cannot be in the night. Retrieval keeps to the
    # lit Earth, so at midnight the region is not even searched (at nightfall its western edge, still in
    # twilight, is, and the pose found from it is refused) ...
    for t in (NIGHTFALL, MIDNIGHT):
        night = loc.locate(img, cam, time=t)
        assert not night.fix and night.lat is None and night.confidence == 0.0
    assert night.candidates == [] and night.reason == "no candidates"
    # ... and with the search over the whole Earth (daylight_search: false) its pose is refused
    whole = Localizer.load(tiny_bundle, config=dict(localizer_config(), deadline_ms=10000.0, daylight_search=False))
    for t in (NIGHTFALL, MIDNIGHT):
        night = whole.locate(img, cam, time=t)
        assert not night.fix and night.lat is None and night.confidence == 0.0
        assert "in the dark" in night.reason and night.evidence["sun_elev_deg"] < -13.0
    assert loc.locate(img, cam).fix                       # no time: no check
    off = Localizer.load(tiny_bundle, config=dict(localizer_config(), deadline_ms=10000.0, min_sun_elev_deg=-90.0))
    assert off.locate(img, cam, time=MIDNIGHT).fix        # the Sun check off: neither the refusal nor the search
    bad = loc.locate(img, cam, time="yesterday")
    assert not bad.fix and bad.error and "ISO 8601" in bad.error


def test_eval_with_time_gives_locate_each_frames_time_and_its_report_says_so():
    """``earthfix eval --with-time``: each frame located with its truth's UTC time (the contract's locate has
    none, so without the flag locate gets none); the report's command line repeats the flag."""
    import argparse

    from earthfix.onboard.fix import Fix
    from earthfix.tools import evaluate as ev

    class Loc:
        def locate(self, img, cam, attitude=None, time=None):
            self.time = time
            return Fix(candidates=[], encoder_candidates=[], stages_ms={"encode_ms": 1.0})

    truth = {"time": NOON, "footprint_half_width_km": 500.0, "bore_lat": LAT, "bore_lon": LON,
             "sun_elev_deg": 80.0, "land_clear_frac": 0.9}
    sdef = ev.SCENARIOS[0]
    loc = Loc()
    for with_time, want in ((True, NOON), (False, None)):
        rec = ev.evaluate_frame(loc, None, None, truth, sdef, None, with_time)
        assert loc.time == want and rec["fix"] is False
    sub = argparse.ArgumentParser().add_subparsers()
    ev.register(sub)
    for argv, has in ((["--with-time"], True), ([], False)):
        args = sub.choices["eval"].parse_args(argv + ["--bundle", "B", "--frames", "5"])
        assert ("--with-time" in ev.command_line(args).split()) == has
