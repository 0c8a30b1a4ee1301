"""Evaluation metrics (CONVENTIONS.md "Metrics") on synthetic inputs, and one ``earthfix eval --quick`` run.

The quick run needs the shipped encoder (models/encoder_int8.onnx); it is skipped until that exists.
``EARTHFIX_TEST_MODELS=DIR`` points the run at another directory holding encoder_int8.onnx (and
encoder_fp32.onnx), e.g. an interim export during development.
"""
from __future__ import annotations

import json
import math
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from earthfix.onboard import geodesy
from earthfix.tools import evaluate as ev

from support import ENCODER, MODELS, TINY_REGION, needs_model


def truth_at(lat=10.0, lon=20.0, hw_km=400.0, sun=30.0, land_clear=0.5):
    return {"bore_lat": lat, "bore_lon": lon, "footprint_half_width_km": hw_km, "sun_elev_deg": sun,
            "land_clear_frac": land_clear}


def offset(lat, lon, km, az=90.0):
    a, b = geodesy.destination(lat, lon, az, km)
    return float(a), float(b)


# ---- eligibility and retrieval hits -------------------------------------------------------------

def test_eligible_needs_daylight_and_20pc_clear_land():
    assert ev.is_eligible(truth_at(sun=1.0, land_clear=0.2))
    assert not ev.is_eligible(truth_at(sun=-0.5, land_clear=0.9))       # night
    assert not ev.is_eligible(truth_at(sun=None, land_clear=0.9))       # boresight off the Earth
    assert not ev.is_eligible(truth_at(sun=40.0, land_clear=0.199))     # ocean or cloud


def test_first_hit_rank_uses_half_the_footprint_half_width():
    t = truth_at(hw_km=400.0)                                            # hit radius 200 km
    far = offset(10.0, 20.0, 900.0)
    near = offset(10.0, 20.0, 190.0)
    edge = offset(10.0, 20.0, 210.0)
    assert ev.hit_radius_km(t) == 200.0
    assert ev.first_hit_rank([far, far, near, far], t) == 3
    assert ev.first_hit_rank([far, edge], t) is None
    assert ev.first_hit_rank([], t) is None
    assert ev.first_hit_rank([near], dict(t, bore_lat=None, bore_lon=None)) is None


def test_recall_at_k_counts_eligible_frames_only():
    ranks = [1, 3, None, 7, 2, None]
    eligible = [True, True, True, True, False, False]
    assert ev.recall_at_k(ranks, eligible, 1) == pytest.approx(1 / 4)
    assert ev.recall_at_k(ranks, eligible, 5) == pytest.approx(2 / 4)
    assert ev.recall_at_k(ranks, eligible, 10) == pytest.approx(3 / 4)
    assert ev.recall_at_k(ranks, [False] * 6, 10) is None
    curve = ev.recall_curve(ranks, eligible, 10)
    assert len(curve) == 10 and all(a <= b for a, b in zip(curve, curve[1:]))


def test_fix_rate_over_eligible_frames():
    assert ev.fix_rate([True, False, True, True], [True, True, False, True]) == pytest.approx(2 / 3)
    assert ev.fix_rate([True], [False]) is None


# ---- errors and false fixes ---------------------------------------------------------------------

def test_position_error_is_great_circle_km():
    t = truth_at(0.0, 0.0)
    lat, lon = offset(0.0, 0.0, 123.0, az=33.0)
    assert ev.position_error_km(lat, lon, t) == pytest.approx(123.0, abs=0.01)
    assert ev.position_error_km(None, None, t) == math.inf
    assert ev.position_error_km(1.0, 1.0, dict(t, bore_lat=None)) == math.inf


def test_the_sub_satellite_error_is_against_the_truths_sub_satellite_point_not_the_boresight():
    t = dict(truth_at(0.0, 0.0), sub_lat=0.0, sub_lon=0.5)
    lat, lon = offset(0.0, 0.5, 7.0, az=120.0)
    assert ev.sub_error_km(lat, lon, t) == pytest.approx(7.0, abs=0.01)
    assert ev.sub_error_km(None, None, t) is None
    assert ev.sub_error_km(lat, lon, dict(t, sub_lat=None)) is None


def test_false_fix_over_all_frames_any_fix_beyond_50_km():
    fixed = [True, True, True, False, False]
    err = [10.0, 50.0, 50.1, 9999.0, None]       # a non-fix is never false, whatever its error
    n, rate = ev.false_fixes(fixed, err)
    assert n == 1 and rate == pytest.approx(1 / 5)
    # a fix with no measurable error (no truth boresight) is false
    assert ev.false_fixes([True], [None]) == (1, 1.0)
    assert ev.false_fixes([True], [math.inf]) == (1, 1.0)
    assert ev.false_fixes([], []) == (0, None)


