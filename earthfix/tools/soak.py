"""``earthfix soak``: reliability runs of the flight path, a fuzz run and a long replay.

    earthfix soak --fuzz 2000 --frames 10000 --out soak.json          # the documented full run
    earthfix soak --bundle DIR --config YAML --fuzz 300 --frames 200  # a short one (the tests run this)

(a) **Fuzz** (``--fuzz N``): N mutated encoded frames (bit flips, truncations, random bytes, zeroed and
    spliced ranges, trailing garbage, corrupted PNG/JPEG headers, forged PNG sizes with valid CRCs) go
    through ``frames.decode_frame`` and ``Localizer.locate``. Each outcome is counted as ``error`` (a
    FrameError or a Fix with ``error``), ``no_fix`` or ``fix``; a fix more than 50 km from the seed frame's
    truth is a ``false_fix``. Any other exception is an ``uncaught`` failure (kept with its traceback).
(b) **Long replay** (``--frames M``): M frames of an orbit scenario (``earthfix.sim.scenario.Scenario``,
    the ISS preset by default, jittered nadir pointing, full effects) are streamed through the Localizer and
    an OrbitFuser, as on board. The resident set size (``VmRSS`` of ``/proc/self/status``) is sampled every
    K frames; the growth after the warm-up (the first ``--warmup`` frames) is reported in MB and in %, with
    a least-squares slope (MB per 1000 frames). Per-frame latency (decoding excluded, the Fix's
    ``latency_ms``) is compared with the config's ``deadline_ms``.

The report is written as JSON (``--out``) and summarised on stdout; progress goes to stderr. The exit code
is 1 when the fuzz run had an uncaught exception, a false fix, or when the RSS growth after warm-up exceeds
``--max-rss-growth`` percent (default 5) over a post-warm-up window of at least ``MIN_FRAMES_FOR_RSS_CHECK``
frames (shorter runs report the growth but do not judge it: allocator noise dominates), else 0.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

from .evaluate import FALSE_FIX_KM

MIN_FRAMES_FOR_RSS_CHECK = 2000
MUTATIONS = ("bitflip", "bitflips_many", "truncate", "random_bytes", "zero_range", "splice", "trailing_garbage",
             "header_corrupt", "png_forged_size", "drop_chunk", "duplicate_range")


# ---- measurements ------------------------------------------------------------------------------------

def rss_mb() -> float | None:
    """Resident set size of this process (VmRSS, /proc/self/status) in MB; None where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _pct(values, qs=(50, 90, 99)) -> dict:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    out = {f"p{q}": (None if len(v) == 0 else round(float(np.percentile(v, q)), 3)) for q in qs}
    out["max"] = None if len(v) == 0 else round(float(v.max()), 3)
    out["n"] = int(len(v))
    return out


