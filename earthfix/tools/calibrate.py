"""Fit the confidence model: P(boresight error <= 50 km | verification evidence).

Runs the Localizer with no confidence gate on simulated calibration frames (land, cloudy land, ocean,
night, from the default and the season-shifted basemaps, 256 px and 512 px cameras, and land seen by a
panchromatic sensor; seeds disjoint from ``earthfix eval``; ``--basemap``: land frames rendered from
other imagery too, where the near-wrong poses of other products live), labels
every hypothesis by its true error, fits a logistic regression (Newton/IRLS, MAP under a Gaussian prior
centred on the hand-set ``confidence.PRIOR``) and writes ``models/confidence.json`` with the features,
coefficients and a reliability table.

The verifier's precision gate (``max_bore_sigma_km``) is opened for the calibration: wrong hypotheses
are imprecise ones, and a model that never sees them cannot learn what they look like. The record
reports the hypotheses inside the gate (what flies) apart.

Run:  earthfix calibrate --bundle DIR --frames 3000 --out models/confidence.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..onboard import confidence as conf
from ..onboard import geodesy

CALIB_SEED = 7000
CHECK_SEED = 17000      # the held-out check set (--check-frames)
WRONG_PER_FRAME = 2     # wrong-place trials per land frame
SIGMA_BINS_KM = (0.0, 1.0, 3.0, 10.0, 30.0, math.inf)   # the record's table of hypotheses by bore_sigma_km
ERR_BINS_KM = (0.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, math.inf)   # the flying poses' errors
INLIER_BINS = (0, 8, 10, 13, 20, 10**9)                  # ... and their error against bore_sigma_km by inliers


def wrong_place_evidence(loc, img, cam, truth, rng, n_wrong: int = WRONG_PER_FRAME):
    """Evidence of verifications at WRONG places (>= 2000 km from the truth), with the inlier minimum
    lowered to 4 so that wrong places yield hypotheses at all: the negatives of the fit. Right hypotheses
    alone (the pipeline almost never verifies a wrong place) cannot teach the model what wrong looks like."""
    from dataclasses import replace
    from ..onboard.verify import Verifier
    from .framesets import random_place
    base = loc.verifier_for(cam)
    v = Verifier(base.store, replace(base.cfg, min_inliers=4, min_matches=4))
    feats = v.extract(img)
    out = []
    for _ in range(n_wrong):
        while True:
            lat, lon = random_place(rng, "land")
            if truth.get("bore_lat") is None or float(geodesy.great_circle_km(
                    lat, lon, truth["bore_lat"], truth["bore_lon"])) > 2000.0:
                break
        res = v.verify(feats, cam, [(lat, lon, v.cfg.radius_factor * 500.0)])
        if res.ok:
            out.append(res.evidence)
    return out


def calibration_sets(basemaps: tuple = ()) -> list:
    """The calibration sets: (name, camera, basemap, FrameSpec, share of the frames). The basemap is None
    (the default), "season" (``shifted_basemap``) or the path of another global image: each of
    ``basemaps`` adds land sets at both cameras and a cloudy one, of the default sets' sizes, named by
    the file's stem."""
    from ..onboard.camera import Camera
    from .framesets import FrameSpec
    cam256, cam512 = Camera.from_fov(256, 256, 80), Camera.from_fov(512, 512, 60)
    sets = [("land256", cam256, None, FrameSpec(), 0.45),
            ("land512", cam512, None, FrameSpec(), 0.15),
            ("season256", cam256, "season", FrameSpec(), 0.2),
            ("cloudy", cam256, None, FrameSpec(cloud_cover=0.7), 0.1),
            ("ocean", cam256, None, FrameSpec(kind="ocean"), 0.05),
            ("night", cam256, None, FrameSpec(daylight=False), 0.05),
            ("pan256", cam256, None, FrameSpec(), 0.1)]   # a panchromatic sensor
    for path in basemaps:
        stem = Path(path).stem
        sets += [(stem + "256", cam256, str(path), FrameSpec(), 0.45),
                 (stem + "512", cam512, str(path), FrameSpec(), 0.15),
                 (stem + "cloudy", cam256, str(path), FrameSpec(cloud_cover=0.7), 0.1)]
    return sets