def test_percentiles_linear_and_skip_missing():
    p = ev.percentiles([4.0, 1.0, None, 3.0, 2.0, float("nan")])
    assert p["p50"] == pytest.approx(2.5)
    assert p["p90"] == pytest.approx(3.7)
    assert p["p99"] == pytest.approx(3.97)
    v = np.arange(1, 101, dtype=float)
    assert ev.percentiles(v, (50, 99)) == {"p50": pytest.approx(50.5), "p99": pytest.approx(99.01)}
    assert ev.percentiles([], (50, 90)) == {"p50": None, "p90": None}


def test_yaw_error_wraps_and_altitude_error_is_absolute():
    assert ev.yaw_error_deg(359.0, 1.0) == pytest.approx(2.0)
    assert ev.yaw_error_deg(10.0, 190.0) == pytest.approx(180.0)
    assert ev.yaw_error_deg(90.0, 45.0) == pytest.approx(45.0)
    assert ev.yaw_error_deg(None, 45.0) is None
    assert ev.altitude_error_km(590.0, 600.0) == pytest.approx(10.0)


def test_bins_half_open_last_closed():
    edges = (0.0, 0.2, 0.5, 1.0)
    assert ev.bin_label(0.0, edges) == "0.0-0.2"
    assert ev.bin_label(0.2, edges) == "0.2-0.5"
    assert ev.bin_label(1.0, edges) == "0.5-1.0"
    assert ev.bin_label(None, edges) == "0.0-0.2"


def record(scenario="land256", eligible=True, fix=False, err=None, rank=None, top1=500.0, stress=False,
           rank_retrieval="same", **kw):
    """A per-frame record; ``rank`` is the encoder's, ``rank_retrieval`` the merged list's (default: the same)."""
    r = {"scenario": scenario, "stress": stress, "eligible": eligible, "fix": fix, "err_km": err, "rank_hnsw": rank,
         "rank_retrieval": rank if rank_retrieval == "same" else rank_retrieval,
         "top1_err_km": top1, "yaw_err_deg": 1.0 if fix else None, "alt_err_km": 5.0 if fix else None,
         "land_frac": 0.9, "cloud_frac": 0.1, "error": None,
         "stages_ms": {"preprocess_ms": 1.0, "encode_ms": 2.0, "search_ms": 0.1, "total_ms": 10.0}}
    r.update(kw)
    return r


