"""Evaluate the whole flight pipeline on held-out simulated frames, with baselines, in one run.

    earthfix eval [--bundle DIR] [--out eval-report] [--frames 150] [--seed 0] [--quick] [--no-baselines]
                  [--effects EFFECTS.yaml] [--config LOCALIZER.yaml] [--basemap WORLD.jpg] [--cloud-field CLOUDS.png]

Scenario sets (``SCENARIOS``; seeds ``EVAL_SEED + 100 * seed + k``, disjoint from calibrate's 7000 range):
land seen by a 256x256 80-degree camera from the default basemap with the simulator's effects; the same
from the season-shifted basemap; land with a 512x512 60-degree camera; cloudy land (cover 0.7); open
ocean; night; and eight stress sets, reported apart: land rendered from another product (``shadedrelief``),
northern land under winter snow (``framesets.shifted_basemap("winter")``), land seen by a panchromatic
sensor (the land256 kind of frame turned grey), land under a thin, cirrus-like veil (the simulator's
``thin_cloud``), land512's kind of frames under fair-weather cumulus (the simulator's ``cumulus``) and land256's
kind of frames at dawn (06:00-08:00 local solar time: low sun); land512's kind of frames under clouds with wide,
translucent margins (the simulator's ``cloud_edge``: what real cloud fields cost); and open ocean with the Blue Marble's sea-floor
shading kept, which the simulator flattens elsewhere (no fix expected: counted with night and ocean).

Every frame goes through the full pipeline (``Localizer``, one thread) and is scored with the metrics of
docs/CONVENTIONS.md (the metric functions below state each definition once). Side by side, on the same
frames in the same run:
(a) hand-crafted IM2GPS-style descriptor + exact kNN over the bundle's views re-rendered with
    ``render_reference`` (descriptors cached under ``OUT/cache``);
(b) FP32 encoder + exact search vs INT8 encoder + exact search vs INT8 + HNSW (the pipeline's encoder); all three use
    the bundle's PCA, so only the encoder and the search differ;
(c) verification off (position = centre of the top-1 candidate, every frame a "fix") vs on;
(d) an EarthLoc-like heavy stand-in (ResNet-50-sized, 320 px, 4096-D; needs torch) for cost only.

Writes ``OUT/report.md``, ``OUT/report.json`` (every number), ``OUT/frames.jsonl`` (one record per frame)
and the plots of ``report_plots``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import resource
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EVAL_SEED = 20000                 # calibrate.CALIB_SEED = 7000 (+0..5): disjoint
FALSE_FIX_KM = 50.0               # CONVENTIONS: a fix farther than this from the truth is false
MIN_LAND_CLEAR_FRAC = 0.2         # CONVENTIONS: eligible frames have >= 20 % cloud-free land
RECALL_KS = (1, 5, 10)
CURVE_K_MAX = 10
LAND_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
CLOUD_BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)
QUICK_FRAMES = 3
HEAVY_FRAMES = 12                 # frames timed through the heavy stand-in (cost only)
HEAVY_DIM = 4096
HEAVY_INPUT_PX = 320
EARTHLOC_VIEWS = 150_000
HEAVY_SEARCH_SAMPLE = 10_000      # views of random 4096-D vectors actually searched (then scaled linearly)
PERCENTILES = (50, 90, 99)
NO_TRUTH_ERR_KM = 1e9            # error recorded for a position when the truth has no boresight point
STAGES = ("lines_ms", "tone_ms", "sharpen_ms", "preprocess_ms", "encode_ms", "search_ms", "despeckle_ms", "fill_ms",
          "features_ms", "vote_ms", "verify_ms", "second_look_ms", "third_look_ms", "balance_ms", "balanced_look_ms",
          "deferred_ms", "total_ms")


@dataclass(frozen=True)
class ScenarioDef:
    name: str
    width: int
    height: int
    fov_deg: float
    basemap: str | None           # None: default basemap; else framesets.shifted_basemap(kind)
    kind: str = "land"
    daylight: bool = True
    cloud_cover: float | None = None
    stress: bool = False          # reported apart from the "overall" aggregate
    description: str = ""
    min_lat_deg: float | None = None   # frames only at or north of this latitude
    panchromatic: bool = False    # frames turned grey (three equal bands): a sensor without colour
    thin_cloud: float = 0.0       # peak opacity of a thin, cirrus-like veil over half the globe (simulator)
    cumulus: float = 0.0          # share of the ground under small cumulus cells where they occur (simulator)
    day_hours: tuple = (8.0, 15.5)  # local solar hours of daylight frames (framesets.FrameSpec.day_hours)
    cloud_edge: float = 0.0       # the clouds' translucent margin (EffectsConfig.cloud_edge; 0: the simulator's)
    sensor: tuple = ()            # (effect, value) pairs over the run's effects: another camera's tone curve, PSF,
                                  # noise, colour balance and compression (EffectsConfig keys)


SCENARIOS = (
    ScenarioDef("land256", 256, 256, 80.0, None, description="land, 256 px 80 deg, default basemap + effects"),
    ScenarioDef("season256", 256, 256, 80.0, "season", description="land, 256 px 80 deg, season-shifted basemap"),
    ScenarioDef("land512", 512, 512, 60.0, None, description="land, 512 px 60 deg, default basemap"),
    ScenarioDef("cloudy", 256, 256, 80.0, None, cloud_cover=0.7, description="land under cloud cover 0.7"),
    ScenarioDef("ocean", 256, 256, 80.0, None, kind="ocean", description="open ocean (no fix expected)"),
    ScenarioDef("night", 256, 256, 80.0, None, daylight=False, description="night side (no fix expected)"),
    ScenarioDef("stress_relief", 256, 256, 80.0, "relief", stress=True,
                description="stress: land from another product (shadedrelief), 256 px 80 deg"),
    ScenarioDef("stress_winter", 256, 256, 80.0, "winter", stress=True, min_lat_deg=38.0,
                description="stress: northern land (>= 38 deg N) under winter snow, 256 px 80 deg"),
    ScenarioDef("stress_pan", 256, 256, 80.0, None, stress=True, panchromatic=True,
                description="stress: land256's kind of frames from a panchromatic sensor (grey)"),
    ScenarioDef("stress_thin", 256, 256, 80.0, None, stress=True, thin_cloud=0.25,
                description="stress: land256's kind of frames under thin, cirrus-like cloud (peak opacity 0.25)"),
    ScenarioDef("stress_cumulus", 512, 512, 60.0, None, stress=True, cumulus=0.3,
                description="stress: land512's kind of frames under fair-weather cumulus (2-6 km cells, 30 % cover)"),
    ScenarioDef("stress_dawn", 256, 256, 80.0, None, stress=True, day_hours=(6.0, 8.0),
                description="stress: land256's kind of frames at dawn (local solar time 6-8 h: low sun, some unlit)"),
    ScenarioDef("stress_translucent", 512, 512, 60.0, None, stress=True, cloud_edge=2.0,
                description="stress: land512's kind of frames under clouds with wide translucent margins, as real "
                            "cloud fields have (cloud_edge 2.0: 2.5x the simulator's)"),
    ScenarioDef("stress_seafloor", 256, 256, 80.0, "seafloor", kind="ocean", stress=True,
                description="stress: open ocean with the Blue Marble's sea-floor shading kept (no fix expected)"),
    ScenarioDef("stress_sensor", 256, 256, 80.0, None, stress=True,
                sensor=(("tone_gamma", 1.8), ("blur_sigma", 1.6), ("noise_sigma", 4.0),
                        ("white_balance_jitter", 0.1), ("jpeg_quality", 85)),
                description="stress: land256's kind of frames from another sensor: a steeper tone curve (1.8), a "
                            "softer lens (PSF 1.6 px), 4 DN read noise, a 0.1 colour cast, JPEG 85"),
)


# =================================================================================================
# metrics: one function per definition (CONVENTIONS.md "Metrics")
# =================================================================================================

def is_eligible(truth: dict) -> bool:
    """Eligible frame: daylight (sun above the horizon at the boresight point) and at least 20 % of the
    frame's pixels are land that no cloud covers (``land_clear_frac``)."""
    sun = truth.get("sun_elev_deg")
    return bool(sun is not None and sun > 0.0 and float(truth.get("land_clear_frac") or 0.0) >= MIN_LAND_CLEAR_FRAC)


def hit_radius_km(truth: dict) -> float:
    """A retrieval candidate is right when within half the footprint half-width of the true boresight."""
    return 0.5 * float(truth["footprint_half_width_km"])


def position_error_km(lat, lon, truth: dict) -> float:
    """Great-circle distance (km) between an estimated and the true boresight point; inf without either."""
    from ..onboard import geodesy
    if lat is None or lon is None or truth.get("bore_lat") is None or truth.get("bore_lon") is None:
        return math.inf
    return float(geodesy.great_circle_km(float(lat), float(lon), truth["bore_lat"], truth["bore_lon"]))


def sub_error_km(lat, lon, truth: dict) -> float | None:
    """Great-circle distance (km) between an estimated and the true sub-satellite point; None without either."""
    from ..onboard import geodesy
    if lat is None or lon is None or truth.get("sub_lat") is None or truth.get("sub_lon") is None:
        return None
    return float(geodesy.great_circle_km(float(lat), float(lon), truth["sub_lat"], truth["sub_lon"]))


def first_hit_rank(cand_latlon, truth: dict) -> int | None:
    """1-based rank of the first candidate (lat, lon) within ``hit_radius_km``; None when no candidate is."""
    r = hit_radius_km(truth)
    for i, (lat, lon) in enumerate(cand_latlon):
        if position_error_km(lat, lon, truth) <= r:
            return i + 1
    return None


def recall_at_k(ranks, eligible, k: int) -> float | None:
    """Retrieval recall@k: share of eligible frames whose first right candidate has rank <= k
    (None when there is no eligible frame)."""
    sel = [r for r, e in zip(ranks, eligible) if e]
    if not sel:
        return None
    return sum(1 for r in sel if r is not None and r <= k) / len(sel)


