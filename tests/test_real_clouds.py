"""A real global cloud field laid where it lies (earthfix.sim.real_clouds; ``earthfix eval --cloud-field``): sampled
at the right place, read from an alpha channel, refused when it is not a global image, and over the eval's sets it
replaces the simulator's clouds for the plain-cover sets only, with the same poses."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from earthfix.sim.real_clouds import CloudFieldError, GlobalCloudField
from earthfix.tools import evaluate as ev


def test_a_global_cloud_field_is_sampled_where_it_lies_and_wraps_at_the_dateline():
    field = np.zeros((180, 360), np.float32)                     # 1 deg per px, row 0 at 90 N, column 0 at 180 W
    field[90 - 21:90 - 19, 180 + 9:180 + 11] = 1.0               # a cloud at 20 N, 10 E
    field[90 - 1:90 + 1, 0:2] = 0.5                              # and one at the equator, just east of 180 W
    clouds = GlobalCloudField(field)
    a, thick = clouds.sample_with_thickness(np.array([[20.0, 20.0, -20.0]]), np.array([[10.0, -10.0, 10.0]]))
    assert a[0, 0] > 0.9 and a[0, 1] == 0.0 and a[0, 2] == 0.0
    assert np.array_equal(a, thick)
    b, _ = clouds.sample_with_thickness(np.array([[0.0, 0.0]]), np.array([[-179.5, 180.5]]))
    assert b[0, 0] > 0.4 and b[0, 1] > 0.4
    c, _ = clouds.sample_with_thickness(np.array([[np.nan]]), np.array([[0.0]]))   # a ray off the Earth
    assert c[0, 0] == 0.0


def test_the_alpha_channel_is_the_opacity_and_a_field_that_is_not_global_is_refused(tmp_path):
    rgba = np.zeros((90, 180, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:45, :, 3] = 0                                          # the northern hemisphere clear
    cv2.imwrite(str(tmp_path / "clouds.png"), rgba)
    f = GlobalCloudField.load(tmp_path / "clouds.png")
    assert f.cloud_share == pytest.approx(0.5)
    a, _ = f.sample_with_thickness(np.array([[45.0, -45.0]]), np.array([[0.0, 0.0]]))
    assert a[0, 0] == 0.0 and a[0, 1] == 1.0
    cv2.imwrite(str(tmp_path / "square.png"), rgba[:, :90])
    with pytest.raises(CloudFieldError, match="not a global"):
        GlobalCloudField.load(tmp_path / "square.png")
    with pytest.raises(CloudFieldError, match="cannot read"):
        GlobalCloudField.load(tmp_path / "missing.png")


def test_a_real_field_is_drawn_whatever_the_configured_cover_and_a_procedural_one_is_not_at_cover_0():
    """A real field carries its own cover: with ``cloud_cover`` 0 (an effects YAML's, say) it still lays its
    clouds; cover 0 still means no clouds for the simulator's own field."""
    from datetime import datetime, timezone

    from earthfix.onboard.camera import Camera
    from earthfix.sim import scenario
    from earthfix.sim.basemap import Basemap
    from earthfix.sim.effects import EffectsConfig
    from earthfix.tools.framesets import solar_time

    cover0 = EffectsConfig.from_dict({"clouds": True, "cloud_cover": 0.0})
    overcast = GlobalCloudField(np.ones((90, 180), np.float32))
    t = solar_time(20.0, 12.0, datetime(2026, 3, 20, tzinfo=timezone.utc))
    frac = {}
    for name, clouds in (("real", overcast), ("simulator", None)):
        _, truth = scenario.single_frame(Basemap.default(), Camera.from_fov(64, 64, 80.0), 15.0, 20.0, 600.0, 0.0,
                                         t=t, effects=cover0, rng=np.random.default_rng(0), clouds=clouds)
        frac[name] = truth["cloud_frac"]
    assert frac["real"] > 0.99 and frac["simulator"] == 0.0


def test_the_eval_sets_take_the_field_with_the_same_poses_and_the_veiled_sets_keep_the_simulators():
    sets = {s.name: s for s in ev.SCENARIOS}
    assert ev.takes_cloud_field(sets["land256"]) and ev.takes_cloud_field(sets["cloudy"])
    assert not ev.takes_cloud_field(sets["stress_thin"]) and not ev.takes_cloud_field(sets["stress_cumulus"])
    assert not ev.takes_cloud_field(sets["night"]) and not ev.takes_cloud_field(sets["stress_translucent"])
    overcast = GlobalCloudField(np.ones((90, 180), np.float32))
    clear = GlobalCloudField(np.zeros((90, 180), np.float32))
    truths = {}
    for name, field in (("simulator", None), ("overcast", overcast), ("clear", clear)):
        _, frames = ev.scenario_frames(sets["land256"], 3, 4321, cloud_field=field)
        truths[name] = [t for _, t in frames]
    for k in ("overcast", "clear"):
        assert [t["bore_lat"] for t in truths[k]] == [t["bore_lat"] for t in truths["simulator"]]
    assert all(t["cloud_frac"] > 0.99 and not ev.is_eligible(t) for t in truths["overcast"])
    assert all(t["cloud_frac"] == 0.0 for t in truths["clear"])
    _, thin = ev.scenario_frames(sets["stress_thin"], 1, 4321, cloud_field=overcast)
    assert all(t["cloud_frac"] < 0.99 for _, t in thin)
    _, regional = ev.scenario_frames(sets["land256"], 2, 4321, region=(-50.0, 5.0, -85.0, -35.0), cloud_field=overcast)
    assert all(t["cloud_frac"] > 0.99 for _, t in regional)          # --region draws its places, the field still lies


def test_eval_refuses_a_cloud_field_that_is_not_global_before_any_work(tmp_path, capsys):
    import argparse
    cv2.imwrite(str(tmp_path / "square.png"), np.zeros((64, 64, 3), np.uint8))
    sub = argparse.ArgumentParser().add_subparsers()
    ev.register(sub)
    args = sub.choices["eval"].parse_args(["--cloud-field", str(tmp_path / "square.png"), "--out", str(tmp_path / "r")])
    assert ev.run(args) == 2
    assert "not a global" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_reports_command_line_repeats_the_cloud_field():
    import argparse
    sub = argparse.ArgumentParser().add_subparsers()
    ev.register(sub)
    args = sub.choices["eval"].parse_args(["--cloud-field", "clouds.png", "--bundle", "B", "--frames", "5"])
    assert "--cloud-field clouds.png" in ev.command_line(args)


@pytest.mark.parametrize("cmd", ["replay", "demo"])
def test_replay_and_demo_refuse_a_cloud_field_that_is_not_global_in_one_line(tmp_path, capsys, cmd):
    from earthfix.cli import main
    cv2.imwrite(str(tmp_path / "square.png"), np.zeros((64, 64, 3), np.uint8))
    args = [cmd] + (["--preset", "iss"] if cmd == "replay" else []) + [
        "--duration", "1m", "--cloud-field", str(tmp_path / "square.png"), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"earthfix {cmd}: error:") and "not a global" in err, err