def test_summaries_on_synthetic_records(tmp_path):
    recs = [record(fix=True, err=3.0, rank=1, top1=40.0, rank_hand=None, rank_int8_exact=1, encode_int8_ms=2.0,
                   hand_ms=1.0, exact_search_ms=0.2),
            record(fix=False, rank=4, rank_retrieval=1, top1=80.0, rank_hand=4, rank_int8_exact=4, encode_int8_ms=2.0,
                   hand_ms=1.0, exact_search_ms=0.2),
            record(scenario="ocean", eligible=False, fix=True, err=800.0, top1=800.0, land_frac=0.0, cloud_frac=0.5,
                   rank_hand=None, rank_int8_exact=None, encode_int8_ms=2.0, hand_ms=1.0, exact_search_ms=0.2),
            record(scenario="night", eligible=False, top1=3000.0, stages_ms={"total_ms": 3.0}, rank_hand=None,
                   rank_int8_exact=None, encode_int8_ms=2.0, hand_ms=1.0, exact_search_ms=0.2)]
    s = ev.summarise(recs)
    assert (s["frames"], s["eligible"], s["fixes"]) == (4, 2, 2)
    assert s["recall"] == {"@1": 1.0, "@5": 1.0, "@10": 1.0}            # vote + encoder
    assert s["recall_encoder"] == {"@1": 0.5, "@5": 1.0, "@10": 1.0}    # the encoder alone
    assert s["fix_rate"] == 0.5
    assert s["false_fixes"] == 1 and s["false_fix_rate"] == 0.25
    assert s["error_km"]["p50"] == pytest.approx(401.5)
    assert s["sub_error_km"]["p50"] is None                             # no record says it: none
    assert ev.summarise([dict(r, sub_err_km=e) for r, e in zip(recs, (2.0, None, 9.0, None))])[
        "sub_error_km"] == {"p50": 5.5, "p90": pytest.approx(8.3)}     # over the fixes
    assert s["latency_ms"]["total_ms"]["p50"] == pytest.approx(10.0)
    assert s["latency_ms"]["preprocess_ms"]["n"] == 3
    od = ev.over_deadline(recs, 5.0)                                    # three frames of 10 ms, one of 3
    assert (od["frames"], od["of"], od["share"], od["max_ms"]) == (3, 4, 0.75, 10.0)
    assert ev.over_deadline(recs, 10.0)["frames"] == 0                  # over, not at
    cut = [dict(r, looks_cut=n) for r, n in zip(recs, (0, 1, 2, None))]
    assert ev.looks_cut(cut) == {"unfixed": 1, "looks_cut": 1}         # eligible and unfixed only
    assert ev.looks_cut([dict(cut[1], looks_cut=0)]) == {"unfixed": 1, "looks_cut": 0}
    v = ev.verification_comparison(recs)
    assert v["off"]["positions"] == 4 and v["off"]["false_fixes"] == 3
    assert v["on"]["positions"] == 2 and v["on"]["false_fixes"] == 1
    rc = ev.retrieval_comparison(recs)
    assert rc["handcrafted_exact"]["recall@1"] == 0.0 and rc["handcrafted_exact"]["recall@10"] == 0.5
    assert rc["int8_hnsw"]["recall@1"] == 0.5 and rc["retrieval"]["recall@1"] == 1.0
    rows = ev.breakdown(recs, "land_frac", ev.LAND_BINS)
    assert sum(r["frames"] for r in rows) == 4 and rows[0]["frames"] == 1 and rows[-1]["eligible"] == 2
    srcs = [dict(r, source=s, look=lk) for r, s, lk in zip(recs, ("vote", None, "vote", None), ("filled", None, "filled", None))]
    srcs[1].update(fix=True, err_km=2.0, source="encoder", look="plain", stages_ms={"encoder_places_ms": 5.0, "total_ms": 40.0})
    fs = ev.fixes_by_source(srcs)
    assert fs["rows"] == [{"source": "encoder", "look": "plain", "fixes": 1, "false_fixes": 0},
                          {"source": "vote", "look": "filled", "fixes": 1, "false_fixes": 1}]
    assert (fs["encoder_places_frames"], fs["encoder_places_fixes"]) == (1, 1)
    from earthfix.tools import report_plots
    rep = {"retrieval": rc}
    paths = report_plots.make_all(rep, recs, tmp_path)
    assert all(Path(p).stat().st_size > 1000 for p in paths)


def test_misses_by_kind_of_ground_and_the_closest_looks_reason():
    """``misses``: eligible frames per kind of ground and sky (first match wins), the unfixed, those of them with a
    right place among the first 10 candidates; the unfixed by reason without its numbers."""
    def at(lat, lon, **kw):
        return record(bore_lat=lat, bore_lon=lon, **dict({"sun_elev_deg": 40.0}, **kw))
    recs = [at(-75.0, 10.0, fix=False, rank_retrieval=1, reason="robust fit failed"),       # Antarctica
            at(70.0, -40.0, fix=True, err=2.0, rank=1),                                        # Greenland
            at(-3.0, -60.0, fix=False, cloud_frac=0.8, rank_retrieval=None, reason="no candidates"),  # Amazon first
            at(40.0, 10.0, fix=False, cloud_frac=0.6, rank_retrieval=12, reason="few matches (4)"),
            at(40.0, 10.0, fix=False, sun_elev_deg=3.0, cloud_frac=0.6, rank_retrieval=None, reason=""),
            at(40.0, 10.0, fix=True, err=1.0, rank=1),
            at(40.0, 10.0, eligible=False, fix=False, reason="no candidates"),                  # not eligible
            at(40.0, 10.0, fix=False, rank_retrieval=None, reason=None, error="cannot read frame")]  # unfixed too
    assert [ev.ground_kind(r) for r in recs[:6]] == ["ice sheet", "ice sheet", "equatorial forest", "cloud > 50 %",
                                                     "sun < 5 deg", "other"]
    m = ev.misses(recs)
    rows = {x["kind"]: (x["eligible"], x["fixed"], x["unfixed"], x["right_place_in_10"]) for x in m["rows"]}
    assert rows == {"ice sheet": (2, 1, 1, 1), "equatorial forest": (1, 0, 1, 0), "sun < 5 deg": (1, 0, 1, 0),
                    "cloud > 50 %": (1, 0, 1, 0), "other": (2, 1, 1, 0)}
    assert m["reasons"] == {"confidence under the bar": 1, "error": 1, "few matches": 1, "no candidates": 1,
                            "robust fit failed": 1}
    # the same unfixed frames as the fix rate's and looks_cut's
    assert sum(x["unfixed"] for x in m["rows"]) == ev.looks_cut(recs)["unfixed"] == 5
    assert ev.reason_class("implausible tilt 59 deg") == "implausible tilt"
    assert ev.reason_class("imprecise pose (10 km 1-sigma at the boresight)") == "imprecise pose"


