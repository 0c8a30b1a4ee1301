"""``earthfix fuse``: an orbit from located frames, with no simulator and no truth needed (real frames' path).

    earthfix sim --preset iss --duration 95m --interval 10s --out F        # or frames from a camera
    earthfix locate --camera F/camera.yaml F/*.png > F/fixes.jsonl
    earthfix fuse F/fixes.jsonl --times F/truth.jsonl --out F/orbit

Input: JSON lines as ``earthfix locate`` writes them (``frame``, ``fix``, ``sub_lat``, ``sub_lon``, ``alt_km``,
``confidence``, ...; replay's ``fixes.jsonl`` too). A frame's time is its line's own ``time`` when it has one,
else, with ``--times FILE``, that file's ``time`` for the same frame: JSON lines with ``frame`` and ``time``
(ISO 8601 UTC), matched by file name (the simulator's ``truth.jsonl`` is such a file). A line that is not a
JSON object, or whose frame has no readable time, is reported on stderr in one line and left out; frames
without a fix are kept (they carry no measurement). Frames are fused in time order by the onboard
``OrbitFuser``, exactly as replay does.

Outputs in OUT/:

- ``fused.jsonl``: per frame, in time order: ``frame``, ``time``, ``fix``, ``fusion`` (what the final fit made
  of the fix: ``used``, ``rejected``, ``pending``, ``outside`` its window, null without a fix),
  ``fused_ecef_km``, ``fused_vel_ecef_km_s`` (Earth-relative) and ``fused_sigma_km`` (1-sigma 3-D, position)
  at the frame's time from the fixes up to that frame
  (the onboard, real-time view; null before the first orbit), ``fused_sub_lat`` / ``fused_sub_lon`` /
  ``fused_alt_km`` (the same position as geodetic), and ``residual_km``: the fix's spacecraft position
  against the final orbit (null without a fix);
- ``orbit.png``: the fused ground track over the world map with every fix coloured by what the final fit
  made of it, and the residuals, the fused 1-sigma (and the error against a truth) against time;
- ``ephemeris.oem``: the final orbit as a CCSDS OEM (ITRF = WGS84 ECEF), every 60 s over the frames' span
  within the final fit's window (``OrbitFuser.window_s``, 6 h before the last fix), covariance at both ends;
- ``report.json`` / ``report.md``: frames, fixes, used / rejected, span, RMS residual of the used fixes,
  osculating elements and period, the fixes' altitude scale (a wrong ``fov_deg`` shows there), and, when the
  times file also holds the true ``ecef_km`` (the simulator's truth), the fused error against it.

Exit status 2 with a one-line reason when there is nothing to fuse (no readable frame with a time).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def register(subparsers) -> None:
    p = subparsers.add_parser("fuse", help="orbit from located frames: locate's JSON lines + times -> OEM, report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("fixes", metavar="FIXES.jsonl", help="locate's JSON lines ('-' for standard input)")
    p.add_argument("--times", metavar="FILE.jsonl",
                   help="frame times: JSON lines with 'frame' and 'time' (e.g. the simulator's truth.jsonl)")
    p.add_argument("--object", default="satellite", help="object name in the OEM (default: satellite)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def _warn(msg: str) -> None:
    print(f"earthfix fuse: {msg}", file=sys.stderr)


def _json_lines(text: str, source: str):
    """(line number, dict) per JSON-object line; anything else is reported and skipped."""
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            _warn(f"{source}:{no}: not JSON ({exc.msg}), skipped")
            continue
        if not isinstance(obj, dict):
            _warn(f"{source}:{no}: not a JSON object, skipped")
            continue
        yield no, obj


def _read(path) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise FileNotFoundError(f"cannot read {path}: {why}") from None


def read_times(path) -> dict:
    """frame file name -> the times file's record (with at least ``time``)."""
    out = {}
    for _, rec in _json_lines(_read(path), str(path)):
        if rec.get("frame") is not None and rec.get("time") is not None:
            out[Path(str(rec["frame"])).name] = rec
    return out


def load_frames(fixes_path, times: dict | None) -> list[tuple]:
    """[(UTC time, locate record, times record or None, "file:line")] in time order (stable); unreadable
    lines and frames without a time are reported and left out."""
    from ..sim.orbit import OrbitError, parse_time
    rows, untimed = [], []
    for no, rec in _json_lines(_read(fixes_path), str(fixes_path)):
        name = Path(str(rec.get("frame"))).name if rec.get("frame") is not None else None
        ref = times.get(name) if times is not None and name is not None else None
        when = rec.get("time") if rec.get("time") is not None else (ref or {}).get("time")
        if when is None:
            untimed.append((no, rec.get("frame")))
            continue
        try:
            t = parse_time(when)
        except OrbitError as exc:
            _warn(f"{fixes_path}:{no}: {exc}, skipped")
            continue
        rows.append((t, rec, ref, f"{fixes_path}:{no}"))
    if untimed:   # one line for them all: a run without --times would otherwise print one per frame
        no, frame = untimed[0]
        _warn(f"{fixes_path}: {len(untimed)} frame(s) without a time{' in the times file' if times is not None else ''}"
              f" skipped (first: line {no}, frame {frame!r}){'' if times is not None else '; give --times'}")
    rows.sort(key=lambda r: r[0])
    return rows