def fix_rate(fixed, eligible) -> float | None:
    """Fix rate: share of eligible frames that get ``fix: true`` (None when there is no eligible frame)."""
    sel = [bool(f) for f, e in zip(fixed, eligible) if e]
    return sum(sel) / len(sel) if sel else None


def false_fix_mask(fixed, error_km, threshold_km: float = FALSE_FIX_KM) -> np.ndarray:
    """False fix: any ``fix: true`` (eligible or not) more than ``threshold_km`` from the truth."""
    f = np.asarray(fixed, dtype=bool)
    e = np.asarray([math.inf if x is None else float(x) for x in error_km], dtype=float)
    return f & ~(e <= threshold_km)


def false_fixes(fixed, error_km, threshold_km: float = FALSE_FIX_KM) -> tuple[int, float | None]:
    """(false-fix count, false-fix rate over ALL frames)."""
    m = false_fix_mask(fixed, error_km, threshold_km)
    return int(m.sum()), (float(m.mean()) if len(m) else None)


def percentiles(values, qs=PERCENTILES) -> dict:
    """``{"p50": ..., "p90": ..., ...}`` of the finite values (numpy linear interpolation between order
    statistics; with n values, p99 is close to the maximum); every entry None when there is none."""
    v = np.asarray([float(x) for x in values if x is not None and math.isfinite(float(x))], dtype=float)
    return {f"p{q}": (float(np.percentile(v, q)) if len(v) else None) for q in qs}


def yaw_error_deg(est_deg, true_deg) -> float | None:
    """Wrap-aware absolute yaw difference in [0, 180] degrees (None without an estimate)."""
    if est_deg is None or true_deg is None:
        return None
    return abs((float(est_deg) - float(true_deg) + 180.0) % 360.0 - 180.0)


def altitude_error_km(est_km, true_km) -> float | None:
    """Absolute altitude difference, km (None without an estimate)."""
    if est_km is None or true_km is None:
        return None
    return abs(float(est_km) - float(true_km))


def bin_label(value, edges) -> str:
    """Label of the half-open bin [lo, hi) holding ``value`` (the last bin is closed)."""
    v = float(value or 0.0)
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo <= v < hi or (hi == edges[-1] and v >= hi) or (lo == edges[0] and v < lo):
            return f"{lo:.1f}-{hi:.1f}"
    return f"{edges[-2]:.1f}-{edges[-1]:.1f}"


def latency_summary_ms(stage_dicts) -> dict:
    """p50 and p99 per stage (ms) over the frames that ran the stage."""
    out = {}
    for key in STAGES:
        vals = [d[key] for d in stage_dicts if d and key in d]
        if vals:
            p = percentiles(vals, (50, 99))
            out[key] = {"p50": p["p50"], "p99": p["p99"], "mean": float(np.mean(vals)), "n": len(vals)}
    return out


def recall_curve(ranks, eligible, k_max: int = CURVE_K_MAX) -> list:
    """recall@k for k = 1..k_max."""
    return [recall_at_k(ranks, eligible, k) for k in range(1, k_max + 1)]


# =================================================================================================
# summaries over per-frame records
# =================================================================================================

def summarise(recs: list[dict]) -> dict:
    """All pipeline metrics of a set of per-frame records (see ``evaluate_frame`` for the fields)."""
    elig = [r["eligible"] for r in recs]
    fixed = [r["fix"] for r in recs]
    ranks = [r["rank_retrieval"] for r in recs]
    enc_ranks = [r["rank_hnsw"] for r in recs]
    fix_err = [r["err_km"] for r in recs if r["fix"]]
    n_ff, ff_rate = false_fixes(fixed, [r["err_km"] for r in recs])
    out = {"frames": len(recs), "eligible": int(sum(elig)), "fixes": int(sum(fixed)),
           "fixes_eligible": int(sum(1 for f, e in zip(fixed, elig) if f and e)),
           "recall": {f"@{k}": recall_at_k(ranks, elig, k) for k in RECALL_KS},
           "recall_encoder": {f"@{k}": recall_at_k(enc_ranks, elig, k) for k in RECALL_KS},
           "fix_rate": fix_rate(fixed, elig),
           "error_km": percentiles(fix_err),
           "yaw_error_deg": percentiles([r["yaw_err_deg"] for r in recs if r["fix"]], (50, 90)),
           "alt_error_km": percentiles([r["alt_err_km"] for r in recs if r["fix"]], (50, 90)),
           "sub_error_km": percentiles([r.get("sub_err_km") for r in recs if r["fix"]], (50, 90)),
           "false_fixes": n_ff, "false_fix_rate": ff_rate,
           "errors": int(sum(1 for r in recs if r.get("error"))),
           "latency_ms": latency_summary_ms([r["stages_ms"] for r in recs])}
    return out


def over_deadline(recs: list[dict], deadline_ms: float) -> dict:
    """Frames whose total latency exceeded the per-frame deadline: count, share and the longest (ms)."""
    total = [r["stages_ms"]["total_ms"] for r in recs if (r.get("stages_ms") or {}).get("total_ms") is not None]
    over = [t for t in total if t > deadline_ms]
    return {"deadline_ms": float(deadline_ms), "frames": len(over), "of": len(total),
            "share": len(over) / len(total) if total else None, "max_ms": max(total) if total else None}


def looks_cut(recs: list[dict]) -> dict:
    """The eligible frames left without a fix, and how many of them ended with a later look the deadline's plan
    had no room for (evidence ``looks_cut``): the misses that time, not the ground, may have cost."""
    missed = [r for r in recs if r["eligible"] and not r["fix"]]
    return {"unfixed": len(missed), "looks_cut": sum(bool(r.get("looks_cut")) for r in missed)}


# kinds of ground and sky, first match wins; coarse boxes that name where misses are, not a flight decision
GROUND_KINDS = ("ice sheet", "equatorial forest", "sun < 5 deg", "cloud > 50 %", "other")


def ground_kind(rec: dict) -> str:
    """The kind of ground and sky of one record (``GROUND_KINDS``): ``ice sheet`` Antarctica (south of 60 deg S)
    and Greenland (north of 59 deg N, 75-10 deg W), white and all but featureless at the basemap's 7 km per pixel
    away from its coasts; ``equatorial forest`` the Amazon and Congo basins (15 deg S - 10 deg N; 80-44 deg W and
    8-32 deg E), even canopy under the tropics' heavy cloud; ``sun < 5 deg``; ``cloud > 50 %`` of the frame (the
    simulator's cloud; eligibility still needs 20 % clear land); ``other``."""
    lat, lon = rec["bore_lat"], rec["bore_lon"]
    if lat < -60.0 or (lat > 59.0 and -75.0 < lon < -10.0):
        return "ice sheet"
    if -15.0 < lat < 10.0 and (-80.0 < lon < -44.0 or 8.0 < lon < 32.0):
        return "equatorial forest"
    if rec["sun_elev_deg"] < 5.0:
        return "sun < 5 deg"
    if rec["cloud_frac"] > 0.5:
        return "cloud > 50 %"
    return "other"


def reason_class(reason: str) -> str:
    """A no-fix reason without its numbers ("few matches (7)" -> "few matches"); a verified pose whose
    confidence stayed under the bar has no reason: "confidence under the bar"."""
    return re.split(r"[(\d]", reason or "", maxsplit=1)[0].strip() or "confidence under the bar"


def right_place_within(rec: dict, k: int = 10) -> bool:
    """A right place (CONVENTIONS' recall radius) among the record's first ``k`` candidates."""
    return rec["rank_retrieval"] is not None and rec["rank_retrieval"] <= k