def test_near_wrong_counts_the_refused_wrong_poses_within_half_a_gate():
    """``near_wrong``: frames without a fix whose closest look's pose is wrong (> 50 km) and pinned within 1.5 x the
    precision gate, over all frames; inside the gate counted apart; the closest by sigma. Right poses, fixes,
    imprecise wrong poses and frames with no pose are not counted."""
    recs = [record(fix=False, hyp_err_km=59.0, bore_sigma_km=8.4, inliers=8, reason="imprecise pose (8 km ...)"),
            record(fix=False, hyp_err_km=70.0, bore_sigma_km=6.0, inliers=7, reason=""),       # p under the bar
            record(fix=False, hyp_err_km=63.0, bore_sigma_km=7.9, eligible=False, inliers=7, reason="held by one"),
            record(fix=False, hyp_err_km=60.0, bore_sigma_km=12.5, reason="imprecise pose"),  # beyond 1.5 gates
            record(fix=False, hyp_err_km=20.0, bore_sigma_km=9.0, reason="imprecise pose"),   # a right pose
            record(fix=False, hyp_err_km=None, bore_sigma_km=None, reason="no candidates"),   # no pose
            record(fix=True, err=2.0, hyp_err_km=2.0, bore_sigma_km=1.0)]
    n = ev.near_wrong(recs, 8.0)
    assert (n["frames"], n["inside_gate"]) == (3, 2)
    assert n["closest"]["bore_sigma_km"] == 6.0 and n["closest"]["hyp_err_km"] == 70.0
    assert ev.near_wrong(recs, 8.0, gates=1.0)["frames"] == 2
    assert ev.near_wrong(recs[4:], 8.0) == {"gate_km": 8.0, "gates": 1.5, "frames": 0, "inside_gate": 0,
                                            "closest": None}


def test_exact_topk_best_first():
    refs = np.eye(5, dtype=np.float32)
    q = np.array([0.1, 0.9, 0.0, 0.5, 0.2], np.float32)
    assert ev.exact_topk(refs, q, 3).tolist() == [1, 3, 4]
    assert ev.exact_topk(refs, q, 10).tolist() == [1, 3, 4, 0, 2]


def test_eval_seeds_disjoint_from_calibration():
    from earthfix.tools.calibrate import CALIB_SEED
    seeds = {ev.scenario_seed(s, k) for s in range(5) for k in range(len(ev.SCENARIOS))}
    assert not seeds & set(range(CALIB_SEED, CALIB_SEED + 100))
    assert len(seeds) == 5 * len(ev.SCENARIOS)


# ---- one quick end-to-end run -------------------------------------------------------------------

