"""A dense check at the places the pipeline leaves unfixed: would it find their poses? (not a pytest test)

    PYTHONPATH=. python tests/bench/bench_dense_check.py [--seed 1] [--n 100] [--k 5] [--true-place]
        [--sets land256,season256,land512,cloudy,ocean,night] [--bundle DIR] [--out RECORDS.jsonl]

The eval's overall sets (``evaluate.scenario_frames``, the release seeds) through the shipped Localizer; for
every frame it leaves without a fix (eligible or not: ocean, night and cloud frames are where a dense check
would run too), each of its first ``--k`` candidates is registered densely: the default basemap rendered at
nadir over the place (176 px at the frame's own focal length scaled to a 64 px working frame, 600 km, north
up), the frame's gradient field matched into it (``cv2.matchTemplate``, normalised correlation of the
doubled-angle gradient field, which a boundary whose contrast a season reverses keeps; the frame's cloud-like
pixels left out) over yaw and altitude: a vote place's own yaw +-10 deg in 5 deg steps and altitude x 0.87 /
1 / 1.15, an encoder place's every 6 deg at 430-770 km. The best match gives a pose; its boresight's error
against the truth says whether the check found the frame.

Prints, for eligible frames: how many have a right place among the candidates and a right dense pose
(within 50 km), and the scores of right poses against wrong ones per set (a dense check can only accept a
pose above every wrong one's score). ``--true-place`` registers at the true place with the true yaw and
altitude instead: the method's own ceiling on these frames. A scratch probe of session 57, kept so that its
figures (docs/VERIFICATION.md, "A dense check at the release misses") can be re-run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys

import cv2
import numpy as np

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera, nadir_attitude
from earthfix.onboard.features import cloud_mask, to_grey
from earthfix.onboard.fix import Candidate
from earthfix.onboard.localizer import Localizer
from earthfix.sim.basemap import Basemap
from earthfix.sim.render import render
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.evaluate import (SCENARIOS, hit_radius_km, is_eligible, position_error_km, scenario_frames,
                                     scenario_seed)

WORK_PX = 64        # the frame's working size (long side)
REF_PX = 176        # the reference canvas: room for the frame at 800 km and an offset of a few hundred km
REF_ALT_KM = 600.0
RIGHT_KM = 50.0     # CONVENTIONS: a fix more than 50 km off is false


def gradient_field(grey: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W, 2) doubled-angle gradient field |g| (cos 2a, sin 2a): the same for a boundary of either contrast."""
    g = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    m = np.sqrt(gx * gx + gy * gy) + 1e-3
    return (np.dstack([(gx * gx - gy * gy) / m, 2 * gx * gy / m]) * valid[..., None]).astype(np.float32)


def reference(basemap: Basemap, lat: float, lon: float, fx_px: float):
    """The basemap's gradient field at nadir over (lat, lon), north up, and the rendered view (its lat/lon)."""
    cam = Camera(REF_PX, REF_PX, fx_px, fx_px, (REF_PX - 1) / 2, (REF_PX - 1) / 2)
    v = render(basemap, cam, geodesy.geodetic_to_ecef(lat, lon, REF_ALT_KM), nadir_attitude(lat, lon, 0.0))
    return gradient_field(to_grey(v.image), v.hit.astype(np.float32)), v


def working_frame(img: np.ndarray, cam: Camera):
    """The frame at the working size (grey), its clear pixels (float 0/1) and its focal length there (px)."""
    s = WORK_PX / max(cam.width, cam.height)
    w, h = max(8, round(cam.width * s)), max(8, round(cam.height * s))
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    cm = cloud_mask(img)
    valid = np.ones((cam.height, cam.width), np.float32) if cm is None else (~cm).astype(np.float32)
    valid = (cv2.resize(valid, (w, h), interpolation=cv2.INTER_AREA) > 0.9).astype(np.float32)
    return to_grey(small), valid, cam.fx * s