def misses(recs: list[dict]) -> dict:
    """Where the eligible frames left unfixed are: per kind of ground and sky (``ground_kind``) the eligible frames,
    the fixed, the unfixed and how many of those had a right place among the first 10 candidates (verification's
    misses; the rest are retrieval's); and the unfixed by the reason of the look that came closest ("error" for a
    frame that could not be processed: it counts as unfixed here as in the fix rate and ``looks_cut``)."""
    elig = [r for r in recs if r["eligible"]]
    rows = []
    for k in GROUND_KINDS:
        sel = [r for r in elig if ground_kind(r) == k]
        un = [r for r in sel if not r["fix"]]
        rows.append({"kind": k, "eligible": len(sel), "fixed": len(sel) - len(un), "unfixed": len(un),
                     "right_place_in_10": sum(right_place_within(r) for r in un)})
    reasons = Counter("error" if r.get("error") else reason_class(r["reason"]) for r in elig if not r["fix"])
    return {"rows": rows, "reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))}


NEAR_WRONG_GATES = 1.5           # near_wrong: a refused wrong pose pinned within this many precision gates


def near_wrong(recs: list[dict], gate_km: float, gates: float = NEAR_WRONG_GATES) -> dict:
    """Wrong poses that came close to a fix: frames without a fix whose closest look's hypothesis lies more than
    ``FALSE_FIX_KM`` from the truth and is pinned within ``gates`` x the precision gate (``bore_sigma_km`` <=
    ``gates`` x ``gate_km``), over all frames. A margin, not a failure: such a pose is refused by the gate by less
    than half its width, or inside it by the confidence or a later check, and a change that adds inliers can take it
    through (docs/VERIFICATION.md, "What the cloud costs other imagery, a rival apart and a tilt prior"). Returns the
    count, how many lie inside the gate, and the closest (smallest sigma)."""
    def sigma(r):
        x = r.get("bore_sigma_km")
        return float("inf") if x is None else float(x)
    near = [r for r in recs if not r["fix"] and r.get("hyp_err_km") is not None and r["hyp_err_km"] > FALSE_FIX_KM
            and sigma(r) <= gates * gate_km]
    c = min(near, key=sigma, default=None)
    return {"gate_km": float(gate_km), "gates": float(gates), "frames": len(near),
            "inside_gate": sum(sigma(r) <= gate_km for r in near),
            "closest": None if c is None else {"scenario": c["scenario"], "index": c.get("index"),
                                               "bore_sigma_km": sigma(c), "hyp_err_km": float(c["hyp_err_km"]),
                                               "inliers": c.get("inliers"), "reason": c.get("reason")}}


def fixes_by_source(recs: list[dict]) -> dict:
    """Where the fixes come from: fixes (right, within FALSE_FIX_KM) and false fixes by the verified place's source
    (``vote``, ``encoder``, ``wide``) and the look it was verified on; and for the encoder's places (verified last)
    how many frames they were verified on and how many of those they fixed."""
    rows: dict = {}
    for r in recs:
        if not r["fix"]:
            continue
        key = (r.get("source") or "?", r.get("look") or "?")
        row = rows.setdefault(key, {"source": key[0], "look": key[1], "fixes": 0, "false_fixes": 0})
        wrong = r["err_km"] is None or r["err_km"] > FALSE_FIX_KM
        row["false_fixes" if wrong else "fixes"] += 1
    enc = [r for r in recs if "encoder_places_ms" in (r.get("stages_ms") or {})]
    return {"rows": sorted(rows.values(), key=lambda x: (-x["fixes"], x["source"], x["look"])),
            "encoder_places_frames": len(enc),
            "encoder_places_fixes": sum(bool(r["fix"]) and r.get("source") == "encoder" for r in enc)}


def breakdown(recs: list[dict], field: str, edges) -> list[dict]:
    """Recall, fix rate and false fixes per bin of ``field`` (a truth fraction)."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        label = f"{lo:.1f}-{hi:.1f}"
        sel = [r for r in recs if bin_label(r[field], edges) == label]
        elig = [r["eligible"] for r in sel]
        ranks = [r["rank_retrieval"] for r in sel]
        n_ff, ff_rate = false_fixes([r["fix"] for r in sel], [r["err_km"] for r in sel])
        rows.append({"bin": label, "frames": len(sel), "eligible": int(sum(elig)),
                     "recall@1": recall_at_k(ranks, elig, 1), "recall@10": recall_at_k(ranks, elig, 10),
                     "fix_rate": fix_rate([r["fix"] for r in sel], elig),
                     "false_fixes": n_ff, "false_fix_rate": ff_rate})
    return rows


def retrieval_comparison(recs: list[dict]) -> dict:
    """(a) + (b): recall@1/@10 and latency of each retrieval variant on the same frames."""
    elig = [r["eligible"] for r in recs]
    variants = {
        "handcrafted_exact": ("rank_hand", "hand_ms", "hand-crafted IM2GPS-style (tiny image + Lab histogram) + exact kNN"),
        "fp32_exact": ("rank_fp32_exact", "encode_fp32_ms", "FP32 encoder + exact search"),
        "int8_exact": ("rank_int8_exact", "encode_int8_ms", "INT8 encoder + exact search"),
        "int8_hnsw": ("rank_hnsw", "encode_int8_ms", "INT8 encoder + HNSW (the pipeline's encoder)"),
        "retrieval": ("rank_retrieval", "retrieval_ms", "keypoint vote + INT8 encoder + HNSW (the pipeline's retrieval)"),
    }
    out = {}
    for key, (rank_field, lat_field, label) in variants.items():
        if not any(rank_field in r for r in recs):
            continue
        ranks = [r.get(rank_field) for r in recs]
        lat = [r.get(lat_field) for r in recs]
        search_field = {"fp32_exact": "exact_search_ms", "int8_exact": "exact_search_ms",
                        "int8_hnsw": None, "retrieval": None, "handcrafted_exact": None}[key]
        row = {"label": label, "recall@1": recall_at_k(ranks, elig, 1), "recall@10": recall_at_k(ranks, elig, 10),
               "recall_curve": recall_curve(ranks, elig),
               "latency_field": lat_field, "latency_ms": percentiles(lat, (50, 99))}
        if key in ("int8_hnsw", "retrieval"):
            row["search_ms"] = percentiles([(r["stages_ms"] or {}).get("search_ms") for r in recs], (50, 99))
        elif search_field:
            row["search_ms"] = percentiles([r.get(search_field) for r in recs], (50, 99))
        out[key] = row
    return out


def verification_comparison(recs: list[dict]) -> dict:
    """(c): verification off (top-1 candidate centre, every frame a fix) vs on (the pipeline's fixes)."""
    elig = [r for r in recs if r["eligible"]]
    off_err = [r["top1_err_km"] for r in recs]
    n_off, rate_off = false_fixes([r["top1_err_km"] is not None for r in recs], off_err)
    n_on, rate_on = false_fixes([r["fix"] for r in recs], [r["err_km"] for r in recs])
    return {
        "off": {"label": "verification off: top-1 candidate centre, every frame a fix",
                "positions": int(sum(1 for e in off_err if e is not None)),
                "error_km_all": percentiles(off_err), "error_km_eligible": percentiles([r["top1_err_km"] for r in elig]),
                "false_fixes": n_off, "false_fix_rate": rate_off},
        "on": {"label": "verification on (the pipeline)", "positions": int(sum(r["fix"] for r in recs)),
               "error_km_all": percentiles([r["err_km"] for r in recs if r["fix"]]),
               "error_km_eligible": percentiles([r["err_km"] for r in elig if r["fix"]]),
               "false_fixes": n_on, "false_fix_rate": rate_on},
    }


# =================================================================================================
# frames
# =================================================================================================

def scenario_seed(base_seed: int, k: int) -> int:
    return EVAL_SEED + 100 * int(base_seed) + k


def _region_place(rng, kind: str, region):
    from . import grid
    la0, la1, lo0, lo1 = region
    s0, s1 = math.sin(math.radians(la0)), math.sin(math.radians(la1))
    for _ in range(20000):
        lat = math.degrees(math.asin(rng.uniform(s0, s1)))
        lon = rng.uniform(lo0, lo1)
        if float(grid.land_fraction_near(lat, lon, 300.0)) >= 0.35:
            return lat, lon
    raise RuntimeError(f"no land place found in region {region}")


def region_frameset(n: int, seed: int, camera, basemap, spec, region, effects=None, clouds=None):
    """``framesets.make_frameset`` with land places drawn inside ``region`` (lat0, lat1, lon0, lon1):
    the same draws otherwise (time, altitude, yaw, tilt, effects, ``clouds``). For regional bundles (tests, dev)."""
    from .framesets import make_frameset
    return make_frameset(n, seed, camera, basemap, spec,
                         place=lambda rng, kind: _region_place(rng, kind, region), effects=effects, clouds=clouds)


def scenario_frames(sdef: ScenarioDef, n: int, seed: int, region=None, effects=None, basemap=None,
                    cloud_field=None):
    """(camera, iterator of (image, truth)) for one scenario; ``effects``: an ``EffectsConfig`` instead of
    the simulator's defaults (the scenario's own cloud cover or veil still applies on top); ``basemap``: a
    ``Basemap`` instead of the default for the scenarios rendered from the default (a scenario with a basemap
    of its own, season, winter or relief, keeps it); ``cloud_field``: a real global cloud field
    (``sim.real_clouds.GlobalCloudField``) laid where it lies instead of the simulator's clouds, for the
    scenarios :func:`takes_cloud_field` (the field has its own cover; the same poses as without it)."""
    from ..onboard.camera import Camera
    from .framesets import FrameSpec, make_frameset, panchromatic, random_place, shifted_basemap
    cam = Camera.from_fov(sdef.width, sdef.height, sdef.fov_deg)
    spec = FrameSpec(kind=sdef.kind, daylight=sdef.daylight, cloud_cover=sdef.cloud_cover,
                     thin_cloud=sdef.thin_cloud, cumulus=sdef.cumulus, day_hours=sdef.day_hours,
                     cloud_edge=sdef.cloud_edge)
    basemap = shifted_basemap(sdef.basemap) if sdef.basemap else basemap
    if sdef.sensor:
        from ..sim.effects import EffectsConfig
        effects = EffectsConfig.from_dict(dict(sdef.sensor), base=effects)
    clouds = (lambda lat, lon: cloud_field) if cloud_field is not None and takes_cloud_field(sdef, effects) else None
    if region is not None and sdef.kind == "land":
        return cam, region_frameset(n, seed, cam, basemap, spec, region, effects, clouds)
    place = _north_of(sdef.min_lat_deg) if sdef.min_lat_deg is not None else random_place
    frames = make_frameset(n, seed, cam, basemap, spec, place=place, effects=effects, clouds=clouds)
    if sdef.panchromatic:
        frames = ((panchromatic(img), t) for img, t in frames)
    return cam, frames


def takes_cloud_field(sdef: ScenarioDef, effects=None) -> bool:
    """Whether a scenario's frames take a real cloud field (``eval --cloud-field``): daylight frames whose clouds
    are plain cover; the sets built on the simulator's own veil, cumulus cells or translucent margins (and any
    ``--effects`` veil or cumulus) keep the simulator's field, which has those layers. An ``--effects`` margin
    width does not apply to a real field: its margins are its own."""
    layers = (sdef.thin_cloud, sdef.cumulus, sdef.cloud_edge)
    if effects is not None:
        layers += (effects.thin_cloud, effects.cumulus)
    return sdef.daylight and not any(layers)


def _north_of(min_lat_deg: float):
    from .framesets import random_place

    def place(rng, kind):
        while True:
            lat, lon = random_place(rng, kind)
            if lat >= min_lat_deg:
                return lat, lon
    return place


# =================================================================================================
# comparison pipelines
# =================================================================================================

class Baselines:
    """Reference descriptors for the side-by-side rows and the per-frame queries against them."""

    def __init__(self, bundle_dir: Path, loc, fp32_path: Path | None, cache_dir: Path, progress: bool = True,
                 log=print):
        from ..onboard.bundle import Bundle
        self.loc = loc
        b = Bundle.load(bundle_dir, load_keystore=False, load_descriptors=True)
        self.int8_refs = None if b.descriptors is None else b.descriptors.astype(np.float32)
        self.notes = []
        if self.int8_refs is None:
            self.notes.append("INT8 exact: the bundle has no descriptors.npy")
        self.fp32 = None
        if fp32_path is not None and Path(fp32_path).is_file():
            from ..onboard.encoder import Encoder
            self.fp32 = Encoder.from_file(fp32_path, threads=1, rotations=loc.encoder.rotations)
            self.fp32_sha256 = self.fp32.sha256
        else:
            self.notes.append(f"FP32 exact: no FP32 encoder at {fp32_path}")
        self.hand_refs, self.fp32_refs = self._references(b, cache_dir, progress, log)

    def _references(self, b, cache_dir: Path, progress: bool, log):
        """Render every bundle view once (``render_reference``): hand-crafted descriptors and, when an FP32
        encoder is given, its descriptors reduced by the bundle's PCA. Cached by views + encoder + PCA hash."""
        from tqdm import tqdm
        from ..onboard.preprocess import standardise
        from ..sim.basemap import Basemap
        from .baselines import handcrafted_descriptor
        from .build_index import turned
        from .train_encoder import render_reference
        views_sha = b.manifest["files"]["views.npz"]["sha256"]
        fp32_tag = self.fp32.sha256[:16] if self.fp32 is not None else "none"
        cache_dir.mkdir(parents=True, exist_ok=True)
        hand_p = cache_dir / f"hand_{views_sha[:16]}.npy"
        pca_sha = b.manifest["files"]["pca.npz"]["sha256"]
        fp32_p = cache_dir / f"fp32_{views_sha[:16]}_{fp32_tag}_t{b.turns}_p{pca_sha[:8]}.npy"
        need_hand = not hand_p.is_file()
        need_fp32 = self.fp32 is not None and not fp32_p.is_file()
        if need_hand or need_fp32:
            src = Path(str(b.manifest.get("basemap", {}).get("source", "bmng.jpg"))).name
            try:
                basemap = Basemap.default(src.split("#")[0])
            except Exception as exc:  # a custom basemap: re-rendering needs it on this machine
                self.notes.append(f"reference re-render skipped: basemap {src} unavailable ({exc})")
                return None, None
            enc_batch = None
            if need_fp32:
                from ..onboard.encoder import Encoder
                enc_batch = Encoder.from_file(self.fp32.name, threads=2, rotations=self.fp32.rotations)
            hand = None
            t = b.turns
            full = np.zeros((b.views * t, self.fp32.dim if need_fp32 else 1), np.float32)
            batch = 64
            for s in tqdm(range(0, b.views, batch), desc="reference views (hand-crafted, FP32)", unit="batch",
                          disable=not progress, file=sys.stderr):
                idx = range(s, min(s + batch, b.views))
                imgs = [render_reference(basemap, float(b.lat[i]), float(b.lon[i]), int(b.scale[i])).image for i in idx]
                hd = np.stack([handcrafted_descriptor(im) for im in imgs])
                if hand is None:
                    hand = np.zeros((b.views, hd.shape[1]), np.float32)
                hand[s:s + len(imgs)] = hd
                if need_fp32 and enc_batch.input_px != len(imgs[0]):   # an encoder of another input side
                    imgs = [render_reference(basemap, float(b.lat[i]), float(b.lon[i]), int(b.scale[i]),
                                             size=enc_batch.input_px).image for i in idx]
                if need_fp32:   # every stored turn, as build-index encodes them
                    full[s * t:(s + len(imgs)) * t] = enc_batch.encode_batch(
                        turned(np.stack([standardise(im) for im in imgs]), t))
            if need_hand:
                np.save(hand_p, hand)
            if need_fp32:
                np.save(fp32_p, b.reduce(full))
        hand = np.load(hand_p, allow_pickle=False)
        fp32 = np.load(fp32_p, allow_pickle=False) if self.fp32 is not None else None
        return hand, fp32

    def query(self, img: np.ndarray, truth: dict, rec: dict, spacing_km: float = 0.0, camera=None) -> None:
        """Add rank_* and *_ms fields of every comparison row to ``rec``. ``spacing_km``: each row's list is
        spaced as the pipeline's encoder places are (``localizer.spaced_places``), and with ``camera`` the
        learned rows average the frame's cleaned views as the pipeline's encoder does
        (``Localizer.encoder_images``), so that the rows differ only in descriptor and search."""
        from ..onboard.localizer import SPACING_FETCH, spaced_places
        from ..onboard.preprocess import preprocess
        from .baselines import handcrafted_descriptor
        b = self.loc.bundle
        k_row = CURVE_K_MAX * (SPACING_FETCH if spacing_km > 0 else 1)

        def cands(idx):
            idx = np.asarray(idx)
            if spacing_km > 0:
                idx = idx[spaced_places(b.lat[idx], b.lon[idx], CURVE_K_MAX, spacing_km)]
            return [(float(b.lat[i]), float(b.lon[i])) for i in idx]
        views = [img] if camera is None else self.loc.encoder_images(img, camera)[0]
        x = np.concatenate([preprocess(v, self.loc.encoder.input_px) for v in views])
        t = time.perf_counter()
        d8 = self.loc.encoder.encode_views(x)
        rec["encode_int8_ms"] = (time.perf_counter() - t) * 1e3
        if self.int8_refs is not None:
            t = time.perf_counter()
            idx = exact_topk(self.int8_refs, b.reduce(d8)[0], k_row, b.turns)
            rec["exact_search_ms"] = (time.perf_counter() - t) * 1e3
            rec["rank_int8_exact"] = first_hit_rank(cands(idx), truth)
        if self.fp32 is not None and self.fp32_refs is not None:
            t = time.perf_counter()
            d32 = self.fp32.encode_views(x)
            rec["encode_fp32_ms"] = (time.perf_counter() - t) * 1e3
            rec["rank_fp32_exact"] = first_hit_rank(cands(exact_topk(self.fp32_refs, b.reduce(d32)[0], k_row, b.turns)), truth)
        if self.hand_refs is not None:
            t = time.perf_counter()
            idx = exact_topk(self.hand_refs, handcrafted_descriptor(img), k_row)
            rec["hand_ms"] = (time.perf_counter() - t) * 1e3
            rec["rank_hand"] = first_hit_rank(cands(idx), truth)


def exact_topk(refs: np.ndarray, q: np.ndarray, k: int, turns: int = 1) -> np.ndarray:
    """Exact inner-product kNN: indices of the k best references (views: rows // ``turns``, each view
    once, at its best turn), best first."""
    from ..onboard.bundle import first_views
    s = refs @ q
    kk = min(k * turns, len(s))
    idx = np.argpartition(-s, kk - 1)[:kk]
    idx = idx[np.argsort(-s[idx])]
    return first_views(idx, s[idx], turns, k)[0]


def limit_blas_threads(n: int = 1) -> int | None:
    """OpenCV's and every loaded OpenBLAS's thread count to ``n`` (one-thread latency; ``onboard.threads``).
    Returns the OpenBLAS count now in force (the largest over the copies), or None when none exposes a setter."""
    from ..onboard.threads import limit_threads
    done = limit_threads(n)
    return max(done.values()) if done else None


def _rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def heavy_standin(cache_dir: Path, frames: list, views: int, ours: dict, log=print) -> dict:
    """(d) EarthLoc-like cost: encode latency at one thread, model bytes, index memory, end-to-end ratio.

    Heavy end-to-end = its preprocessing (resize to 320 px + standardisation) + encode + exact 4096-D search
    over the views (timed on ``HEAVY_SEARCH_SAMPLE`` random vectors, scaled linearly) + our verification
    (features + verify p50): the same flow with the heavy retrieval in place of ours.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        return {"skipped": "torch is not installed (pip install 'earthfix[train]'): heavy stand-in not measured"}
    import onnxruntime as ort
    from ..onboard.preprocess import preprocess
    from .baselines import heavy_standin_onnx
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"heavy_standin_{HEAVY_INPUT_PX}px_{HEAVY_DIM}d.onnx"
    if not path.is_file():
        log(f"eval: exporting the heavy stand-in to {path}")
        heavy_standin_onnx(path.with_suffix(".partial.onnx"), HEAVY_INPUT_PX, HEAVY_DIM)
        path.with_suffix(".partial.onnx").rename(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    rss0 = _rss_bytes()
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: np.zeros((1, 3, HEAVY_INPUT_PX, HEAVY_INPUT_PX), np.float32)})   # warm-up
    rss_session = _rss_bytes() - rss0
    pre_ms, enc_ms = [], []
    for img in frames:
        t = time.perf_counter()
        x = preprocess(img, HEAVY_INPUT_PX)
        t1 = time.perf_counter()
        sess.run(None, {name: x})
        t2 = time.perf_counter()
        pre_ms.append((t1 - t) * 1e3)
        enc_ms.append((t2 - t1) * 1e3)
    n_s = HEAVY_SEARCH_SAMPLE
    refs = np.random.default_rng(0).standard_normal((n_s, HEAVY_DIM), dtype=np.float32)
    q = refs[0].copy()
    ts = []
    for _ in range(10):
        t = time.perf_counter()
        exact_topk(refs, q, 10)
        ts.append((time.perf_counter() - t) * 1e3)
    del refs
    per_view_ms = float(np.median(ts)) / n_s
    search_views_ms = per_view_ms * views
    search_150k_ms = per_view_ms * EARTHLOC_VIEWS
    lat = ours.get("latency_ms", {})
    verify_ms = sum((lat.get(k) or {}).get("p50") or 0.0 for k in ("features_ms", "verify_ms"))
    ours_total = (lat.get("total_ms") or {}).get("p50")
    heavy_e2e = float(np.median(pre_ms) + np.median(enc_ms)) + search_views_ms + verify_ms
    heavy_e2e_150k = heavy_e2e - search_views_ms + search_150k_ms
    return {
        "model": path.name, "model_bytes": path.stat().st_size, "input_px": HEAVY_INPUT_PX, "dim": HEAVY_DIM,
        "frames_timed": len(frames), "session_rss_bytes": int(rss_session),
        "preprocess_ms": percentiles(pre_ms, (50, 99)), "encode_ms": percentiles(enc_ms, (50, 99)),
        "search_ms_same_views": search_views_ms, "search_ms_150k_views": search_150k_ms,
        "search_sample_views": n_s,
        "index_bytes_same_views": HEAVY_DIM * 4 * views, "index_bytes_150k_views": HEAVY_DIM * 4 * EARTHLOC_VIEWS,
        "views": views, "earthloc_views": EARTHLOC_VIEWS,
        "e2e_ms_same_views": heavy_e2e, "e2e_ms_150k_views": heavy_e2e_150k, "ours_e2e_ms_p50": ours_total,
        "ratio_e2e_same_views": (heavy_e2e / ours_total) if ours_total else None,
        "ratio_e2e_150k_views": (heavy_e2e_150k / ours_total) if ours_total else None,
        "note": "random weights: cost only, never accuracy. EarthLoc also stores every reference at 4 "
                "rotations (x4 the index memory above).",
    }


# =================================================================================================
# the run
# =================================================================================================

def retrieval_ms(stages_ms: dict) -> float:
    """What the pipeline's retrieval costs beyond the search: the encoder, and the (first look's) despeckle,
    cloud fill, features and vote that the keypoint vote needs."""
    return sum(stages_ms.get(k, 0.0) for k in ("encode_ms", "despeckle_ms", "fill_ms", "features_ms", "vote_ms"))


# keys of ``Verifier._evidence`` kept in each frame record's "pose" (with the record's inliers and bore_sigma_km,
# every input of the confidence model: a pose can be scored again under another model)
POSE_EVIDENCE = ("matches", "inlier_ratio", "spread", "reproj_rms_work_px", "alt_km", "tilt_deg", "lever_km",
                 "group_lever_km", "inlier_margin", "groups_evaluated", "guided", "from_prior", "alt_out_of_range_km",
                 "attitude_given")


def evaluate_frame(loc, cam, img, truth: dict, sdef: ScenarioDef, baselines: Baselines | None,
                   with_time: bool = False) -> dict:
    """Run the pipeline on one frame and score it: one flat, JSON-ready record. ``with_time``: locate is given
    the frame's UTC time (the Sun's checks: ``Localizer.locate(time=)``); the contract's locate has none."""
    rec = {"scenario": sdef.name, "index": int(truth.get("set_index", -1)), "stress": sdef.stress,
           "eligible": is_eligible(truth),
           "sun_elev_deg": truth.get("sun_elev_deg"), "land_frac": float(truth.get("land_frac") or 0.0),
           "cloud_frac": float(truth.get("cloud_frac") or 0.0),
           "land_clear_frac": float(truth.get("land_clear_frac") or 0.0),
           "hw_km": float(truth["footprint_half_width_km"]),
           "bore_lat": truth.get("bore_lat"), "bore_lon": truth.get("bore_lon"),
           "alt_km": truth.get("alt_km"), "yaw_deg": truth.get("yaw_deg")}
    try:
        fix = loc.locate(img, cam, time=truth["time"] if with_time else None)
    except Exception as exc:   # never stop the run for one frame
        from ..onboard.fix import Fix
        fix = Fix.failed(f"{type(exc).__name__}: {exc}")
    cl = [(c.lat, c.lon) for c in fix.candidates]                 # the retrieval: vote + encoder
    enc = fix.encoder_candidates
    if fix.error is None and "encode_ms" not in fix.stages_ms:
        enc = loc.encoder_candidates(img, cam)    # not needed by the flight path (encoder_places): made here, untimed
    el = [(c.lat, c.lon) for c in enc]                            # the encoder's own top-k
    err = position_error_km(fix.lat, fix.lon, truth) if fix.fix else None
    ev = fix.evidence or {}
    hyp = ev.get("hyp_lat")
    rec.update({
        "fix": bool(fix.fix), "confidence": float(fix.confidence), "inliers": int(fix.inliers),
        "bore_sigma_km": ev.get("bore_sigma_km"),      # inf (no pose) is written as null by _jsonable
        "est_lat": fix.lat, "est_lon": fix.lon, "est_alt_km": fix.alt_km, "est_yaw_deg": fix.yaw_deg,
        "err_km": err,
        "hyp_err_km": position_error_km(hyp, ev.get("hyp_lon"), truth) if hyp is not None else None,
        "top1_err_km": position_error_km(*cl[0], truth) if cl else None,
        "rank_retrieval": first_hit_rank(cl, truth),
        "rank_hnsw": first_hit_rank(el, truth),
        "yaw_err_deg": yaw_error_deg(fix.yaw_deg, truth.get("yaw_deg")) if fix.fix else None,
        "alt_err_km": altitude_error_km(fix.alt_km, truth.get("alt_km")) if fix.fix else None,
        "sub_err_km": sub_error_km(fix.sub_lat, fix.sub_lon, truth) if fix.fix else None,
        "stages_ms": dict(fix.stages_ms), "reason": fix.reason, "error": fix.error,
        "retrieval_ms": retrieval_ms(fix.stages_ms),
        "source": ev.get("source"),        # the verified place's retrieval: vote, encoder or wide (None: no pose)
        "look": ev.get("look"), "exposure_gain": ev.get("exposure_gain"),   # which look fixed; the exposure gain
        "looks_cut": ev.get("looks_cut"),  # later looks the deadline's plan had no room for (None: not verified)
        "tone_gamma": ev.get("tone_gamma"),                                 # and the tone lift's power
        "blur_ratio": ev.get("blur_ratio"), "sharpened": ev.get("sharpened"),
        # the pose's verification evidence (what the confidence saw), to study a false fix after the run
        "pose": {k: ev.get(k) for k in POSE_EVIDENCE} if ev.get("ok") else None,
    })
    for key in ("err_km", "hyp_err_km", "top1_err_km"):   # no truth boresight: any position is wrong
        if rec[key] is not None and not math.isfinite(rec[key]):
            rec[key] = NO_TRUTH_ERR_KM
    if baselines is not None and fix.error is None:
        baselines.query(img, truth, rec, loc.spacing_km(cam), cam)
    return rec