@needs_model
def test_quick_eval_run_on_tiny_regional_bundle(tmp_path):
    from earthfix.tools.build_index import build_bundle
    enc = ENCODER
    bundle = build_bundle(tmp_path / "bundle", encoder_path=enc, region=TINY_REGION, progress=False, threads=1,
                          log=lambda s: None)
    cfg = tmp_path / "localizer.yaml"
    cfg.write_text(f"encoder: {enc}\nconfidence: {{path: {MODELS / 'confidence.json'}}}\n")
    out = tmp_path / "report"
    eff = tmp_path / "effects.yaml"
    eff.write_text("jpeg_quality: 80\nthin_cloud: 0.1\n")
    args = Namespace(bundle=str(bundle), out=str(out), frames=150, seed=0, quick=True, no_baselines=False,
                     no_heavy=False, encoder=None, encoder_fp32=None, config=str(cfg), region=list(TINY_REGION),
                     interim=False, quiet=True, effects=str(eff))
    rep = ev.run_eval(args, log=lambda s: None)
    assert rep["effects"] == {"jpeg_quality": 80, "thin_cloud": 0.1}      # what differs from the defaults
    assert "--effects" in rep["command"]
    n = ev.QUICK_FRAMES
    assert rep["frames_per_scenario"] == n
    assert rep["all_including_stress"]["frames"] == n * len(ev.SCENARIOS)
    assert set(rep["scenarios"]) == {s.name for s in ev.SCENARIOS}
    assert rep["night_ocean_false_fixes"]["false_fixes"] == 0
    assert rep["night_ocean_false_fixes"]["frames"] == 3 * n          # night, ocean and the sea floor
    assert "skipped" in rep["heavy"]
    assert rep["retrieval"]["int8_hnsw"]["recall@10"] is not None
    if (MODELS / "encoder_fp32.onnx").is_file():
        assert "fp32_exact" in rep["retrieval"]
    for f in ("report.md", "report.json", "frames.jsonl", "recall_at_k.png", "error_cdf.png", "latency.png"):
        assert (out / f).is_file(), f
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) == n * len(ev.SCENARIOS)
    assert all(json.loads(ln)["stages_ms"].get("total_ms", 0) > 0 for ln in lines if not json.loads(ln)["error"])
    md = (out / "report.md").read_text()
    assert "earthfix eval --bundle" in md and "--quick" in md and "onnxruntime" in md
    assert "Simulator effects changed from their defaults" in md and "jpeg_quality" in md
    od = rep["over_deadline"]["all_including_stress"]
    assert od["deadline_ms"] == 60.0 and od["of"] == n * len(ev.SCENARIOS) and 0 <= od["frames"] <= od["of"]
    assert f"Frames over the 60 ms deadline (config `deadline_ms`): {rep['over_deadline']['overall']['frames']} of" in md
    fs = rep["fixes_by_source"]["all_including_stress"]
    fixed = [json.loads(ln) for ln in lines if json.loads(ln)["fix"]]
    assert sum(x["fixes"] + x["false_fixes"] for x in fs["rows"]) == len(fixed)
    assert all(x["source"] in ("vote", "encoder", "wide") for x in fixed)
    # every fix carries its pose's evidence (a false fix is studied from the record alone)
    assert all(set(x["pose"]) == set(ev.POSE_EVIDENCE) and 0 < x["pose"]["spread"] <= 1 for x in fixed)
    assert all(x["pose"] is None for x in (json.loads(ln) for ln in lines) if x["look"] is None)
    assert "## Where the fixes come from" in md
    lc = rep["looks_cut"]["all_including_stress"]
    unfixed = [json.loads(ln) for ln in lines if json.loads(ln)["eligible"] and not json.loads(ln)["fix"]]
    assert lc["unfixed"] == len(unfixed) and 0 <= lc["looks_cut"] <= lc["unfixed"]
    assert all(isinstance(x["looks_cut"], int) for x in unfixed if x["look"] is not None)   # every verified frame
    assert f"Eligible frames left unfixed: {rep['looks_cut']['overall']['unfixed']} overall" in md
    ms = rep["misses"]["all_including_stress"]
    assert sum(x["unfixed"] for x in ms["rows"]) == len(unfixed) == sum(ms["reasons"].values())
    assert "## Where the misses are (overall sets)" in md
    assert json.loads((out / "report.json").read_text())["command"] == rep["command"]
    # the reference descriptors are cached: a second run does not re-render
    assert any((out / "cache").glob("hand_*.npy"))


def test_confidence_fit_stays_at_the_prior_without_data_and_learns_with_it():
    from earthfix.onboard import confidence as conf
    from earthfix.tools.calibrate import fit_logistic
    w0 = np.r_[conf.PRIOR["intercept"], [conf.PRIOR["coef"][k] for k in conf.FEATURES]]
    b, w = fit_logistic(np.zeros((0, len(conf.FEATURES))), np.zeros(0), w0)
    assert np.allclose(np.r_[b, w], w0)
    # one informative feature, 4000 labelled draws: the fit finds its weight whatever the prior says
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 1))
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-(0.5 + 3.0 * x[:, 0])))).astype(float)
    b, w = fit_logistic(x, y, np.array([0.0, -1.0]))
    assert abs(w[0] - 3.0) < 0.4 and abs(b - 0.5) < 0.3


