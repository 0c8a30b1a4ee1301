"""Geometric verification: from retrieval candidates to a camera pose, or to an honest "nothing".

For each candidate place (merged with its neighbours so one fetch serves several), the keypoints of the
store (``keystore``) within a radius are matched to the frame's features (``features``); matches are
filtered by orientation consistency (every true match implies the same yaw), outliers are rejected with a
robust homography between frame pixels and the keypoints' gnomonic-plane coordinates (km, about the
candidate centre), and the full camera pose is then fitted with the exact pinhole model (PnP on the
inliers, ground points on the WGS84 ellipsoid in a local ENU frame, km), re-collecting inliers by
reprojection. With a known attitude (camera -> ECEF quaternion) only the position is fitted (linear least
squares on the bearing rays, then the same re-collection).

Conventions (CONVENTIONS.md): geodetic degrees, ECEF km, attitude camera -> ECEF with OpenCV camera axes
(+x right, +y down, +z boresight); ``yaw_deg`` is the azimuth of the image's up direction at the boresight
ground point; the boresight point is where the ray through the image centre (``Camera.centre_ray``: the
optical axis unless cx, cy are off centre) meets the ellipsoid, and the tilt is that ray's off-nadir angle; the
sub-satellite point is the geodetic lat/lon of the estimated position (or, when configured and no
attitude is given, the boresight point: the nadir assumption).

Pixel thresholds are given in *working* pixels (the feature extractor's resolution) and converted to the
frame's pixels, so one configuration serves 256 and 1024 px frames alike.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import numpy.random  # noqa: F401  numpy imports it on first use (similarity_consensus): ~10 ms of a first frame

from . import geodesy
from .camera import Camera, nadir_attitude, yaw_of_attitude
from .features import FeatureConfig, Features, extract_features, work_scale
from .keystore import KeypointStore


@dataclass(frozen=True)
class VerifyConfig:
    feature: FeatureConfig = FeatureConfig()
    nominal_alt_km: float = 600.0       # for default search radii when a candidate gives none
    radius_factor: float = 1.6          # search radius = factor x footprint half-width (covers the frame's
                                        # corners and a candidate up to ~half a footprint off)
    merge_factor: float = 0.5           # a candidate closer than factor x radius to an earlier one is searched
                                        # with it, within the earlier one's circle
    max_radius_km: float = 2500.0
    max_store_kp: int = 6000            # cap on store keypoints per group (thinned evenly; bounds the time)
    ratio: float = 0.9                  # Lowe ratio (on L2 distances)
    mutual: bool = False                # also require the store keypoint's best frame match to be this one
    orient_tol_deg: float = 30.0        # keep matches whose implied yaw is within this of the vote's mode
    orient_filter: bool = True
    fit: str = "homography"            # "homography" (on the gnomonic plane) or "pnp" (AP3P RANSAC)
    homography_method: int = cv2.RANSAC # cv2.USAC_MAGSAC measured unreliable here (OpenCV 5.0: it
                                        # returned 6 inliers of 186 true ones); plain RANSAC + LM is not
    sim_prefilter_work_px: float = 8.0  # similarity-consensus threshold before RANSAC (0: off), working px;
                                        # loose because a similarity ignores perspective (few px at edges)
    sim_max_pairs: int = 600            # 2-point hypotheses (all pairs when fewer): at a 30 % inlier ratio
                                        # 600 random pairs hold ~54 all-inlier ones
    ransac_thresh_work_px: float = 2.5  # robust-fit inlier threshold, working pixels
    ransac_iters: int = 1000
    ransac_conf: float = 0.999
    reproj_thresh_work_px: float = 2.0  # inlier threshold of the final pose, working pixels
    refine_rounds: int = 2
    min_matches: int = 8
    min_inliers: int = 6                # fewer: no hypothesis (10 until 2026-11-22). What keeps few-inlier
                                        # fixes honest is max_bore_sigma_km and the confidence: wrong places
                                        # that reached a pose at all were refused by the former
    alt_range_km: tuple = (150.0, 3000.0)   # poses outside are rejected outright
    alt_plausible_km: tuple = (300.0, 2000.0)   # altitudes a pose is expected at (low Earth orbit up to 2,000 km):
                                        # outside, the confidence counts against it (-3.1 logit per 100 km). 1,000
                                        # until session 68: right poses of 1,300-2,000 km frames were refused by it
                                        # alone (5.6 % of 256 px frames fixed, 68.5 % with 2,000), and no pose of
                                        # the 400-800 km frames ever came out above 1,000 km (docs/VERIFICATION.md,
                                        # "Higher orbits")
    max_tilt_deg: float = 30.0          # boresight off-nadir angle beyond which a pose is rejected (45 until
                                        # session 26: a pose fitted at 39 deg, true 4, 55 km off at p 0.98
                                        # passed; frames 0-30 deg off nadir fixed as before. Without an
                                        # attitude only: with one, the tilt is the star tracker's, not a bent
                                        # fit's (session 68). docs/VERIFICATION.md, "A learned local descriptor")
    max_prior_alt_log: float = 0.3      # a pose at a place that came with its own pose (a vote peak: the
                                        # altitude its keypoints' scale implies) is rejected when its altitude
                                        # differs from that by more than this in |ln(ratio)| (0.3: x1.35): two
                                        # estimates of one scale that disagree so far mean a bent fit (session
                                        # 66: a 76 km false fix at 332 km for the vote's 474, true 459; right
                                        # poses' disagreement p99 18 %). 0: off
    prior_alt_below_inliers: int = 13   # ...for poses of fewer inliers than this: a bent fit is a few-match one
                                        # (error over sigma up to 14 below 13 inliers, <= 7 above), while a
                                        # two-vote place's altitude can be far off a well-held pose's (two right
                                        # fixes of 15 and 21 inliers refused without this bound)
    max_bore_sigma_km: float = 8.0      # poses whose boresight is pinned worse than this (1 sigma, propagated
                                        # from the reprojection noise) are rejected: every wrong hypothesis in
                                        # 3,848 calibration ones had 13-110 km, a wrong place 11 km
                                        # (docs/VERIFICATION.md)
    tilt_prior_deg: float = 0.0         # without attitude: Gaussian prior on the off-nadir angle (0: off).
                                        # Tried at 3 and 5 deg against the few-inlier outliers (33-39 km at
                                        # 11 inliers): no gain (their error is scale, not tilt), +1.4 ms
    prior_sigma_work_px: float = 1.0    # image noise assumed against that prior, working pixels
    lever_points: int = 3               # a pose that passes every other check is refitted without each of this
                                        # many inliers farthest from the others (0: off); it is refused when,
                                        # without one of them, the boresight moves more than max_bore_sigma_km
    lever_chi2: float = 30.0            # and that match misses the others' pose by more than the RANSAC
                                        # threshold and by more than this squared Mahalanobis distance (the
                                        # others' pose uncertainty propagated to it, plus pixel noise): one wrong
                                        # far match can hold a pose whose other inliers bunch in a corner
                                        # (found: 55 km off at p 0.996, session 20)
    max_lever_km: float = 50.0          # ...and refused whatever that match's fit when, without one of them, the
                                        # boresight moves more than this (the 50 km a fix is right within): a
                                        # right pose moved at most 29 km in 847 (scan of session 29); one pose
                                        # of 7 bunched inliers (spread 0.05) 57 km off at p 0.988 moved 124 km
    lever_group_work_px: float = 8.0    # each far inlier's group (the inliers this close to it, up to a third of
                                        # them) is also left out together, refused by the chi2 test above (not by
                                        # max_lever_km) when the others' pose misses every one of them: two
                                        # neighbouring matches of one wrong feature held a pose 53.6 km off at p
                                        # 0.997 where leaving either out moved it 4 km (session 58; 0: off)
    noise_floor_work_px: float = 0.3    # floor on the reprojection noise propagated to the boresight's
                                        # uncertainty (a near-exact fit of few points is not near-exact truth)
    sub_from: str = "pose"              # "pose" (geodetic of the fitted position) or "nadir" (= boresight)
    nadir_prior_deg: float = 2.0        # > 0, without attitude and sub_from "pose": the fitted position's offset
                                        # from above the boresight is shrunk toward nadir by its own uncertainty
                                        # (the pose's covariance) against a prior of this 1-sigma off-nadir angle
                                        # per axis: a loose tilt (a coarse map's few inliers) is not taken at its
                                        # word, a well-pinned one is kept (0: off). 2 deg: the per-axis spread of
                                        # the 0-5 deg the contract tolerates; only the sub-satellite point and the
                                        # reported position move (docs/VERIFICATION.md, "The sub-satellite point:
                                        # the pose's tilt against nadir")
    nadir_prior_wide_share: float = 0.0  # > 0: that share of the prior is a wider Gaussian (nadir_prior_wide_deg),
    nadir_prior_wide_deg: float = 15.0  # so that a tilt the pose pins well beyond the narrow prior is drawn little:
                                        # for a bus that may point 5-15 deg off nadir unannounced (outside the
                                        # contract's few degrees). 0.1 / 15 deg there: sub-satellite RMS 32 -> 28 km
                                        # at 10-15 deg (the pose's 22), but on a coarse map's 0-5 deg frames 28.7
                                        # -> 36.2 km (the pose's 49.4) (docs/VERIFICATION.md, "The sub-satellite
                                        # point: the pose's tilt against nadir"). 0: one Gaussian
    early_inliers: int = 20             # stop when a hypothesis has this many inliers... (40 until session 30:
                                        # a pose of 20-39 well-spread inliers then had every later place verified
                                        # too, 5-15 ms, and no later place ever outranked it; the same fixes at
                                        # seeds 0 and 7, docs/VERIFICATION.md)
    early_spread: float = 0.15          # ...covering at least this fraction of the image (hull area)...
    early_rms_work_px: float = 1.5      # ...with at most this reprojection RMS
    guided_work_px: float = 6.0         # > 0: a plausible pose (altitude, tilt) that was refused, or is pinned
                                        # worse than guided_above_sigma_km, but within guided_max_sigma_km, is
                                        # matched again: each frame keypoint against the store keypoints that pose
                                        # puts within this many working px of it (the ratio test among those, not
                                        # among the place's thousands), then fitted anew with every check
    guided_above_sigma_km: float = 8.0  # (max_bore_sigma_km's flight value: calibration opens that gate, not this)
    guided_max_sigma_km: float = 60.0   # (30: 3 stress frames fewer at seed 7; wrong first poses reach 110 km)
    guided_max_lever_km: float = 50.0   # a first pose whose boresight one match moves more than this (its
                                        # lever_km: refused as resting on one match) is not matched again (inf:
                                        # off): such a pose can be far off, and the guided pass then gathers
                                        # matches that fit wherever it points (a pose 63 km off at p 0.999 from a
                                        # first pose 124 km lever, session 50); the release frames' fixes were
                                        # the same without those seeds (docs/VERIFICATION.md)
    guided_tilt_prior_deg: float = 5.0  # the guided refit's prior on the off-nadir angle (without attitude; 0: off):
                                        # the keypoints a first pose could pin are often bunched, and a bunch
                                        # trades tilt for altitude (a pose 60 km off, 405 km for 546, 8.7 deg)
    guided_max_tilt_deg: float = 10.0   # a guided pose beyond this off-nadir angle is refused (without attitude):
                                        # the looser first pose lets the refit bend into tilt. The wrong guided
                                        # poses of 6,000 calibration and check frames had 12-19 deg, the right
                                        # ones 1-7 with 5 exceptions of 47 (docs/VERIFICATION.md)
    prior_work_px: float = 12.0         # > 0: a place that carries its own pose prior (a vote place: centre, yaw,
                                        # implied altitude) and whose matches reach no pose is matched as the guided
                                        # pass does, from a nadir pose at that prior, within this many working px
                                        # (the prior's yaw and scale are ~10 deg and ~20 % off: ~12 px at the frame's
                                        # edge), then guided from that fit as above (docs/VERIFICATION.md, "A vote
                                        # place's own pose as the first pose"; 0: off)
    prior_max_sigma_km: float = 7.0     # a pose matched from a place's prior (``from_prior``) is a fix only when its
                                        # boresight is pinned this well: its matches were sought where the prior put
                                        # them. Session 71: a false fix at 7.7 km (52.5 km off, the winter map); of
                                        # ~2,300 right fixes on five maps deadline-free 2 lost (22 and 10 km off).
                                        # 1e9: off (docs/VERIFICATION.md, "Places split across the vote's bins")
    guided_budget_ms: float = 20.0      # the guided pass (its first round) starts only with this long left before the
                                        # deadline (a round took 9 ms p50, 12.5 max at one thread, session 34);
                                        # 0: no check. Without it one place ran 60 ms past a look's admission
    guided_round_admission: bool = True # a round after the pass's first starts only when the longest round so far
                                        # still ends before the deadline (False: every round runs, as before session
                                        # 72: the later rounds ran frames 6-20 ms past their deadline on other imagery)
    own_fits_first: bool = True         # a search fits every place on its own matches first and makes the guided
                                        # passes (the rescues: from a refused first pose or a vote place's prior,
                                        # 8-50 ms a place) after them, in rank order: a right place further down
                                        # that its own matches fix clearly (>= early_inliers) is no longer kept
                                        # waiting behind a wrong place's rescue. The answer is the one place-by-place
                                        # search's (the same results, best of all) unless a clear pose ends it
                                        # sooner; False: each place with its rescue, in turn, as before session 84
                                        # (docs/VERIFICATION.md, "Every place's own fit before any rescue")
    fill_max_work_px: float = 0.0       # > 0: longest working side of a cloud-filled look (cloud_fill_config;
                                        # 0: no cap). The store's sample puts a wide camera's filled look near
                                        # full size (256 px at 100 deg: 238 px, SIFT ~14 ms against ~9 at 168):
                                        # 168 saves ~5 ms p50 there for the same fix rate on this machine, more
                                        # fixes when time is shorter, fewer when it is not (docs/BENCHMARKS.md)
    fill_contrast_threshold: float = 0.01  # SIFT contrast threshold of a cloud-filled look (0: the plain look's,
                                        # feature.contrast_threshold, 0.02): the ground between broken cloud is
                                        # hazy and flat beside the store's map, and half the threshold keeps its
                                        # fainter blobs; on the plain look they would only add cloud texture
                                        # (docs/VERIFICATION.md, "A lower contrast threshold for the filled look")

    def __post_init__(self):
        # from YAML: the feature configuration arrives as a mapping, ranges as lists
        if isinstance(self.feature, dict):
            object.__setattr__(self, "feature", FeatureConfig.from_dict(self.feature))
        for k in ("alt_range_km", "alt_plausible_km"):
            object.__setattr__(self, k, tuple(getattr(self, k)))
        if self.fit not in ("homography", "pnp"):
            raise ValueError(f"verify: 'fit' must be 'homography' or 'pnp', got {self.fit!r}")
        if self.sub_from not in ("pose", "nadir"):
            raise ValueError(f"verify: 'sub_from' must be 'pose' or 'nadir', got {self.sub_from!r}")
        if not 0.0 <= self.nadir_prior_deg < 90.0 or not 0.0 <= self.nadir_prior_wide_deg < 90.0:
            raise ValueError(f"verify: 'nadir_prior_deg' and 'nadir_prior_wide_deg' must be in [0, 90) deg, got "
                             f"{self.nadir_prior_deg!r}, {self.nadir_prior_wide_deg!r}")
        if not 0.0 <= self.nadir_prior_wide_share < 1.0:
            raise ValueError(f"verify: 'nadir_prior_wide_share' must be in [0, 1), got {self.nadir_prior_wide_share!r}")


def native_km_per_px(cfg: VerifyConfig, camera: Camera) -> float:
    """Ground size of one of ``camera``'s pixels at the nominal altitude (km), along its longer side."""
    return 2.0 * camera.footprint_half_width_km(cfg.nominal_alt_km) / max(camera.width, camera.height)