# the CPU's vector extensions that set the flight code's speed: "AMD EPYC" named machines 2.5x apart, the slower
# one with AVX2 alone, where INT8 also needs 7-bit weights (models/README.md, "7-bit weights")
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp")


def cpu_features(cpuinfo: str) -> str:
    """Which of ``CPU_FEATURES`` the first processor of a /proc/cpuinfo text lists ("none" if none)."""
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            have = set(line.split(":", 1)[1].split())
            return " ".join(f for f in CPU_FEATURES if f in have) or "none"
    return "unknown"


def machine_info() -> dict:
    import cv2
    import onnxruntime as ort
    cpu, features = "unknown", "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        features = cpu_features(text)
    except OSError:
        pass
    info = {"cpu_model": cpu, "cpu_features": features, "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "onnxruntime": ort.__version__, "opencv": cv2.__version__, "numpy": np.__version__}
    try:
        import hnswlib  # noqa: F401
        from importlib.metadata import version
        info["hnswlib"] = version("hnswlib")
    except Exception:
        pass
    try:
        import subprocess
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                            cwd=Path(__file__).resolve().parents[2], timeout=5).stdout.strip() or None
    except Exception:
        info["git_commit"] = None
    return info


def command_line(args) -> str:
    """The exact command that reproduces this run."""
    parts = ["earthfix", "eval", "--bundle", str(args.bundle), "--out", str(args.out), "--frames", str(args.frames),
             "--seed", str(args.seed)]
    if args.encoder:
        parts += ["--encoder", str(args.encoder)]
    if args.encoder_fp32:
        parts += ["--encoder-fp32", str(args.encoder_fp32)]
    if args.config:
        parts += ["--config", str(args.config)]
    if args.region:
        parts += ["--region"] + [f"{x:g}" for x in args.region]
    if getattr(args, "effects", None):
        parts += ["--effects", str(args.effects)]
    if getattr(args, "basemap", None):
        parts += ["--basemap", str(args.basemap)]
    if getattr(args, "cloud_field", None):
        parts += ["--cloud-field", str(args.cloud_field)]
    if getattr(args, "with_time", False):
        parts.append("--with-time")
    if args.quick:
        parts.append("--quick")
    if args.no_baselines:
        parts.append("--no-baselines")
    if args.no_heavy:
        parts.append("--no-heavy")
    if args.interim:
        parts.append("--interim")
    return shlex.join(parts)