def test_calibration_on_other_imagery_adds_its_sets_and_refuses_a_bad_map_before_the_first_frame(tmp_path):
    """``earthfix calibrate --basemap``: each map adds land sets at both cameras and a cloudy one rendered from
    it; a map that cannot be read stops the run before any frame is located, not after the default sets."""
    import pytest
    from earthfix.sim.basemap import BasemapError
    from earthfix.tools.calibrate import calibration_sets, collect
    base = calibration_sets()
    sets = calibration_sets(("maps/july.jpg",))
    assert sets[:len(base)] == base
    added = sets[len(base):]
    assert [(s[0], s[1].width, s[2]) for s in added] == [("july256", 256, "maps/july.jpg"),
                                                          ("july512", 512, "maps/july.jpg"),
                                                          ("julycloudy", 256, "maps/july.jpg")]
    assert added[2][3].cloud_cover == 0.7 and added[0][3].kind == "land"

    class NoLocate:
        def locate(self, *a, **k):
            raise AssertionError("a frame was located before the maps were read")
    with pytest.raises(BasemapError, match="cannot read basemap"):
        collect(NoLocate(), 10, progress=False, basemaps=(str(tmp_path / "missing.jpg"),))


def test_the_calibration_record_shows_how_far_the_flying_poses_errors_reach():
    """``calibrate``'s record of the poses that would fly: their errors by distance (the tail beyond 50 km is
    the false fixes) and, by inlier count, the error over the pose's own sigma."""
    from earthfix.tools.calibrate import flying_errors
    err = np.array([1.0, 2.0, 4.0, 12.0, 71.0, 3.0, 1.0])
    sig = np.array([1.0, 1.0, 2.0, 6.0, 7.0, 1.0, 0.5])
    inl = np.array([6.0, 7.0, 9.0, 9.0, 6.0, 30.0, 40.0])
    f = flying_errors(err, sig, inl)
    assert f["poses"] == 7
    assert {b["err_lo_km"]: b["n"] for b in f["by_error"]} == {0.0: 5, 5.0: 0, 10.0: 1, 20.0: 0, 30.0: 0, 40.0: 0,
                                                               50.0: 0, 60.0: 1, 80.0: 0, 100.0: 0}
    rows = {r["inliers_lo"]: r for r in f["by_inliers"]}
    assert set(rows) == {0, 8, 20}                         # empty bins are left out
    assert rows[0]["n"] == 3 and rows[0]["over_50km"] == 1 and rows[0]["err_over_sigma_max"] == 10.1
    assert rows[8]["n"] == 2 and rows[8]["over_20km"] == 0 and rows[8]["err_over_sigma_p50"] == 2.0
    assert rows[20]["inliers_hi"] is None and rows[20]["err_over_sigma_max"] == 3.0


def test_confidence_falls_as_the_boresight_uncertainty_grows():
    from earthfix.onboard.confidence import ConfidenceModel
    m = ConfidenceModel.load(MODELS / "confidence.json")
    ev = {"ok": True, "inliers": 12, "inlier_ratio": 0.4, "spread": 0.1, "reproj_rms_work_px": 1.0,
          "alt_out_of_range_km": 0.0, "inlier_margin": 8, "tilt_deg": 3.0}
    assert m(dict(ev, bore_sigma_km=1.0)) > m(dict(ev, bore_sigma_km=30.0))


def test_winter_stress_set_snows_the_north_and_leaves_the_south(basemap):
    """``stress_winter``'s basemap: land north of the snowline (>= 52 deg N) turns bright and grey, land south
    of 38 deg N is the default basemap's; its frames are drawn at or north of 38 deg N."""
    from earthfix.tools.framesets import shifted_basemap
    w = shifted_basemap("winter")
    h = w.image.shape[0]
    row = lambda lat: int((90.0 - lat) / 180.0 * h)                          # noqa: E731
    north = w.land[row(70):row(55)] > 0.99
    south = slice(row(30), row(-60))
    grey_w = w.image[row(70):row(55)].astype(float).mean(axis=2)[north]
    grey_d = basemap.image[row(70):row(55)].astype(float).mean(axis=2)[north]
    assert grey_w.mean() > grey_d.mean() + 60                                # snow is brighter than summer land
    sat = np.ptp(w.image[row(70):row(55)].astype(float), axis=2)[north]
    assert np.median(sat) < 20                                               # and nearly colourless
    assert np.array_equal(w.image[south], basemap.image[south])
    sdef = next(s for s in ev.SCENARIOS if s.name == "stress_winter")
    assert sdef.stress and sdef.basemap == "winter"
    _, frames = ev.scenario_frames(sdef, 5, 123)
    assert all(t["bore_lat"] >= sdef.min_lat_deg - 1.0 for _, t in frames)   # boresight within a tilt of it


def test_panchromatic_stress_set_is_grey_land():
    sdef = next(s for s in ev.SCENARIOS if s.name == "stress_pan")
    assert sdef.stress and sdef.panchromatic and sdef.kind == "land"
    _, frames = ev.scenario_frames(sdef, 3, 321)
    for img, truth in frames:
        assert img.ndim == 3 and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
        assert truth["land_frac"] > 0