def register(grey: np.ndarray, valid: np.ndarray, ref_field: np.ndarray, yaws, alts_km):
    """Best (score, yaw, alt_km, du, dv): the frame turned by its yaw (clockwise: north up) and scaled to the
    reference's 600 km, matched into it; (du, dv) the frame centre's offset from the reference centre (px).
    Also every (yaw, alt) trial's best score."""
    h, w = grey.shape
    best, scores = (-1.0, None, None, 0.0, 0.0), []
    for alt in alts_km:
        s = alt / REF_ALT_KM
        side = int(math.ceil(math.hypot(w, h) * s)) | 1
        c = (side - 1) / 2
        for yaw in yaws:
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -yaw, s)
            m[:, 2] += c - np.array([(w - 1) / 2, (h - 1) / 2])
            gw = cv2.warpAffine(grey, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            vw = cv2.erode(cv2.warpAffine(valid, m, (side, side), flags=cv2.INTER_NEAREST, borderValue=0),
                           np.ones((3, 3), np.uint8))
            tf = gradient_field(gw, vw)
            if np.abs(tf).sum() < 1e-3:
                continue
            r = np.nan_to_num(cv2.matchTemplate(ref_field, tf, cv2.TM_CCORR_NORMED), nan=0.0, posinf=0.0, neginf=0.0)
            _, mx, _, at = cv2.minMaxLoc(r)
            scores.append(float(mx))
            if mx > best[0]:
                best = (float(mx), yaw, alt, at[0] + c - (REF_PX - 1) / 2, at[1] + c - (REF_PX - 1) / 2)
    return best, scores


def trials(c: Candidate):
    """The yaws and altitudes searched at a place (module docstring)."""
    if c.yaw_deg is not None:
        yaws = [c.yaw_deg + d for d in (-10, -5, 0, 5, 10)]
    else:
        yaws = list(range(0, 360, 6))
    alts = [c.alt_km * q for q in (0.87, 1.0, 1.15)] if c.alt_km else [430, 500, 580, 670, 770]
    return yaws, alts


def check_frame(loc: Localizer, basemap: Basemap, img, cam: Camera, truth: dict, k: int, true_place: bool):
    """Records (dicts) of the dense check at the frame's candidates, or [] when the frame is fixed or blank."""
    f = loc.locate(img, cam)
    if f.fix:
        return []
    grey, valid, fx = working_frame(img, cam)
    if valid.mean() < 0.05 or img.max() < 20:
        return []
    cands = f.candidates[:k]
    if true_place:
        cands = [Candidate(truth["bore_lat"], truth["bore_lon"], 1.0, source="truth", yaw_deg=truth["yaw_deg"],
                           alt_km=truth["alt_km"])]
    out = []
    for j, c in enumerate(cands):
        ref_field, view = reference(basemap, c.lat, c.lon, fx)
        (score, yaw, alt, du, dv), scores = register(grey, valid, ref_field, *trials(c))
        if yaw is None:
            continue
        u = min(max(int(round((REF_PX - 1) / 2 + du)), 0), REF_PX - 1)
        v = min(max(int(round((REF_PX - 1) / 2 + dv)), 0), REF_PX - 1)
        cand_err = position_error_km(c.lat, c.lon, truth)
        out.append({"eligible": is_eligible(truth), "cand": j, "source": c.source,
                    "right_place": bool(cand_err <= hit_radius_km(truth)), "cand_err_km": round(cand_err, 1),
                    "score": round(score, 4), "median_score": round(float(np.median(scores)), 4),
                    "yaw_deg": yaw, "alt_km": alt, "true_yaw_deg": truth["yaw_deg"], "true_alt_km": truth["alt_km"],
                    "pose_err_km": round(position_error_km(float(view.lat[v, u]), float(view.lon[v, u]), truth), 1),
                    "clear_share": round(float(valid.mean()), 3), "inliers": f.inliers, "reason": f.reason})
    return out


def summary(records: list[dict]) -> list[str]:
    """The bench's table (module docstring)."""
    frames: dict = {}
    for r in records:
        if r["eligible"]:
            frames.setdefault((r["set"], r["i"]), []).append(r)
    right = [r for r in records if r["pose_err_km"] <= RIGHT_KM]
    wrong = [r for r in records if r["pose_err_km"] > RIGHT_KM]
    clear = np.array([rs[0]["clear_share"] for rs in frames.values()]) if frames else np.zeros(1)
    L = [f"eligible unfixed frames checked: {len(frames)} (clear share of the working frame p10 / p50 / p90 "
         f"{' / '.join(f'{x:.2f}' for x in np.percentile(clear, [10, 50, 90]))})",
         f"  with a right place among the candidates: {sum(any(r['right_place'] for r in rs) for rs in frames.values())}",
         f"  with a right dense pose: {sum(any(r['pose_err_km'] <= RIGHT_KM for r in rs) for rs in frames.values())}",
         f"  whose best-scoring pose is right: "
         f"{sum(max(rs, key=lambda r: r['score'])['pose_err_km'] <= RIGHT_KM for rs in frames.values())}",
         "", "| set | right poses | their scores | wrong poses | wrong p50 / p99 / max |", "| --- | ---: | --- | ---: | --- |"]
    for s in sorted({r["set"] for r in records}):
        rs = sorted(r["score"] for r in right if r["set"] == s)
        ws = [r["score"] for r in wrong if r["set"] == s]
        wq = " / ".join(f"{x:.3f}" for x in np.percentile(ws, [50, 99, 100])) if ws else "–"
        L.append(f"| {s} | {len(rs)} | {', '.join(f'{x:.3f}' for x in rs) or '–'} | {len(ws)} | {wq} |")
    return L


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1, help="the eval's seed (its sets' seeds follow from it)")
    ap.add_argument("--n", type=int, default=100, help="frames per set")
    ap.add_argument("--k", type=int, default=5, help="candidates checked per unfixed frame")
    ap.add_argument("--sets", default="land256,season256,land512,cloudy,ocean,night")
    ap.add_argument("--true-place", action="store_true", help="check the true place and pose only (ceiling)")
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--out", default=None, metavar="RECORDS.jsonl")
    a = ap.parse_args()
    loc = Localizer.load(a.bundle or ensure_default_bundle())
    basemap = Basemap.default()
    sets = a.sets.split(",")
    records = []
    with open(a.out, "w") if a.out else contextlib.nullcontext() as out:
        for k, sdef in enumerate(SCENARIOS):
            if sdef.name not in sets:
                continue
            cam, frames = scenario_frames(sdef, a.n, scenario_seed(a.seed, k))
            for i, (img, truth) in enumerate(frames):
                for r in check_frame(loc, basemap, img, cam, truth, a.k, a.true_place):
                    r = {"set": sdef.name, "i": i, **r}
                    records.append(r)
                    if out is not None:
                        out.write(json.dumps(r) + "\n")
            print(f"{sdef.name}: done", file=sys.stderr)
    print("\n".join(summary(records)))


if __name__ == "__main__":
    main()