def _effects_changes(effects) -> dict:
    """The simulator settings of ``effects`` that differ from its defaults."""
    from ..sim.effects import EffectsConfig
    base = EffectsConfig.default().to_dict()
    return {k: v for k, v in effects.to_dict().items() if base.get(k) != v}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _eval_inputs(args, log, cloud_field=None):
    """The run's inputs, read before anything is built (a mistyped path fails first): (effects, basemap, its
    registration against the shipped July map or None, the cloud field or None)."""
    effects = None
    if getattr(args, "effects", None):
        from ..sim.effects import EffectsConfig
        effects = EffectsConfig.from_yaml(args.effects)
    basemap = registration = None
    if getattr(args, "basemap", None):
        from ..sim.basemap import Basemap
        from .map_registration import Registration, default_reference
        basemap = Basemap.load(args.basemap)
        # a map drawn off its grid turns right answers into "false fixes": say so in the report (the map as
        # read: its water's edge is part of what registers)
        ref = default_reference()
        registration = dict(Registration.of_image(basemap.raw, ref).summary(), reference=ref.name)
        if registration["suspect"]:
            log(f"eval: {args.basemap} lies {registration['offset_p50_km']} km (median) off its grid against "
                f"{registration['reference']}: its false fixes may be the map's own offsets")
    if cloud_field is None and getattr(args, "cloud_field", None):
        from ..sim.real_clouds import GlobalCloudField
        cloud_field = GlobalCloudField.load(args.cloud_field)
    return effects, basemap, registration, cloud_field


