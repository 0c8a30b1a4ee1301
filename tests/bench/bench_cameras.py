"""The flight pipeline at cameras other than the eval's two (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_cameras.py [--n 30] [--seed 31337] [--camera 1024x1024@40 ...]
        [--camera-file CAMERA.yaml ...]
        [--config cfg.yaml] [--bundle DIR] [--effects EFFECTS.yaml] [--ceiling] [--day-hours 6 8]
        [--basemap WORLD.jpg] [--alt-km 1300 2000] [--with-time] [--out FRAMES.jsonl]

Land frames (``make_frameset``, the simulator's effects, default basemap, 400-800 km or ``--alt-km``, 0-5 deg off
nadir, any yaw; local solar time 8-15.5 h as the eval's, or ``--day-hours``: e.g. 6 8 for dawn's low sun; ``--basemap``:
frames rendered from another global equirectangular image, e.g. another month's Blue Marble) seen by each
camera below, through one loaded ``Localizer`` (defaults, one thread): eligible frames,
fix rate, false fixes (> 50 km, over all frames), near-wrong poses (frames without a fix whose closest pose was
wrong but pinned within 1.5 precision gates: ``evaluate.near_wrong``, the false-fix margin), boresight error p50
and latency p50, and the pipeline's
retrieval recall@10 (its ``candidates``, CONVENTIONS recall). ``--ceiling`` adds the verification ceiling: the
share of eligible frames that the Localizer's verifier fixes when given the true place, as the frame is or
cloud-filled (``bench_ceiling.py``'s question at this camera). Footprint half-width quoted at 600 km.
``--out`` writes one JSON line a frame (camera, eligible, fix, error, confidence, inliers, the verified place's
source and look, what the deadline cut: ``looks_cut``, ``lowres_cut``, ``guided_cut``, the line repair's
``lines_mended`` and ``striping``, latency and its stages, and the verified pose's evidence as the eval's
``frames.jsonl`` keeps it: ``pose``) for comparing runs frame by frame.
"""
from __future__ import annotations

import argparse
import contextlib
import json

import numpy as np

from earthfix.onboard.camera import Camera
from earthfix.onboard.features import fill_clouds
from earthfix.onboard.localizer import Localizer
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.evaluate import (FALSE_FIX_KM, POSE_EVIDENCE, first_hit_rank, is_eligible, near_wrong,
                                     position_error_km, sub_error_km)
from earthfix.tools.framesets import FrameSpec, make_frameset

from bench_ceiling import true_place_fixed

CAMERAS = ((640, 480, 50.0), (1024, 1024, 40.0), (256, 256, 100.0), (320, 240, 70.0))


def parse_cameras(specs) -> list[tuple[int, int, float]]:
    """``WxH@FOV`` strings -> (width, height, horizontal FOV deg)."""
    cameras = []
    for c in specs:
        size, fov = c.split("@")
        w, h = size.lower().split("x")
        cameras.append((int(w), int(h), float(fov)))
    return cameras


class Tally:
    """One camera's counts over a bench run (CONVENTIONS metrics): eligible frames, their fixes and errors,
    false fixes over all frames (> 50 km), retrieval hits within the first 10 candidates, ceiling hits,
    latencies."""

    def __init__(self):
        self.eligible = self.fixes = self.false = self.hits = self.ceiling = 0
        self.errs, self.lat_ms = [], []

    def add(self, f, truth, ceiling=None) -> float | None:
        """Count one located frame (``f``, a Fix); return its boresight error (km) when it is a fix.
        ``ceiling``: a callable asked, for eligible frames only, whether the true place verifies."""
        self.lat_ms.append(f.latency_ms)
        el = is_eligible(truth)
        self.eligible += el
        if el:
            rank = first_hit_rank([(c.lat, c.lon) for c in f.candidates], truth)
            self.hits += rank is not None and rank <= 10
            self.ceiling += bool(ceiling is not None and ceiling())
        if not f.fix:
            return None
        err = position_error_km(f.lat, f.lon, truth)
        self.false += err > FALSE_FIX_KM
        if el:
            self.fixes += 1
            self.errs.append(err)
        return err

    def pct(self, n) -> str:
        return f"{100.0 * n / max(self.eligible, 1):.0f} %"