# ---- fuzz ----------------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One mutation of an encoded image (see MUTATIONS)."""
    b = bytearray(data)
    n = len(b)
    if kind == "bitflip":
        i = int(rng.integers(n))
        b[i] ^= 1 << int(rng.integers(8))
    elif kind == "bitflips_many":
        for i in rng.integers(0, n, int(rng.integers(2, 64))):
            b[int(i)] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        return bytes(b[: int(rng.integers(0, n))])
    elif kind == "random_bytes":
        return rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
    elif kind == "zero_range":
        i = int(rng.integers(n))
        j = min(n, i + int(rng.integers(1, 2048)))
        b[i:j] = bytes(j - i)
    elif kind == "splice":                       # a range moved elsewhere (file-system or link damage)
        i, j = sorted(int(x) for x in rng.integers(0, n, 2))
        k = int(rng.integers(0, n))
        piece = bytes(b[i:j])
        del b[i:j]
        b[k:k] = piece
    elif kind == "trailing_garbage":
        b += rng.integers(0, 256, int(rng.integers(1, 512)), dtype=np.uint8).tobytes()
    elif kind == "header_corrupt":
        m = min(n, 64 if data[:2] != b"\xff\xd8" else 700)   # JPEG tables and SOF sit in the first ~600 bytes
        for i in rng.integers(0, m, int(rng.integers(1, 6))):
            b[int(i)] = int(rng.integers(256))
    elif kind == "png_forged_size":
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            ihdr = bytearray(data[16:29])
            side = [1, 2, 31, 32, 255, 257, 4096, 16384, 16385, 65535, 2 ** 31 - 1, 2 ** 32 - 1]
            ihdr[0:4] = int(side[int(rng.integers(len(side)))]).to_bytes(4, "big")
            ihdr[4:8] = int(side[int(rng.integers(len(side)))]).to_bytes(4, "big")
            if rng.random() < 0.3:
                ihdr[8] = int(rng.choice([1, 2, 4, 8, 16, 3, 0, 255]))      # bit depth
                ihdr[9] = int(rng.choice([0, 2, 3, 4, 6, 1, 7]))            # colour type
            return data[:8] + _png_chunk(b"IHDR", bytes(ihdr)) + data[33:]
        return mutate(data, "header_corrupt", rng)
    elif kind == "drop_chunk":
        i = int(rng.integers(n))
        del b[i:i + int(rng.integers(1, 4096))]
    elif kind == "duplicate_range":
        i = int(rng.integers(n))
        b[i:i] = b[i:i + int(rng.integers(1, 4096))]
    else:
        raise ValueError(f"unknown mutation {kind!r}")
    return bytes(b)


def seed_frames(localizer, camera, n: int = 6, seed: int = 0) -> list[tuple[str, bytes, dict]]:
    """Encoded (PNG and JPEG) frames of places the bundle covers: [(name, bytes, truth)]."""
    import cv2

    from ..sim import effects as fx
    from ..sim.basemap import Basemap
    from ..sim.scenario import single_frame
    rng = np.random.default_rng(seed)
    b = localizer.bundle
    basemap = Basemap.default()
    out = []
    for k in range(n):
        i = int(rng.integers(b.views))
        lat, lon = float(b.lat[i]), float(b.lon[i])
        eff = fx.EffectsConfig.default() if k % 2 else None
        img, truth = single_frame(basemap, camera, lat, lon, float(rng.uniform(450, 700)), float(rng.uniform(0, 360)),
                                  effects=eff, rng=np.random.default_rng(seed + k))
        ext = ".png" if k % 3 != 2 else ".jpg"
        ok, enc = cv2.imencode(ext, img)
        out.append((f"seed{k}{ext}", enc.tobytes(), truth))
    return out


def run_fuzz(localizer, camera, n: int, seed: int = 0, progress=None) -> dict:
    """N mutated frames through decode_frame + Localizer.locate; outcome counts (see the module doc)."""
    from ..onboard import geodesy
    from ..onboard.frames import FrameError, decode_frame
    rng = np.random.default_rng(seed)
    seeds = seed_frames(localizer, camera, seed=seed)
    counts = {"error": 0, "no_fix": 0, "fix": 0, "false_fix": 0, "uncaught": 0}
    by_mutation = {m: {"error": 0, "no_fix": 0, "fix": 0} for m in MUTATIONS}
    errors: dict[str, int] = {}
    uncaught = []
    dec_ms, loc_ms = [], []
    for k in range(n):
        name, data, truth = seeds[int(rng.integers(len(seeds)))]
        kind = MUTATIONS[k % len(MUTATIONS)]
        blob = mutate(data, kind, rng)
        try:
            t = time.perf_counter()
            try:
                frame = decode_frame(blob, (camera.width, camera.height) if k % 2 else None)
                fix = None
            except FrameError as exc:
                frame, fix = None, str(exc)
            dec_ms.append((time.perf_counter() - t) * 1e3)
            if frame is not None:
                f = localizer.locate(frame, camera)
                loc_ms.append(f.latency_ms)
                fix = f
            if isinstance(fix, str) or fix.error is not None:
                reason = fix if isinstance(fix, str) else fix.error
                if "\n" in reason or not reason:
                    raise AssertionError(f"error reason is not one non-empty line: {reason!r}")
                counts["error"] += 1
                by_mutation[kind]["error"] += 1
                key = re.sub(r"\d+", "N", reason.split(" (decoder")[0])[:70]
                errors[key] = errors.get(key, 0) + 1
            elif fix.fix:
                counts["fix"] += 1
                by_mutation[kind]["fix"] += 1
                err = geodesy.great_circle_km(fix.lat, fix.lon, truth["bore_lat"], truth["bore_lon"])
                if not float(err) <= FALSE_FIX_KM:
                    counts["false_fix"] += 1
            else:
                counts["no_fix"] += 1
                by_mutation[kind]["no_fix"] += 1
        except Exception as exc:                  # the failure this run looks for
            counts["uncaught"] += 1
            if len(uncaught) < 20:
                uncaught.append({"frame": k, "seed": name, "mutation": kind, "exception": type(exc).__name__,
                                 "message": str(exc)[:300], "traceback": traceback.format_exc(limit=8)})
        if progress:
            progress(k + 1, n)
    return {"frames": n, "seed": seed, "mutations": list(MUTATIONS), "outcomes": counts,
            "by_mutation": by_mutation, "error_reasons": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
            "decode_ms": _pct(dec_ms), "locate_ms": _pct(loc_ms), "uncaught": uncaught}


