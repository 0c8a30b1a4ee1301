"""CCSDS OEM writer/reader (earthfix.tools.oem), and the replay products end to end with a stub localizer.

The replay test drives ``run_replay`` with a stub scenario (sgp4 truth, no rendering) and a stub localizer
that returns truth + noise fixes and a few false ones, then checks that every output file of the replay
contract is written and parseable, and that the report's fields are there and sane.
"""
from __future__ import annotations

import json
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera
from earthfix.onboard.fix import Candidate, Fix
from earthfix.sim.orbit import Orbit, iso, parse_time
from earthfix.tools.oem import OEMError, format_epoch, parse_epoch, read_oem, write_oem

T0 = datetime(2025, 11, 10, 6, 0, tzinfo=timezone.utc)


def _states(n=12, step_s=60):
    orb = Orbit.preset("iss")
    epochs = [T0 + timedelta(seconds=step_s * i) for i in range(n)]
    return epochs, np.array([np.concatenate(orb.state(t)) for t in epochs])


def _cov():
    a = np.random.default_rng(0).normal(size=(6, 6)) * [1, 1, 1, 1e-3, 1e-3, 1e-3]
    return a @ a.T


def test_oem_round_trip(tmp_path):
    epochs, states = _states()
    cov = _cov()
    path = write_oem(tmp_path / "e.oem", epochs, states, object_name="ISS (ZARYA)", object_id="1998-067A",
                     covariances=[(epochs[0], cov), (epochs[-1], 2 * cov)], comments=["round trip"])
    text = path.read_text()
    assert text.startswith("CCSDS_OEM_VERS = 2.0\n")
    for key in ("CREATION_DATE", "ORIGINATOR", "META_START", "OBJECT_NAME = ISS (ZARYA)", "CENTER_NAME = EARTH",
                "REF_FRAME = ITRF", "TIME_SYSTEM = UTC", "START_TIME", "STOP_TIME", "META_STOP",
                "COVARIANCE_START", "COVARIANCE_STOP"):
        assert key in text
    oem = read_oem(path)
    assert oem.header["CCSDS_OEM_VERS"] == "2.0" and oem.comments == ["round trip"]
    (seg,) = oem.segments
    assert seg.meta["OBJECT_ID"] == "1998-067A"
    assert seg.epochs == epochs
    assert np.allclose(seg.states[:, :3], states[:, :3], atol=1e-6)       # km, 6 decimals
    assert np.allclose(seg.states[:, 3:], states[:, 3:], atol=1e-9)       # km/s, 9 decimals
    assert len(seg.covariances) == 2
    t_cov, frame, c = seg.covariances[1]
    assert t_cov == epochs[-1] and frame == "ITRF"
    assert np.allclose(c, 2 * cov, rtol=1e-6, atol=1e-15)


def test_epoch_formats():
    t = datetime(2025, 11, 10, 6, 1, 2, 345678, tzinfo=timezone.utc)
    assert format_epoch(t) == "2025-11-10T06:01:02.345678"
    assert parse_epoch(format_epoch(t)) == t
    assert parse_epoch("2025-314T06:01:02.5Z") == datetime(2025, 11, 10, 6, 1, 2, 500000, tzinfo=timezone.utc)
    assert format_epoch(t.timestamp()) == "2025-11-10T06:01:02.345678"
    with pytest.raises(OEMError):
        parse_epoch("10/11/2025 06:01")


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.replace("CCSDS_OEM_VERS = 2.0", "CCSDS_OPM_VERS = 2.0"), "first line"),
    (lambda s: s.replace("REF_FRAME = ITRF\n", ""), "REF_FRAME"),
    (lambda s: s.replace("TIME_SYSTEM = UTC", "TIME_SYSTEM = GPS"), "UTC"),
    (lambda s: s.replace("META_STOP\n\n", "META_STOP\n\n2025-11-10T06:00:00 1 2 3\n"), "6 \\(or 9\\) numbers"),
    (lambda s: s.replace("META_STOP\n\n", "META_STOP\n\n2025-11-10T06:00:00 1 2 3 4 5 six\n"), "non-numeric"),
    (lambda s: s.split("COVARIANCE_START")[0].rstrip() + "\n2025-11-10T05:00:00.000000 1 2 3 4 5 6\n", "increasing"),
    (lambda s: s.replace("COVARIANCE_STOP\n", ""), "truncated"),
])
def test_reader_rejects_malformed(tmp_path, mutate, message):
    epochs, states = _states(4)
    path = write_oem(tmp_path / "e.oem", epochs, states, object_name="X", covariances=[(epochs[0], _cov())])
    bad = tmp_path / "bad.oem"
    bad.write_text(mutate(path.read_text()))
    with pytest.raises(OEMError, match=message):
        read_oem(bad)


