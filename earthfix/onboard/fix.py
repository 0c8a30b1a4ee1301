"""The answer for one frame: a Fix (or an honest "no fix"), as the locate contract prints it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Candidate:
    """One retrieval hit before verification: a place and how strongly retrieval proposes it.

    Two sources: the global encoder (``source='encoder'``: a reference view's centre, ``score`` = cosine
    similarity, at most 1) and keypoint voting (``source='vote'``: the peak's centre, ``score`` = number of
    distinct frame keypoints voting for it, at least 2). Vote candidates rank first (measured: the vote's
    first place is right 2-4x as often as the encoder's), so ``score`` still decreases down the list.
    """
    lat: float
    lon: float
    score: float
    view: int = -1        # index of the reference view in the bundle (encoder candidates)
    scale: int = -1       # footprint scale index of that view (encoder candidates)
    source: str = "encoder"
    radius_km: float | None = None   # verification search radius (vote candidates carry their own)
    yaw_deg: float | None = None     # a vote peak's yaw and implied altitude: the place's own nadir pose, which
    alt_km: float | None = None      # verification starts from when the place's matches reach none
    max_sigma_km: float | None = None   # a precision gate of its own for the pose verified at it (None: the
                                        # verifier's): a vote place from split bins (config vote_split_max_sigma_km)

    def to_json(self) -> dict:
        return {"lat": round(self.lat, 4), "lon": round(self.lon, 4), "score": round(float(self.score), 4)}


@dataclass
class Fix:
    """Localization result for one frame (CONVENTIONS 'locate contract').

    ``fix`` is True only when the position is geometrically verified and trusted; every position field is
    None otherwise. ``confidence`` is the calibrated probability that the boresight point is within 50 km.
    """
    fix: bool = False
    lat: float | None = None          # boresight point, geodetic deg
    lon: float | None = None
    sub_lat: float | None = None      # sub-satellite point
    sub_lon: float | None = None
    alt_km: float | None = None
    yaw_deg: float | None = None
    confidence: float = 0.0
    candidates: list[Candidate] = field(default_factory=list)
    latency_ms: float = 0.0
    error: str | None = None
    # diagnostics, not part of the contract output
    inliers: int = 0
    stages_ms: dict = field(default_factory=dict)
    ecef_km: list | None = None       # estimated spacecraft position, when a fix
    reason: str = ""                  # why there is no fix (diagnostic)
    evidence: dict = field(default_factory=dict)   # verification evidence (diagnostic)
    encoder_candidates: list[Candidate] = field(default_factory=list)   # the encoder's own top-k (evaluation)

    def to_json(self, frame: str | None = None) -> dict:
        def r(x, nd):
            return None if x is None or not math.isfinite(x) else round(float(x), nd)
        out = {"frame": frame, "fix": bool(self.fix),
               "lat": r(self.lat, 5), "lon": r(self.lon, 5),
               "sub_lat": r(self.sub_lat, 5), "sub_lon": r(self.sub_lon, 5),
               "alt_km": r(self.alt_km, 2), "yaw_deg": r(self.yaw_deg, 2),
               "confidence": round(float(self.confidence), 4),
               "candidates": [c.to_json() for c in self.candidates],
               "latency_ms": round(float(self.latency_ms), 3)}
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def failed(cls, error: str) -> "Fix":
        return cls(fix=False, error=error)
