"""``earthfix replay`` and ``earthfix demo``: simulate, localize and fuse in one streaming run.

    earthfix replay --preset iss --duration 2h --interval 10s --out runs/replay_iss
    earthfix demo                                   # the ISS, about one orbit, into ./earthfix-demo

Per frame: the scenario renders the frame (earthfix.sim.scenario), the onboard Localizer locates it
(no attitude by default: lost in space), and the OrbitFuser (earthfix.onboard.fusion) takes the fix and
predicts the spacecraft position. Outputs (CONVENTIONS 'replay contract') in OUT/:

- ``truth.jsonl``    the simulator's truth per frame;
- ``fixes.jsonl``    the locate fields per frame (``Fix.to_json``) plus ``time``, ``fused_ecef_km`` (null until
  the first fused estimate) and diagnostics: ``ecef_km`` (the fix's own spacecraft position),
  ``fused_sigma_km`` (1-sigma 3-D position uncertainty of the fused estimate) and ``stages_ms``;
- ``report.json`` / ``report.md``  the metrics (CONVENTIONS 'Metrics'), see ``compute_report``;
- ``track.png``      map + error-vs-time figure (earthfix.tools.plots);
- ``track.geojson``  true ground track, fixes as points, fused ground track;
- ``ephemeris.oem``  CCSDS OEM 2.0 (KVN) of the final fused orbit in ITRF (= WGS84 ECEF), every 60 s from the
  first fused estimate to the end of the run, with the covariance at its first and last epochs.

Fused errors are 3-D distances in km between the fused ECEF position at a frame's time (computed when that
frame arrives, from the fixes so far: a real-time filter's view) and the true spacecraft position.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time as _time
from pathlib import Path

import numpy as np

from .evaluate import FALSE_FIX_KM, sub_error_km

DEFAULT_CAMERA = {"width": 256, "height": 256, "fov_deg": 80}
DEMO_DURATION = "95m"          # about one ISS orbit: ~570 frames, ~2 minutes on 2 cores
DEMO_INTERVAL = "10s"
OEM_STEP_S = 60.0


# ---- command line ------------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay", help="simulate + localize + fuse along an orbit; report, plot, OEM",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", metavar="NAME", help="orbit preset: iss, sso")
    src.add_argument("--tle", metavar="FILE", help="two-line element file (optional name line before line 1)")
    _common_args(p, duration="2h")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run_replay_command)

    d = subparsers.add_parser(
        "demo", help="the main job: one ISS orbit replay on the default bundle into ./earthfix-demo",
        description="Replay about one orbit of the ISS preset through simulation, the onboard localizer "
                    "(default bundle, built on first use) and orbit fusion; print a summary and the outputs.")
    _common_args(d, duration=DEMO_DURATION)
    d.add_argument("--out", default="earthfix-demo", metavar="DIR", help="output directory (default ./earthfix-demo)")
    d.set_defaults(func=run_demo_command, preset="iss", tle=None)


def _common_args(p, duration: str) -> None:
    from ..sim import real_clouds
    p.add_argument("--duration", default=duration, help=f"e.g. 95m, 2h (default {duration})")
    p.add_argument("--interval", default="10s", help="time between frames (default 10s)")
    p.add_argument("--start", metavar="ISO", default=None,
                   help="UTC start (default: a fixed daytime-rich start per preset; the TLE epoch for --tle)")
    p.add_argument("--camera", metavar="CAMERA.yaml", help="camera file (default 256x256 pixels, 80 deg)")
    p.add_argument("--attitude", choices=["nadir", "jitter", "tilt"], default="jitter",
                   help="simulated pointing (default jitter: nadir with a few tenths of a degree of noise)")
    p.add_argument("--tilt-deg", type=float, default=10.0,
                   help="off-nadir angle of --attitude tilt, deg (default 10; an agile imager looks 30-55 deg off)")
    p.add_argument("--star-tracker", action="store_true",
                   help="give locate the true attitude quaternion (default: lost in space, no attitude)")
    p.add_argument("--bundle", metavar="DIR", help="bundle directory (default: the default bundle)")
    p.add_argument("--config", metavar="YAML", help="onboard config (default: the shipped defaults)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    p.add_argument("--cloud-field", metavar="CLOUDS.png", default=None, help=real_clouds.CLI_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fail(cmd: str, msg: str) -> int:
    print(f"earthfix {cmd}: error: {msg}", file=sys.stderr)
    return 2


def _build(args, cmd: str):
    """(scenario, localizer) from the command line, or raise SystemExit-worthy messages as ValueError."""
    from ..onboard.camera import Camera, CameraError
    from ..sim.orbit import Orbit, OrbitError, parse_duration_s
    from ..sim.scenario import Scenario

    try:
        orbit, start = Orbit.with_start(args.preset, args.tle, args.start)
        if parse_duration_s(args.duration) <= 0:
            raise ValueError("duration must be positive")
        if parse_duration_s(args.interval) <= 0:
            raise ValueError("interval must be positive")
    except OrbitError as exc:
        raise ValueError(str(exc)) from None
    try:
        camera = Camera.from_yaml(args.camera) if args.camera else Camera.from_dict(DEFAULT_CAMERA)
    except CameraError as exc:
        raise ValueError(str(exc)) from None
    cloud_field = None
    if getattr(args, "cloud_field", None):
        from ..sim.real_clouds import GlobalCloudField
        cloud_field = GlobalCloudField.load(args.cloud_field)      # CloudFieldError is a ValueError: one line
    scenario = Scenario(orbit, camera, start, args.duration, args.interval, attitude=args.attitude,
                        tilt_deg=args.tilt_deg, seed=args.seed, cloud_field=cloud_field)
    localizer = load_localizer(args.bundle, args.config, progress=not args.no_progress)
    return scenario, localizer


def load_localizer(bundle=None, config=None, progress=True):
    """The onboard Localizer on ``bundle`` (default: the default bundle, built first if missing)."""
    from ..onboard.localizer import Localizer
    if bundle is None:
        from .build_index import ensure_default_bundle
        bundle = ensure_default_bundle(progress=progress)
    return Localizer.load(bundle, config)


def run_replay_command(args, cmd: str = "replay") -> int:
    try:
        scenario, localizer = _build(args, cmd)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(cmd, str(exc))
    except Exception as exc:              # bundle refused, config invalid: one line, non-zero exit
        return _fail(cmd, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    report = run_replay(scenario, localizer, args.out, progress=not args.no_progress,
                        attitude_from_truth=args.star_tracker,
                        command="earthfix " + " ".join(sys.argv[1:]) if sys.argv[1:] else None)
    print(summary_text(report, args.out))
    return 0


def run_demo_command(args) -> int:
    return run_replay_command(args, cmd="demo")


# ---- the replay ----------------------------------------------------------------------------------------

def _to_jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def run_replay(scenario, localizer, out_dir, progress=True, *, fuser=None, camera=None,
               attitude_from_truth: bool = False, command: str | None = None) -> dict:
    """Stream ``scenario.frames()`` through ``localizer.locate`` and an OrbitFuser; write every output file
    into ``out_dir`` and return the report dict (also written as report.json).

    ``scenario``: any object with ``frames()`` yielding (image, truth dict with at least time, ecef_km,
    sub_lat, sub_lon, bore_lat, bore_lon, eligible) and a ``camera`` (or pass ``camera``); ``orbit.name``,
    ``start``, ``duration``, ``interval``, ``seed`` and ``__len__`` are used when present.
    ``localizer``: any object with ``locate(frame, camera, attitude=None, time=None) -> Fix``. A frame whose
    locate raises gets a failed Fix and the run goes on.
    """
    from tqdm import tqdm

    from ..onboard.fix import Fix
    from ..onboard.fusion import OrbitFuser
    from ..sim.orbit import parse_time

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    camera = camera if camera is not None else scenario.camera
    fuser = fuser if fuser is not None else OrbitFuser()
    try:
        total = len(scenario)
    except TypeError:
        total = None
    recs = []                          # one compact record per frame, for metrics, plots and GeoJSON
    t_start = None
    n_fix = 0
    with open(out / "truth.jsonl", "w") as ft, open(out / "fixes.jsonl", "w") as ff, \
            tqdm(total=total, desc="replay", unit="frame", file=sys.stderr, disable=not progress,
                 dynamic_ncols=True) as bar:
        for i, (image, truth) in enumerate(scenario.frames()):
            t = parse_time(truth["time"])
            t_start = t_start or t
            name = truth.get("frame") or f"frame_{i:05d}.png"
            attitude = None
            if attitude_from_truth and truth.get("q_cam2ecef_wxyz") is not None:
                attitude = np.asarray(truth["q_cam2ecef_wxyz"], dtype=float)
            tic = _time.perf_counter()
            try:
                fix = localizer.locate(image, camera, attitude=attitude, time=truth["time"])
            except Exception as exc:   # never stop the run for one frame
                msg = str(exc).splitlines()[0] if str(exc) else ""
                fix = Fix.failed(f"internal error: {type(exc).__name__}: {msg}")
            wall_ms = (_time.perf_counter() - tic) * 1e3
            if not fix.latency_ms:
                fix.latency_ms = wall_ms
            measured = fuser.add(t, fix)
            est = fuser.estimate(t)
            n_fix += bool(fix.fix)

            rec = _frame_record(i, t, t_start, truth, fix, est)
            rec["measured"] = measured
            recs.append(rec)
            line = fix.to_json(name)
            line["time"] = truth["time"] if isinstance(truth["time"], str) else t.isoformat()
            line["fused_ecef_km"] = None if est is None else [round(float(c), 4) for c in est[0]]
            line["fused_sigma_km"] = None if est is None else round(rec["fused_sigma_km"], 4)
            line["ecef_km"] = None if fix.ecef_km is None else [round(float(c), 4) for c in fix.ecef_km]
            line["stages_ms"] = {k: round(float(v), 3) for k, v in (fix.stages_ms or {}).items()}
            ff.write(json.dumps(line) + "\n")
            ft.write(json.dumps(dict(truth, frame=name), default=_to_jsonable) + "\n")
            bar.update(1)
            post = {"fixes": n_fix}
            if est is not None:
                post["fused_err_km"] = f"{rec['fused_err_km']:.1f}"
            bar.set_postfix(post, refresh=False)

    if fuser.n_fixes:
        fuser.fit()                    # the final batch solution uses every fix, also those since the last refit
    status = fuser.fix_status()
    k = 0
    for rec in recs:                   # which fixes the final fit used (fixes were added in frame order)
        if rec["measured"]:
            rec["fusion"] = status[k]
            k += 1
    report = compute_report(recs, fuser)
    report["scenario"] = _scenario_info(scenario, camera, recs, command)
    ephem = write_ephemeris(out / "ephemeris.oem", fuser, recs, report["scenario"]["object"])
    report["fused"]["ephemeris_rms_km"] = ephem
    (out / "report.json").write_text(json.dumps(report, indent=1, default=_to_jsonable) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    (out / "track.geojson").write_text(json.dumps(track_geojson(recs), default=_to_jsonable) + "\n")
    from .plots import plot_replay
    plot_replay(out / "track.png", recs, report)
    return report


def _frame_record(i, t, t_start, truth, fix, est) -> dict:
    from ..onboard import geodesy
    from ..onboard.fusion import position_sigma_km
    truth_r = np.asarray(truth["ecef_km"], dtype=float)
    err = None
    if fix.fix:
        if fix.lat is None or truth.get("bore_lat") is None:
            err = math.inf            # a fix where the truth has no ground point, or without a position
        else:
            err = float(geodesy.great_circle_km(fix.lat, fix.lon, truth["bore_lat"], truth["bore_lon"]))
    sub_err = sub_error_km(fix.sub_lat, fix.sub_lon, truth) if fix.fix else None
    rec = {"i": i, "t_s": (t - t_start).total_seconds(), "time": t,
           "sub_lat": float(truth["sub_lat"]), "sub_lon": float(truth["sub_lon"]),
           "truth_ecef": truth_r, "eligible": bool(truth.get("eligible", False)),
           "sun_elev_deg": truth.get("sun_elev_deg"), "land_clear_frac": truth.get("land_clear_frac"),
           "fix": bool(fix.fix), "lat": fix.lat, "lon": fix.lon, "confidence": float(fix.confidence),
           "err_km": err, "sub_err_km": sub_err, "latency_ms": float(fix.latency_ms),
           "stages_ms": dict(fix.stages_ms or {}),
           "false": bool(fix.fix) and not (err <= FALSE_FIX_KM),
           "measured": False, "fusion": None, "fused_ecef": None, "fused_err_km": None, "fused_sigma_km": None}
    if est is not None:
        r, _, cov = est
        rec["fused_ecef"] = np.asarray(r)
        rec["fused_err_km"] = float(np.linalg.norm(r - truth_r))
        rec["fused_sigma_km"] = position_sigma_km(cov)
    return rec


def _scenario_info(scenario, camera, recs, command) -> dict:
    orbit = getattr(scenario, "orbit", None)
    info = {"object": getattr(orbit, "name", None) or "satellite",
            "start": recs[0]["time"].isoformat() if recs else None,
            "duration": getattr(scenario, "duration", None), "interval": getattr(scenario, "interval", None),
            "attitude": getattr(scenario, "attitude", None), "seed": getattr(scenario, "seed", None),
            "tilt_deg": getattr(scenario, "tilt_deg", None) if getattr(scenario, "attitude", None) == "tilt" else None,
            "camera": camera.to_dict() if hasattr(camera, "to_dict") else None,
            "frames": len(recs)}
    if command:
        info["command"] = command
    return info


# ---- metrics -------------------------------------------------------------------------------------------

def _pct(values, qs=(50, 90, 99)) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    out = {f"p{q}": (None if len(v) == 0 else round(float(np.percentile(v, q)), 3)) for q in qs}
    out["n"] = int(len(v))
    return out


def orbit_period_s(recs) -> float:
    """Kepler period of the true orbit from its mean geocentric radius (near-circular LEO: < 0.2 %)."""
    from ..onboard.fusion import MU_KM3_S2
    r = float(np.mean([np.linalg.norm(x["truth_ecef"]) for x in recs]))
    return 2.0 * math.pi * math.sqrt(r ** 3 / MU_KM3_S2)


def compute_report(recs, fuser) -> dict:
    """Replay metrics (CONVENTIONS 'Metrics'); every error in km, every time in seconds from the start."""
    n = len(recs)
    elig = [r for r in recs if r["eligible"]]
    fixes = [r for r in recs if r["fix"]]
    false = [r for r in fixes if r["false"]]
    period = orbit_period_s(recs) if recs else float("nan")
    stages = sorted({k for r in recs for k in r["stages_ms"]})
    fused = [r for r in recs if r["fused_err_km"] is not None]
    t_end = recs[-1]["t_s"] if recs else 0.0

    def rms(rows):
        return None if not rows else round(float(np.sqrt(np.mean([x["fused_err_km"] ** 2 for x in rows]))), 3)

    dt = float(np.median(np.diff([r["t_s"] for r in recs]))) if n > 1 else 0.0
    # the second orbit counts only when the run covers it whole
    orbit2 = [r for r in fused if period <= r["t_s"] < 2 * period] if t_end + dt >= 2 * period else []
    after1 = [r for r in fused if r["t_s"] >= period]
    covered = sum(1 for r in fused if r["fused_err_km"] <= 3.0 * r["fused_sigma_km"])
    sol = fuser.solution
    elements = fuser.elements() if sol is not None else None
    return {
        "frames": n,
        "eligible": len(elig),
        "fixes": len(fixes),
        "fixes_on_eligible": sum(r["fix"] for r in elig),
        "fix_rate": None if not elig else round(sum(r["fix"] for r in elig) / len(elig), 4),
        "boresight_error_km": _pct([r["err_km"] for r in fixes if math.isfinite(r["err_km"])]),
        "boresight_error_km_eligible": _pct([r["err_km"] for r in elig if r["fix"] and math.isfinite(r["err_km"])]),
        "sub_satellite_error_km": _pct([r["sub_err_km"] for r in fixes if r.get("sub_err_km") is not None]),
        "false_fixes": len(false),
        "false_fix_rate": None if not n else round(len(false) / n, 5),
        "false_fixes_on_ineligible": sum(not r["eligible"] for r in false),
        "latency_ms": {"total": _pct([r["latency_ms"] for r in recs], (50, 99)),
                       "stages": {k: _pct([r["stages_ms"].get(k) for r in recs], (50, 99)) for k in stages}},
        "time_to_first_fix_s": next((r["t_s"] for r in recs if r["fix"]), None),
        "time_to_first_estimate_s": next((r["t_s"] for r in fused), None),
        "orbit_period_s": round(period, 1),
        "fused": {
            "rms_km_orbit2": rms(orbit2),
            "rms_km_after_orbit1": rms(after1),
            "rms_km_all": rms(fused),
            "max_km_after_orbit1": None if not after1 else round(max(r["fused_err_km"] for r in after1), 3),
            "final_error_km": None if not fused else round(fused[-1]["fused_err_km"], 3),
            "final_sigma_km": None if not fused else round(fused[-1]["fused_sigma_km"], 3),
            "within_3sigma": None if not fused else round(covered / len(fused), 4),
            "error_km_series": [[round(r["t_s"], 1), round(r["fused_err_km"], 3), round(r["fused_sigma_km"], 3)]
                                for r in fused],
            "fixes_used": fuser.n_used,
            "fixes_rejected": fuser.n_rejected,
            "false_fixes_rejected": sum(r["fusion"] == "rejected" for r in false),
            "good_fixes_rejected": sum(r["fusion"] == "rejected" for r in fixes if not r["false"]),
            "fits": fuser.n_fits,
            # the fixes' altitudes / the orbit's (1: no significant scale; else the camera's focal length is
            # off by about that factor: onboard/fusion.py, "Altitude scale")
            "alt_scale": None if sol is None else round(sol.alt_scale, 5),
            "alt_scale_sigma": None if sol is None else round(sol.alt_scale_sigma, 5),
            "elements": None if elements is None else {
                k: (round(v, 6) if isinstance(v, float) else v) for k, v in elements.items()},
        },
    }


def _alt_scale_text(scale, sigma) -> str:
    if scale is None:
        return "n/a"
    if scale == 1.0:
        return "none (1: the fixes' altitudes agree with the orbit's period)"
    return (f"{scale:.4f} ± {sigma:.4f}: the fixes' altitudes are {100 * (scale - 1):+.1f} % off the orbit's; "
            "check the camera's focal length (fov_deg)")


def _fmt(x, unit="", nd=1):
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return "inf"
    return f"{x:.{nd}f}{unit}"


def _pcts(p: dict, unit=" km") -> str:
    return f"{_fmt(p['p50'])} / {_fmt(p['p90'])} / {_fmt(p['p99'])}{unit}"


def _percent(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def summary_text(report: dict, out_dir) -> str:
    """A few lines for the terminal: the headline numbers and the files written."""
    f, lat = report["fused"], report["latency_ms"]["total"]
    out = Path(out_dir)
    names = ("report.md", "track.png", "fixes.jsonl", "truth.jsonl", "track.geojson", "ephemeris.oem",
             "report.json")
    return "\n".join([
        f"{report['scenario']['object']}: {report['frames']} frames, {report['eligible']} eligible, "
        f"{report['fixes']} fixes (fix rate {_percent(report['fix_rate'])} of eligible), "
        f"{report['false_fixes']} false",
        f"boresight error p50/p90/p99: {_pcts(report['boresight_error_km'])};  "
        f"sub-satellite point: {_pcts(report['sub_satellite_error_km'])};  "
        f"latency p50/p99: {_fmt(lat['p50'], ' ms')} / {_fmt(lat['p99'], ' ms')}",
        f"first fix after {_fmt(report['time_to_first_fix_s'], ' s', 0)}, first orbit estimate after "
        f"{_fmt(report['time_to_first_estimate_s'], ' s', 0)}; fused position error: final "
        f"{_fmt(f['final_error_km'], ' km', 2)} (1-sigma {_fmt(f['final_sigma_km'], ' km', 2)}), "
        f"RMS after the first orbit {_fmt(f['rms_km_after_orbit1'], ' km', 2)}",
        "outputs: " + ", ".join(str(out / n) for n in names if (out / n).exists()),
    ])


def report_markdown(report: dict) -> str:
    s, f = report["scenario"], report["fused"]
    lat = report["latency_ms"]
    el = f["elements"]
    rows = [
        ("frames / eligible", f"{report['frames']} / {report['eligible']}"),
        ("fix rate (over eligible frames)",
         f"{_percent(report['fix_rate'])} ({report['fixes_on_eligible']}/{report['eligible']})"),
        ("fixes (all frames)", str(report["fixes"])),
        ("boresight error p50 / p90 / p99, all fixes",
         f"{_pcts(report['boresight_error_km'])} (n={report['boresight_error_km']['n']})"),
        ("boresight error p50 / p90 / p99, eligible frames",
         f"{_pcts(report['boresight_error_km_eligible'])} (n={report['boresight_error_km_eligible']['n']})"),
        ("sub-satellite point error p50 / p90 / p99, all fixes",
         f"{_pcts(report['sub_satellite_error_km'])} (n={report['sub_satellite_error_km']['n']})"),
        ("false fixes (> 50 km, over all frames)",
         f"{report['false_fixes']} ({_percent(report['false_fix_rate'])}), "
         f"{report['false_fixes_on_ineligible']} on ineligible frames"),
        ("latency p50 / p99 (total)", f"{_fmt(lat['total']['p50'], ' ms')} / {_fmt(lat['total']['p99'], ' ms')}"),
    ]
    rows += [(f"  stage {k}", f"{_fmt(v['p50'], ' ms')} / {_fmt(v['p99'], ' ms')}") for k, v in lat["stages"].items()]
    rows += [
        ("time to first fix", _fmt(report["time_to_first_fix_s"], " s", 0)),
        ("time to first fused estimate", _fmt(report["time_to_first_estimate_s"], " s", 0)),
        ("orbit period (truth)", _fmt(report["orbit_period_s"], " s", 0)),
        ("fused 3-D error RMS, second orbit", _fmt(f["rms_km_orbit2"], " km", 2)),
        ("fused 3-D error RMS / max, after the first orbit",
         f"{_fmt(f['rms_km_after_orbit1'], ' km', 2)} / {_fmt(f['max_km_after_orbit1'], ' km', 2)}"),
        ("fused 3-D error at the end (1-sigma)",
         f"{_fmt(f['final_error_km'], ' km', 2)} ({_fmt(f['final_sigma_km'], ' km', 2)})"),
        ("truth within the fused 3-sigma", f"{_percent(f['within_3sigma'])} of frames with an estimate"),
        ("final fused orbit vs truth (ephemeris.oem span), RMS",
         _fmt(f.get("ephemeris_rms_km"), " km", 2) if el else "no orbit estimate: ephemeris.oem not written"),
        ("fixes used / rejected by fusion",
         f"{f['fixes_used']} / {f['fixes_rejected']} (false fixes rejected: {f['false_fixes_rejected']}, "
         f"good fixes rejected: {f['good_fixes_rejected']})"),
        ("fixes' altitude scale found by fusion", _alt_scale_text(f.get("alt_scale"), f.get("alt_scale_sigma"))),
    ]
    if el:
        rows.append(("fused osculating elements (TEME-like ECI, at the last fix)",
                     f"a {el['a_km']:.1f} km, e {el['e']:.4f}, i {el['i_deg']:.2f} deg, "
                     f"RAAN {el['raan_deg']:.2f} deg, argp {el['argp_deg']:.1f} deg, nu {el['nu_deg']:.1f} deg"))
    head = f"Start {s['start']}, {s['frames']} frames"
    head += f" every {s['interval']}" if s.get("interval") else ""
    head += f", attitude {s['attitude']}" if s.get("attitude") else ""
    head += f" {s['tilt_deg']:g} deg off nadir" if s.get("tilt_deg") is not None else ""
    head += f", seed {s['seed']}" if s.get("seed") is not None else ""
    md = [f"# Replay: {s['object']}", "", head + ".", ""]
    if s.get("command"):
        md += ["Re-run with:", "", "```", s["command"], "```", ""]
    md += ["![ground track, fixes and fused track; errors over time](track.png)", "",
           "| metric | value |", "| --- | --- |"]
    md += [f"| {a} | {b} |" for a, b in rows]
    md += ["", "Definitions: docs/REPLAY.md and CONVENTIONS.md ('Metrics'). Boresight errors are great-circle "
               "distances to the true boresight point; fused errors are 3-D distances of the real-time fused "
               "spacecraft position (from the fixes received so far) to the true one.", ""]
    return "\n".join(md)


# ---- products ------------------------------------------------------------------------------------------

def write_ephemeris(path, fuser, recs, object_name: str):
    """Write the final fused orbit as an OEM (``write_orbit_oem``) from the first fused estimate to the last
    frame; return the RMS 3-D error of that orbit against the truth at the frame times. Without any orbit
    (too few fixes) there is nothing to write: an OEM needs ephemeris lines. Then any stale file is
    removed and None returned."""
    if fuser.solution is None or not recs:
        Path(path).unlink(missing_ok=True)
        return None
    t0 = next((r["time"] for r in recs if r["fused_err_km"] is not None), recs[0]["time"])
    write_orbit_oem(path, fuser, t0, recs[-1]["time"], object_name)
    sel = [r for r in recs if r["time"] >= t0]
    errs = [np.linalg.norm(fuser.estimate(r["time"])[0] - r["truth_ecef"]) for r in sel]
    return None if not errs else round(float(np.sqrt(np.mean(np.square(errs)))), 3)


def write_orbit_oem(path, fuser, t0, t1, object_name: str) -> int:
    """Write ``fuser``'s current orbit from UTC ``t0`` to ``t1`` as a CCSDS OEM (ITRF = WGS84 ECEF), every
    ``OEM_STEP_S`` and at ``t1``, with the covariance at the first and last epochs; return the epochs
    written. The fuser must have a solution."""
    from datetime import timedelta

    from .oem import write_oem
    span = max((t1 - t0).total_seconds(), 0.0)
    epochs = [t0 + timedelta(seconds=k * OEM_STEP_S) for k in range(int(span // OEM_STEP_S) + 1)]
    if epochs[-1] < t1:
        epochs.append(t1)
    states, covs = [], []
    for t in epochs:
        r, v, cov = fuser.estimate(t)
        states.append(np.concatenate([r, v]))
        covs.append(cov)
    el = fuser.elements()
    comments = [
        "EarthFix fused orbit: batch least squares (RK4 + J2) on image fixes, final solution",
        "Frame ITRF here means WGS84 ECEF (polar motion neglected); velocities are Earth-relative",
        f"Fixes used {fuser.n_used}, rejected {fuser.n_rejected}",
    ]
    if el:
        comments.append(f"Osculating elements at the last fix (TEME-like ECI): a={el['a_km']:.3f} km e={el['e']:.6f} "
                        f"i={el['i_deg']:.4f} deg RAAN={el['raan_deg']:.4f} deg argp={el['argp_deg']:.4f} deg "
                        f"nu={el['nu_deg']:.4f} deg")
    write_oem(path, epochs, np.array(states), object_name=object_name, object_id="UNKNOWN",
              ref_frame="ITRF", comments=comments, covariances=[(epochs[0], covs[0]), (epochs[-1], covs[-1])])
    return len(epochs)


def _lines_split_at_antimeridian(lonlat):
    """[[lon, lat], ...] to a list of lines, cut where consecutive longitudes jump by more than 180 deg."""
    lines, cur = [], []
    for p in lonlat:
        if cur and abs(p[0] - cur[-1][0]) > 180.0:
            if len(cur) > 1:
                lines.append(cur)
            cur = []
        cur.append(p)
    if len(cur) > 1:
        lines.append(cur)
    return lines


def track_geojson(recs) -> dict:
    """FeatureCollection: true ground track, fused ground track (MultiLineStrings, [lon, lat]) and one Point
    per fix at its estimated boresight point, with its time, confidence, error and fusion status."""
    from ..onboard import geodesy
    true = [[round(r["sub_lon"], 5), round(r["sub_lat"], 5)] for r in recs]
    fused_pts = [r["fused_ecef"] for r in recs if r["fused_ecef"] is not None]
    fused = []
    if fused_pts:
        lat, lon, _ = geodesy.ecef_to_geodetic(np.array(fused_pts))
        fused = [[round(float(a), 5), round(float(b), 5)] for a, b in zip(lon, lat)]
    feats = [
        {"type": "Feature", "properties": {"name": "true ground track", "kind": "truth"},
         "geometry": {"type": "MultiLineString", "coordinates": _lines_split_at_antimeridian(true)}},
        {"type": "Feature", "properties": {"name": "fused ground track", "kind": "fused"},
         "geometry": {"type": "MultiLineString", "coordinates": _lines_split_at_antimeridian(fused)}},
    ]
    for r in recs:
        if not r["fix"] or r["lat"] is None:
            continue
        err = r["err_km"]
        feats.append({"type": "Feature",
                      "properties": {"kind": "fix", "frame_index": r["i"], "time": r["time"].isoformat(),
                                     "confidence": round(r["confidence"], 4),
                                     "error_km": None if err is None or not math.isfinite(err) else round(err, 3),
                                     "false_fix": not (err is not None and err <= FALSE_FIX_KM),
                                     "eligible": r["eligible"], "fusion": r["fusion"]},
                      "geometry": {"type": "Point",
                                   "coordinates": [round(float(r["lon"]), 5), round(float(r["lat"]), 5)]}})
    return {"type": "FeatureCollection", "features": feats}