def _located_records(loc, args, n: int, effects, basemap, cloud_field, baselines) -> tuple[list[dict], list]:
    """Every scenario's frames rendered and located: (one record per frame, the first ``HEAVY_FRAMES`` land256
    frames for the heavy stand-in's timing)."""
    from tqdm import tqdm
    records: list[dict] = []
    heavy_frames: list = []
    for k, sdef in enumerate(SCENARIOS):
        seed = scenario_seed(args.seed, k)
        cam, frames = scenario_frames(sdef, n, seed, args.region, effects, basemap, cloud_field)
        for img, truth in tqdm(frames, total=n, desc=f"eval {sdef.name}", unit="frame", disable=args.quiet,
                               file=sys.stderr):
            rec = evaluate_frame(loc, cam, img, truth, sdef, baselines, getattr(args, "with_time", False))
            rec["seed"] = seed
            records.append(rec)
            if sdef.name == "land256" and len(heavy_frames) < HEAVY_FRAMES:
                heavy_frames.append(img)
    return records, heavy_frames


def _summary_report(args, loc, records: list[dict], n: int, int8_path: Path, fp32_path: Path, effects, basemap,
                    registration, cloud_field, blas_threads: int, notes: list, baselines: bool) -> dict:
    """The report's measured part from the records: what ran on what, per scenario, overall, and every table
    (the retrieval side by side with ``baselines``)."""
    main = [r for r in records if not r["stress"]]
    per_scenario = {s.name: summarise([r for r in records if r["scenario"] == s.name]) for s in SCENARIOS}
    no_fix_sets = {s.name for s in SCENARIOS if s.kind == "ocean" or not s.daylight}   # night, ocean, sea floor
    must_zero = [r for r in records if r["scenario"] in no_fix_sets]
    report = {
        "command": command_line(args), "argv": sys.argv, "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "interim": bool(args.interim), "machine": dict(machine_info(), blas_threads=blas_threads),
        "bundle": _bundle_info(loc), "encoder": {"int8": str(int8_path), "int8_sha256": loc.encoder.sha256,
                                                  "int8_bytes": int8_path.stat().st_size if int8_path.is_file() else None,
                                                  "fp32": str(fp32_path) if fp32_path.is_file() else None,
                                                  "fp32_bytes": fp32_path.stat().st_size if fp32_path.is_file() else None,
                                                  "rotations": loc.encoder.rotations,
                                                  "reference_turns": loc.bundle.turns,
                                                  "views": list(loc.cfg["encoder_views"])},
        "config": {k: v for k, v in loc.cfg.items() if k not in ("verify", "confidence")},
        "frames_per_scenario": n, "seeds": {s.name: scenario_seed(args.seed, k) for k, s in enumerate(SCENARIOS)},
        "region": list(args.region) if args.region else None,
        "effects": None if effects is None else _effects_changes(effects),
        "basemap": None if basemap is None else Path(args.basemap).name,
        "basemap_registration": registration,
        "cloud_field": None if cloud_field is None else {
            "file": cloud_field.source, "cloud_share_of_pixels": round(cloud_field.cloud_share, 4),
            "scenarios": [s.name for s in SCENARIOS if takes_cloud_field(s, effects)]},
        "definitions": {"false_fix_km": FALSE_FIX_KM, "eligible_min_land_clear_frac": MIN_LAND_CLEAR_FRAC,
                        "recall_hit_radius": "footprint_half_width_km / 2",
                        "overall": "all scenarios except stress sets", "percentiles": "numpy linear"},
        "scenarios": {s.name: {"description": s.description, "camera": f"{s.width}x{s.height} {s.fov_deg:g} deg",
                               "stress": s.stress, **per_scenario[s.name]} for s in SCENARIOS},
        "overall": summarise(main), "all_including_stress": summarise(records),
        "over_deadline": {"overall": over_deadline(main, loc.cfg["deadline_ms"]),
                          "all_including_stress": over_deadline(records, loc.cfg["deadline_ms"])},
        "looks_cut": {"overall": looks_cut(main), "all_including_stress": looks_cut(records)},
        "misses": {"overall": misses(main), "all_including_stress": misses(records)},
        "near_wrong": None if loc.verifier is None else {
            "overall": near_wrong(main, loc.verifier.cfg.max_bore_sigma_km),
            "all_including_stress": near_wrong(records, loc.verifier.cfg.max_bore_sigma_km)},
        "night_ocean_false_fixes": {"frames": len(must_zero),
                                    "false_fixes": false_fixes([r["fix"] for r in must_zero], [r["err_km"] for r in must_zero])[0],
                                    "fixes": int(sum(r["fix"] for r in must_zero))},
        "by_land_frac": breakdown(main, "land_frac", LAND_BINS),
        "by_cloud_frac": breakdown(main, "cloud_frac", CLOUD_BINS),
        "fixes_by_source": {"overall": fixes_by_source(main), "all_including_stress": fixes_by_source(records)},
        "verification": verification_comparison(main),
        "notes": notes,
    }
    if baselines:
        report["retrieval"] = retrieval_comparison(main)
        report["retrieval_all_including_stress"] = retrieval_comparison(records)
    return report