def cloud_fill_config(cfg: VerifyConfig, camera: Camera, store_gsd_km: float = 6.0) -> VerifyConfig:
    """``cfg`` for a cloud-filled look (``features.fill_clouds``) with ``camera``: features at the keypoint
    store's ground sample (``store_gsd_km`` per working pixel at the nominal altitude), but never coarser
    than the plain look nor finer than the frame. For 256 px at 80 deg that is 168 working px (6.0 km)
    instead of 128 (7.9 km), so the gaps between clouds keep keypoints; 512 px at 60 deg stays at 128 px
    (5.4 km). With ``cfg.fill_max_work_px`` > 0, at most that many working pixels along the longer side
    (never fewer than the plain look's): a cap for slower computers, where a wide camera's filled look
    (256 px at 100 deg: 238 px) would leave no time for its second look. Pixel tolerances are rescaled to
    keep their ground size (the store's keypoints are no finer than its tiles). Measured with
    ``tests/bench/bench_ceiling.py`` and ``tests/bench/bench_cameras.py`` (docs/VERIFICATION.md,
    docs/BENCHMARKS.md). SIFT's contrast threshold is ``cfg.fill_contrast_threshold`` (the plain look's if 0)."""
    plain = work_scale(cfg.feature, (camera.height, camera.width))
    scale = min(1.0, max(plain, native_km_per_px(cfg, camera) / store_gsd_km))
    if cfg.fill_max_work_px > 0:
        scale = max(plain, min(scale, cfg.fill_max_work_px / max(camera.width, camera.height)))
    r = scale / plain
    ct = cfg.fill_contrast_threshold if cfg.fill_contrast_threshold > 0 else cfg.feature.contrast_threshold
    return replace(cfg, feature=replace(cfg.feature, work_scale=scale, contrast_threshold=ct),
                   sim_prefilter_work_px=cfg.sim_prefilter_work_px * r,
                   ransac_thresh_work_px=cfg.ransac_thresh_work_px * r,
                   reproj_thresh_work_px=cfg.reproj_thresh_work_px * r,
                   early_rms_work_px=cfg.early_rms_work_px * r)


def wants_fine_store(cfg: VerifyConfig, camera: Camera, coarse_gsd_km: float) -> bool:
    """True when ``camera``'s working pixel (``cfg.feature``, at the nominal altitude) is finer than the
    coarse keypoint store's sample: 512 px at 60 deg (5.4 km) and narrower cameras against the 6 km store,
    not 256 px at 80 deg (7.9 km). A fine camera sees too few keypoints of a coarse store in its footprint;
    a coarse camera gains nothing from a fine store but matching time (docs/VERIFICATION.md, "Store
    sample per camera")."""
    return native_km_per_px(cfg, camera) / work_scale(cfg.feature, (camera.height, camera.width)) < coarse_gsd_km


@dataclass
class Verification:
    """Best hypothesis of one verify() call; ``ok`` False means no hypothesis passed the minimum checks."""
    ok: bool = False
    inliers: int = 0
    matches: int = 0
    inlier_ratio: float = 0.0
    spread: float = 0.0                 # convex-hull area of the inliers / image area
    reproj_rms_px: float = float("nan") # frame pixels
    lat: float | None = None            # boresight point
    lon: float | None = None
    sub_lat: float | None = None
    sub_lon: float | None = None
    alt_km: float | None = None
    yaw_deg: float | None = None
    tilt_deg: float | None = None
    attitude_given: bool = False        # the pose's rotation is the given attitude's (its tilt is no fit's)
    bore_sigma_km: float = float("inf") # 1-sigma horizontal uncertainty of the boresight point, propagated
                                        # from the reprojection noise through the pose fit
    offset_sigma_km: float = float("inf")   # the same of the spacecraft's offset from above the boresight point
                                        # (the pose's tilt on the ground: how well its sub-satellite point is held)
    alt_sigma_km: float = float("inf")  # 1-sigma of the pose's altitude (a bunch of inliers trades tilt for it)
    sub_sigma_km: float = float("nan")  # 1-sigma horizontal uncertainty of the reported sub-satellite point: the
                                        # boresight's and the offset's after it was drawn toward nadir, added in
                                        # quadrature (nan: not known, sub_from "nadir")
    lever_km: float = 0.0               # largest boresight move with one far inlier left out (cfg.lever_points;
                                        # computed for poses that pass the other checks)
    group_lever_km: float = 0.0         # the same with a far inlier's group left out (cfg.lever_group_work_px)
    group_held: int = 0                 # > 0: the size of the group found to hold the pose
    inlier_px: np.ndarray | None = None     # the pose's inliers: frame pixels (x, y)...
    inlier_latlon: np.ndarray | None = None # ...and their store keypoints' ground (lat, lon deg), for diagnosis
    ecef_km: np.ndarray | None = None   # the pose's camera centre (with r_cam2ecef, what the store is projected by)
    position_ecef_km: np.ndarray | None = None  # the spacecraft position reported: the pose's, its offset from
                                        # above the boresight drawn toward nadir (cfg.nadir_prior_deg, sub_from)
    r_cam2ecef: np.ndarray | None = None
    candidate: int = -1                 # index (in the input list) of the candidate nearest the fix
    group: int = -1                     # merged group evaluated
    second_inliers: int = 0             # best inlier count among the other groups evaluated
    groups_evaluated: int = 0
    slowest_place_s: float = 0.0        # the longest a candidate place took (for a later look's deadline)
    guided: bool = False                # the pose came from matching again where a first pose put the keypoints
    from_prior: bool = False            # ...and that first pose was the vote place's prior (its own matches made none)
    guided_cut: bool = False            # a guided round was left out: it would have ended past the deadline
    clear: bool = False                 # the pose ended the search (``VerifyConfig.early_*``): no later place could
                                        # outrank it
    evidence: dict = field(default_factory=dict)
    stages_ms: dict = field(default_factory=dict)
    reason: str = ""
    search: "_Search | None" = field(default=None, repr=False, compare=False)   # what ``Verifier.resume``
                                        # continues; None once a clear pose or the deadline ended the search

    @property
    def resumable(self) -> bool:
        """Every place given was verified and none gave a clear pose: more places may still be tried."""
        return self.search is not None


