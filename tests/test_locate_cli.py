"""The locate contract on a mixed batch: one strict-JSON line per frame, in order, ``error`` on each bad one,
nothing else on stdout, no traceback anywhere, exit 0; and one-line refusals with exit 2 for what makes the
whole run impossible (camera, config, attitude).

Needs the shipped encoder (models/encoder_int8.onnx) or ``EARTHFIX_TEST_MODELS=DIR``; skipped otherwise.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from support import ENCODER, localizer_config, needs_model

pytestmark = needs_model


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


@pytest.fixture(scope="module")
def batch(tmp_path_factory, basemap, cam256):
    """A mixed batch of good and bad frames on disk: [(path, kind)], kind good / bad / blank."""
    from earthfix.sim.scenario import single_frame
    d = tmp_path_factory.mktemp("batch")
    good, _ = single_frame(basemap, cam256, 35.0, -110.0, 500.0, 30.0)
    good2, _ = single_frame(basemap, cam256, 33.0, -105.0, 550.0, 200.0)
    rng = np.random.default_rng(0)
    p = cv2.imencode(".png", good)[1].tobytes()
    j = cv2.imencode(".jpg", good2)[1].tobytes()
    files = {
        "good.png": (p, "good"),
        "empty.png": (b"", "bad"),
        "good2.jpg": (j, "good"),
        "notes.png": (b"downlink log, not an image\n" * 3, "bad"),
        "truncated.png": (p[: len(p) // 2], "bad"),
        "grey.png": (cv2.imencode(".png", cv2.cvtColor(good, cv2.COLOR_BGR2GRAY))[1].tobytes(), "good"),
        "truncated.jpg": (j[: len(j) // 3], "bad"),
        "one_pixel.png": (cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes(), "bad"),
        "sixteen_bit.png": (cv2.imencode(".png", good.astype(np.uint16) * 257)[1].tobytes(), "good"),
        "wrong_size.png": (cv2.imencode(".png", cv2.resize(good, (320, 240)))[1].tobytes(), "bad"),
        "bgra.png": (cv2.imencode(".png", np.dstack([good, np.full(good.shape[:2], 255, np.uint8)]))[1].tobytes(),
                     "good"),
        "black.png": (cv2.imencode(".png", np.zeros_like(good))[1].tobytes(), "blank"),
        "damaged_scan.jpg": (j[:len(j) // 2] + j[len(j) // 2 + 300:], "bad"),
        "white.png": (cv2.imencode(".png", np.full_like(good, 255))[1].tobytes(), "blank"),
        "saturated.png": (cv2.imencode(".png", np.clip(good.astype(int) * 8, 0, 255).astype(np.uint8))[1].tobytes(),
                          "honest"),
        "noise.png": (cv2.imencode(".png", rng.integers(0, 256, good.shape, np.uint8))[1].tobytes(), "blank"),
        "bomb.png": (p[:8] + png_chunk(b"IHDR", (30000).to_bytes(4, "big") * 2 + p[24:29]) + p[33:], "bad"),
        "good_again.png": (p, "good"),
    }
    out = []
    for name, (data, kind) in files.items():
        (d / name).write_bytes(data)
        out.append((str(d / name), kind))
    (d / "a_directory").mkdir()
    out.insert(3, (str(d / "a_directory"), "bad"))
    out.insert(7, (str(d / "does_not_exist.png"), "bad"))
    (d / "cfg.yaml").write_text(yaml.safe_dump(localizer_config()))
    return {"frames": out, "config": str(d / "cfg.yaml"), "dir": d}


def strict_json_lines(out: str) -> list[dict]:
    def no_const(c):
        raise ValueError(f"non-standard JSON constant {c}")
    lines = out.split("\n")
    assert lines[-1] == "", "stdout must end with a newline"
    return [json.loads(ln, parse_constant=no_const) for ln in lines[:-1]]


CONTRACT_KEYS = {"frame", "fix", "lat", "lon", "sub_lat", "sub_lon", "alt_km", "yaw_deg", "confidence", "candidates",
                 "latency_ms"}


def check_batch(out: str, err: str, frames) -> list[dict]:
    lines = strict_json_lines(out)
    assert len(lines) == len(frames)
    assert "Traceback" not in err and "Traceback" not in out
    for ln, (path, kind) in zip(lines, frames, strict=True):
        assert ln["frame"] == path                              # in order, the path as given
        assert CONTRACT_KEYS <= set(ln) <= CONTRACT_KEYS | {"error"}
        assert 0.0 <= ln["confidence"] <= 1.0
        if kind == "bad":
            assert isinstance(ln["error"], str) and ln["error"].strip() and "\n" not in ln["error"], (path, ln)
            assert ln["fix"] is False and ln["lat"] is None
        else:
            assert "error" not in ln, (path, ln.get("error"))
            assert ln["candidates"], path
        if kind == "blank":
            assert ln["fix"] is False and ln["lat"] is None and ln["alt_km"] is None, path
        if not ln["fix"]:
            assert all(ln[k] is None for k in ("lat", "lon", "sub_lat", "sub_lon", "alt_km", "yaw_deg"))
    return lines


def test_mixed_batch_subprocess(tiny_bundle, batch, cam256_path):
    """The real console entry point in a fresh process."""
    frames = batch["frames"]
    cmd = [sys.executable, "-m", "earthfix", "locate", "--camera", str(cam256_path), "--bundle", str(tiny_bundle),
           "--config", batch["config"], *[p for p, _ in frames]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = check_batch(r.stdout, r.stderr, frames)
    by_name = {Path(ln["frame"]).name: ln for ln in lines}
    assert by_name["good.png"]["fix"] is True                   # good frames are located, not just tolerated
    assert "IHDR" not in r.stderr and "libpng error" not in r.stderr and "Corrupt JPEG" not in r.stderr


def test_frames_piped_on_stdin_are_answered_as_they_arrive(tiny_bundle, batch, cam256_path):
    """``-``: paths read from stdin, each answered before the next is written (a camera process piping its frames
    in), mixed with paths given on the command line, blank lines skipped, in order; a line no file system takes
    (a NUL byte) is one bad frame."""
    import selectors
    good = [p for p, k in batch["frames"] if k == "good"]
    cmd = [sys.executable, "-m", "earthfix", "locate", "--camera", str(cam256_path), "--bundle", str(tiny_bundle),
           "--config", batch["config"], good[0], "-"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        first = proc.stdout.readline()                       # the command line's frame, before stdin says anything
        proc.stdin.write(good[1] + "\n")
        proc.stdin.flush()
        assert sel.select(timeout=120), "no answer to a piped frame while stdin stays open"
        second = proc.stdout.readline()
        proc.stdin.write("\n" + str(batch["dir"] / "does_not_exist.png") + "\nnul\x00byte.png\n")
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    lines = check_batch(first + second + rest, "", [(good[0], "good"), (good[1], "good"),
                                                    (str(batch["dir"] / "does_not_exist.png"), "bad"),
                                                    ("nul\x00byte.png", "bad")])
    assert lines[0]["fix"] is True and lines[2]["error"] == "file not found"
    assert lines[3]["error"] == "not a valid file path (it holds a NUL byte)"


def test_mixed_batch_in_process(tiny_bundle, batch, cam256_path, capfd):
    """Same batch through earthfix.cli.main, stdout captured at the file-descriptor level."""
    from earthfix.cli import main
    frames = batch["frames"]
    rc = main(["locate", "--camera", str(cam256_path), "--bundle", str(tiny_bundle), "--config", batch["config"],
               *[p for p, _ in frames]])
    out, err = capfd.readouterr()
    assert rc == 0
    lines = check_batch(out, err, frames)
    errors = {Path(ln["frame"]).name: ln["error"] for ln in lines if "error" in ln}
    assert errors["empty.png"] == "empty file"
    assert "truncated" in errors["truncated.png"] and "truncated" in errors["truncated.jpg"]
    assert "320x240 px but the camera is 256x256" in errors["wrong_size.png"]
    assert "smaller than" in errors["one_pixel.png"]
    assert "larger than" in errors["bomb.png"]
    assert "JPEG" in errors["damaged_scan.jpg"]
    assert errors["does_not_exist.png"] == "file not found"
    assert errors["a_directory"].startswith("is a directory")


def test_only_bad_frames_still_exit_0(tiny_bundle, batch, cam256_path, capfd):
    from earthfix.cli import main
    bad = [(p, k) for p, k in batch["frames"] if k == "bad"]
    rc = main(["locate", "--camera", str(cam256_path), "--bundle", str(tiny_bundle), "--config", batch["config"],
               *[p for p, _ in bad]])
    out, err = capfd.readouterr()
    assert rc == 0
    check_batch(out, err, bad)


def test_same_frame_twice_gives_the_same_answer(tiny_bundle, batch, cam256_path, capfd):
    from earthfix.cli import main
    good = [p for p, k in batch["frames"] if k == "good"][:1] * 3
    assert main(["locate", "--camera", str(cam256_path), "--bundle", str(tiny_bundle), "--config", batch["config"],
                 *good]) == 0
    lines = strict_json_lines(capfd.readouterr().out)
    strip = [{k: v for k, v in ln.items() if k != "latency_ms"} for ln in lines]
    assert strip[0] == strip[1] == strip[2]


def test_run_level_errors_exit_2_with_one_line(tiny_bundle, batch, cam256_path, tmp_path, capfd):
    from earthfix.cli import main
    (tmp_path / "cam_dir").mkdir()
    (tmp_path / "cam_bin.yaml").write_bytes(b"\xff\xfe\x00\x81" * 10)
    (tmp_path / "cam_inf.yaml").write_text("width: .inf\nheight: 256\nfov_deg: 80\n")
    (tmp_path / "cam_nan.yaml").write_text("width: 256\nheight: .nan\nfov_deg: 80\n")
    (tmp_path / "cam_fov.yaml").write_text("width: 256\nheight: 256\nfov_deg: 200\n")
    (tmp_path / "cfg_key.yaml").write_text(f"encoder: {ENCODER}\nmin_confidense: 0.5\n")
    (tmp_path / "cfg_val.yaml").write_text(f"encoder: {ENCODER}\ndeadline_ms: -3\n")
    (tmp_path / "times_bad.jsonl").write_text('{"frame": "good.png", "time": "soon"}\n')
    frame = batch["frames"][0][0]
    cases = [
        (["--camera", str(tmp_path / "nope.yaml")], "not found"),
        (["--camera", str(tmp_path / "cam_dir")], "cam_dir"),
        (["--camera", str(tmp_path / "cam_bin.yaml")], "cam_bin"),
        (["--camera", str(tmp_path / "cam_inf.yaml")], "cam_inf"),
        (["--camera", str(tmp_path / "cam_nan.yaml")], "cam_nan"),
        (["--camera", str(tmp_path / "cam_fov.yaml")], "fov_deg"),
        (["--camera", str(cam256_path), "--config", str(tmp_path / "cfg_key.yaml")], "min_confidense"),
        (["--camera", str(cam256_path), "--config", str(tmp_path / "cfg_val.yaml")], "deadline_ms"),
        (["--camera", str(cam256_path), "--config", str(tmp_path / "missing.yaml")], "not found"),
        (["--camera", str(cam256_path), "--config", batch["config"], "--attitude", "1,0,0"], "--attitude"),
        (["--camera", str(cam256_path), "--config", batch["config"], "--attitude", "nan,0,0,1"], "--attitude"),
        (["--camera", str(cam256_path), "--config", batch["config"], "--attitude", "0,0,0,0"], "--attitude"),
        (["--camera", str(cam256_path), "--config", batch["config"], "--attitudes", str(tmp_path / "none.jsonl")],
         "--attitudes"),
        (["--camera", str(cam256_path), "--config", batch["config"], "--attitudes", str(tmp_path / "cam_inf.yaml")],
         "line 1"),
        (["--camera", str(cam256_path), "--config", batch["config"], "--time", "yesterday"], "--time"),
        (["--camera", str(cam256_path), "--config", batch["config"], "--times", str(tmp_path / "none.jsonl")],
         "--times"),
        (["--camera", str(cam256_path), "--config", batch["config"], "--times", str(tmp_path / "times_bad.jsonl")],
         "not an ISO 8601"),
    ]
    for args, word in cases:
        rc = main(["locate", "--bundle", str(tiny_bundle), *args, frame])
        out, err = capfd.readouterr()
        assert rc == 2, (args, err)
        assert out == "", args
        assert len(err.strip().splitlines()) == 1 and word in err and "Traceback" not in err, (args, err)


def test_per_frame_attitudes_are_used_for_their_frames_only(tiny_bundle, basemap, cam256, cam256_path, tmp_path,
                                                           capfd):
    """--attitudes FILE (the star tracker's quaternion per frame, e.g. the simulator's truth.jsonl) reaches
    the frame it names: a right one keeps the fix, one turned by 180 deg about the boresight makes the yaw
    that of the attitude (or no fix), and a frame it does not name is located without one."""
    from earthfix.cli import main
    from earthfix.onboard import geodesy
    from earthfix.sim.scenario import single_frame
    img, truth = single_frame(basemap, cam256, 35.0, -110.0, 500.0, 30.0)
    q = truth["q_cam2ecef_wxyz"]
    q_turned = geodesy.quat_from_matrix(geodesy.matrix_from_quat(np.asarray(q)) @ np.diag([-1.0, -1.0, 1.0]))
    for name in ("right.png", "turned.png", "free.png"):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "att.jsonl").write_text(json.dumps({"frame": "somewhere/right.png", "q_cam2ecef_wxyz": q}) + "\n"
                                        + json.dumps({"frame": "turned.png", "q_cam2ecef_wxyz": list(q_turned)}) + "\n")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(localizer_config()))
    rc = main(["locate", "--bundle", str(tiny_bundle), "--camera", str(cam256_path), "--config", str(tmp_path / "cfg.yaml"),
               "--attitudes", str(tmp_path / "att.jsonl"), *(str(tmp_path / n) for n in ("right.png", "turned.png", "free.png"))])
    out, _ = capfd.readouterr()
    right, turned, free = strict_json_lines(out)
    assert rc == 0 and right["fix"] and free["fix"]
    for r in (right, free):
        assert geodesy.great_circle_km(r["lat"], r["lon"], truth["bore_lat"], truth["bore_lon"]) < 5.0
        assert abs((r["yaw_deg"] - truth["yaw_deg"] + 180.0) % 360.0 - 180.0) < 1.0
    assert not turned["fix"] or abs((turned["yaw_deg"] - truth["yaw_deg"]) % 360.0 - 180.0) < 1.0


def test_per_frame_times_reach_their_frames_and_a_fix_in_the_dark_is_refused(tiny_bundle, basemap, cam256,
                                                                               cam256_path, tmp_path, capfd):
    """--times FILE (each frame's UTC time, e.g. the simulator's truth.jsonl) reaches the frame it names: at local
    noon the frame is fixed, said to be taken at midnight there it is not (its ground would be dark), and a frame
    it does not name takes --time (here noon) or none."""
    from earthfix.cli import main
    from earthfix.sim.scenario import single_frame
    img, truth = single_frame(basemap, cam256, 35.0, -110.0, 500.0, 30.0)
    for name in ("noon.png", "midnight.png", "unnamed.png"):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "times.jsonl").write_text(json.dumps({"frame": "a/noon.png", "time": "2025-06-21T19:20:00Z"}) + "\n"
                                          + json.dumps({"frame": "midnight.png", "time": "2025-06-22T07:20:00Z"}) + "\n")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(localizer_config()))
    rc = main(["locate", "--bundle", str(tiny_bundle), "--camera", str(cam256_path), "--config",
               str(tmp_path / "cfg.yaml"), "--times", str(tmp_path / "times.jsonl"), "--time", "2025-06-21T19:20:00Z",
               *(str(tmp_path / n) for n in ("noon.png", "midnight.png", "unnamed.png"))])
    out, _ = capfd.readouterr()
    noon, midnight, unnamed = strict_json_lines(out)
    assert rc == 0 and noon["fix"] and unnamed["fix"]
    assert not midnight["fix"] and midnight["lat"] is None and midnight["confidence"] == 0.0


def test_emit_writes_strict_json_even_with_nan():
    import io
    from contextlib import redirect_stdout
    from earthfix.tools.locate import _emit
    buf = io.StringIO()
    with redirect_stdout(buf):
        _emit({"frame": "x", "confidence": float("nan"), "candidates": [{"score": float("inf")}], "fix": False})
    assert strict_json_lines(buf.getvalue()) == [{"frame": "x", "confidence": None, "candidates": [{"score": None}],
                                                  "fix": False}]