def fuse_frames(rows, fuser=None):
    """Feed ``rows`` (``load_frames``) to an OrbitFuser in time order; per frame (time, record, reference,
    measured?, the streaming estimate or None). Returns (fuser, per-frame list)."""
    from ..onboard.fusion import OrbitFuser
    fuser = fuser or OrbitFuser()
    out = []
    for t, rec, ref, where in rows:
        try:
            measured = fuser.add(t, rec)
        except (TypeError, ValueError) as exc:      # a fix whose position fields are not numbers
            _warn(f"{where}: unusable position ({exc}), not fused")
            measured = False
        out.append((t, rec, ref, measured, fuser.estimate(t)))
    if fuser.n_fixes:
        fuser.fit()             # the final solution uses every fix, also those since the last refit
    return fuser, out


def _r(x, nd=4):
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def _pcts(v) -> dict:
    """replay's percentiles (p50, p90, n) and the maximum."""
    from .replay import _pct
    return dict(_pct(v, (50, 90)), max=_r(max(v), 3) if len(v) else None)


def run(args) -> int:
    from ..onboard import geodesy
    from ..onboard.fusion import fix_position_ecef_km, position_sigma_km
    from .replay import OEM_STEP_S, write_orbit_oem

    times = read_times(args.times) if args.times else None
    rows = load_frames(args.fixes, times)
    if not rows:
        _warn("error: no frame with a readable record and time: nothing to fuse")
        return 2
    fuser, frames = fuse_frames(rows)
    status = fuser.fix_status()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    recs, fix_ll, k = [], [], 0
    resid_used, fused_err, truth_err_final = [], [], []
    for t, rec, ref, measured, est in frames:
        line = {"frame": rec.get("frame"), "time": t.isoformat().replace("+00:00", "Z"), "fix": bool(rec.get("fix")),
                "fusion": None, "fused_ecef_km": None, "fused_vel_ecef_km_s": None, "fused_sigma_km": None, "fused_sub_lat": None,
                "fused_sub_lon": None, "fused_alt_km": None, "residual_km": None}
        ll = (None, None)
        if measured:
            line["fusion"] = status[k]
            k += 1
            p = fix_position_ecef_km(rec)
            ll = tuple(float(x) for x in geodesy.ecef_to_geodetic(p)[:2])
            final = fuser.estimate(t)
            if final is not None:
                res = float(np.linalg.norm(p - final[0]))
                line["residual_km"] = _r(res, 3)
                if line["fusion"] == "used":
                    resid_used.append(res)
        if est is not None:
            r, v, cov = est
            lat, lon, alt = (float(x) for x in geodesy.ecef_to_geodetic(r))
            line.update(fused_ecef_km=[_r(c) for c in r], fused_vel_ecef_km_s=[_r(c, 6) for c in v],
                        fused_sigma_km=_r(position_sigma_km(cov)),
                        fused_sub_lat=_r(lat, 5), fused_sub_lon=_r(lon, 5), fused_alt_km=_r(alt, 3))
            if ref is not None and ref.get("ecef_km") is not None:
                err = float(np.linalg.norm(np.asarray(r) - np.asarray(ref["ecef_km"], dtype=float)))
                line["fused_err_km"] = _r(err, 3)
                fused_err.append(err)
        recs.append(line)
        fix_ll.append(ll)
    (out / "fused.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    from .plots import plot_fused
    t_first = frames[0][0]
    plot_fused(out / "orbit.png", [dict(r, t_min=(t - t_first).total_seconds() / 60.0, fix_sub_lat=ll[0], fix_sub_lon=ll[1])
                                   for r, (t, *_), ll in zip(recs, frames, fix_ll)],
               title=f"EarthFix fused orbit: {args.fixes}")

    t_last = frames[-1][0]
    command = f"earthfix fuse {args.fixes}" + (f" --times {args.times}" if args.times else "") + f" --out {args.out}"
    report = {"command": command,
              "fixes_file": str(args.fixes), "times_file": args.times,
              "frames": len(frames), "first": recs[0]["time"], "last": recs[-1]["time"],
              "span_s": round((t_last - t_first).total_seconds(), 3),
              "fixes": sum(r["fix"] for r in recs), "measured": fuser.n_fixes,
              "used": sum(s == "used" for s in status), "rejected": sum(s == "rejected" for s in status),
              "orbit": fuser.solution is not None, "residual_used_km": _pcts(resid_used),
              "residual_rms_km": _r(np.sqrt(np.mean(np.square(resid_used))), 3) if resid_used else None,
              "elements": None, "alt_scale": None, "ephemeris": None, "truth": None}
    if fuser.solution is not None:
        el = fuser.elements()
        report["elements"] = {k2: _r(v, 6) for k2, v in el.items()}
        sol = fuser.solution
        report["alt_scale"] = {"value": _r(sol.alt_scale, 5), "sigma": _r(sol.alt_scale_sigma, 5)}
        from datetime import timedelta
        t0 = max(t_first, t_last - timedelta(seconds=fuser.window_s))
        n = write_orbit_oem(out / "ephemeris.oem", fuser, t0, t_last, args.object)
        report["ephemeris"] = {"file": "ephemeris.oem", "start": t0.isoformat(), "stop": t_last.isoformat(),
                               "epochs": n, "step_s": OEM_STEP_S}
        truth = [(t, ref) for t, _, ref, _, _ in frames if ref is not None and ref.get("ecef_km") is not None]
        if truth:
            truth_err_final = [float(np.linalg.norm(fuser.estimate(t)[0] - np.asarray(ref["ecef_km"], dtype=float)))
                               for t, ref in truth if t >= t0]
    else:
        (out / "ephemeris.oem").unlink(missing_ok=True)
    if fused_err or truth_err_final:
        report["truth"] = {"fused_err_km": _pcts(fused_err), "final_fused_err_km": _r(fused_err[-1], 3) if fused_err else None,
                           "ephemeris_rms_km": _r(np.sqrt(np.mean(np.square(truth_err_final))), 3)
                           if truth_err_final else None}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    _warn(f"{report['frames']} frames, {report['fixes']} fixes, {report['used']} used, {report['rejected']} rejected; "
          + ("orbit in " + str(out / "ephemeris.oem") if report["orbit"] else "no orbit (too few consistent fixes)"))
    return 0


def report_markdown(rep: dict) -> str:
    def f(x, unit="", nd=2):
        return "–" if x is None else f"{x:.{nd}f}{unit}"
    lines = ["# EarthFix fused orbit", "",
             f"Fixes `{rep['fixes_file']}`" + (f", times `{rep['times_file']}`" if rep["times_file"] else "")
             + (f"; `{rep['command']}`" if rep["command"] else ""), "",
             "| item | value |", "| --- | --- |",
             f"| frames | {rep['frames']} ({rep['first']} to {rep['last']}, {rep['span_s'] / 60:.1f} min) |",
             f"| fixes | {rep['fixes']} ({rep['measured']} with a position) |",
             f"| used / rejected by the final fit | {rep['used']} / {rep['rejected']} |",
             f"| residual of used fixes, RMS (p50 / p90) | {f(rep['residual_rms_km'], ' km')} "
             f"({f(rep['residual_used_km']['p50'], ' km')} / {f(rep['residual_used_km']['p90'], ' km')}) |"]
    el = rep["elements"]
    if el:
        lines += [f"| semi-major axis, eccentricity | {f(el['a_km'], ' km', 1)}, {f(el['e'], '', 5)} |",
                  f"| inclination, RAAN | {f(el['i_deg'], '°', 3)}, {f(el['raan_deg'], '°', 3)} |",
                  f"| period | {f(el.get('period_s', float('nan')) / 60, ' min', 2)} |",
                  f"| position / velocity 1-σ at the last fix | {f(el['sigma_pos_km'], ' km', 3)} / "
                  f"{f(el['sigma_vel_km_s'] * 1e3, ' m/s', 2)} |"]
        a = rep["alt_scale"]
        lines.append(f"| fixes' altitude scale | {f(a['value'], '', 4)} ± {f(a['sigma'], '', 4)} (significant: check the "
                     "camera's fov_deg) |" if a["sigma"] else
                     "| fixes' altitude scale | 1 (not fitted: arc under 45 min, or no evidence of a scale) |")
        e = rep["ephemeris"]
        lines.append(f"| ephemeris | `{e['file']}`, {e['epochs']} epochs, {e['start']} to {e['stop']} |")
    else:
        lines.append("| orbit | none: too few consistent fixes |")
    tr = rep["truth"]
    if tr:
        fe = tr["fused_err_km"]
        lines += [f"| fused error vs truth, real-time (p50 / p90 / max) | {f(fe['p50'], ' km')} / {f(fe['p90'], ' km')} / "
                  f"{f(fe['max'], ' km')} ({fe['n']} frames) |",
                  f"| fused error at the last frame | {f(tr['final_fused_err_km'], ' km')} |",
                  f"| final orbit vs truth over the ephemeris span, RMS | {f(tr['ephemeris_rms_km'], ' km')} |"]
    return "\n".join(lines) + "\n"