def test_thin_cloud_stress_set_veils_land256_kind_of_frames():
    import dataclasses
    sdef = next(s for s in ev.SCENARIOS if s.name == "stress_thin")
    assert sdef.stress and sdef.kind == "land" and 0 < sdef.thin_cloud <= 0.5
    _, veiled = ev.scenario_frames(sdef, 3, 321)
    _, plain = ev.scenario_frames(dataclasses.replace(sdef, thin_cloud=0.0), 3, 321)
    brighter = 0
    for (a, ta), (b, tb) in zip(veiled, plain, strict=True):
        assert ta == tb                                   # same places, times, cameras and eligibility
        brighter += a.astype(float).mean() > b.astype(float).mean() + 1.0
    assert brighter >= 1


def test_dawn_stress_set_is_land256_under_a_lower_sun():
    import dataclasses
    sdef = next(s for s in ev.SCENARIOS if s.name == "stress_dawn")
    land256 = next(s for s in ev.SCENARIOS if s.name == "land256")
    assert sdef.stress and (sdef.width, sdef.fov_deg) == (land256.width, land256.fov_deg) and sdef.day_hours[1] <= 8.0
    _, dawn = ev.scenario_frames(sdef, 4, 321)
    _, noon = ev.scenario_frames(dataclasses.replace(sdef, day_hours=land256.day_hours), 4, 321)
    for (_, ta), (_, tb) in zip(dawn, noon, strict=True):
        assert ta["bore_lat"] == tb["bore_lat"]                  # same places, an earlier hour
        assert ta["sun_elev_deg"] < tb["sun_elev_deg"]


def test_seafloor_stress_set_is_open_ocean_with_the_sea_floors_shading_and_counts_as_no_fix_expected():
    import dataclasses

    import cv2
    sdef = next(s for s in ev.SCENARIOS if s.name == "stress_seafloor")
    assert sdef.stress and sdef.kind == "ocean" and sdef.daylight
    _, shaded = ev.scenario_frames(sdef, 4, 321)
    _, flat = ev.scenario_frames(dataclasses.replace(sdef, basemap=None), 4, 321)
    textured = 0
    for (a, ta), (b, tb) in zip(shaded, flat, strict=True):
        assert ta["bore_lat"] == tb["bore_lat"] and not ta["eligible"]        # same places; no land to fix on
        textured += cv2.Laplacian(a, cv2.CV_32F).std() > cv2.Laplacian(b, cv2.CV_32F).std()
    assert textured >= 3


def test_translucent_stress_set_widens_the_cloud_margins_of_land512_kind_of_frames():
    import dataclasses
    sdef = next(s for s in ev.SCENARIOS if s.name == "stress_translucent")
    land512 = next(s for s in ev.SCENARIOS if s.name == "land512")
    assert sdef.stress and (sdef.width, sdef.fov_deg) == (land512.width, land512.fov_deg) and sdef.cloud_edge > 0.8
    _, soft = ev.scenario_frames(sdef, 4, 321)
    _, crisp = ev.scenario_frames(dataclasses.replace(sdef, cloud_edge=0.0), 4, 321)
    changed = 0
    for (a, ta), (b, tb) in zip(soft, crisp, strict=True):
        assert ta == tb                          # same places, times, cloud fraction and eligibility
        changed += not np.array_equal(a, b)
    assert changed >= 1


def test_cumulus_stress_set_lays_cells_over_land512_kind_of_frames():
    import dataclasses
    sdef = next(s for s in ev.SCENARIOS if s.name == "stress_cumulus")
    land512 = next(s for s in ev.SCENARIOS if s.name == "land512")
    assert sdef.stress and (sdef.width, sdef.fov_deg) == (land512.width, land512.fov_deg) and 0 < sdef.cumulus <= 0.6
    _, cells = ev.scenario_frames(sdef, 4, 321)
    _, plain = ev.scenario_frames(dataclasses.replace(sdef, cumulus=0.0), 4, 321)
    brighter = 0
    for (a, ta), (b, tb) in zip(cells, plain, strict=True):
        assert ta["bore_lat"] == tb["bore_lat"] and ta["time"] == tb["time"]     # same places and times
        assert ta["land_clear_frac"] <= tb["land_clear_frac"]                   # cells count as cloud
        brighter += a.astype(float).mean() > b.astype(float).mean() + 1.0
    assert brighter >= 1