def collect(loc, n: int, seed: int = CALIB_SEED, progress=True, stats: dict | None = None,
            basemaps: tuple = ()):
    """Labelled hypotheses (features, right, error km, set name) over ``calibration_sets(basemaps)``;
    ``stats`` (if given) receives the count of wrong-place trials."""
    from tqdm import tqdm
    from ..sim.basemap import Basemap
    from .framesets import make_frameset, panchromatic, shifted_basemap
    sets = calibration_sets(basemaps)
    # other imagery is read before the first frame: a bad path fails at once, not after the default sets
    other = {bm: Basemap.load(bm) for _, _, bm, _, _ in sets if bm not in (None, "season")}
    rows = []
    rng = np.random.default_rng(seed + 99)
    for k, (name, cam, bm, spec, share) in enumerate(sets):
        m = max(4, int(round(n * share)))
        basemap = None if bm is None else shifted_basemap(bm) if bm == "season" else other[bm]
        for img, truth in tqdm(make_frameset(m, seed + k, cam, basemap, spec), total=m, desc=f"calibrate {name}",
                               disable=not progress, file=sys.stderr):
            if name == "pan256":
                img = panchromatic(img)
            fix = loc.locate(img, cam)
            if spec.kind == "land":
                if stats is not None:
                    stats["wrong_place_trials"] = stats.get("wrong_place_trials", 0) + WRONG_PER_FRAME
                rows += [(conf.features(e), False, 1e9, name + ":wrong-place") for e in
                         wrong_place_evidence(loc, img, cam, truth, rng)]
            ev = fix.evidence
            if not ev or not ev.get("ok"):
                continue
            err = float(geodesy.great_circle_km(ev["hyp_lat"], ev["hyp_lon"], truth["bore_lat"], truth["bore_lon"])) \
                if truth.get("bore_lat") is not None else 1e9
            rows.append((conf.features(ev), err <= 50.0, err, name))
    return rows


