"""Calibrated confidence: P(boresight error <= 50 km | verification evidence), a logistic model.

Features (from ``Verification.evidence``): log(1 + inliers), inlier ratio, inlier spread (hull area
fraction), reprojection RMS (working px), altitude outside the plausible band (km / 100), log(1 + inlier
margin over the second-best place), off-nadir tilt (deg / 10; 0 when the attitude was given: the tilt is then
the star tracker's, not a sign of a fit bent into tilt), log of the boresight's propagated 1-sigma
uncertainty (km, clipped to 0.1..1000). The coefficients are fitted on simulated
frames by ``earthfix calibrate`` (a logistic regression over the verification outcomes, MAP around the
hand-set ``PRIOR``) and shipped in ``models/confidence.json``; a frame without a hypothesis has
confidence 0.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

FEATURES = ("log_inliers", "inlier_ratio", "spread", "reproj_rms", "alt_out_100km", "log_margin", "tilt_10deg",
            "log_bore_sigma_km")

# conservative hand-set prior: the centre of calibrate's fit, and the model when no fit is shipped
PRIOR = {"intercept": -8.0, "coef": {"log_inliers": 3.2, "inlier_ratio": 2.0, "spread": 3.0, "reproj_rms": -0.8,
                                      "alt_out_100km": -3.0, "log_margin": 0.8, "tilt_10deg": -0.5,
                                      "log_bore_sigma_km": -1.0}}


def features(ev: dict) -> np.ndarray:
    def f(key, default=0.0):
        v = ev.get(key, default)
        return default if v is None or not math.isfinite(float(v)) else float(v)
    return np.array([math.log1p(f("inliers")), f("inlier_ratio"), f("spread"), min(f("reproj_rms_work_px", 5.0), 10.0),
                     f("alt_out_of_range_km", 10.0) / 100.0, math.log1p(max(f("inlier_margin"), 0.0)),
                     0.0 if ev.get("attitude_given") else min(f("tilt_deg", 0.0), 60.0) / 10.0,
                     math.log(min(max(f("bore_sigma_km", 1000.0), 0.1), 1000.0))])


class ConfidenceModel:
    def __init__(self, intercept: float, coef: dict):
        self.intercept = float(intercept)
        self.w = np.array([float(coef.get(k, 0.0)) for k in FEATURES])

    @classmethod
    def load(cls, path=None) -> "ConfidenceModel":
        """The model in ``path`` (``earthfix calibrate``'s JSON), or the hand-set ``PRIOR`` when ``path`` is
        None. A named file that is missing, unreadable or fitted on other features is refused: a gate that
        silently fell back to another model would pass fixes nobody calibrated."""
        if path is None:
            return cls(PRIOR["intercept"], PRIOR["coef"])
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"confidence model not found: {path}")
        try:
            d = json.loads(path.read_text())
            coef = d["coef"]
            values = [float(d["intercept"])] + [float(coef[k]) for k in FEATURES]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"confidence model {path} is not a model of this build ({exc!r})") from None
        if tuple(d.get("features", FEATURES)) != FEATURES or set(coef) != set(FEATURES) \
                or not all(math.isfinite(v) for v in values):
            raise ValueError(f"confidence model {path} does not match this build's features {list(FEATURES)}")
        return cls(d["intercept"], coef)

    def __call__(self, ev: dict) -> float:
        if not ev or not ev.get("ok", False):
            return 0.0
        z = self.intercept + float(self.w @ features(ev))
        return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))