# ---- long replay --------------------------------------------------------------------------------------

def run_long_replay(localizer, camera, frames: int, every: int = 100, warmup: int | None = None,
                    preset: str = "iss", interval: str = "10s", start: str | None = None, seed: int = 0,
                    fusion: bool = True, progress=None, scenario=None) -> dict:
    """Stream ``frames`` scenario frames through the Localizer (+ OrbitFuser): RSS and latency figures.
    ``scenario``: any object whose ``frames()`` yields (image, truth with 'time'); default an orbit Scenario."""
    from ..onboard.fusion import OrbitFuser
    from ..sim.orbit import Orbit, parse_duration_s, parse_time
    from ..sim.scenario import Scenario
    warmup = max(1, frames // 10) if warmup is None else int(warmup)
    every = max(1, int(every))
    if scenario is None:
        orbit, start = Orbit.with_start(preset, start=start)
        step = parse_duration_s(interval)
        scenario = Scenario(orbit, camera, start, duration=frames * step, interval=step, attitude="jitter",
                            seed=seed)
    fuser = OrbitFuser() if fusion else None
    deadline = float(localizer.cfg["deadline_ms"])
    lat_ms, wall_ms, stage_max = [], [], {}
    samples = []                       # (frame index, RSS MB)
    n_fix = n_err = 0
    t0 = time.perf_counter()
    rss0 = rss_mb()
    samples.append((0, rss0))
    for i, (image, truth) in enumerate(scenario.frames()):
        if i >= frames:
            break
        t = parse_time(truth["time"])
        tic = time.perf_counter()
        fix = localizer.locate(image, camera, time=truth["time"])
        if fuser is not None:
            fuser.add(t, fix)
            fuser.estimate(t)
        wall_ms.append((time.perf_counter() - tic) * 1e3)
        lat_ms.append(float(fix.latency_ms))
        for k, v in (fix.stages_ms or {}).items():
            stage_max[k] = max(stage_max.get(k, 0.0), float(v))
        n_fix += bool(fix.fix)
        n_err += fix.error is not None
        if (i + 1) % every == 0 or i + 1 == frames:
            samples.append((i + 1, rss_mb()))
        if progress:
            progress(i + 1, frames)
    elapsed = time.perf_counter() - t0
    n = len(lat_ms)
    lat = np.asarray(lat_ms)
    rss = _rss_growth(samples, warmup)
    return {"frames": n, "preset": preset, "interval": interval, "start": str(getattr(scenario, "start", None)),
            "seed": seed,
            "fusion": fusion, "fusion_fixes": None if fuser is None else fuser.n_fixes,
            "fixes": n_fix, "errors": n_err, "elapsed_s": round(elapsed, 1),
            "frames_per_s": round(n / elapsed, 2) if elapsed > 0 else None,
            "deadline_ms": deadline,
            "latency_ms": _pct(lat_ms), "wall_ms_with_fusion": _pct(wall_ms),
            "stage_max_ms": {k: round(v, 3) for k, v in stage_max.items()},
            "over_deadline": int((lat > deadline).sum()) if n else 0,
            "over_deadline_share": round(float((lat > deadline).mean()), 5) if n else None,
            "over_2x_deadline_share": round(float((lat > 2 * deadline).mean()), 5) if n else None,
            "rss": rss}


def _rss_growth(samples, warmup: int) -> dict:
    pts = [(i, r) for i, r in samples if r is not None]
    out = {"samples": [[i, round(r, 2)] for i, r in pts], "warmup_frames": warmup, "start_mb": None,
           "after_warmup_mb": None, "end_mb": None, "peak_mb": None, "growth_mb": None, "growth_pct": None,
           "slope_mb_per_1000_frames": None, "post_warmup_frames": 0}
    if not pts:
        return out
    out["start_mb"] = round(pts[0][1], 2)
    out["peak_mb"] = round(max(r for _, r in pts), 2)
    post = [(i, r) for i, r in pts if i >= warmup]
    if not post:
        return out
    base, end = post[0][1], post[-1][1]
    out.update(after_warmup_mb=round(base, 2), end_mb=round(end, 2), growth_mb=round(end - base, 2),
               growth_pct=round(100.0 * (end - base) / base, 3), post_warmup_frames=int(post[-1][0] - post[0][0]))
    if len(post) >= 3:
        x = np.array([i for i, _ in post], float)
        y = np.array([r for _, r in post], float)
        out["slope_mb_per_1000_frames"] = round(float(np.polyfit(x, y, 1)[0] * 1000.0), 3)
    return out


# ---- command line ------------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser("soak", help="reliability: fuzz the decode+locate path, long replay (RSS, deadline)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    p.add_argument("--config", default=None, help="onboard config YAML")
    p.add_argument("--camera", default=None, help="camera YAML (default 256x256 px, 80 deg)")
    p.add_argument("--fuzz", type=int, default=2000, metavar="N", help="mutated frames (0: no fuzz run; default 2000)")
    p.add_argument("--frames", type=int, default=10000, metavar="M",
                   help="frames of the long replay (0: none; default 10000)")
    p.add_argument("--every", type=int, default=100, metavar="K", help="RSS sample every K frames (default 100)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up frames excluded from the RSS growth "
                                                             "(default 10 %% of --frames)")
    p.add_argument("--preset", default="iss", help="orbit preset of the replay (default iss)")
    p.add_argument("--interval", default="10s", help="time between replay frames (default 10s)")
    p.add_argument("--no-fusion", action="store_true", help="replay without the OrbitFuser")
    p.add_argument("--max-rss-growth", type=float, default=5.0, metavar="PCT",
                   help="fail when RSS grows more than PCT %% after warm-up (runs of at least "
                        f"{MIN_FRAMES_FOR_RSS_CHECK} post-warm-up frames; default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="soak.json", help="JSON report (default ./soak.json)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_soak_command)


def _progress_printer(label: str, enabled: bool):
    if not enabled:
        return None
    state = {"t": 0.0}

    def show(i, n):
        now = time.time()
        if i == n or now - state["t"] > 2.0:
            state["t"] = now
            print(f"\rsoak {label}: {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)
    return show


def machine_info() -> dict:
    import os
    load = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg_at_end": load}


def run_soak(localizer, camera, fuzz: int = 0, frames: int = 0, every: int = 100, warmup=None, preset="iss",
             interval="10s", fusion=True, seed: int = 0, max_rss_growth_pct: float = 5.0, progress=True) -> dict:
    report = {"encoder": localizer.encoder.name, "encoder_sha256": localizer.encoder.sha256,
              "bundle": str(localizer.bundle.path), "views": localizer.bundle.views,
              "threads": localizer.cfg["threads"]}
    failures = []
    if fuzz > 0:
        report["fuzz"] = run_fuzz(localizer, camera, fuzz, seed, _progress_printer("fuzz", progress))
        o = report["fuzz"]["outcomes"]
        if o["uncaught"]:
            failures.append(f"fuzz: {o['uncaught']} uncaught exception(s)")
        if o["false_fix"]:
            failures.append(f"fuzz: {o['false_fix']} false fix(es)")
    if frames > 0:
        r = run_long_replay(localizer, camera, frames, every, warmup, preset, interval, seed=seed, fusion=fusion,
                            progress=_progress_printer("replay", progress))
        report["replay"] = r
        g = r["rss"]
        if g["post_warmup_frames"] >= MIN_FRAMES_FOR_RSS_CHECK:
            g["judged"] = True
            if g["growth_pct"] is not None and g["growth_pct"] > max_rss_growth_pct:
                failures.append(f"replay: RSS grew {g['growth_pct']:.2f} % after warm-up (limit {max_rss_growth_pct} %)")
        else:
            g["judged"] = False
    report["machine"] = machine_info()
    report["failures"] = failures
    report["ok"] = not failures
    return report


def summary_text(rep: dict) -> str:
    lines = [f"soak: encoder {Path(rep['encoder']).name} ({rep['encoder_sha256'][:12]}), bundle {rep['bundle']} "
             f"({rep['views']} views), {rep['threads']} thread(s)"]
    if "fuzz" in rep:
        f = rep["fuzz"]
        o = f["outcomes"]
        lines.append(f"fuzz: {f['frames']} mutated frames -> error {o['error']}, no fix {o['no_fix']}, "
                     f"fix {o['fix']} (false {o['false_fix']}), uncaught exceptions {o['uncaught']}; "
                     f"decode p99 {f['decode_ms']['p99']} ms, locate p99 {f['locate_ms']['p99']} ms")
    if "replay" in rep:
        r = rep["replay"]
        g = r["rss"]
        judged = "" if g.get("judged") else " (window too short to judge)"
        lines.append(f"replay: {r['frames']} frames ({r['preset']}, every {r['interval']}) in {r['elapsed_s']} s, "
                     f"{r['fixes']} fixes, {r['errors']} errors")
        lines.append(f"  RSS: {g['start_mb']} MB at start, {g['after_warmup_mb']} MB after {g['warmup_frames']} "
                     f"warm-up frames, {g['end_mb']} MB at the end: {g['growth_mb']} MB = {g['growth_pct']} %"
                     f"{judged}; slope {g['slope_mb_per_1000_frames']} MB/1000 frames; peak {g['peak_mb']} MB")
        lat = r["latency_ms"]
        lines.append(f"  latency: p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms; "
                     f"{100 * (r['over_deadline_share'] or 0):.2f} % of frames over the {r['deadline_ms']:g} ms "
                     f"deadline ({100 * (r['over_2x_deadline_share'] or 0):.2f} % over twice it)")
    lines.append("soak: OK" if rep["ok"] else "soak: FAILED: " + "; ".join(rep["failures"]))
    return "\n".join(lines)


def run_soak_command(args) -> int:
    from ..onboard.camera import Camera, CameraError
    from .locate import load_checked
    from .replay import DEFAULT_CAMERA
    try:
        camera = Camera.from_yaml(args.camera) if args.camera else Camera.from_dict(DEFAULT_CAMERA)
        bundle = args.bundle
        if bundle is None:
            from .build_index import ensure_default_bundle
            bundle = ensure_default_bundle(progress=not args.no_progress)
        loc = load_checked(bundle, args.config)
    except (CameraError, OSError, ValueError, RuntimeError) as exc:   # BundleError, ConfigError included
        print(f"earthfix soak: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    rep = run_soak(loc, camera, args.fuzz, args.frames, args.every, args.warmup, args.preset, args.interval,
                   fusion=not args.no_fusion, seed=args.seed, max_rss_growth_pct=args.max_rss_growth,
                   progress=not args.no_progress)
    rep["command"] = "earthfix " + " ".join(sys.argv[1:]) if sys.argv[1:] else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep, indent=1) + "\n")
    print(summary_text(rep))
    print(f"soak: report {out}")
    return 0 if rep["ok"] else 1