def test_writer_refuses_bad_input(tmp_path):
    epochs, states = _states(3)
    with pytest.raises(OEMError):
        write_oem(tmp_path / "a.oem", epochs[::-1], states, object_name="X")
    with pytest.raises(OEMError):
        write_oem(tmp_path / "b.oem", epochs, states[:, :5], object_name="X")
    states[1, 2] = np.nan
    with pytest.raises(OEMError):
        write_oem(tmp_path / "c.oem", epochs, states, object_name="X")


def test_parses_with_the_oem_package(tmp_path):
    """Independent check with the PyPI 'oem' parser, when it is installed."""
    oem_pkg = pytest.importorskip("oem")
    epochs, states = _states()
    cov = _cov()
    path = write_oem(tmp_path / "e.oem", epochs, states, object_name="ISS", covariances=[(epochs[-1], cov)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msg = oem_pkg.OrbitEphemerisMessage.open(str(path))
        (seg,) = list(msg)
        got = list(seg.states)
        covs = list(seg.covariances)
    assert len(got) == len(epochs)
    assert np.allclose(got[3].position, states[3, :3], atol=1e-6)
    assert np.allclose(got[3].velocity, states[3, 3:], atol=1e-9)
    assert seg.metadata["REF_FRAME"] == "ITRF" and len(covs) == 1
    assert np.allclose(covs[0].matrix, cov, rtol=1e-6, atol=1e-15)


# ---- replay products with stubs -------------------------------------------------------------------------

class StubScenario:
    """sgp4 truth every ``step_s`` without rendering; 'eligible' = day over land (land-mask lookup)."""

    def __init__(self, minutes=100, step_s=20, start="2025-11-10T19:00:00Z"):
        from earthfix.sim.basemap import global_land_fraction
        self.orbit = Orbit.preset("iss")
        self.camera = Camera.from_fov(256, 256, 80)
        self.start = parse_time(start)
        self.n = int(minutes * 60 / step_s)
        self.step_s = step_s
        self.interval = f"{step_s}s"
        self.seed = 0
        self.land = global_land_fraction("10min")

    def __len__(self):
        return self.n

    def frames(self):
        from earthfix.sim.effects import sun_elevation_deg
        h, w = self.land.shape
        for i in range(self.n):
            t = self.start + timedelta(seconds=i * self.step_s)
            r, _ = self.orbit.state(t)
            lat, lon, alt = (float(x) for x in geodesy.ecef_to_geodetic(r))
            sun = float(sun_elevation_deg(lat, lon, t))
            land = float(self.land[int((90 - lat) / 180 * h) % h, int((lon + 180) / 360 * w) % w])
            yield np.zeros((8, 8, 3), np.uint8), {
                "frame": f"frame_{i:05d}.png", "time": iso(t), "ecef_km": [float(c) for c in r],
                "sub_lat": lat, "sub_lon": lon, "alt_km": alt, "yaw_deg": 0.0, "bore_lat": lat, "bore_lon": lon,
                "sun_elev_deg": sun, "cloud_frac": 0.0, "land_clear_frac": land,
                "eligible": sun > 0 and land >= 0.2}


class StubLocalizer:
    """Sees the truth of the frame being located: fixes on 70 % of eligible frames (3 km horizontal, 5 km
    altitude noise), a false fix (200-3000 km off) on 3 % of all frames, and one frame that raises."""

    def __init__(self, scenario, seed=0):
        self.rng = np.random.default_rng(seed)
        self.truth = None
        self.calls = 0
        frames = scenario.frames

        def spy():
            for image, truth in frames():
                self.truth = truth
                yield image, truth
        scenario.frames = spy

    def locate(self, frame, camera, attitude=None, time=None):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("stub failure")
        tr, rng = self.truth, self.rng
        assert time == tr["time"] and attitude is None
        if rng.random() < 0.03:
            lat, lon = geodesy.destination(tr["sub_lat"], tr["sub_lon"], rng.uniform(0, 360), rng.uniform(200, 3000))
        elif tr["eligible"] and rng.random() < 0.7:
            lat, lon = geodesy.destination(tr["sub_lat"], tr["sub_lon"], rng.uniform(0, 360), abs(rng.normal(0, 3)))
        else:
            return Fix(reason="no match", latency_ms=5.0, stages_ms={"encode_ms": 2.0, "total_ms": 5.0})
        lat, lon, alt = float(lat), float(lon), tr["alt_km"] + rng.normal(0, 5)
        return Fix(fix=True, lat=lat, lon=lon, sub_lat=lat, sub_lon=lon, alt_km=alt, yaw_deg=0.0, confidence=0.9,
                   candidates=[Candidate(lat, lon, 0.8)], latency_ms=20.0,
                   stages_ms={"encode_ms": 3.0, "verify_ms": 15.0, "total_ms": 20.0},
                   ecef_km=[float(c) for c in geodesy.geodetic_to_ecef(lat, lon, alt)])


def test_replay_with_stub_localizer_writes_every_product(tmp_path):
    from earthfix.tools.replay import run_replay, summary_text
    scenario = StubScenario()
    report = run_replay(scenario, StubLocalizer(scenario), tmp_path, progress=False)
    for name in ("truth.jsonl", "fixes.jsonl", "report.md", "report.json", "track.png", "track.geojson",
                 "ephemeris.oem"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name

    truth = [json.loads(x) for x in (tmp_path / "truth.jsonl").read_text().splitlines()]
    fixes = [json.loads(x) for x in (tmp_path / "fixes.jsonl").read_text().splitlines()]
    assert len(truth) == len(fixes) == len(scenario) == report["frames"]
    locate_keys = {"frame", "fix", "lat", "lon", "sub_lat", "sub_lon", "alt_km", "yaw_deg", "confidence",
                   "candidates", "latency_ms"}
    for tr, fx in zip(truth, fixes, strict=True):
        assert locate_keys <= fx.keys() and "time" in fx and "fused_ecef_km" in fx
        assert fx["frame"] == tr["frame"] and fx["time"] == tr["time"]
    assert fixes[2]["fix"] is False and fixes[2]["error"].startswith("internal error: RuntimeError")
    first = next(i for i, f in enumerate(fixes) if f["fused_ecef_km"] is not None)
    assert all(f["fused_ecef_km"] is None for f in fixes[:first])
    assert all(f["fused_ecef_km"] is not None for f in fixes[first:])

    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["frames"] == report["frames"]
    assert 0.5 < report["fix_rate"] <= 1.0
    assert report["boresight_error_km_eligible"]["p50"] < 5.0
    sub = report["sub_satellite_error_km"]                  # the stub's fixes: 3 km about the true sub point
    assert sub["n"] == report["fixes"] and sub["p50"] < 5.0 and sub["p99"] > 200.0   # its false fixes too
    assert "sub-satellite point error" in (tmp_path / "report.md").read_text()
    assert report["false_fixes"] >= 1
    assert report["false_fix_rate"] == pytest.approx(report["false_fixes"] / report["frames"], abs=1e-5)
    assert report["latency_ms"]["total"]["p50"] == pytest.approx(5.0)
    assert set(report["latency_ms"]["stages"]) == {"encode_ms", "verify_ms", "total_ms"}
    assert report["time_to_first_fix_s"] is not None
    assert report["time_to_first_estimate_s"] >= report["time_to_first_fix_s"]
    f = report["fused"]
    assert f["false_fixes_rejected"] == report["false_fixes"] - sum(
        1 for x in fixes if x["fix"] and x["ecef_km"] is None)
    assert f["good_fixes_rejected"] <= 2
    assert f["rms_km_orbit2"] is None                  # 100 min < two orbits
    assert f["final_error_km"] < 10.0 and f["ephemeris_rms_km"] < 10.0
    assert len(f["error_km_series"]) == len(fixes) - first
    assert 51.0 < f["elements"]["i_deg"] < 52.3
    assert "fix rate" in (tmp_path / "report.md").read_text()
    assert "ephemeris.oem" in summary_text(report, tmp_path)

    gj = json.loads((tmp_path / "track.geojson").read_text())
    kinds = [ft["properties"]["kind"] for ft in gj["features"]]
    assert kinds[:2] == ["truth", "fused"] and kinds.count("fix") == report["fixes"]
    assert all(len(line) > 1 for line in gj["features"][0]["geometry"]["coordinates"])

    oem = read_oem(tmp_path / "ephemeris.oem")
    seg = oem.segments[0]
    assert seg.meta["REF_FRAME"] == "ITRF" and len(seg.covariances) == 2
    # the ephemeris is the fused orbit: close to the truth at its last epoch
    r_true, _ = scenario.orbit.state(seg.epochs[-1])
    assert np.linalg.norm(seg.states[-1, :3] - r_true) < 10.0
    png = (tmp_path / "track.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