def fit_logistic(x: np.ndarray, y: np.ndarray, w0: np.ndarray | None = None, l2: float = 1.0, iters: int = 50):
    """Logistic regression by Newton/IRLS, MAP under a Gaussian prior centred on ``w0`` (intercept first;
    default 0) with precision ``l2``: wrong hypotheses are rare (a handful in thousands), so the data move
    the hand-set prior (``confidence.PRIOR``) where they speak and leave it where they do not, instead of
    separating a few points perfectly with unbounded weights."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w0 = np.zeros(xb.shape[1]) if w0 is None else np.asarray(w0, float)
    w = w0.copy()
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -50, 50)))
        g = xb.T @ (p - y) + l2 * (w - w0)
        h = (xb * (p * (1 - p))[:, None]).T @ xb + l2 * np.eye(len(w))
        w -= np.linalg.solve(h, g)
    return float(w[0]), w[1:]


def register(sub):
    p = sub.add_parser("calibrate", help="fit the confidence model on simulated frames",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None)
    p.add_argument("--frames", type=int, default=3000,
                   help="frames over all sets (wrong hypotheses are rare: thousands are needed to see a few)")
    p.add_argument("--out", default="models/confidence.json")
    p.add_argument("--seed", type=int, default=CALIB_SEED,
                   help=f"first frame-set seed (default {CALIB_SEED}; keep clear of the eval's range)")
    p.add_argument("--check-frames", type=int, default=0,
                   help="also score the fitted model on this many frames of another set (0: no check)")
    p.add_argument("--check-seed", type=int, default=CHECK_SEED)
    p.add_argument("--config", default=None,
                   help="onboard YAML config to calibrate (default: the defaults); its min_confidence is ignored")
    p.add_argument("--basemap", action="append", default=[], metavar="WORLD.jpg",
                   help="also calibrate on land frames rendered from this global equirectangular image "
                        "(256 px, 512 px and 70 %% cloud; repeatable); not a map an evaluation holds out")
    p.set_defaults(func=run)


def summarise(rows, intercept: float, coef: dict, gate_km: float, min_confidence: float = 0.9) -> dict:
    """How the model ``(intercept, coef)`` scores labelled hypotheses ``rows``: counts, a reliability
    table, the hypotheses by ``bore_sigma_km`` and those inside the precision gate (what flies)."""
    x = np.stack([r[0] for r in rows]) if rows else np.zeros((0, len(conf.FEATURES)))
    y = np.array([r[1] for r in rows], dtype=bool)
    errs = np.array([r[2] for r in rows], dtype=float)
    probs = 1.0 / (1.0 + np.exp(-(intercept + x @ np.array([coef[k] for k in conf.FEATURES]))))
    table = []
    for lo, hi in zip(np.linspace(0, 0.9, 10), np.linspace(0.1, 1.0, 10)):
        m = (probs >= lo) & (probs < hi + (1e-9 if hi == 1 else 0))
        if m.any():
            table.append({"p_lo": round(lo, 1), "p_hi": round(hi, 1), "n": int(m.sum()),
                          "observed": round(float(y[m].mean()), 3), "mean_p": round(float(probs[m].mean()), 3)})
    sig = np.exp(x[:, conf.FEATURES.index("log_bore_sigma_km")])
    by_sigma = []
    for lo, hi in zip(SIGMA_BINS_KM[:-1], SIGMA_BINS_KM[1:]):
        m = (sig >= lo) & (sig < hi)
        if m.any():
            by_sigma.append({"sigma_lo_km": lo, "sigma_hi_km": hi if math.isfinite(hi) else None,
                             "n": int(m.sum()), "wrong": int((~y[m]).sum()),
                             "err_p50_km": round(float(np.percentile(errs[m], 50)), 2),
                             "err_p90_km": round(float(np.percentile(errs[m], 90)), 2)})
    kept = sig <= gate_km
    wrong, wrong_kept = probs[~y], probs[kept & ~y]
    # the poses that would be fixes in flight (the wrong-place trials, which have no true distance, left out)
    flies = kept & (probs >= min_confidence) & (errs < 1e8)
    return {"hypotheses": int(len(y)), "right": int(y.sum()), "wrong": int((~y).sum()),
            "max_p_of_wrong": float(wrong.max()) if len(wrong) else None, "reliability": table,
            "by_bore_sigma": by_sigma,
            "wrong_place_poses": sum(r[3].endswith(":wrong-place") for r in rows),
            "inside_gate": {"hypotheses": int(kept.sum()), "right": int(y[kept].sum()),
                            "wrong": int(len(wrong_kept)),
                            "max_p_of_wrong": float(wrong_kept.max()) if len(wrong_kept) else None,
                            f"right_at_p{min_confidence:g}": round(float((probs[kept & y] >= min_confidence).mean()), 4)
                            if (kept & y).any() else None},
            "flying": flying_errors(errs[flies], sig[flies], np.expm1(x[flies, conf.FEATURES.index("log_inliers")]))}


def flying_errors(err_km: np.ndarray, sigma_km: np.ndarray, inliers: np.ndarray) -> dict:
    """The poses that would fly (inside the precision gate, at or above the confidence bar): how far their
    errors reach (a histogram over ``ERR_BINS_KM``; a false fix is the part beyond 50 km) and, by inlier
    count, the error in units of the pose's own ``bore_sigma_km``: where that ratio's tail is long, the gate
    in km lets the tail through."""
    hist = [{"err_lo_km": lo, "err_hi_km": hi if math.isfinite(hi) else None,
             "n": int(((err_km >= lo) & (err_km < hi)).sum())} for lo, hi in zip(ERR_BINS_KM[:-1], ERR_BINS_KM[1:])]
    rows = []
    for lo, hi in zip(INLIER_BINS[:-1], INLIER_BINS[1:]):
        m = (inliers >= lo - 0.5) & (inliers < hi - 0.5)
        if m.any():
            z = err_km[m] / np.maximum(sigma_km[m], 1e-6)
            rows.append({"inliers_lo": lo, "inliers_hi": hi if hi < 10**9 else None, "n": int(m.sum()),
                         "err_over_sigma_p50": round(float(np.percentile(z, 50)), 2),
                         "err_over_sigma_p90": round(float(np.percentile(z, 90)), 2),
                         "err_over_sigma_p99": round(float(np.percentile(z, 99)), 2),
                         "err_over_sigma_max": round(float(z.max()), 1),
                         "over_20km": int((err_km[m] > 20).sum()), "over_50km": int((err_km[m] > 50).sum())})
    return {"poses": int(len(err_km)), "by_error": hist, "by_inliers": rows}


def run(args) -> int:
    from ..onboard.config import load_config
    from ..onboard.localizer import Localizer
    from ..onboard.verify import VerifyConfig
    from .build_index import ensure_default_bundle
    bundle = args.bundle or ensure_default_bundle()
    cfg = load_config(args.config)
    min_conf = float(cfg["min_confidence"])
    cfg["min_confidence"] = 0.0
    # the precision gate is opened: the imprecise poses it refuses in flight are where wrong hypotheses
    # live, and the model has to see them (they are reported apart)
    gate_km = VerifyConfig(**cfg["verify"]).max_bore_sigma_km
    cfg["verify"] = dict(cfg["verify"], max_bore_sigma_km=1e6)
    loc = Localizer.load(bundle, config=cfg)
    stats = {}
    rows = collect(loc, args.frames, seed=args.seed, stats=stats, basemaps=tuple(args.basemap))
    y = np.array([r[1] for r in rows], dtype=float)
    fitted = bool(len(rows) >= 10 and 0 < y.sum() < len(y))
    if fitted:
        x = np.stack([r[0] for r in rows])
        w0 = np.r_[conf.PRIOR["intercept"], [conf.PRIOR["coef"][k] for k in conf.FEATURES]]
        b, w = fit_logistic(x, y, w0)
        coef = {k: float(v) for k, v in zip(conf.FEATURES, w)}
    else:
        # a model that only knows right answers cannot tell wrong ones: keep the prior, but record why
        print(f"earthfix calibrate: need right and wrong hypotheses, got {len(rows)} rows", file=sys.stderr)
        b, coef = conf.PRIOR["intercept"], dict(conf.PRIOR["coef"])
    n_right = int(y.sum())
    out = {"features": list(conf.FEATURES), "intercept": b, "coef": coef, "fitted": fitted,
           "note": None if fitted else (
               "no wrong hypothesis to fit against: every verified hypothesis was within 50 km; the "
               "conservative prior is shipped "
               f"(empirical P(right | verified) >= {1 - 3.0 / max(n_right, 1):.3f} by the rule of three)"),
           "precision_gate_km": gate_km, "min_confidence": min_conf,
           "wrong_place_trials": int(stats.get("wrong_place_trials", 0))}
    out.update(summarise(rows, b, coef, gate_km, min_conf))
    if args.check_frames > 0:
        # fitted on one frame set, checked on another: the calibration must hold on frames it never saw
        cstats = {}
        crows = collect(loc, args.check_frames, seed=args.check_seed, stats=cstats, basemaps=tuple(args.basemap))
        out["check"] = dict(summarise(crows, b, coef, gate_km, min_conf), seed=args.check_seed,
                            frames=args.check_frames, wrong_place_trials=int(cstats.get("wrong_place_trials", 0)))
    out["command"] = (f"earthfix calibrate --frames {args.frames} --out {args.out}"
                      + (f" --seed {args.seed}" if args.seed != CALIB_SEED else "")
                      + (f" --check-frames {args.check_frames}" if args.check_frames else "")
                      + (f" --check-seed {args.check_seed}" if args.check_frames and args.check_seed != CHECK_SEED else "")
                      + (f" --config {args.config}" if args.config else "")
                      + "".join(f" --basemap {Path(b).name}" for b in args.basemap))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    brief = {k: out[k] for k in ("hypotheses", "right", "wrong", "max_p_of_wrong", "inside_gate")}
    if "check" in out:
        brief["check"] = {k: out["check"][k] for k in ("hypotheses", "right", "wrong", "max_p_of_wrong", "inside_gate")}
    print(json.dumps(brief))
    return 0
