"""``earthfix fuse``: an orbit from locate's JSON lines and the frames' times, with no simulator."""
import json
from datetime import timedelta

import numpy as np

from earthfix.cli import main
from earthfix.onboard import geodesy
from earthfix.sim.orbit import Orbit, iso
from earthfix.tools.oem import read_oem


def _write_run(tmp_path, *, bad_lines=True):
    """An ISS orbit, a frame every 10 s for 95 min, a fix on every 4th (3 km noise), two of them wrong by
    thousands of km; locate-like lines without times and a times file holding the truth."""
    rng = np.random.default_rng(3)
    orbit = Orbit.preset("iss")
    t0 = Orbit.preset_start("iss")
    fixes, times = [], []
    for i in range(570):
        t = t0 + timedelta(seconds=10 * i)
        r = np.asarray(orbit.state(t)[0], float)
        name = f"frame_{i:05d}.png"
        times.append({"frame": name, "time": iso(t), "ecef_km": r.tolist()})
        line = {"frame": f"D/{name}", "fix": False, "lat": None, "lon": None, "sub_lat": None, "sub_lon": None,
                "alt_km": None, "yaw_deg": None, "confidence": 0.0, "candidates": [], "latency_ms": 9.0}
        if i % 4 == 0:
            p = r + rng.normal(0.0, 3.0, 3)
            if i in (200, 404):
                p = r + np.array([3000.0, -2000.0, 1000.0])
            lat, lon, alt = (float(x) for x in geodesy.ecef_to_geodetic(p))
            line.update(fix=True, sub_lat=lat, sub_lon=lon, alt_km=alt, confidence=0.99)
        fixes.append(json.dumps(line))
    if bad_lines:
        fixes.insert(10, "{not json")
        fixes.insert(20, json.dumps({"frame": "D/elsewhere.png", "fix": True, "sub_lat": 0, "sub_lon": 0, "alt_km": 500}))
        fixes.insert(30, json.dumps({"frame": "D/garbled.png", "fix": True, "sub_lat": "north", "sub_lon": 0,
                                     "alt_km": 500, "time": times[100]["time"]}))
    (tmp_path / "fixes.jsonl").write_text("\n".join(fixes) + "\n")
    (tmp_path / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in times))
    return fixes, times


def test_fuse_makes_the_orbit_from_fixes_and_times_and_names_what_it_skipped(tmp_path, capsys):
    _write_run(tmp_path)
    out = tmp_path / "orbit"
    rc = main(["fuse", str(tmp_path / "fixes.jsonl"), "--times", str(tmp_path / "truth.jsonl"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0
    assert ":11: not JSON" in err and ":31: unusable position" in err
    assert "1 frame(s) without a time in the times file skipped (first: line 21, frame 'D/elsewhere.png')" in err
    recs = [json.loads(x) for x in (out / "fused.jsonl").read_text().splitlines()]
    assert len(recs) == 571 and [r["time"] for r in recs] == sorted(r["time"] for r in recs)
    by_frame = {r["frame"]: r for r in recs}
    assert by_frame["D/frame_00200.png"]["fusion"] == "rejected" and by_frame["D/frame_00404.png"]["fusion"] == "rejected"
    assert by_frame["D/frame_00001.png"]["fusion"] is None
    assert sum(r["fusion"] == "used" for r in recs) >= 135
    rep = json.loads((out / "report.json").read_text())
    assert rep["orbit"] and rep["used"] >= 135 and rep["rejected"] >= 2
    assert abs(rep["elements"]["i_deg"] - 51.6) < 0.2 and 6750 < rep["elements"]["a_km"] < 6830
    assert rep["truth"]["final_fused_err_km"] < 2.0 and rep["truth"]["ephemeris_rms_km"] < 2.0
    oem = read_oem(out / "ephemeris.oem")
    seg = oem.segments[0]
    assert seg.meta["REF_FRAME"] == "ITRF" and len(seg.epochs) == rep["ephemeris"]["epochs"] >= 90
    # the ephemeris is the orbit: its last state is the truth at the last frame, to the fused accuracy
    assert np.linalg.norm(np.asarray(seg.states[-1][:3]) - np.asarray(recs[-1]["fused_ecef_km"])) < 2.0
    assert "fused orbit" in (out / "report.md").read_text() and (out / "orbit.png").stat().st_size > 10_000


def test_fuse_takes_a_lines_own_time_and_refuses_a_run_with_none(tmp_path, capsys):
    fixes, times = _write_run(tmp_path, bad_lines=False)
    own = []
    for line, t in zip(fixes, times, strict=True):
        rec = json.loads(line)
        rec["time"] = t["time"]          # replay's fixes.jsonl carries its own times
        own.append(json.dumps(rec))
    (tmp_path / "own.jsonl").write_text("\n".join(own) + "\n")
    assert main(["fuse", str(tmp_path / "own.jsonl"), "--out", str(tmp_path / "o1")]) == 0
    assert json.loads((tmp_path / "o1" / "report.json").read_text())["orbit"]
    capsys.readouterr()
    rc = main(["fuse", str(tmp_path / "fixes.jsonl"), "--out", str(tmp_path / "o2")])   # no times anywhere
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1] == "earthfix fuse: error: no frame with a readable record and time: nothing to fuse"
    assert len(err) == 2 and "570 frame(s) without a time skipped" in err[0] and err[0].endswith("give --times")