def test_sensor_stress_set_is_land256_kind_of_frames_through_another_cameras_sensor():
    """``stress_sensor``: the same places and truth as without its sensor, the frames darker (a steeper tone
    curve) and softer (a wider PSF), and the sensor laid over a run's own ``--effects`` (here: clouds off)."""
    import dataclasses

    import cv2

    from earthfix.sim.effects import EffectsConfig
    sdef = next(s for s in ev.SCENARIOS if s.name == "stress_sensor")
    land256 = next(s for s in ev.SCENARIOS if s.name == "land256")
    assert sdef.stress and (sdef.width, sdef.fov_deg, sdef.basemap) == (land256.width, land256.fov_deg, None)
    assert dict(sdef.sensor)["tone_gamma"] > 1.0 and dict(sdef.sensor)["blur_sigma"] > 1.0
    _, other = ev.scenario_frames(sdef, 4, 321)
    _, own = ev.scenario_frames(dataclasses.replace(sdef, sensor=()), 4, 321)
    darker = softer = 0
    for (a, ta), (b, tb) in zip(other, own, strict=True):
        assert ta == tb                          # the sensor changes the pixels, not the scene
        darker += a.astype(float).mean() < b.astype(float).mean() - 5.0
        softer += (cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.CV_32F).std()
                   < cv2.Laplacian(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY), cv2.CV_32F).std())
    assert darker >= 3 and softer >= 3
    _, clear = ev.scenario_frames(sdef, 2, 321, effects=EffectsConfig.from_dict({"clouds": False}))
    assert all(t["cloud_frac"] == 0.0 for _, t in clear)
    # the same sensor as a file for sim / eval / bench --effects
    import yaml
    from support import REPO
    shipped = REPO / "configs" / "effects" / "other_sensor.yaml"
    assert yaml.safe_load(shipped.read_text()) == dict(sdef.sensor)


def test_eval_refuses_a_bad_effects_file_before_any_work(tmp_path, capsys):
    bad = tmp_path / "effects.yaml"
    bad.write_text("thin_cloud: 0.9\n")
    args = Namespace(frames=10, effects=str(bad))        # nothing else is needed: refused first
    assert ev.run(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "thin_cloud" in err and err.startswith("earthfix eval:")
    args = Namespace(frames=10, effects=str(tmp_path / "missing.yaml"))
    assert ev.run(args) == 2
    assert "cannot read effects file" in capsys.readouterr().err


def test_another_basemap_replaces_the_default_for_the_default_sets_only():
    """``--basemap``: the sets rendered from the default basemap are rendered from the given image (here the
    default with its red and blue bands swapped); a set with a basemap of its own (season) keeps it."""
    from earthfix.sim.basemap import Basemap
    d = Basemap.default()
    other = Basemap(d.image[..., ::-1].copy(), d.land, source="swapped")
    land256 = next(s for s in ev.SCENARIOS if s.name == "land256")
    season = next(s for s in ev.SCENARIOS if s.name == "season256")
    _, mine = ev.scenario_frames(land256, 3, 321, basemap=other)
    _, default = ev.scenario_frames(land256, 3, 321)
    changed = 0
    for (a, ta), (b, tb) in zip(mine, default, strict=True):
        assert ta["bore_lat"] == tb["bore_lat"] and ta["land_frac"] == tb["land_frac"]   # same places and mask
        changed += not np.array_equal(a, b)
    assert changed >= 1
    _, kept = ev.scenario_frames(season, 2, 321, basemap=other)
    _, own = ev.scenario_frames(season, 2, 321)
    for (a, _), (b, _) in zip(kept, own, strict=True):
        assert np.array_equal(a, b)


def test_the_machine_table_names_the_cpus_vector_extensions():
    """Two machines both named "AMD EPYC" ran the flight code 2.5x apart, the slower with AVX2 alone: the report
    says which extensions the CPU has (x86 flags or ARM features)."""
    from earthfix.tools.evaluate import cpu_features, machine_info
    assert cpu_features("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n") == "avx2"
    assert cpu_features("flags : avx2 avx512f avx512bw avx512_vnni amx_int8\n") == "avx2 avx512f avx512_vnni amx_int8"
    assert cpu_features("Features\t: fp asimd evtstrm asimddp\n") == "asimd asimddp"
    assert cpu_features("flags : fpu sse2\n") == "none" and cpu_features("") == "unknown"
    assert "cpu_features" in machine_info()
    assert ev.machine_table({"cpu_model": "AMD EPYC", "cpu_features": "avx2"})[2:] == [
        "| cpu_model | AMD EPYC |", "| cpu_features | avx2 |"]