@dataclass
class _Search:
    """A verification in progress over one frame's features: the places verified so far (one result per
    group, in rank order) and the slowest of them (the deadline's bar)."""
    f: Features
    qdesc: np.ndarray
    camera: Camera
    r_att: np.ndarray | None
    wscale: float
    use_orient: bool
    slowest_s: float = 0.0
    results: list = field(default_factory=list)
    rescues: dict = field(default_factory=dict)    # group index -> (store rows, their descriptors): a place
                                                   # fitted on its own matches whose rescue is still to come


@dataclass
class _Group:
    lat: float
    lon: float
    radius_km: float
    members: list
    prior: tuple | None = None          # (yaw_deg, alt_km) of its first member's own pose, when it has one
    max_sigma_km: float | None = None   # its first member's own precision gate (``Candidate.max_sigma_km``)


class Verifier:
    """Verifies retrieval candidates against a :class:`KeypointStore`."""

    def __init__(self, store: KeypointStore, cfg: VerifyConfig | None = None):
        self.store = store
        self.cfg = cfg or VerifyConfig()

    # ---- frame side ------------------------------------------------------------------------------
    def extract(self, image: np.ndarray, drop: np.ndarray | None = None) -> Features:
        """Frame features with the flight configuration (compute once per frame); ``drop``: see
        ``features.extract_features``. Described as the store's keypoints were (RootSIFT or its learned
        descriptor)."""
        return extract_features(image, self.cfg.feature, drop=drop, describer=self.store.describer_for_frames())

    def work_scale(self, shape) -> float:
        """Working pixels per frame pixel for an image of ``shape`` (H, W)."""
        return work_scale(self.cfg.feature, shape)

    # ---- main entry --------------------------------------------------------------------------------
    def verify(self, frame_features: Features, camera: Camera, candidates, attitude=None,
               deadline: float | None = None, place_s: float = 0.0) -> Verification:
        """Verify candidates in rank order; return the best hypothesis.

        ``candidates``: objects with ``lat``, ``lon`` (and optionally ``radius_km``) or tuples
        ``(lat, lon[, radius_km[, yaw_deg, alt_km[, max_sigma_km]]])`` (yaw and altitude: the place's own nadir
        pose prior, as a vote peak has, ``cfg.prior_work_px``; the last a precision gate of the place's own, tighter
        than ``cfg.max_bore_sigma_km``), best first. ``attitude``: camera -> ECEF quaternion [w, x, y, z] or
        3x3 matrix, or None. ``deadline``: a ``time.perf_counter()`` value; a group (a candidate place) is
        started only when the slowest group so far would still end before it; the first always runs unless
        ``place_s`` (seconds a place took in an earlier look at the same frame) says it would not end in time.
        When every place was verified without a clear pose (``Verification.resumable``), ``resume`` goes on
        with more places.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        f = frame_features
        if not isinstance(f, Features):
            xy, desc, size = f[:3]
            n = len(xy)
            f = Features(np.asarray(xy, np.float32), np.asarray(desc, np.float32), np.asarray(size, np.float32),
                         np.zeros(n, np.float32), np.zeros(n, np.float32), (camera.height, camera.width))
            use_orient = False
        else:
            use_orient = cfg.orient_filter
        r_att = None
        if attitude is not None:
            a = np.asarray(attitude, dtype=np.float64)
            r_att = geodesy.matrix_from_quat(a) if a.shape == (4,) else a.reshape(3, 3)
        if len(f) < cfg.min_matches:
            best = Verification(reason=f"too few frame keypoints ({len(f)})")
            best.stages_ms = {"total_ms": (time.perf_counter() - t0) * 1e3}
            return best
        search = _Search(f, self.store.project(f.desc), camera, r_att, self.work_scale((camera.height, camera.width)),
                         use_orient, slowest_s=float(place_s))
        return self._search(search, candidates, deadline, t0)

    def resume(self, v: Verification, candidates, deadline: float | None = None,
               place_s: float = 0.0) -> Verification:
        """``v``'s search (from ``verify`` or ``resume`` with these features) continued over ``candidates``,
        a longer list whose first entries are the ones ``v`` verified: groups are formed in rank order, so
        the earlier groups are those already done and only the new ones are verified. The answer is that of
        one ``verify`` with the longer list, but what the new places cost is spent only when needed.
        ``place_s``: as in ``verify``, seconds a place took elsewhere (the deadline's bar if it is the
        slowest). ``v`` itself when it is not ``resumable`` (a clear pose or the deadline ended it)."""
        if not v.resumable:
            return v
        v.search.slowest_s = max(v.search.slowest_s, float(place_s))
        return self._search(v.search, candidates, deadline, time.perf_counter())

    def _search(self, s: "_Search", candidates, deadline, t0) -> Verification:
        """Verify the groups of ``candidates`` from the first ``s`` has not done; the best of all of ``s``.
        With ``cfg.own_fits_first`` every new group is fitted on its own matches first and the rescues (guided
        passes) come after, in rank order; a clear pose ends the search either way."""
        cfg = self.cfg
        stages = {"match_ms": 0.0, "fit_ms": 0.0, "fetch_ms": 0.0}
        groups = self._groups(candidates, s.camera)
        hit_deadline = clear = False
        gi = len(s.results)
        while gi < len(groups):
            g = groups[gi]
            t_group = time.perf_counter()
            # a group runs to its end: admit it only if one as slow as the slowest so far still fits
            if deadline is not None and (gi > 0 or s.slowest_s > 0) and t_group + s.slowest_s > deadline:
                hit_deadline = True
                break
            if cfg.own_fits_first:
                h, rows = self._own_fit(s.f, s.qdesc, s.camera, g, s.r_att, s.wscale, s.use_orient, stages)
                if rows is not None:
                    s.rescues[gi] = rows
            else:
                h = self._verify_group(s.f, s.qdesc, s.camera, g, s.r_att, s.wscale, s.use_orient, stages, deadline)
            s.slowest_s = max(s.slowest_s, time.perf_counter() - t_group)
            h.group = gi
            s.results.append(h)
            gi += 1
            if gi - 1 not in s.rescues and self._clear(h, s):
                clear = True
                break
        if not (clear or hit_deadline):
            # the rescues, best-ranked place first (each admitted by the guided pass's own budget and rounds)
            for gi in sorted(s.rescues):
                if not self._rescue_fits(deadline):
                    hit_deadline = True
                    break
                idx, sdesc = s.rescues.pop(gi)
                h = self._rescue(s.f, s.qdesc, s.camera, groups[gi], s.r_att, s.wscale, s.use_orient, stages,
                                 s.results[gi], idx, sdesc, deadline)
                h.group = gi
                s.results[gi] = h
                if self._clear(h, s):
                    clear = True
                    break
        best = Verification(reason="deadline" if hit_deadline else "no candidates")
        if s.results:
            # a guided pose (a rescue) never outranks a pose the place's own matches hold
            top = max(s.results, key=lambda r: (r.ok, r.ok and not r.guided, r.inliers))
            best = copy.copy(top)           # the search keeps its results unchanged for a later resume
            best.second_inliers = max((r.inliers for r in s.results if r is not top), default=0)
            best.groups_evaluated = len(s.results)
            if best.ok:
                best.candidate = self._nearest_candidate(candidates, groups[best.group], best.lat, best.lon)
        best.slowest_place_s = s.slowest_s
        best.clear = clear
        best.search = s if not (clear or hit_deadline) else None
        best.evidence = self._evidence(best)
        # the same RMS in working pixels: comparable across frame sizes (for the confidence model)
        best.evidence["reproj_rms_work_px"] = float(best.reproj_rms_px) * s.wscale
        best.evidence["groups_total"] = len(groups)
        best.evidence["deadline_hit"] = hit_deadline
        stages["total_ms"] = (time.perf_counter() - t0) * 1e3
        best.stages_ms = {k: round(v, 3) for k, v in stages.items()}
        return best

    # ---- candidates --------------------------------------------------------------------------------
    def _groups(self, candidates, camera: Camera) -> list[_Group]:
        cfg = self.cfg
        default_r = camera.footprint_half_width_km(cfg.nominal_alt_km) * cfg.radius_factor
        cands = []
        for i, c in enumerate(candidates):
            gate = None
            if isinstance(c, (tuple, list, np.ndarray)):
                lat, lon = float(c[0]), float(c[1])
                r = float(c[2]) if len(c) > 2 else default_r
                prior = (float(c[3]), float(c[4])) if len(c) > 4 else None
                gate = float(c[5]) if len(c) > 5 else None
            else:
                lat, lon = float(c.lat), float(c.lon)
                r = float(getattr(c, "radius_km", default_r) or default_r)
                prior = None
            if prior is not None and not all(math.isfinite(x) for x in prior):
                prior = None
            if math.isfinite(lat) and math.isfinite(lon):
                cands.append((i, lat, lon, min(r, cfg.max_radius_km), prior, gate))
        # a group is searched within its first (best-ranked) member's circle: a member merged in shares that
        # search and does not widen it. Widening to cover the member's circle too (d + r, until session 29)
        # put hundreds more store keypoints beside a vote place (469 -> 765 km): its few right matches then
        # lost the ratio test to them (docs/VERIFICATION.md, "One search circle per place")
        groups: list[_Group] = []
        for i, lat, lon, r, prior, gate in cands:
            for g in groups:
                d = float(geodesy.great_circle_km(g.lat, g.lon, lat, lon))
                if d <= cfg.merge_factor * max(r, g.radius_km):
                    g.members.append(i)
                    break
            else:
                groups.append(_Group(lat, lon, r, [i], prior, gate))
        return groups

    @staticmethod
    def _nearest_candidate(candidates, g: _Group, lat, lon) -> int:
        best, bd = g.members[0], float("inf")
        for i in g.members:
            c = candidates[i]
            clat, clon = (c[0], c[1]) if isinstance(c, (tuple, list, np.ndarray)) else (c.lat, c.lon)
            d = float(geodesy.great_circle_km(clat, clon, lat, lon))
            if d < bd:
                best, bd = i, d
        return best

    # ---- one group -----------------------------------------------------------------------------------
    def _clear(self, h: Verification, s: "_Search") -> bool:
        """A pose that ends the search: no later place could outrank it (``cfg.early_*``)."""
        cfg = self.cfg
        return bool(h.ok and h.inliers >= cfg.early_inliers and h.spread >= cfg.early_spread
                    and h.reproj_rms_px * s.wscale <= cfg.early_rms_work_px)

    def _verify_group(self, f: Features, qdesc, camera: Camera, g: _Group, r_att, wscale, use_orient,
                      stages, deadline: float | None = None) -> Verification:
        """One place: its own fit (``_own_fit``), then its rescue (``_rescue``) when one applies."""
        out, rows = self._own_fit(f, qdesc, camera, g, r_att, wscale, use_orient, stages)
        if rows is None:
            return out
        return self._rescue(f, qdesc, camera, g, r_att, wscale, use_orient, stages, out, *rows, deadline)

    def _own_fit(self, f: Features, qdesc, camera: Camera, g: _Group, r_att, wscale, use_orient,
                 stages) -> tuple[Verification, tuple | None]:
        """A place fitted on its own matches (the ratio test over its store keypoints): (the result, and when
        a rescue applies to it (``_rescue_kind``) the store rows and their descriptors the rescue needs, else
        None)."""
        cfg = self.cfg
        st = self.store
        t = time.perf_counter()
        idx = st.query(g.lat, g.lon, g.radius_km)
        if len(idx) > cfg.max_store_kp:
            idx = idx[np.linspace(0, len(idx) - 1, cfg.max_store_kp).astype(np.int64)]
        stages["fetch_ms"] += (time.perf_counter() - t) * 1e3
        out = Verification(reason="few store keypoints")
        if len(idx) < cfg.min_matches:
            return out, None
        t = time.perf_counter()
        sdesc = st.decode(idx)
        qi, si = self._match(qdesc, sdesc)
        if use_orient and len(qi) >= cfg.min_matches:
            yaw_prior = None
            if r_att is not None:
                yaw_prior = yaw_of_attitude(r_att, g.lat, g.lon, camera.centre_ray())
            keep, _ = orientation_filter(f.angle[qi], st.azimuth_deg(idx[si]), cfg.orient_tol_deg, yaw_prior)
            qi, si = qi[keep], si[keep]
        stages["match_ms"] += (time.perf_counter() - t) * 1e3
        out.matches = int(len(qi))
        t = time.perf_counter()
        try:
            if len(qi) >= cfg.min_matches:
                out = self._fit(f, camera, g, idx[si], qi, r_att, wscale, out)
            else:
                out.reason = f"few matches ({len(qi)})"
        finally:
            stages["fit_ms"] += (time.perf_counter() - t) * 1e3
        return out, ((idx, sdesc) if self._rescue_kind(out, g, r_att) else None)

    def _rescue_kind(self, out: Verification, g: _Group, r_att) -> str | None:
        """Which rescue a place's own fit ``out`` gets, time allowing: "guided" (matching again from a plausible
        first pose that was refused or is pinned worse than ``cfg.guided_above_sigma_km``), "prior" (no pose, but
        the place came with one: a vote peak's centre, yaw and implied altitude), or None."""
        cfg = self.cfg
        if cfg.guided_work_px <= 0:
            return None
        if out.r_cam2ecef is not None:
            if ((not out.ok or out.bore_sigma_km > cfg.guided_above_sigma_km)
                    and out.bore_sigma_km <= cfg.guided_max_sigma_km and out.inliers >= cfg.min_inliers - 1
                    and out.lever_km <= cfg.guided_max_lever_km
                    and cfg.alt_range_km[0] <= out.alt_km <= cfg.alt_range_km[1]
                    and (r_att is not None or out.tilt_deg <= cfg.max_tilt_deg)):
                return "guided"
            return None
        return "prior" if cfg.prior_work_px > 0 and g.prior is not None else None

    def _rescue_fits(self, deadline: float | None) -> bool:
        """A rescue (its first round) starts only with ``cfg.guided_budget_ms`` left before ``deadline`` (0: no
        check); its later rounds are admitted one by one (``_guided_rounds``)."""
        budget_s = self.cfg.guided_budget_ms / 1e3
        return deadline is None or budget_s <= 0 or time.perf_counter() + budget_s <= deadline

    def _rescue(self, f: Features, qdesc, camera: Camera, g: _Group, r_att, wscale, use_orient, stages,
                out: Verification, idx, sdesc, deadline: float | None = None) -> Verification:
        """A place's rescue (``_rescue_kind``) from its own fit ``out``, started only with
        ``cfg.guided_budget_ms`` left before ``deadline``: the better result, or ``out``."""
        cfg = self.cfg
        kind = self._rescue_kind(out, g, r_att)
        if kind is None or not self._rescue_fits(deadline):
            return out
        t = time.perf_counter()
        try:
            if kind == "guided":
                return self._guided_rounds(f, qdesc, camera, g, idx, sdesc, out, out, r_att, wscale, use_orient,
                                           deadline=deadline)
            # the place's own matches reach no pose, but the place came with one (a vote peak: its centre,
            # yaw and implied altitude, nadir): match where that pose puts the store keypoints, within the
            # prior's wider window, then as the guided pass from whatever that fits
            yaw_deg, alt_km = g.prior
            prior = Verification(ecef_km=geodesy.geodetic_to_ecef(g.lat, g.lon, alt_km),
                                 r_cam2ecef=nadir_attitude(g.lat, g.lon, yaw_deg) @ camera.centring_rotation(),
                                 yaw_deg=yaw_deg)
            ground = self._ground(idx)
            if math.isfinite(cfg.prior_max_sigma_km):
                g = replace(g, max_sigma_km=_tighter_gate(cfg.prior_max_sigma_km, g.max_sigma_km))
            t_prior = time.perf_counter()
            first = self._guided(f, qdesc, camera, g, idx, sdesc, ground, prior, r_att, wscale, use_orient,
                                 win_work_px=cfg.prior_work_px, reach_windows=PRIOR_REACH)
            if first is not None and first.r_cam2ecef is not None:
                res = self._guided_rounds(f, qdesc, camera, g, idx, sdesc, first, out, r_att, wscale,
                                          use_orient, ground, deadline, time.perf_counter() - t_prior)
                res.from_prior = res is not out
                return res
            return out
        finally:
            stages["fit_ms"] += (time.perf_counter() - t) * 1e3

    def _ground(self, idx) -> np.ndarray:
        st = self.store
        return geodesy.geodetic_to_ecef(st.lat[idx].astype(np.float64), st.lon[idx].astype(np.float64), 0.0)

    def _guided_rounds(self, f: Features, qdesc, camera: Camera, g: _Group, idx, sdesc, seed: Verification,
                       out: Verification, r_att, wscale, use_orient, ground=None, deadline: float | None = None,
                       round_s: float = 0.0) -> Verification:
        """``GUIDED_ROUNDS`` of ``_guided`` from ``seed``'s pose, each from the last: the last pose standing
        replaces ``out`` when it is valid (and, without an attitude, within ``guided_max_tilt_deg``); a pose
        that does not survive matching again from itself is dropped. With a ``deadline`` a round starts only
        when the longest one so far (``round_s``: a round already made for this pass, as the prior's) still
        fits before it; the pass's first round is admitted by ``guided_budget_ms`` (the caller's)."""
        cfg = self.cfg
        ground = self._ground(idx) if ground is None else ground
        cut = False
        for _ in range(GUIDED_ROUNDS):
            t = time.perf_counter()
            if cfg.guided_round_admission and deadline is not None and round_s > 0 and t + round_s > deadline:
                cut = True      # a round runs 7-15 ms: two of them ran 10-20 ms past the deadline
                break
            again = self._guided(f, qdesc, camera, g, idx, sdesc, ground, seed, r_att, wscale, use_orient)
            round_s = max(round_s, time.perf_counter() - t)
            if again is None or again.r_cam2ecef is None:
                break
            seed = again
        if seed is not out and seed.ok and (r_att is not None or seed.tilt_deg <= cfg.guided_max_tilt_deg):
            seed.guided_cut = cut
            return seed
        out.guided_cut = cut
        return out

    def _guided(self, f: Features, qdesc, camera: Camera, g: _Group, idx, sdesc, ground, hyp: Verification,
                r_att, wscale, use_orient, win_work_px: float | None = None,
                reach_windows: float | None = None) -> Verification | None:
        """Matching again where the pose ``hyp`` says each store keypoint lies in the frame: a frame
        keypoint's match is the store keypoint closest in descriptor among those ``hyp`` puts within
        ``GUIDED_REACH`` windows of it, kept when it lies within the window (``cfg.guided_work_px``) and
        passes the ratio test there (against tens of neighbours, not the place's thousands); then the full
        fit with every check. ``ground``: ECEF (km) of the store keypoints ``idx``; ``win_work_px`` and
        ``reach_windows``: the window and the reach (in windows) instead of ``cfg.guided_work_px`` and
        ``GUIDED_REACH`` (a vote place's prior: ``cfg.prior_work_px``, ``PRIOR_REACH``). None when too few
        matches are left."""
        cfg = self.cfg
        st = self.store
        u, v = camera.project((ground - hyp.ecef_km) @ hyp.r_cam2ecef)    # NaN behind the camera
        win = (cfg.guided_work_px if win_work_px is None else win_work_px) / wscale
        reach = (GUIDED_REACH if reach_windows is None else reach_windows) * win
        sel = np.flatnonzero((u > -reach) & (u < camera.width + reach) & (v > -reach) & (v < camera.height + reach))
        if len(sel) < cfg.min_matches:
            return None
        uv = np.stack([u[sel], v[sel]], axis=1)
        # per frame keypoint, the ratio test among the store keypoints within `reach` (a few times the
        # window): its closest must lie within the window and be clearly closer than the next. A lone
        # candidate in the window alone would pair most keypoints with whatever lies where the first pose
        # (a few px off) puts them, and the refit would only confirm that pose
        got = ratio_matches_within(f.xy, uv, qdesc, sdesc[sel], win, reach, cfg.ratio, cfg.min_matches)
        if got is None:
            return None
        qi, sj, dist = got
        si = sel[sj]
        if use_orient and len(qi):
            keep, _ = orientation_filter(f.angle[qi], st.azimuth_deg(idx[si]), cfg.orient_tol_deg, hyp.yaw_deg)
            qi, si, dist = qi[keep], si[keep], dist[keep]
        keep = closest_per_store(si, dist)
        qi, si = qi[keep], si[keep]
        if len(qi) < cfg.min_matches:
            return None
        out = self._fit(f, camera, g, idx[si], qi, r_att, wscale, Verification(reason="guided", matches=len(qi)),
                        tilt_prior_deg=cfg.guided_tilt_prior_deg)
        out.guided = True
        return out

    def _match(self, qdesc: np.ndarray, sdesc: np.ndarray):
        """Ratio-test (and optionally mutual) nearest neighbours frame -> store: (query idx, store idx)."""
        cfg = self.cfg
        j1, d1, d2 = nearest_two(qdesc, sdesc)
        qi = np.flatnonzero(d1 < cfg.ratio * d2)       # a lone store keypoint (d2 = inf) passes, as it always did
        si = j1[qi]
        if len(qi) == 0:
            return qi, si
        if cfg.mutual:
            back, _, _ = nearest_two(sdesc[si], qdesc)
            ok = back == qi
            qi, si = qi[ok], si[ok]
        else:
            keep = closest_per_store(si, d1[qi])
            qi, si = qi[keep], si[keep]
        return qi, si

    # ---- geometry ------------------------------------------------------------------------------------
    def _fit(self, f: Features, camera: Camera, g: _Group, sidx, qi, r_att, wscale, out: Verification,
             tilt_prior_deg: float | None = None):
        """A place's matches to a judged pose: the robust model (``_robust_inliers``), the exact pose
        (``_refined_pose``), its geometry and every check; ``tilt_prior_deg``: the pose's prior on the
        off-nadir angle (None: ``cfg.tilt_prior_deg``)."""
        cfg = self.cfg
        st = self.store
        n_m = len(qi)
        lat = np.asarray(st.lat[sidx], np.float64)
        lon = np.asarray(st.lon[sidx], np.float64)
        uv = f.xy[qi].astype(np.float64)
        # local ENU frame (km) at the group centre, on the ellipsoid
        basis = geodesy.enu_basis(g.lat, g.lon)                 # rows e, n, u in ECEF
        origin = geodesy.geodetic_to_ecef(g.lat, g.lon, 0.0)
        ground = geodesy.geodetic_to_ecef(lat, lon, 0.0)
        enu = (ground - origin) @ basis.T                       # N x 3 km
        k = np.array([[camera.fx, 0, camera.cx], [0, camera.fy, camera.cy], [0, 0, 1]], np.float64)
        robust = self._robust_inliers(ground, origin, basis, enu, uv, k, wscale, r_att, out)
        if robust is None:
            return out
        mask, rvec, tvec = robust
        ray = camera.centre_ray()                # the boresight (camera frame)
        pose, mask = self._refined_pose(enu, uv, k, r_att, basis, origin, rvec, tvec, wscale, tilt_prior_deg, ray,
                                        mask)
        if pose is None:
            out.reason = "pose failed"
            out.inliers = int(mask.sum())
            return out
        rvec, tvec = pose
        err = _reproj_err(enu, uv, k, rvec, tvec)
        rthr = cfg.reproj_thresh_work_px / wscale
        # SIFT gives a blob several orientations at one position and each can match: one inlier per frame
        # position and per ground point, or the count and the boresight's sigma treat one match as several
        mask = _distinct(err < rthr, uv, enu, err)
        n_in = int(mask.sum())
        r_w2c, _ = cv2.Rodrigues(rvec)
        c_enu = -r_w2c.T @ tvec.ravel()
        pos = origin + basis.T @ c_enu
        r_c2e = basis.T @ r_w2c.T
        if r_att is not None:
            r_c2e = r_att
        out.attitude_given = r_att is not None
        out.inliers = n_in
        out.matches = n_m
        out.inlier_ratio = n_in / max(n_m, 1)
        out.reproj_rms_px = float(np.sqrt(np.mean(err[mask] ** 2))) if n_in else float("nan")
        out.spread = _hull_fraction(uv[mask], camera)
        out.inlier_px = uv[mask]
        out.inlier_latlon = np.c_[lat[mask], lon[mask]]
        out.ecef_km = pos
        # a few inliers bunched in one corner fit a pose whose boresight, far from them, is poorly pinned
        pose_cov = _fitted_pose_cov(enu[mask], k, rvec, tvec, err[mask], cfg.noise_floor_work_px / wscale,
                                    position_only=r_att is not None)
        ground = _pose_ground_enu(np.r_[np.ravel(rvec), np.ravel(tvec)], ray)
        ground_cov = _ground_cov_km(lambda p: _pose_ground_enu(p, ray), rvec, tvec, pose_cov)
        offset_cov = None if ground_cov is None else ground_cov[2:4, 2:4]
        out.bore_sigma_km = _sigma_km(ground_cov, 0, 2)
        out.offset_sigma_km = _sigma_km(ground_cov, 2, 4)
        out.alt_sigma_km = _sigma_km(ground_cov, 4, 5)
        out.r_cam2ecef = r_c2e
        sub_lat, sub_lon, alt = geodesy.ecef_to_geodetic(pos)
        out.alt_km = float(alt)
        bore_dir = r_c2e @ ray
        bore, hit = geodesy.ray_ellipsoid(pos, bore_dir)
        nadir = -geodesy.enu_basis(float(sub_lat), float(sub_lon))[2]
        out.tilt_deg = float(np.degrees(np.arccos(np.clip(np.dot(bore_dir, nadir), -1, 1))))
        if not bool(hit):
            out.reason = "boresight misses the Earth"
            return out
        blat, blon = geodesy.surface_to_geodetic(bore)
        out.lat, out.lon = float(blat), float(blon)
        if cfg.sub_from == "nadir" and r_att is None:
            out.position_ecef_km = geodesy.geodetic_to_ecef(out.lat, out.lon, out.alt_km)
        elif r_att is None and cfg.nadir_prior_deg > 0 and np.all(np.isfinite(ground)):
            priors = ((1.0 - cfg.nadir_prior_wide_share, cfg.nadir_prior_deg),)
            if cfg.nadir_prior_wide_share > 0:
                priors += ((cfg.nadir_prior_wide_share, cfg.nadir_prior_wide_deg),)
            c_enu, post_cov = _toward_nadir(ground, offset_cov, out.alt_km, priors)
            out.position_ecef_km = origin + basis.T @ c_enu
            out.sub_sigma_km = _quadrature_km(out.bore_sigma_km, post_cov)
        else:
            out.position_ecef_km = pos
            out.sub_sigma_km = _quadrature_km(out.bore_sigma_km, offset_cov)
        sub_lat, sub_lon, _ = geodesy.ecef_to_geodetic(out.position_ecef_km)
        out.sub_lat, out.sub_lon = float(sub_lat), float(sub_lon)
        out.yaw_deg = yaw_of_attitude(r_c2e, out.lat, out.lon, ray)
        if not (cfg.alt_range_km[0] <= alt <= cfg.alt_range_km[1]):
            out.reason = f"implausible altitude {alt:.0f} km"
        elif r_att is None and out.tilt_deg > cfg.max_tilt_deg:
            # (with an attitude the tilt is the star tracker's, not the fit's: an agile imager looks 40 deg off)
            out.reason = f"implausible tilt {out.tilt_deg:.0f} deg"
        elif (cfg.max_prior_alt_log > 0 and n_in < cfg.prior_alt_below_inliers and g.prior is not None
                and g.prior[1] > 0 and abs(math.log(alt / g.prior[1])) > cfg.max_prior_alt_log):
            out.reason = f"altitude {alt:.0f} km against its place's {g.prior[1]:.0f} km"
        elif not out.bore_sigma_km <= _tighter_gate(cfg.max_bore_sigma_km, g.max_sigma_km):
            out.reason = f"imprecise pose ({out.bore_sigma_km:.0f} km 1-sigma at the boresight)"
        elif n_in < cfg.min_inliers:
            out.reason = f"few inliers ({n_in})"
        elif self._held_by_one(out, enu[mask], uv[mask], k, r_att, basis, origin, rvec, tvec, wscale,
                               tilt_prior_deg, ray):
            out.reason = (f"pose held by a group of {out.group_held} matches (boresight moves "
                          f"{out.group_lever_km:.0f} km without them)" if out.group_held else
                          f"pose held by one match (boresight moves {out.lever_km:.0f} km without it)")
        else:
            out.ok = True
            out.reason = ""
        return out

    def _robust_inliers(self, ground, origin, basis, enu, uv, k, wscale, r_att, out: Verification):
        """The matches a robust model keeps: (mask, rvec, tvec) — rvec, tvec a first pose from PnP-RANSAC
        (``cfg.fit`` "pnp", no attitude) or None, None after the similarity consensus and a homography from the
        gnomonic plane about the place to the image — or None with ``out.reason`` set."""
        cfg = self.cfg
        n_m = len(uv)
        thr = cfg.ransac_thresh_work_px / wscale
        if cfg.fit == "pnp" and r_att is None:
            ok, rvec, tvec, inl = cv2.solvePnPRansac(enu, uv, k, None, iterationsCount=cfg.ransac_iters,
                                                     reprojectionError=thr, confidence=cfg.ransac_conf,
                                                     flags=cv2.SOLVEPNP_AP3P)
            if not ok or inl is None or len(inl) < cfg.min_inliers:
                out.reason = "robust fit failed"
                out.inliers = 0 if inl is None else len(inl)
                return None
            mask = np.zeros(n_m, bool)
            mask[inl.ravel()] = True
            return mask, rvec, tvec
        # gnomonic plane about the centre (sphere): a homography to the image for a small tilt
        u = ground / np.linalg.norm(ground, axis=1, keepdims=True)
        c = origin / np.linalg.norm(origin)
        dot = u @ c
        plane = np.stack([(u @ basis[0]) / dot, (u @ basis[1]) / dot], axis=1) * geodesy.R_MEAN_KM
        if n_m < 4:
            out.reason = "few matches"
            return None
        sub = np.arange(n_m)
        if cfg.sim_prefilter_work_px > 0:
            # exhaustive 2-point similarity consensus first: cheap on junk (OpenCV's RANSAC spends
            # ~10 us per iteration, 10-20 ms on a wrong place), and it hands RANSAC a clean subset
            pre = similarity_consensus(plane, uv, cfg.sim_prefilter_work_px / wscale, cfg.sim_max_pairs)
            if pre.sum() < cfg.min_inliers:
                out.reason = "robust fit failed"
                out.inliers = int(pre.sum())
                return None
            sub = np.flatnonzero(pre)
        hm, m = cv2.findHomography(plane[sub], uv[sub], cfg.homography_method,
                                   thr, maxIters=cfg.ransac_iters, confidence=cfg.ransac_conf)
        if hm is None or m is None or int(m.sum()) < cfg.min_inliers:
            out.reason = "robust fit failed"
            out.inliers = 0 if m is None else int(m.sum())
            return None
        # re-collect over all matches with the homography
        proj = cv2.perspectiveTransform(plane.reshape(-1, 1, 2), hm).reshape(-1, 2)
        return np.hypot(*(proj - uv).T) < thr, None, None

    def _refined_pose(self, enu, uv, k, r_att, basis, origin, rvec, tvec, wscale, tilt_prior_deg, ray, mask):
        """The pose with the exact camera model, inliers re-collected by reprojection until they settle
        (``cfg.refine_rounds``): ((rvec, tvec) or None, the last inlier mask)."""
        cfg = self.cfg
        rthr = cfg.reproj_thresh_work_px / wscale
        pose = None
        for _ in range(max(1, cfg.refine_rounds)):
            if mask.sum() < max(cfg.min_inliers, 6):
                break
            pose = self._pose(enu[mask], uv[mask], k, r_att, basis, origin, rvec, tvec, wscale, tilt_prior_deg,
                              ray=ray)
            if pose is None:
                break
            rvec, tvec = pose
            new = _reproj_err(enu, uv, k, rvec, tvec) < rthr
            if new.sum() < cfg.min_inliers:
                break
            if np.array_equal(new, mask):
                mask = new
                break
            mask = new
        return pose, mask

    def _held_by_one(self, out: Verification, enu, uv, k, r_att, basis, origin, rvec, tvec, wscale,
                     tilt_prior_deg: float | None = None, ray=None) -> bool:
        """True when one of the ``cfg.lever_points`` inliers farthest from the inliers' median (image) holds the
        pose: refitted without it, the boresight moves more than ``cfg.max_bore_sigma_km``, and the pose of the
        others misses it by more than the RANSAC threshold and by more than ``cfg.lever_chi2`` in squared
        Mahalanobis distance (that pose's uncertainty at the match, plus pixel noise). The sigma's noise model
        trusts every inlier; one wrong match far from a bunch of right ones bends scale and tilt around them.
        A right far match also moves a bunched pose, but the others' pose still finds it within its own
        uncertainty. Also True when one such inlier moves the boresight more than ``cfg.max_lever_km``, whether or
        not the others' pose finds it: such a fix rests on one match. Sets ``out.lever_km`` (the largest move
        up to the one that decided). A few LM refinements warm-started from the pose."""
        cfg = self.cfg
        n = len(uv)
        out.lever_km = 0.0
        if cfg.lever_points <= 0 or n < 5:
            return False
        b0 = _bore_enu(rvec, tvec, ray)
        far = np.argsort(-np.hypot(*(uv - np.median(uv, axis=0)).T), kind="stable")[: cfg.lever_points]
        thr_px = cfg.ransac_thresh_work_px / wscale
        floor_px = cfg.noise_floor_work_px / wscale
        held = False
        for i in far:
            keep = np.arange(n) != i
            pose = self._pose(enu[keep], uv[keep], k, r_att, basis, origin, rvec, tvec, wscale, tilt_prior_deg, ray)
            if pose is None:
                out.lever_km = float("inf")
                return True
            move = float(np.hypot(*(_bore_enu(*pose, ray) - b0)))
            out.lever_km = max(out.lever_km, move if math.isfinite(move) else float("inf"))
            if move > cfg.max_lever_km:
                return True
            if move <= cfg.max_bore_sigma_km:
                continue
            d2, miss_px = _left_out_miss(enu, uv, keep, i, k, pose, floor_px, position_only=r_att is not None)
            held |= miss_px > thr_px and not d2 <= cfg.lever_chi2
        if held or cfg.lever_group_work_px <= 0:
            return held
        # two neighbouring keypoints paired with the same wrong neighbouring feature agree with each other, so
        # leaving either out alone moves nothing: the group around each far inlier is left out together
        reach = cfg.lever_group_work_px / wscale
        tried = set()
        for i in far:
            grp = np.flatnonzero(np.hypot(*(uv - uv[i]).T) <= reach)
            if len(grp) < 2 or len(grp) > n // 3 or n - len(grp) < max(cfg.min_inliers, 6) or tuple(grp) in tried:
                continue
            tried.add(tuple(grp))
            keep = np.ones(n, bool)
            keep[grp] = False
            pose = self._pose(enu[keep], uv[keep], k, r_att, basis, origin, rvec, tvec, wscale, tilt_prior_deg, ray)
            if pose is None:
                continue
            move = float(np.hypot(*(_bore_enu(*pose, ray) - b0)))
            out.group_lever_km = max(out.group_lever_km, move if math.isfinite(move) else float("inf"))
            if move <= cfg.max_bore_sigma_km:
                continue
            misses = (_left_out_miss(enu, uv, keep, j, k, pose, floor_px, position_only=r_att is not None)
                      for j in grp)              # lazily: the first member the others' pose reaches settles it
            if all(m_px > thr_px and not d2 <= cfg.lever_chi2 for d2, m_px in misses):
                out.group_held = len(grp)
                return True
        return False

    def _pose(self, enu, uv, k, r_att, basis, origin, rvec0, tvec0, wscale=1.0, tilt_prior_deg: float | None = None,
              ray=None):
        """Camera pose (rvec, tvec: ENU -> camera) from inlier correspondences; None on failure. ``ray``: the
        boresight in the camera frame (the tilt prior's; default the optical axis)."""
        if r_att is not None:
            # known attitude: position by linear least squares on the bearing rays, in ENU
            r_c2enu = basis @ r_att
            rays = np.stack([(uv[:, 0] - k[0, 2]) / k[0, 0], (uv[:, 1] - k[1, 2]) / k[1, 1],
                             np.ones(len(uv))], axis=1) @ r_c2enu.T
            rays /= np.linalg.norm(rays, axis=1, keepdims=True)
            proj = np.eye(3)[None] - rays[:, :, None] * rays[:, None, :]
            a = proj.sum(axis=0)
            b = np.einsum("nij,nj->i", proj, enu)
            try:
                c = np.linalg.solve(a, b)
            except np.linalg.LinAlgError:
                return None
            r_w2c = r_c2enu.T
            rvec, _ = cv2.Rodrigues(r_w2c)
            return rvec, (-r_w2c @ c).reshape(3, 1)
        try:
            if rvec0 is None:
                ok, rvec, tvec = cv2.solvePnP(enu, uv, k, None, flags=cv2.SOLVEPNP_SQPNP)
                if not ok:
                    return None
            else:
                rvec, tvec = rvec0.copy(), tvec0.copy()
            rvec, tvec = cv2.solvePnPRefineLM(enu, uv, k, None, rvec, tvec)
        except cv2.error:
            return None
        if not (np.all(np.isfinite(rvec)) and np.all(np.isfinite(tvec))):
            return None
        prior_deg = self.cfg.tilt_prior_deg if tilt_prior_deg is None else tilt_prior_deg
        if prior_deg > 0:
            rvec, tvec = _refine_with_tilt_prior(enu, uv, k, rvec, tvec, basis, origin,
                                                 self.cfg.prior_sigma_work_px / wscale, prior_deg, ray=ray)
        return rvec, tvec

    # ---- evidence --------------------------------------------------------------------------------------
    def _evidence(self, v: Verification) -> dict:
        cfg = self.cfg
        lo, hi = cfg.alt_plausible_km
        alt = v.alt_km
        if alt is None or not math.isfinite(alt):
            alt_dev = float("nan")
        else:
            alt_dev = 0.0 if lo <= alt <= hi else min(abs(alt - lo), abs(alt - hi))
        return {"inliers": int(v.inliers), "matches": int(v.matches), "inlier_ratio": float(v.inlier_ratio),
                "spread": float(v.spread), "reproj_rms_px": float(v.reproj_rms_px),   # frame pixels
                "alt_km": float("nan") if alt is None else float(alt), "alt_out_of_range_km": alt_dev,
                "tilt_deg": float("nan") if v.tilt_deg is None else float(v.tilt_deg),
                "attitude_given": bool(v.attitude_given),
                "bore_sigma_km": float(v.bore_sigma_km), "offset_sigma_km": float(v.offset_sigma_km),
                "sub_sigma_km": float(v.sub_sigma_km), "alt_sigma_km": float(v.alt_sigma_km),
                "lever_km": float(v.lever_km),
                "group_lever_km": float(v.group_lever_km),
                "second_inliers": int(v.second_inliers),
                "inlier_margin": int(v.inliers) - int(v.second_inliers),
                "groups_evaluated": int(v.groups_evaluated), "guided": bool(v.guided),
                "from_prior": bool(v.from_prior), "guided_cut": bool(v.guided_cut), "ok": bool(v.ok),
                # what a wrong pose is studied from on the ground (tests/bench/bench_pose_residuals.py)
                "inlier_px": None if v.inlier_px is None else np.round(v.inlier_px, 2).tolist(),
                "inlier_latlon": None if v.inlier_latlon is None else np.round(v.inlier_latlon, 5).tolist()}


def _tighter_gate(gate_km: float, own_km: float | None) -> float:
    """The tighter of a precision gate and a place's own (None: the place has none)."""
    return gate_km if own_km is None else min(gate_km, own_km)


def orientation_filter(frame_angle_deg, store_azimuth_deg, tol_deg: float, yaw_prior_deg=None):
    """Keep matches whose implied yaw (store azimuth - frame angle - 90) agrees with the mode.

    Returns (keep mask, yaw estimate in degrees). With ``yaw_prior_deg`` the prior replaces the vote.
    """
    yaw = (np.asarray(store_azimuth_deg, np.float64) - np.asarray(frame_angle_deg, np.float64) - 90.0) % 360.0
    if yaw_prior_deg is None:
        hist = np.bincount((yaw // 10).astype(int) % 36, minlength=36).astype(np.float64)
        sm = hist + np.roll(hist, 1) + np.roll(hist, -1)        # 30-degree window
        b = int(np.argmax(sm))
        near = np.abs((yaw - (b * 10 + 5) + 180.0) % 360.0 - 180.0) <= 15.0
        ang = np.radians(yaw[near])
        mode = math.degrees(math.atan2(np.sin(ang).sum(), np.cos(ang).sum())) % 360.0
    else:
        mode = float(yaw_prior_deg) % 360.0
    d = np.abs((yaw - mode + 180.0) % 360.0 - 180.0)
    return d <= tol_deg, mode


def squared_distances(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The len(q) x len(s) squared L2 distances of descriptor rows, as |q|^2 + |s|^2 - 2 q.s in float32 (one BLAS
    product): a place's ratio test (``nearest_two``) and guided matching's dense matrix (``ratio_matches_within``)."""
    q = q.astype(np.float32, copy=False)
    s = s.astype(np.float32, copy=False)
    return (q * q).sum(axis=1)[:, None] + (s * s).sum(axis=1)[None, :] - 2.0 * (q @ s.T)


def nearest_two(q: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of ``q``, its nearest row of ``s`` (index) and the L2 distances to its nearest and second
    nearest (inf where ``s`` has one row). Why not OpenCV's ``BFMatcher.knnMatch``: its per-pair loop and a
    Python object per match took 4.5 ms of a 300 x 1,100 place on an AVX2 machine where this matrix product
    (|q|^2 + |s|^2 - 2 q.s) takes 1.4, with the same neighbours and ratio decisions on 14,977 frame keypoints
    of 65 places (docs/VERIFICATION.md, "A slower computer")."""
    n = len(q)
    if len(s) == 0:
        return np.zeros(n, np.int64), np.full(n, np.inf, np.float32), np.full(n, np.inf, np.float32)
    return nearest_two_of(squared_distances(q, s))


def nearest_two_of(d2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``nearest_two`` of a query x store matrix of squared distances (at least one column; inf where a pair is
    not allowed; overwritten): each row's nearest column and the L2 distances to its nearest and second nearest."""
    r = np.arange(len(d2))
    j1 = np.argmin(d2, axis=1)
    first = d2[r, j1]
    d2[r, j1] = np.inf
    return j1, np.sqrt(np.maximum(first, 0.0)), np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def closest_per_store(si: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the matches to keep when one store keypoint may serve one frame keypoint only:
    for each store keypoint ``si``, its match of smallest ``dist``."""
    if len(si) == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((dist, si))
    first = np.ones(len(order), bool)
    first[1:] = si[order][1:] != si[order][:-1]
    return np.sort(order[first])


GUIDED_ROUNDS = 2    # matching again twice: the second round where the first round's (closer) pose puts them
GUIDED_REACH = 3.0   # guided matching's ratio test looks this many windows around each frame keypoint
DENSE_REACH_SHARE = 0.03  # ratio_matches_within: a dense matrix once a reach covers this share of the store
                         # keypoints' extent (pairs cost ~0.3 us each, the matrix ~10 ns an entry)
PRIOR_REACH = 2.0    # ...and from a vote place's own pose (a window twice as wide: the pairs and their
                     # descriptor distances grow with the reach squared, 9 ms a place at 3 windows)


def pairs_within(a: np.ndarray, b: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with ``|a[i] - b[j]| < r`` (2-D points), by a grid of ``r`` cells: O(n + pairs) where a
    dense distance matrix would be |a| x |b| (300 x 3,000 per place)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo = np.minimum(a.min(axis=0), b.min(axis=0))
    ca = np.floor((a - lo) / r).astype(np.int64)
    cb = np.floor((b - lo) / r).astype(np.int64)
    ncol = int(max(ca[:, 0].max(), cb[:, 0].max())) + 3
    key_b = (cb[:, 1] + 1) * ncol + cb[:, 0] + 1
    order = np.argsort(key_b, kind="stable")
    sk = key_b[order]
    ii, jj = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            k = (ca[:, 1] + 1 + dy) * ncol + ca[:, 0] + 1 + dx
            start = np.searchsorted(sk, k, "left")
            n = np.searchsorted(sk, k, "right") - start
            i = np.repeat(np.arange(len(a)), n)
            off = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            ii.append(i)
            jj.append(order[np.repeat(start, n) + off])
    i = np.concatenate(ii)
    j = np.concatenate(jj)
    d = a[i] - b[j]
    keep = (d * d).sum(axis=1) < r * r
    return i[keep], j[keep]


def ratio_matches_within(xy: np.ndarray, uv: np.ndarray, qdesc: np.ndarray, sdesc: np.ndarray, win: float,
                         reach: float, ratio: float, min_pairs: int = 1):
    """Guided matching's ratio test: for each frame keypoint ``xy[i]``, the store keypoints ``uv`` (their
    descriptors ``sdesc``) within ``reach`` px; kept when the closest in descriptor lies within ``win`` px and
    is closer than ``ratio`` times the next. Returns (frame idx, store idx, descriptor distance), or None when
    fewer than ``min_pairs`` pairs lie within reach. Two ways to the same answer: the pairs within reach
    (``pairs_within``) when they are few, a dense frame x store distance matrix when each frame keypoint
    reaches more than a few percent of the store keypoints (a vote place's own pose, 2 windows of 12 working
    px, over a merged store's ~5,000 keypoints in view: 100,000 pairs, 34 ms by pairs, 15 by the matrix)."""
    n, m = len(xy), len(uv)
    if n == 0 or m == 0:
        return None
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    area = max(float((hi[0] - lo[0] + 2 * reach) * (hi[1] - lo[1] + 2 * reach)), 1.0)
    if math.pi * reach * reach / area < DENSE_REACH_SHARE:
        qi, sj = pairs_within(xy, uv, reach)
        if len(qi) < min_pairs:
            return None
        dist = np.sqrt(np.maximum(((qdesc[qi] - sdesc[sj]) ** 2).sum(axis=1), 0.0))
        order = np.lexsort((dist, qi))
        qi, sj, dist = qi[order], sj[order], dist[order]
        head = np.ones(len(qi), bool)
        head[1:] = qi[1:] != qi[:-1]
        h = np.flatnonzero(head)
        nxt = np.minimum(h + 1, len(qi) - 1)
        has2 = (h + 1 < len(qi)) & ~head[nxt]
        close = np.hypot(*(xy[qi[h]] - uv[sj[h]]).T) < win
        ok = has2 & close & (dist[h] < ratio * dist[nxt])
        return qi[h[ok]], sj[h[ok]], dist[h[ok]]
    xy32, uv32 = xy.astype(np.float32, copy=False), uv.astype(np.float32, copy=False)
    px2 = (xy32[:, 0, None] - uv32[None, :, 0]) ** 2 + (xy32[:, 1, None] - uv32[None, :, 1]) ** 2
    near = px2 < reach * reach
    if int(near.sum()) < min_pairs:
        return None
    d2 = squared_distances(qdesc, sdesc)
    d2[~near] = np.inf
    j1, d1, dn = nearest_two_of(d2)
    r = np.arange(n)
    ok = np.isfinite(dn) & (px2[r, j1] < win * win) & (d1 < ratio * dn)
    return r[ok], j1[ok], d1[ok]


def similarity_consensus(src: np.ndarray, dst: np.ndarray, thr: float, max_pairs: int = 600) -> np.ndarray:
    """Inlier mask of the 2-point similarity (rotation, scale, translation) that maps the most ``src``
    (ground plane, y north) points within ``thr`` of their ``dst`` (image, y down); all pairs are tried when there
    are at most ``max_pairs`` of them, else a fixed (deterministic) sample. Vectorised: ~1 ms for 80 matches."""
    n = len(src)
    if n < 2:
        return np.zeros(n, bool)
    # src is a map plane (x east, y north), dst an image (x right, y down): a camera looking down sees
    # the plane mirrored, so the plane enters conjugated and the similarity is a proper one
    z = src[:, 0] - 1j * src[:, 1]
    w = dst[:, 0] + 1j * dst[:, 1]
    i, j = np.triu_indices(n, 1)
    if len(i) > max_pairs:
        pick = np.random.default_rng(12345).choice(len(i), max_pairs, replace=False)
        i, j = i[pick], j[pick]
    dz = z[i] - z[j]
    ok = np.abs(dz) > 1e-9
    i, j, dz = i[ok], j[ok], dz[ok]
    a = (w[i] - w[j]) / dz
    b = w[i] - a * z[i]
    if len(a) == 0:
        return np.zeros(n, bool)
    res = a[:, None] * z[None, :] + b[:, None] - w[None, :]          # hypotheses x points
    d2 = res.real * res.real + res.imag * res.imag
    inl = d2 < thr * thr
    k = int(np.argmax(inl.sum(axis=1)))
    return inl[k]


def _refine_with_tilt_prior(enu, uv, k, rvec, tvec, basis, origin, sigma_px: float, sigma_tilt_deg: float,
                            iters: int = 8, ray=None):
    """Levenberg-Marquardt on reprojection errors (sigma_px) plus a prior pulling the boresight towards
    nadir (sigma_tilt_deg): residual ``(z x nadir) / sin(sigma_tilt)``, smooth at zero tilt.

    ``enu``: ground points in the ENU frame (km) at ``origin`` (rows of ``basis`` = e, n, u in ECEF).
    Jacobians are analytic (``_tilt_prior_residuals``): finite differences cost 6 more residual
    evaluations per iteration, most of a guided refit's time (15-40 ms a place on the frames that need it)."""
    resid = _tilt_prior_residuals(enu, uv, k, basis, origin, sigma_px, sigma_tilt_deg, ray)
    p = np.concatenate([np.asarray(rvec, np.float64).ravel(), np.asarray(tvec, np.float64).ravel()])
    r, jac = resid(p, True)
    cost = float(r @ r)
    lam = 1e-3
    for _ in range(iters):
        a = jac.T @ jac
        g = jac.T @ r
        improved = False
        for _ in range(6):
            try:
                dp = -np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), g)
            except np.linalg.LinAlgError:
                break
            r_new = resid(p + dp)
            c_new = float(r_new @ r_new)
            if np.isfinite(c_new) and c_new < cost:
                p, lam = p + dp, max(lam / 10.0, 1e-9)
                improved = cost - c_new > 1e-9 * cost
                cost = c_new
                break
            lam *= 10.0
        if not improved:
            break
        r, jac = resid(p, True)
    return p[:3].reshape(3, 1), p[3:].reshape(3, 1)


def _tilt_prior_residuals(enu, uv, k, basis, origin, sigma_px: float, sigma_tilt_deg: float, ray=None):
    """The residual function of ``_refine_with_tilt_prior``: ``resid(p[, jac=True])`` for
    ``p = (rvec, tvec)`` (ENU -> camera), reprojection errors / sigma_px then the prior's three, and with
    ``jac`` the analytic Jacobian (``cv2.projectPoints``' for the reprojections, the prior's written out)."""
    s_tilt = math.sin(math.radians(sigma_tilt_deg))
    pts = np.ascontiguousarray(enu, dtype=np.float64)
    bt = basis.T
    c = _AXIS if ray is None else np.asarray(ray, np.float64)     # the boresight, camera frame

    def resid(p, jac: bool = False):
        rv, tv = p[:3].reshape(3, 1), p[3:]
        proj, d_proj = cv2.projectPoints(pts, rv, tv.reshape(3, 1), k, None)
        r_w2c, d_rot = cv2.Rodrigues(rv)                  # d_rot[i]: d(r_w2c, row-major) / d rv_i
        c_ecef = origin + bt @ (-r_w2c.T @ tv)
        c_norm = math.sqrt(float(c_ecef @ c_ecef))
        down = -c_ecef / c_norm                           # geocentric nadir: within 0.2 deg of geodetic
        z = bt @ (c @ r_w2c)                              # boresight in ECEF (r_w2c[2] on the axis)
        r = np.concatenate([(proj.reshape(-1, 2) - uv).ravel() / sigma_px, _cross_matrix(z) @ down / s_tilt])
        if not jac:
            return r
        # prior's derivatives: d(z x down) = dz x down + z x d(down), d(down) = -(I - down down^T) dc / |c|
        d_down_dc = -(np.eye(3) - np.outer(down, down)) / c_norm
        dz = np.empty((3, 3))
        dc = np.empty((3, 6))
        for i in range(3):
            d_r = d_rot[i].reshape(3, 3)
            dz[:, i] = bt @ (c @ d_r)
            dc[:, i] = bt @ (-d_r.T @ tv)
        dc[:, 3:] = -bt @ r_w2c.T
        j_prior = _cross_matrix(z) @ (d_down_dc @ dc)
        j_prior[:, :3] -= _cross_matrix(down) @ dz       # dz x down = -(down x dz)
        return r, np.concatenate([d_proj[:, :6] / sigma_px, j_prior / s_tilt])

    return resid


def _cross_matrix(v) -> np.ndarray:
    """[v]x: ``_cross_matrix(a) @ b == np.cross(a, b)`` (np.cross costs ~30 us a call on 3-vectors)."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _reproj_err(enu, uv, k, rvec, tvec) -> np.ndarray:
    r, _ = cv2.Rodrigues(rvec)
    pc = enu @ r.T + tvec.reshape(1, 3)
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = k[0, 0] * pc[:, 0] / z + k[0, 2]
        v = k[1, 1] * pc[:, 1] / z + k[1, 2]
    e = np.hypot(u - uv[:, 0], v - uv[:, 1])
    return np.where(z > 0, e, np.inf)


def _distinct(mask: np.ndarray, uv: np.ndarray, enu: np.ndarray, err: np.ndarray) -> np.ndarray:
    """``mask`` keeping, of the matches that share a frame position (to 0.5 px) or a ground point (to 1 m),
    only the one with the smallest reprojection error (a match second at either is dropped)."""
    idx = np.nonzero(mask)[0]
    if len(idx) < 2:
        return mask
    order = idx[np.argsort(err[idx], kind="stable")]
    first = np.ones(len(order), bool)
    for key in (np.round(uv[order] * 2.0), np.round(enu[order] * 1000.0)):
        _, at = np.unique(key.astype(np.int64), axis=0, return_index=True)
        once = np.zeros(len(order), bool)
        once[at] = True                      # np.unique's index is each key's first place in ``order``
        first &= once
    out = np.zeros_like(mask)
    out[order[first]] = True
    return out


def _pose_covariance(j: np.ndarray, err_px, floor_px: float):
    """(covariance of the fitted pose parameters, pixel noise variance) from the projection Jacobian ``j``
    (2n x p: the n points' rows, the p fitted parameters' columns) and the points' reprojection errors: the
    noise from the residuals with the p parameters taken out, floored at ``floor_px``. Raises
    ``np.linalg.LinAlgError`` for a singular fit."""
    s2 = max(float(np.sum(np.square(err_px))) / (j.shape[0] - j.shape[1]), floor_px ** 2)
    return s2 * np.linalg.inv(j.T @ j), s2


def _left_out_miss(enu, uv, keep, i, k, pose, floor_px: float, position_only: bool = False):
    """(squared Mahalanobis distance, pixels) by which the pose fitted to the ``keep`` points misses point
    ``i``: the residual against the pose's covariance (``_pose_covariance`` of the ``keep`` points)
    propagated to the point, plus that pixel noise."""
    proj, jac = cv2.projectPoints(enu.reshape(-1, 1, 3), *pose, k, None)     # every point, once
    proj = proj.reshape(-1, 2)
    cols = slice(3, 6) if position_only else slice(0, 6)
    r = proj[i] - uv[i]
    try:
        cov, s2 = _pose_covariance(jac[np.repeat(keep, 2), cols], np.hypot(*(proj[keep] - uv[keep]).T), floor_px)
        j_i = jac[2 * i:2 * i + 2, cols]
        d2 = float(r @ np.linalg.solve(j_i @ cov @ j_i.T + s2 * np.eye(2), r))
    except np.linalg.LinAlgError:
        d2 = float("inf")
    return d2, float(np.hypot(*r))


_AXIS = np.array([0.0, 0.0, 1.0])


def _bore_enu(rvec, tvec, ray=None) -> np.ndarray:
    """(east, north) km where the boresight ``ray`` (camera frame; default the optical axis) of the pose
    (``rvec``, ``tvec``: local ENU -> camera) meets the local ground plane u = 0; inf when it points away."""
    return _pose_ground_enu(np.r_[np.ravel(rvec), np.ravel(tvec)], ray)[:2]


def _fitted_pose_cov(enu, k, rvec, tvec, err_px, floor_px: float, position_only: bool = False):
    """Covariance of the fitted pose's parameters (rvec, tvec: 6 x 6; ``position_only``, a known attitude:
    tvec's 3 x 3) from the reprojection noise (``_pose_covariance``), or None for a singular or underdetermined
    fit."""
    n_par = 3 if position_only else 6
    if len(enu) * 2 <= n_par:
        return None
    _, jac = cv2.projectPoints(enu.reshape(-1, 1, 3), rvec, tvec, k, None)
    try:
        cov, _ = _pose_covariance(jac[:, 3:6] if position_only else jac[:, :6], err_px, floor_px)
    except np.linalg.LinAlgError:
        return None
    return cov


def _ground_cov_km(point, rvec, tvec, pose_cov) -> np.ndarray | None:
    """Covariance (km^2) of ``point(p)`` (a k-vector, km: a ground point's local east / north, a height) of the
    pose parameters ``p`` (rvec then tvec), from ``pose_cov`` (6 x 6, or tvec's 3 x 3 with a known attitude) by
    finite differences; None where it is not finite."""
    if pose_cov is None:
        return None
    p0 = np.r_[np.ravel(rvec), np.ravel(tvec)].astype(np.float64)
    b0 = np.atleast_1d(point(p0))
    if not np.all(np.isfinite(b0)):
        return None
    steps = np.r_[np.full(3, 1e-6), np.full(3, 1e-3)]       # rad, km
    jb = np.empty((len(b0), 6))
    for i in range(6):
        p = p0.copy()
        p[i] += steps[i]
        jb[:, i] = (np.atleast_1d(point(p)) - b0) / steps[i]
    if not np.all(np.isfinite(jb)):
        return None
    jb = jb[:, 3:] if len(pose_cov) == 3 else jb
    cov = jb @ pose_cov @ jb.T
    return cov if np.all(np.isfinite(cov)) else None


def _pose_ground_enu(p, ray=None) -> np.ndarray:
    """What a pose ``p`` (rvec then tvec: local ENU -> camera) puts on the ground, km in the local frame: the
    boresight point (east, north: where ``ray``, camera frame, default the optical axis, meets u = 0), the
    camera's offset from above it (east, north: zero when it points at nadir) and the camera's height; inf
    when the boresight points away from the ground."""
    r, _ = cv2.Rodrigues(np.asarray(p[:3], np.float64).reshape(3, 1))
    c = -r.T @ np.asarray(p[3:], np.float64)
    d = r.T @ (_AXIS if ray is None else np.asarray(ray, np.float64))
    if d[2] >= -1e-9:
        return np.full(5, np.inf)
    bore = (c - c[2] / d[2] * d)[:2]
    return np.r_[bore, c[:2] - bore, c[2]]


def _sigma_km(cov, i: int, j: int) -> float:
    """1-sigma (km, root of the trace) of the block ``i:j`` of the covariance ``cov`` (km^2); inf without it."""
    var = float("nan") if cov is None else float(np.trace(cov[i:j, i:j]))
    return float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("inf")


def _toward_nadir(ground, offset_cov, alt_km: float, priors):
    """(the camera's local ENU position km, the covariance of its offset km^2 or None) from a pose's
    ``_pose_ground_enu`` with the offset from above the boresight point drawn toward zero (nadir pointing): the
    posterior of that offset under a prior of Gaussians ``priors`` ((share, off-nadir deg per axis), ...; variance
    P = (``alt_km`` tan)^2 each) and the pose's own covariance of it (``offset_cov``, C). For one Gaussian: mean
    P (P + C)^-1 o, covariance P (P + C)^-1 C — a pose whose tilt its inliers pin (C << P) keeps its offset, a loose
    one (a coarse map's few bunched inliers) is drawn toward nadir by as much as its tilt is unknown. With a wider
    one beside it, an offset the pose pins far beyond the narrow prior is taken as the wide one's (a camera
    pointed well off nadir is drawn little). The boresight point and the height stay the pose's; without a
    covariance the position is the pose's."""
    bore, offset, up = ground[:2], ground[2:4], ground[4]
    if offset_cov is None:
        return np.r_[bore + offset, up], None
    comps = []
    for share, deg in priors:
        prior = (alt_km * math.tan(math.radians(deg))) ** 2
        spread = prior * np.eye(2) + offset_cov
        try:
            inv = np.linalg.inv(spread)
        except np.linalg.LinAlgError:                       # no prior and a degenerate pose
            continue
        det = float(np.linalg.det(spread))
        if not det > 0:
            continue
        gain = prior * inv
        log_w = math.log(share) - 0.5 * float(offset @ inv @ offset) - 0.5 * math.log(det)
        comps.append((log_w, gain @ offset, gain @ offset_cov))
    if not comps:
        return np.r_[bore + offset, up], offset_cov
    log_w = np.array([c[0] for c in comps])
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = sum(wk * c[1] for wk, c in zip(w, comps))
    cov = sum(wk * (c[2] + np.outer(c[1], c[1])) for wk, c in zip(w, comps)) - np.outer(mean, mean)
    return np.r_[bore + mean, up], cov


def _quadrature_km(sigma_km: float, cov) -> float:
    """``sigma_km`` and the 1-sigma of the 2 x 2 covariance ``cov`` (km^2) added in quadrature; inf without it."""
    if cov is None or not math.isfinite(sigma_km):
        return float("inf")
    return float(math.sqrt(sigma_km ** 2 + max(float(np.trace(cov)), 0.0)))


def _hull_fraction(pts: np.ndarray, camera: Camera) -> float:
    if len(pts) < 3:
        return 0.0
    hull = cv2.convexHull(pts.astype(np.float32))
    return float(cv2.contourArea(hull)) / float(camera.width * camera.height)