def run_eval(args, log=None, cloud_field=None) -> dict:
    """The whole evaluation; returns the report dict (also written to ``args.out``). ``cloud_field``: the
    ``--cloud-field`` image already loaded (``sim.real_clouds.GlobalCloudField``), else it is read here."""
    from ..onboard.localizer import Localizer
    from .build_index import ensure_default_bundle
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    blas_threads = limit_blas_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    effects, basemap, registration, cloud_field = _eval_inputs(args, log, cloud_field)
    if args.bundle is None:
        args.bundle = str(ensure_default_bundle())
    n = min(args.frames, QUICK_FRAMES) if args.quick else args.frames
    overrides = {"threads": 1}
    if args.encoder:
        overrides["encoder"] = str(args.encoder)
    loc = Localizer.load(args.bundle, args.config, overrides)
    int8_path = Path(loc.encoder.name)            # what the Localizer actually loaded
    fp32_path = Path(args.encoder_fp32) if args.encoder_fp32 else int8_path.with_name("encoder_fp32.onnx")
    t_start = time.time()
    baselines = None
    notes = []
    if not args.no_baselines:
        baselines = Baselines(Path(args.bundle), loc, fp32_path, out / "cache", progress=not args.quiet, log=log)
        notes += baselines.notes
    records, heavy_frames = _located_records(loc, args, n, effects, basemap, cloud_field, baselines)
    with open(out / "frames.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(_jsonable(r)) + "\n")
    report = _summary_report(args, loc, records, n, int8_path, fp32_path, effects, basemap, registration,
                             cloud_field, blas_threads, notes, baselines is not None)
    if args.no_baselines or args.no_heavy or args.quick:
        why = "--no-baselines" if args.no_baselines else ("--no-heavy" if args.no_heavy else "--quick")
        report["heavy"] = {"skipped": f"not measured ({why})"}
    else:
        report["heavy"] = heavy_standin(out / "cache", heavy_frames, loc.bundle.views, report["overall"], log)
    report["ours_memory"] = {"model_bytes": report["encoder"]["int8_bytes"], "bundle_bytes": report["bundle"]["bytes"],
                             "index_hnsw_bytes": report["bundle"]["files"].get("index.hnsw"),
                             "descriptors_bytes": report["bundle"]["files"].get("descriptors.npy")}
    report["wall_seconds"] = round(time.time() - t_start, 1)
    report["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    from . import report_plots
    try:
        report["plots"] = report_plots.make_all(report, records, out)
    except Exception as exc:  # plots never cost the numbers
        report["plots"] = []
        report["notes"].append(f"plots failed: {type(exc).__name__}: {exc}")
    report = _jsonable(report)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    return report


def _rotation_words(e: dict) -> str:
    turns = e.get("reference_turns", 1)
    if turns > 1:
        words = f"query encoded {e['rotations']}x, references stored at {turns} turns"
    else:
        words = f"query averaged over {e['rotations']} rotation{'s' if e['rotations'] > 1 else ''}"
    if e.get("views"):   # config encoder_views: a frame's cleaned views averaged with it where it has them
        words += f" and with the frame's {' and '.join(e['views'])} view{'s' if len(e['views']) > 1 else ''} where it has them"
    return words


def _bundle_info(loc) -> dict:
    b = loc.bundle
    m = b.manifest
    return {"path": str(Path(b.path).resolve()), "views": b.views, "bytes": b.bytes,
            "files": {k: v["bytes"] for k, v in m["files"].items()},
            "region": m.get("grid", {}).get("region"), "basemap": m.get("basemap", {}).get("source"),
            "index": m.get("index"), "keypoints": m.get("counts", {}).get("keypoints")}


# =================================================================================================
# report.md
# =================================================================================================

def _f(x, nd=1, pct=False) -> str:
    if x is None:
        return "–"
    if pct:
        return f"{100.0 * x:.{nd}f} %"
    return f"{x:.{nd}f}"


def _mb(x) -> str:
    return "–" if x is None else f"{x / 1e6:.1f} MB"


def machine_table(m: dict) -> list[str]:
    """The report's table of :func:`machine_info` (and the run's BLAS threads), in a fixed order."""
    L = ["| item | value |", "| --- | --- |"]
    for k in ("cpu_model", "cpu_features", "logical_cores", "usable_cores", "python", "platform", "onnxruntime",
              "opencv", "numpy", "hnswlib", "blas_threads", "git_commit"):
        if k in m:
            L.append(f"| {k} | {m[k]} |")
    return L


def _md_machine(r: dict) -> list[str]:
    """The machine, bundle and encoder the figures were measured with."""
    L = ["## Machine", ""] + machine_table(r["machine"])
    b, e = r["bundle"], r["encoder"]
    L += ["", f"Bundle: `{b['path']}` — {b['views']} views, {_mb(b['bytes'])}"
          + (f", region {b['region']}" if b.get("region") else "") + f"; basemap {b['basemap']}.",
          f"Encoder: `{e['int8']}` (sha256 {e['int8_sha256'][:12]}…, {_mb(e['int8_bytes'])}), {_rotation_words(e)}; "
          f"latency at one thread (`intra_op_num_threads=1`, `cv2.setNumThreads(1)`)."
          + (" Each frame located with its UTC time (`--with-time`: the Sun's checks)." if "--with-time" in
             r.get("command", "").split() else ""), ""]
    return L


def _md_scenarios(r: dict) -> list[str]:
    """The table per scenario, the night / ocean line, the deadline's and the looks' lines."""
    L = []
    L += ["## Pipeline per scenario", "",
          "Recall and fix rate over eligible frames; errors over fixes (err: the boresight point's, sub-sat.: the "
          "sub-satellite point's); false fixes over all frames (> 50 km). "
          "R@k: the pipeline's retrieval (keypoint-vote places first, then the encoder's HNSW top-k: `candidates` "
          "of the locate contract); enc R@k: the encoder's own top-k.", "",
          "| scenario | frames | eligible | R@1 | R@5 | R@10 | enc R@1 | enc R@10 | fix rate | err p50 km | p90 | p99 "
          "| yaw p50 ° | alt p50 km | sub-sat. p50 km | false fixes | false-fix rate | latency p50 ms | p99 |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: | ---: | ---: |"]
    rows = [(k, v) for k, v in r["scenarios"].items()] + [("**overall**", r["overall"]),
                                                         ("all incl. stress", r["all_including_stress"])]
    for name, s in rows:
        lt = s["latency_ms"].get("total_ms", {})
        L.append(f"| {name} | {s['frames']} | {s['eligible']} | {_f(s['recall']['@1'], 1, True)} | "
                 f"{_f(s['recall']['@5'], 1, True)} | {_f(s['recall']['@10'], 1, True)} | "
                 f"{_f(s['recall_encoder']['@1'], 1, True)} | {_f(s['recall_encoder']['@10'], 1, True)} | "
                 f"{_f(s['fix_rate'], 1, True)} | "
                 f"{_f(s['error_km']['p50'])} | {_f(s['error_km']['p90'])} | {_f(s['error_km']['p99'])} | "
                 f"{_f(s['yaw_error_deg']['p50'])} | {_f(s['alt_error_km']['p50'])} | "
                 f"{_f((s.get('sub_error_km') or {}).get('p50'))} | {s['false_fixes']} | "
                 f"{_f(s['false_fix_rate'], 2, True)} | {_f(lt.get('p50'))} | {_f(lt.get('p99'))} |")
    no = r["night_ocean_false_fixes"]
    L += ["", f"False fixes on night and open-ocean frames, sea-floor shading included (must be 0): **{no['false_fixes']}** of {no['frames']} frames "
          f"({no['fixes']} fixes) — {'PASS' if no['false_fixes'] == 0 else 'FAIL'}.", ""]
    od = r.get("over_deadline")
    if od:
        o, a = od["overall"], od["all_including_stress"]
        L += [f"Frames over the {o['deadline_ms']:g} ms deadline (config `deadline_ms`): {o['frames']} of {o['of']} "
              f"overall (longest {_f(o['max_ms'])} ms), {a['frames']} of {a['of']} with the stress sets "
              f"(longest {_f(a['max_ms'])} ms).", ""]
    lc = r.get("looks_cut")
    if lc:
        o, a = lc["overall"], lc["all_including_stress"]
        L += [f"Eligible frames left unfixed: {o['unfixed']} overall, {o['looks_cut']} of them with a later look the "
              f"deadline's plan had no room for; {a['unfixed']} and {a['looks_cut']} with the stress sets (evidence "
              "`looks_cut`: misses that time, not the ground, may have cost).", ""]
    nw = r.get("near_wrong")
    if nw:
        o, a = nw["overall"], nw["all_including_stress"]
        c = a["closest"]
        closest = ("" if c is None else f"; the closest `{c['scenario']}` {c['index']}: σ {_f(c['bore_sigma_km'])} km, "
                   f"{_f(c['hyp_err_km'])} km off, {c['inliers']} inliers ({c['reason'] or 'confidence under the bar'})")
        L += [f"Wrong poses that came close (no fix; the closest look's pose > {FALSE_FIX_KM:g} km off and pinned within "
              f"{a['gates']:g} × the {a['gate_km']:g} km precision gate): {o['frames']} overall, {a['frames']} with the "
              f"stress sets, {a['inside_gate']} of them inside the gate{closest}. A margin, not a failure: a change that "
              "adds inliers can take such a pose through.", ""]
    return L


def _md_misses(r: dict) -> list[str]:
    """Where the overall sets' misses are (``misses``)."""
    L = []
    ms = (r.get("misses") or {}).get("overall")
    if ms:
        L += ["## Where the misses are (overall sets)", "",
              "Eligible frames by kind of ground and sky (coarse boxes, first match wins: `evaluate.ground_kind`); of "
              "the unfixed, those with a right place among the first 10 candidates are verification's misses, the "
              "others retrieval's.", "",
              "| kind | eligible | fixed | unfixed | right place in the first 10 |", "| --- | ---: | ---: | ---: | ---: |"]
        for x in ms["rows"]:
            if x["eligible"]:
                L.append(f"| {x['kind']} | {x['eligible']} | {x['fixed']} ({100.0 * x['fixed'] / x['eligible']:.1f} %) "
                         f"| {x['unfixed']} | {x['right_place_in_10']} |")
        if ms["reasons"]:
            L += ["", "Unfixed frames by the reason of the look that came closest: "
                  + ", ".join(f"{k} {n}" for k, n in ms["reasons"].items()) + "."]
        L.append("")
    return L


def _md_latency_and_bins(r: dict) -> list[str]:
    """Latency per stage, then the overall sets by land and by cloud fraction."""
    L = []
    L += ["## Latency per stage (overall, ms, one thread)", "", "| stage | p50 | p99 | mean | frames |",
          "| --- | ---: | ---: | ---: | ---: |"]
    for k, v in r["overall"]["latency_ms"].items():
        L.append(f"| {k[:-3]} | {_f(v['p50'], 2)} | {_f(v['p99'], 2)} | {_f(v['mean'], 2)} | {v['n']} |")

    for title, key in (("land fraction", "by_land_frac"), ("cloud fraction", "by_cloud_frac")):
        L += ["", f"## By {title} (overall sets)", "",
              "| bin | frames | eligible | R@1 | R@10 | fix rate | false fixes |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in r[key]:
            L.append(f"| {row['bin']} | {row['frames']} | {row['eligible']} | {_f(row['recall@1'], 1, True)} | "
                     f"{_f(row['recall@10'], 1, True)} | {_f(row['fix_rate'], 1, True)} | {row['false_fixes']} |")
    return L


def _md_sources(r: dict) -> list[str]:
    """Where the fixes come from (``fixes_by_source``)."""
    L = []
    fs = r.get("fixes_by_source")
    if fs:
        L += ["", "## Where the fixes come from", "",
              "The verified place's retrieval (vote: the keypoint vote's places; encoder: the encoder's, verified after "
              "every look's own; wide: the wide vote's, config `vote_wide_k`) and the look it was verified on; fixes within "
              f"{FALSE_FIX_KM:g} km of the truth over all frames, eligible or not.", "",
              "| source | look | fixes (overall) | false | fixes (all sets) | false |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        every = {(x["source"], x["look"]): x for x in fs["all_including_stress"]["rows"]}
        main_rows = {(x["source"], x["look"]): x for x in fs["overall"]["rows"]}
        for key, a in every.items():
            m = main_rows.get(key, {"fixes": 0, "false_fixes": 0})
            L.append(f"| {key[0]} | {key[1]} | {m['fixes']} | {m['false_fixes']} | {a['fixes']} | {a['false_fixes']} |")
        o, a = fs["overall"], fs["all_including_stress"]
        L += ["", f"The encoder's places were verified on {o['encoder_places_frames']} overall frames and fixed "
              f"{o['encoder_places_fixes']} ({a['encoder_places_frames']} and {a['encoder_places_fixes']} with the "
              "stress sets)."]
    return L


def _md_retrieval(r: dict) -> list[str]:
    """Retrieval side by side: the pipeline's, the encoder's and the baselines'."""
    L = []
    if "retrieval" in r:
        L += ["", "## Retrieval side by side (same frames, overall sets, eligible)", "",
              "| method | R@1 | R@10 | descriptor ms p50 | p99 | search ms p50 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for row in r["retrieval"].values():
            L.append(f"| {row['label']} | {_f(row['recall@1'], 1, True)} | {_f(row['recall@10'], 1, True)} | "
                     f"{_f(row['latency_ms']['p50'], 2)} | {_f(row['latency_ms']['p99'], 2)} | "
                     f"{_f((row.get('search_ms') or {}).get('p50'), 3)} |")
        L += ["", f"Descriptor ms: encoder ({_rotation_words(r['encoder'])}) for the learned rows, encoder + despeckle + cloud fill + features + vote "
              "for the pipeline's retrieval, descriptor + exact search for the hand-crafted row. FP32/INT8 exact search "
              "the bundle's views with the bundle's PCA (FP32 references re-encoded with the FP32 model)."]
        st = r.get("retrieval_all_including_stress", {})
        if st:
            L += ["", "Including the stress sets: " + ", ".join(
                f"{row['label'].split(' (')[0]} R@1 {_f(row['recall@1'], 1, True)} / R@10 {_f(row['recall@10'], 1, True)}"
                for row in st.values())]
    return L


def _md_verification(r: dict) -> list[str]:
    """Verification off vs on."""
    L = []
    v = r["verification"]
    L += ["", "## Verification off vs on (overall sets)", "",
          "| variant | positions | err p50 km (all) | p90 | p99 | err p50 km (eligible) | p90 | p99 | false fixes | false-fix rate |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in ("off", "on"):
        s = v[key]
        a, el = s["error_km_all"], s["error_km_eligible"]
        L.append(f"| {s['label']} | {s['positions']} | {_f(a['p50'])} | {_f(a['p90'])} | {_f(a['p99'])} | "
                 f"{_f(el['p50'])} | {_f(el['p90'])} | {_f(el['p99'])} | {s['false_fixes']} | {_f(s['false_fix_rate'], 2, True)} |")
    return L


def _md_heavy(r: dict) -> list[str]:
    """The EarthLoc-like heavy stand-in's cost beside ours."""
    L = []
    h = r["heavy"]
    L += ["", "## EarthLoc-like heavy stand-in (cost only)", ""]
    if "skipped" in h:
        L.append(f"Skipped: {h['skipped']}.")
    else:
        om = r["ours_memory"]
        L += ["| item | heavy stand-in | ours |", "| --- | ---: | ---: |",
              f"| model | {_mb(h['model_bytes'])} ({h['input_px']} px, {h['dim']}-D) | {_mb(om['model_bytes'])} |",
              f"| encode ms p50 / p99 (1 thread) | {_f(h['encode_ms']['p50'])} / {_f(h['encode_ms']['p99'])} | "
              f"{_f(r['overall']['latency_ms'].get('encode_ms', {}).get('p50'))} / {_f(r['overall']['latency_ms'].get('encode_ms', {}).get('p99'))} |",
              f"| index memory, {h['views']} views | {_mb(h['index_bytes_same_views'])} (4096-D float32) | "
              f"{_mb(om['index_hnsw_bytes'])} (HNSW) |",
              f"| index memory, {h['earthloc_views']} views (EarthLoc) | {_mb(h['index_bytes_150k_views'])} | – |",
              f"| exact search ms, {h['views']} / {h['earthloc_views']} views | {_f(h['search_ms_same_views'], 2)} / "
              f"{_f(h['search_ms_150k_views'], 1)} | {_f(r['overall']['latency_ms'].get('search_ms', {}).get('p50'), 3)} |",
              f"| end-to-end ms p50 ({h['views']} views) | {_f(h['e2e_ms_same_views'])} | {_f(h['ours_e2e_ms_p50'])} |",
              f"| end-to-end ms p50 ({h['earthloc_views']} views) | {_f(h['e2e_ms_150k_views'])} | – |",
              "", f"End-to-end latency ratio heavy/ours: **{_f(h['ratio_e2e_same_views'])}x** at the same views, "
              f"**{_f(h['ratio_e2e_150k_views'])}x** with EarthLoc's {h['earthloc_views']} views. "
              f"Heavy end-to-end = its preprocessing + encode + exact 4096-D search (timed on {h['search_sample_views']} "
              f"random vectors, scaled linearly) + our verification p50. {h['note']}"]
    return L


def _md_header(r: dict) -> list[str]:
    """The title, command, date, and what the frames were rendered from when not the defaults."""
    L = []
    title = "EarthFix evaluation" + (" (INTERIM model)" if r.get("interim") else "")
    L += [f"# {title}", "", f"Command: `{r['command']}`", "",
          f"Date (UTC): {r['date_utc']}; wall time {r['wall_seconds']} s; frames per scenario: {r['frames_per_scenario']}"
          + (f"; land frames restricted to region {r['region']} (ocean frames stay global)" if r.get("region") else ""), ""]
    if r.get("effects") is not None:
        L += ["Simulator effects changed from their defaults (`--effects`; a scenario's own cloud cover or veil "
              f"applies on top): `{json.dumps(r['effects'])}`", ""]
    if r.get("basemap"):
        L += [f"Frames rendered from `{r['basemap']}` instead of the default basemap (`--basemap`; the season, "
              "winter and relief sets keep their own)", ""]
        g = r.get("basemap_registration") or {}
        if g.get("windows"):
            L += [f"Its registration against `{g['reference']}` (earthfix.tools.map_registration): local offsets p50 "
                  f"{g['offset_p50_km']} km, {100 * g['over_10_km']:.0f} % of {g['windows']} windows over 10 km"
                  + (" — **not where its grid says: false fixes on its frames may be the map's own offsets**"
                     if g["suspect"] else " (the method's floor is 3.5-5 km for faithful maps)"), ""]
    if r.get("cloud_field"):
        c = r["cloud_field"]
        L += [f"Clouds: the real global field `{c['file']}` laid where it lies (`--cloud-field`; "
              f"{100 * c['cloud_share_of_pixels']:.0f} % of its pixels opaque) over "
              + ", ".join(f"`{n}`" for n in c["scenarios"])
              + "; a set's own cloud cover does not apply there, and the sets built on the simulator's veil, cumulus "
              "or translucent margins keep its clouds.", ""]
    return L


def render_markdown(r: dict) -> str:
    """``report.md`` from ``report.json``'s dict, section by section."""
    L = []
    for section in (_md_header, _md_machine, _md_scenarios, _md_misses, _md_latency_and_bins, _md_sources,
                    _md_retrieval, _md_verification, _md_heavy):
        L += section(r)
    if r.get("plots"):
        L += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in r["plots"]]
    if r.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    L += ["", "Every number: `report.json`; per-frame records: `frames.jsonl`.", ""]
    return "\n".join(L)


# =================================================================================================
# CLI
# =================================================================================================

def register(sub):
    from ..sim import real_clouds
    p = sub.add_parser("eval", help="evaluate the pipeline and baselines on held-out simulated frames",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    p.add_argument("--out", default="eval-report", help="report directory (default: eval-report)")
    p.add_argument("--frames", type=int, default=150, help="frames per scenario (default 150)")
    p.add_argument("--seed", type=int, default=0, help="seed offset of the scenario sets (default 0)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_FRAMES} frames per scenario, no heavy stand-in (tests)")
    p.add_argument("--no-baselines", action="store_true", help="pipeline only (no hand-crafted/FP32/heavy rows)")
    p.add_argument("--no-heavy", action="store_true", help="skip the heavy stand-in (d)")
    p.add_argument("--encoder", default=None, help="INT8 encoder (default: the shipped models/encoder_int8.onnx)")
    p.add_argument("--encoder-fp32", default=None, help="FP32 encoder (default: encoder_fp32.onnx next to the INT8 one)")
    p.add_argument("--config", default=None, help="Localizer YAML config")
    p.add_argument("--effects", default=None, metavar="YAML",
                   help="simulator effects over their defaults (keys of EffectsConfig: jpeg_quality, thin_cloud, cumulus, "
                        "cloud_shadow, ...), for every scenario")
    p.add_argument("--basemap", default=None, metavar="WORLD.jpg",
                   help="render the scenarios' frames from this global equirectangular image instead of the default "
                        "basemap (e.g. another month of the Blue Marble; season, winter and relief sets keep theirs)")
    p.add_argument("--cloud-field", default=None, metavar="CLOUDS.png",
                   help=real_clouds.CLI_HELP + ", over the daylight sets (the veil, cumulus and translucent-margin "
                        "sets keep the simulator's)")
    p.add_argument("--region", nargs=4, type=float, default=None, metavar=("LAT_MIN", "LAT_MAX", "LON_MIN", "LON_MAX"),
                   help="draw land frames inside this box only (for regional bundles)")
    p.add_argument("--with-time", action="store_true",
                   help="give locate each frame's UTC time, as a clock would (the contract's locate has none): a fix "
                        "in the dark is refused and retrieval keeps to lit ground (min_sun_elev_deg, daylight_search)")
    p.add_argument("--interim", action="store_true", help="label the report as measured on an interim model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..onboard.bundle import BundleError
    from ..onboard.config import ConfigError
    if args.frames < 1:
        print("earthfix eval: --frames must be >= 1", file=sys.stderr)
        return 2
    if args.effects:
        from ..sim.effects import EffectsConfig
        try:
            EffectsConfig.from_yaml(args.effects)           # refused before any work, with its reason
        except ValueError as exc:
            print(f"earthfix eval: {exc}", file=sys.stderr)
            return 2
    cloud_field = None
    if getattr(args, "cloud_field", None):
        from ..sim.real_clouds import CloudFieldError, GlobalCloudField
        try:
            cloud_field = GlobalCloudField.load(args.cloud_field)   # refused before any work, with its reason
        except CloudFieldError as exc:
            print(f"earthfix eval: {exc}", file=sys.stderr)
            return 2
    try:
        report = run_eval(args, cloud_field=cloud_field)
    except (BundleError, ConfigError, FileNotFoundError) as exc:
        print(f"earthfix eval: {exc}", file=sys.stderr)
        return 2
    o = report["overall"]
    print(json.dumps({"out": str(Path(args.out).resolve()), "recall@1": o["recall"]["@1"], "recall@10": o["recall"]["@10"],
                      "encoder_recall@1": o["recall_encoder"]["@1"], "encoder_recall@10": o["recall_encoder"]["@10"],
                      "fix_rate": o["fix_rate"], "false_fixes": report["all_including_stress"]["false_fixes"],
                      "night_ocean_false_fixes": report["night_ocean_false_fixes"]["false_fixes"],
                      "latency_p50_ms": (o["latency_ms"].get("total_ms") or {}).get("p50")}))
    return 0