def either_look_fixed(loc: Localizer, img, cam: Camera, truth) -> bool:
    """The Localizer's verifiers given the true place only: the frame as it is, then cloud-filled."""
    for ver, filled in ((loc.verifier_for(cam), False), (loc.fill_verifier(cam), True)):
        look, drop = fill_clouds(img, ver.cfg.feature) if filled else (img, None)
        if true_place_fixed(ver, ver.extract(look, drop=drop), cam, truth):
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30, help="frames per camera")
    ap.add_argument("--seed", type=int, default=31337)
    ap.add_argument("--camera", action="append", default=None, metavar="WxH@FOV",
                    help="a camera (width x height @ horizontal FOV, deg); repeatable; default: the four below")
    ap.add_argument("--camera-file", action="append", default=None, metavar="CAMERA.yaml",
                    help="a camera file (fx, fy, cx, cy: a calibrated, off-centre camera); repeatable, after --camera")
    ap.add_argument("--config", default=None, help="Localizer config YAML (default: the shipped defaults)")
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    ap.add_argument("--effects", default=None, help="simulator effects YAML over the defaults (as eval --effects)")
    ap.add_argument("--ceiling", action="store_true", help="also verify the true place (plain or filled look)")
    ap.add_argument("--day-hours", type=float, nargs=2, default=FrameSpec.day_hours, metavar=("H0", "H1"),
                    help="local solar hours the frames are drawn from (default: the eval's 8-15.5)")
    ap.add_argument("--basemap", default=None, metavar="WORLD.jpg",
                    help="render the frames from this global equirectangular image (default: the default basemap)")
    ap.add_argument("--alt-km", type=float, nargs=2, default=FrameSpec.alt_km, metavar=("LO", "HI"),
                    help="altitudes the frames are drawn from, km (default: the eval's 400-800)")
    ap.add_argument("--tilt-max-deg", type=float, default=FrameSpec.tilt_max_deg, metavar="DEG",
                    help="frames are drawn 0 to this many degrees off nadir (default: the eval's 5; no attitude given)")
    ap.add_argument("--with-time", action="store_true",
                    help="give locate each frame's UTC time (a fix in the dark is then refused: min_sun_elev_deg)")
    ap.add_argument("--out", default=None, metavar="FRAMES.jsonl", help="one JSON line per frame")
    a = ap.parse_args()
    with open(a.out, "w") if a.out else contextlib.nullcontext() as out:
        run(a, out)


def near_wrong_poses(loc, recs: list[dict]) -> int:
    """How many of the frame records ``recs`` (``frame_record``'s) hold a near-wrong pose under ``loc``'s precision
    gate (``evaluate.near_wrong``, the eval's false-fix margin); a bundle without a keypoint store reaches none."""
    if loc.verifier is None:
        return 0
    return near_wrong([dict(r, scenario=r["camera"]) for r in recs], loc.verifier.cfg.max_bore_sigma_km)["frames"]


