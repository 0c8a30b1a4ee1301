"""Measure geometric verification on random land frames (not a pytest test; run as a script).

    PYTHONPATH=. nice -n 10 python tests/bench/bench_verify.py --store STORE.npz [--n 100] [--seed 0]
        [--set ratio=0.85 --set feature.max_keypoints=200 ...] [--json out.json]

Frames: the boresight of a nadir-ish camera (tilt 0-5 deg, random azimuth) over a random land point of the
default basemap, altitude 600 +- 200 km, random yaw, 256x256 at 80 deg, with an appearance change
(gamma, per-channel gain, offset, blur, haze, noise: ``appearance``). Candidates: the true place offset by
up to half the footprint half-width (what retrieval recall counts as a hit), and two random land places
more than 2000 km away. Timing at one thread (cv2.setNumThreads(1)); the machine may be shared, so
figures are p50 of per-frame times and should be compared as ratios within one run.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # one thread everywhere (set before numpy loads)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera, nadir_attitude, tilt_rotation, yaw_of_attitude
from earthfix.onboard.keystore import KeypointStore
from earthfix.onboard.verify import Verifier, VerifyConfig
from earthfix.sim import effects as fx
from earthfix.sim import render
from earthfix.sim.basemap import Basemap


def appearance(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A simple sensor/season change: gamma, per-channel gain and offset, blur, haze, noise."""
    f = img.astype(np.float32) / 255.0
    f = f ** rng.uniform(1 - 0.3 * strength, 1 + 0.4 * strength)
    f = f * rng.uniform(1 - 0.2 * strength, 1 + 0.2 * strength, 3)[None, None, :]
    f += rng.uniform(-0.05, 0.05) * strength
    sig = rng.uniform(0.0, 1.0) * strength
    if sig > 0.3:
        f = cv2.GaussianBlur(f, (0, 0), sig)
    haze = rng.uniform(0.0, 0.25) * strength
    f = f * (1 - haze) + haze * 0.8
    f += rng.normal(0.0, 0.015 * strength + 0.005, f.shape).astype(np.float32)
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def random_land(bm: Basemap, rng, n=1, lat_lim=80.0):
    out = []
    while len(out) < n:
        z = rng.uniform(-math.sin(math.radians(lat_lim)), math.sin(math.radians(lat_lim)))
        lat = math.degrees(math.asin(z))
        lon = rng.uniform(-180, 180)
        x, y = bm.to_pixel(lat, lon)
        if bm.land[int(np.clip(round(float(y)), 0, bm.land.shape[0] - 1)),
                   int(np.clip(round(float(x)), 0, bm.land.shape[1] - 1))] > 0.5:
            out.append((lat, lon))
    return out


def make_frame(bm, cam, rng, alt_km, tilt_max_deg=5.0, min_land=0.3):
    """A random land frame: (image, truth dict); retries until the frame has enough land."""
    while True:
        (slat, slon), = random_land(bm, rng)
        yaw = rng.uniform(0, 360)
        tilt = rng.uniform(0, tilt_max_deg)
        r = nadir_attitude(slat, slon, yaw) @ tilt_rotation(tilt, rng.uniform(0, 360))
        pos = geodesy.geodetic_to_ecef(slat, slon, alt_km)
        v = render.render(bm, cam, pos, r)
        if v.land.mean() < min_land:
            continue
        bore, hit = geodesy.ray_ellipsoid(pos, r[:, 2])
        blat, blon = geodesy.surface_to_geodetic(bore)
        return v, {"sub_lat": slat, "sub_lon": slon, "bore_lat": float(blat), "bore_lon": float(blon),
                         "alt_km": alt_km, "yaw_deg": yaw_of_attitude(r, float(blat), float(blon)),
                         "tilt_deg": tilt, "r": r, "pos": pos, "land": float(v.land.mean())}


def apply_overrides(cfg: VerifyConfig, sets: list[str]) -> VerifyConfig:
    fkw, vkw = {}, {}
    for s in sets:
        k, v = s.split("=", 1)
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        if k.startswith("feature."):
            fkw[k[8:]] = val
        else:
            vkw[k] = tuple(val) if isinstance(val, list) else val
    feat = dataclasses.replace(cfg.feature, **fkw)
    return dataclasses.replace(cfg, feature=feat, **vkw)


def pct(a, q):
    a = [x for x in a if x is not None and math.isfinite(x)]
    return round(float(np.percentile(a, q)), 3) if a else None


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--dim", type=int, default=0, help="truncate the store's descriptors to this many components")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--fov", type=float, default=80.0)
    ap.add_argument("--strength", type=float, default=1.0, help="appearance change strength")
    ap.add_argument("--effects", action="store_true",
                    help="use earthfix.sim.effects (clouds, sun, haze, appearance) instead of appearance()")
    ap.add_argument("--set", action="append", default=[], help="VerifyConfig override key=json")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    bm = Basemap.default()
    store = KeypointStore.load(a.store)
    if a.dim:
        store = store.truncated(a.dim)
    cfg = apply_overrides(VerifyConfig(), a.set)
    ver = Verifier(store, cfg)
    cam = Camera.from_fov(a.width, a.width, a.fov)
    rng = np.random.default_rng(a.seed)
    rows = []
    for i in range(a.n):
        alt = float(rng.uniform(400, 800))
        view, tr = make_frame(bm, cam, rng, alt)
        if a.effects:
            # the simulator's full pipeline: clouds, sun (local time 09-15 h at the equinox), haze,
            # appearance shift, optics, noise
            t_utc = (datetime(2026, 3, 20, 12, tzinfo=timezone.utc)
                     - timedelta(hours=tr["sub_lon"] / 15.0 + float(rng.uniform(-3, 3))))
            img, info = fx.apply(view, t_utc, fx.EffectsConfig.default(), rng)
            tr["eligible"] = bool((info["sun_elev_deg"] or -90) > 0 and info["land_clear_frac"] >= 0.2)
            tr["land_clear"] = info["land_clear_frac"]
        else:
            img = appearance(view.image, rng, a.strength)
            tr["eligible"] = True
        hw = cam.footprint_half_width_km(alt)
        clat, clon = geodesy.destination(tr["bore_lat"], tr["bore_lon"], rng.uniform(0, 360),
                                         rng.uniform(0, 0.5 * hw))
        wrong = []
        while len(wrong) < 2:
            w = random_land(bm, rng)[0]
            if geodesy.great_circle_km(w[0], w[1], tr["bore_lat"], tr["bore_lon"]) > 2000:
                wrong.append(w)
        # CPU time of this thread: the machine is shared, wall time inflates with the other jobs' load
        t, c = time.perf_counter(), time.thread_time()
        f = ver.extract(img)
        t_ext, c_ext = (time.perf_counter() - t) * 1e3, (time.thread_time() - c) * 1e3
        t, c = time.perf_counter(), time.thread_time()
        v = ver.verify(f, cam, [(float(clat), float(clon))])
        t_true, c_true = (time.perf_counter() - t) * 1e3, (time.thread_time() - c) * 1e3
        t, c = time.perf_counter(), time.thread_time()
        vw = [ver.verify(f, cam, [w]) for w in wrong]
        t_wrong = (time.perf_counter() - t) * 1e3 / len(wrong)
        c_wrong = (time.thread_time() - c) * 1e3 / len(wrong)
        va = ver.verify(f, cam, [(float(clat), float(clon))], attitude=geodesy.quat_from_matrix(tr["r"]))
        row = {"i": i, "eligible": tr["eligible"], "alt_km": alt, "tilt_deg": tr["tilt_deg"], "land": tr["land"], "nkp": len(f),
               "ok": v.ok, "inliers": v.inliers, "matches": v.matches, "spread": v.spread,
               "rms": v.reproj_rms_px, "t_ext_ms": t_ext, "t_true_ms": t_true, "t_wrong_ms": t_wrong,
               "cpu_ext_ms": c_ext, "cpu_true_ms": c_true, "cpu_wrong_ms": c_wrong,
               "stages": v.stages_ms, "wrong_inliers": [x.inliers for x in vw], "wrong_ok": [x.ok for x in vw]}
        if v.ok:
            row["bore_err_km"] = float(geodesy.great_circle_km(v.lat, v.lon, tr["bore_lat"], tr["bore_lon"]))
            row["alt_err_km"] = abs(v.alt_km - alt)
            row["yaw_err_deg"] = abs((v.yaw_deg - tr["yaw_deg"] + 180) % 360 - 180)
            row["sub_err_pose_km"] = float(geodesy.great_circle_km(
                *geodesy.ecef_to_geodetic(v.ecef_km)[:2], tr["sub_lat"], tr["sub_lon"]))
            row["sub_err_nadir_km"] = float(geodesy.great_circle_km(v.lat, v.lon, tr["sub_lat"], tr["sub_lon"]))
            row["tilt_est_deg"] = v.tilt_deg
        if va.ok:
            row["att_sub_err_km"] = float(geodesy.great_circle_km(va.sub_lat, va.sub_lon, tr["sub_lat"],
                                                                  tr["sub_lon"]))
            row["att_bore_err_km"] = float(geodesy.great_circle_km(va.lat, va.lon, tr["bore_lat"],
                                                                   tr["bore_lon"]))
            row["att_alt_err_km"] = abs(va.alt_km - alt)
        rows.append(row)
        if not a.quiet:
            print(f"{i:3d} elig {int(tr['eligible'])} alt {alt:4.0f} tilt {tr['tilt_deg']:.1f} land {tr['land']:.2f} kp {len(f):3d} "
                  f"ok {int(v.ok)} in {v.inliers:3d}/{v.matches:3d} err {row.get('bore_err_km', float('nan')):6.2f} km "
                  f"wrong {row['wrong_inliers']} ext {t_ext:.1f} ms ver {t_true:.1f} ms", file=sys.stderr)
    elig = [r for r in rows if r["eligible"]]
    ok = [r for r in elig if r["ok"]]
    far = [r for r in rows if r["ok"] and r["bore_err_km"] > 50]
    wrong_in = [x for r in rows for x in r["wrong_inliers"]]
    summary = {
        "store": a.store, "store_keypoints": len(store), "store_bytes": store.nbytes,
        "overrides": a.set, "effects": a.effects, "n": len(rows), "eligible": len(elig),
        "fix_rate_true_candidate_eligible": len(ok) / max(len(elig), 1),
        "ok_beyond_50km_all_frames": len(far),
        "bore_err_km_p50": pct([r["bore_err_km"] for r in ok], 50),
        "bore_err_km_p90": pct([r["bore_err_km"] for r in ok], 90),
        "bore_err_km_max": pct([r["bore_err_km"] for r in ok], 100),
        "alt_err_km_p50": pct([r["alt_err_km"] for r in ok], 50),
        "alt_err_km_p90": pct([r["alt_err_km"] for r in ok], 90),
        "yaw_err_deg_p50": pct([r["yaw_err_deg"] for r in ok], 50),
        "yaw_err_deg_p90": pct([r["yaw_err_deg"] for r in ok], 90),
        "sub_err_pose_km_p50": pct([r["sub_err_pose_km"] for r in ok], 50),
        "sub_err_pose_km_p90": pct([r["sub_err_pose_km"] for r in ok], 90),
        "sub_err_nadir_km_p50": pct([r["sub_err_nadir_km"] for r in ok], 50),
        "sub_err_nadir_km_p90": pct([r["sub_err_nadir_km"] for r in ok], 90),
        "att_sub_err_km_p50": pct([r.get("att_sub_err_km") for r in rows], 50),
        "att_alt_err_km_p50": pct([r.get("att_alt_err_km") for r in rows], 50),
        "inliers_true_p10_p50_p90": [pct([r["inliers"] for r in rows], q) for q in (10, 50, 90)],
        "inliers_wrong_p50_p99_max": [pct(wrong_in, q) for q in (50, 99, 100)],
        "wrong_ok_rate": float(np.mean([x for r in rows for x in r["wrong_ok"]])),
        "cpu_extract_ms_p50": pct([r["cpu_ext_ms"] for r in rows], 50),
        "cpu_true_candidate_ms_p50": pct([r["cpu_true_ms"] for r in rows], 50),
        "cpu_wrong_candidate_ms_p50": pct([r["cpu_wrong_ms"] for r in rows], 50),
        "cpu_total_1cand_ms_p50": pct([r["cpu_ext_ms"] + r["cpu_true_ms"] for r in rows], 50),
        "t_extract_ms_p50": pct([r["t_ext_ms"] for r in rows], 50),
        "t_true_candidate_ms_p50": pct([r["t_true_ms"] for r in rows], 50),
        "t_wrong_candidate_ms_p50": pct([r["t_wrong_ms"] for r in rows], 50),
        "t_match_ms_p50": pct([r["stages"].get("match_ms") for r in rows], 50),
        "t_fit_ms_p50": pct([r["stages"].get("fit_ms") for r in rows], 50),
        "t_fetch_ms_p50": pct([r["stages"].get("fetch_ms") for r in rows], 50),
    }
    print(json.dumps(summary, indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"summary": summary, "rows": rows}, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