def frame_record(cam, i: int, f, err, truth: dict) -> dict:
    """The ``--out`` line of frame ``i`` of ``cam``: its fix ``f`` against ``truth`` (``err``: Tally.add's)."""
    ev = f.evidence
    return {"camera": f"{cam.width}x{cam.height}@{cam.fov_deg:g}", "index": i, "eligible": bool(is_eligible(truth)),
            "fix": f.fix, "err_km": err, "confidence": round(f.confidence, 4),
            "hyp_err_km": (None if ev.get("hyp_lat") is None else round(float(
                position_error_km(ev["hyp_lat"], ev["hyp_lon"], truth)), 2)),
            "inliers": f.inliers, "bore_sigma_km": ev.get("bore_sigma_km"),
            "offset_sigma_km": ev.get("offset_sigma_km"),
            "source": ev.get("source"), "from_prior": ev.get("from_prior"),
            "look": ev.get("look"), "reason": f.reason, "cloud_frac": truth.get("cloud_frac"),
            "looks_cut": ev.get("looks_cut"), "lowres_cut": ev.get("lowres_cut"), "guided_cut": ev.get("guided_cut"),
            "lines_mended": ev.get("lines_mended"), "striping": ev.get("striping"),
            "bore_lat": round(float(truth["bore_lat"]), 3), "bore_lon": round(float(truth["bore_lon"]), 3),
            "alt_km": round(float(truth["alt_km"]), 1), "hyp_alt_km": ev.get("hyp_alt_km"),
            "sub_err_km": None if not f.fix else round(sub_error_km(f.sub_lat, f.sub_lon, truth), 2),
            "tilt_deg": ev.get("tilt_deg"), "true_tilt_deg": truth.get("tilt_deg"),
            "latency_ms": round(f.latency_ms, 2), "stages_ms": f.stages_ms,
            "pose": {k: ev.get(k) for k in POSE_EVIDENCE} if ev.get("ok") else None}


def run(a, out) -> None:
    """The bench's table on stdout, and one JSON line a frame into ``out`` (a text file, or None)."""
    basemap = None
    if a.basemap:
        from earthfix.sim.basemap import Basemap
        basemap = Basemap.load(a.basemap)
    effects = None
    if a.effects:
        from earthfix.sim.effects import EffectsConfig
        effects = EffectsConfig.from_yaml(a.effects)
    cameras = [Camera.from_fov(w, h, fov) for w, h, fov in (parse_cameras(a.camera) if a.camera else
                                                             [] if a.camera_file else CAMERAS)]
    cameras += [Camera.from_yaml(p) for p in a.camera_file or []]
    loc = Localizer.load(a.bundle or ensure_default_bundle(), a.config)
    extra = " ceiling |" if a.ceiling else ""
    print("| camera | footprint half-width at 600 km | eligible | fix rate | retrieval R@10 |" + extra
          + " false fixes | near-wrong poses | error p50 | latency p50 |")
    print("| --- | ---: | ---: | ---: | ---: |" + (" ---: |" if a.ceiling else "") + " ---: | ---: | ---: | ---: |")
    for cam in cameras:
        w, h, fov = cam.width, cam.height, cam.fov_deg
        tally, recs = Tally(), []
        spec = FrameSpec(day_hours=tuple(a.day_hours), alt_km=tuple(a.alt_km), tilt_max_deg=a.tilt_max_deg)
        frames = make_frameset(a.n, a.seed + w, cam, basemap, spec, effects=effects)
        for i, (img, truth) in enumerate(frames):
            f = loc.locate(img, cam, time=truth["time"] if a.with_time else None)
            err = tally.add(f, truth, (lambda: either_look_fixed(loc, img, cam, truth)) if a.ceiling else None)
            recs.append(frame_record(cam, i, f, err, truth))
            if out is not None:
                out.write(json.dumps(recs[-1]) + "\n")
        ceil = f" {tally.pct(tally.ceiling)} |" if a.ceiling else ""
        off = (cam.cx - (w - 1) / 2.0, cam.cy - (h - 1) / 2.0)
        name = f"{w}×{h}, {fov:.4g}°" + (f", cx {off[0]:+g} cy {off[1]:+g} px" if any(off) else "") + (
            f", fy/fx {cam.fy / cam.fx:.3f}" if cam.fy != cam.fx else "")
        t = tally
        print(f"| {name} | {cam.footprint_half_width_km(600.0):.0f} km | {t.eligible} of {a.n} | "
              f"{t.pct(t.fixes)} | {t.pct(t.hits)} |{ceil} {t.false} | {near_wrong_poses(loc, recs)} | "
              f"{np.median(t.errs) if t.errs else float('nan'):.1f} km | {np.median(t.lat_ms):.1f} ms |")


if __name__ == "__main__":
    main()
