"""The flight path for one frame: preprocess -> retrieval -> verification -> Fix.

Retrieval has two sources, merged into one candidate list before verification: keypoint voting
(``vote.py``: the frame's local features matched against the bundle's ``keyindex.graph``, a Hough vote
over place and yaw; config ``vote``) and the INT8 global encoder's HNSW top-k. The vote's places come
first (its first place is right 2-4x as often as the encoder's, and verifying it stops early), then the
encoder's, cut to ``top_k`` (``fix.candidates``; the encoder's own list is ``fix.encoder_candidates``).
Verification then takes the first ``verify_k`` in order, until an early stop or the deadline. Without a
key index (or with ``vote: false``) the list is the encoder's alone. When the encoder's places are verified
is config ``encoder_places``: ``listed`` (default) after every look's own vote places have failed, if time is
left, the encoder's places join the candidates unverified, unless no look's vote offered a place, when they
are verified as ``last`` does (in the release eval at seeds 0-6 and 11 they fixed 10 of 16,500 frames, for 10-20 ms
on the third of all frames that reach them; docs/VERIFICATION.md, "The encoder's places verified only where
the vote offers none"); ``last`` after every look's own vote places have failed, with the first look's
features, if time is left; ``lazy`` in the first look,
after its vote's places and only when those end without a clear pose; ``first`` the same order with the
encoder made before the vote. A frame that ends on a vote place reports the vote's places as its
``candidates``; a frame left without a pose reports every look's vote places, then the encoder's.
The encoder's descriptor is the mean of the frame's and of its cleaned views' (config ``encoder_views``:
the cloud-filled and the despeckled frame the looks make anyway; docs/VERIFICATION.md, "The encoder sees
the cleaned frame too").

Cloud (config ``cloud_fill``): a frame with 20-85 % cloud-like pixels (``features.cloud_mask``: by colour, or
by brightness alone on a panchromatic frame) is first looked at with its
cloud filled from the clear ground around it (``features.fill_clouds``; features at the keypoint store's
ground sample, ``verify.cloud_fill_config``), then, if that finds nothing and time is left before the
deadline, as it is (a second look, verifying only its own vote's places; its first place only if a place
as slow as the first look's slowest would still end in time). Where less than config ``plain_first_below`` of
the clear ground lies within ``NEAR_CLOUD_KM`` of the cloud (cloud in masses, snow taken for cloud: evidence
``near_cloud_share``), the two looks go the other way round (docs/VERIFICATION.md, "Which look first").
Evidence ``look`` says which look the
hypothesis came from (a frame no look verified reports the reason and evidence of the look that came closest:
the most inliers, then matches); docs/VERIFICATION.md, "The cloud-filled look", has the measurements. Evidence
``looks_cut`` counts the later looks a frame left without a pose did not get because the deadline's plan had
no room for them (a balanced look counted as one even if it would have found no colour cast): such a frame
lost time, not necessarily ground.

Weak places last (config ``defer_votes_below``): in a frame with later looks, the first look's vote places with
fewer votes (two: they fix ~1 % of the frames they are tried on) are verified after the later looks, if time is
left, in the first look's own search (evidence ``deferred``, stage ``deferred_ms``); the time they took went
to later looks that fix more (docs/VERIFICATION.md, "Weak vote places after the later looks").
A later look the deadline's plan has no room for in full (the first look's features and vote plus a place) runs
lean when that fits (config ``lean_looks``; evidence ``lean_looks``): its vote over its strongest keypoints only,
the vote's first batch, which is what a sure place needs (docs/VERIFICATION.md, "Lean later looks"). Its
features known, the plan is asked again with their own count (config ``later_look_check``): a plain look after a
filled one can hold twice the keypoints, and its vote twice the time (docs/VERIFICATION.md, "A later look planned
with its own keypoints").

Small cloud cells (config ``despeckle``): a frame whose cloud-like pixels are mostly fragments under ~6 km
(fair-weather cumulus) is eroded before both looks (``features.despeckle_clouds``; evidence
``speckle_share``; docs/VERIFICATION.md, "Fair-weather cumulus"); if they find nothing and time is left, the
frame as it came gets a last look (evidence ``look`` "undespeckled"; its own vote's places only). A place a
later look's vote finds but its features cannot hold is verified with the filled look's features too (they
see through the cloud; evidence ``look`` "filled"). A colour frame the fill left alone gets, when its plain
look found nothing and time is left, a look with its cloud mask taken from the frame white-balanced by its
brightest pixels (config ``balance_look``; after the plain look, before an undespeckled one; evidence ``look``
"balanced", stages ``balance_ms`` and ``balanced_look_ms``): another sensor's colour cast tints white cloud past
the mask's saturation limit (docs/VERIFICATION.md, "A colour cast and the cloud mask"); never first, because on
a clear desert the brightest pixels are sand. Big frames (config
``max_frame_side_px``) and frames finer than any stage works (config ``shrink_to_work``, ``work_shrink``):
area-averaged once by an integer factor, the camera scaled with them.

    loc = Localizer.load(bundle_dir, config_path)          # once
    fix = loc.locate(frame, camera, attitude=None, time=None)

Everything the Localizer uses is verified before use: the encoder file against its SHA-256 and the
bundle's record of it, every bundle file against the manifest. Latency is measured per stage with
``time.perf_counter``; decoding is the caller's and is excluded. Thread counts come from the config
(1 by default, the setting of every latency figure).
"""
from __future__ import annotations

import math
import time as _time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np

from . import geodesy
from .bundle import Bundle
from .camera import Camera
from .config import load_config
from .confidence import ConfidenceModel
from .encoder import Encoder, sha256_bytes
from .features import (clear_near_cloud_share, despeckle_clouds, exposure_stretched, fill_clouds, repair_lines,
                       sharpened, tone_lifted, work_scale)
from .fix import Candidate, Fix
from .frames import FrameError, check_size, normalise_frame
from .preprocess import preprocess
from .sun import Daylight, sun_direction_ecef, sun_elevation_deg, utc_posix_s
from .threads import limit_threads

BLANK_STD = 2.0            # grey-level std below which a frame carries no information...
BLANK_COARSE_STD = 0.5     # ...unless the frame area-averaged to ~32 px still varies by this much (DN): sensor
                           # noise averages away there (night frames <= 0.35), the ground of a dark frame does not
                           # (a steep tone curve's forest: 0.4-1.8; docs/VERIFICATION.md, "A sensor's tone curve")
FILL_SHARE = (0.2, 0.85)   # cloud-like share of a frame for which the cloud-filled look goes first.
                           # Below, filling fixed no frame the plain look did not (bench_ceiling.py --by-share); above,
                           # too little clear ground is left (an eligible frame has >= 20 % clear land). 0.8 until
                           # session 29: 0.85 fixed cloudy frames at 81-82 % once a pose that one match moves
                           # > 50 km is refused (verify.max_lever_km; docs/VERIFICATION.md)
NEAR_CLOUD_KM = 15.0       # clear ground this close to the fill's cloud counts as near it (Prepared.near_cloud_share)
SECOND_LOOK_EXTRA_MS = 8.0 # a second look costs the first's features and vote plus ~one verified place
ENCODER_MS = 5.0           # preprocess + encode + search, one thread (p50 ~4 ms, p99 ~6 ms: eval reports)
ENCODER_VIEW_MS = 2.5      # each further view the encoder averages (preprocess ~1.4 ms for a 512 px frame + 4 turns)
ENCODER_CLOCK = 32         # the encoder's last runs whose median cost a view sets the plan's floor (_Retrieval)
LOOK_CUT = "no room for the look's vote"    # a later look's reason when the plan, asked again, cut it
DEADLINE_MARGIN = 0.07     # share of deadline_ms kept free of planned work (places and looks admitted by
                           # estimates overran a 60 ms plan by up to 11 ms: release p99 60.6 ms; with 7 %
                           # paired runs gave p99 55.3-57.1 ms for 0-2 main frames of ~300 fewer fixed, 4 %
                           # 60.6 ms; docs/VERIFICATION.md, "The plan inside the budget")
CUMULUS_CELL_KM = 6.0      # ground size of the erosion that takes small cloud cells out (despeckle_clouds)
DESPECKLE_KM_PER_PX = 1.2  # about the finest sample despeckling runs at (finer frames are shrunk for it)


SPACING_FETCH = 4     # spaced encoder places are chosen from the first SPACING_FETCH x top_k views
DAYLIGHT_SLACK_DEG = 5.0   # with the frame's time (config daylight_search) retrieval keeps to ground whose Sun
                           # stands above min_sun_elev_deg less this: the almanac's and the twilight's edge


def _as_candidates(votes, source: str, split_max_sigma_km: float | None = None) -> list[Candidate]:
    """Vote places (``vote.VoteCandidate``) as candidates of ``source``, each with its own search radius and its
    peak's pose (yaw, implied altitude) for verification; the score is its votes. A place found in split bins
    (``VoteCandidate.split``) carries the precision gate ``split_max_sigma_km``."""
    return [Candidate(c.lat, c.lon, float(c.votes), source=source, radius_km=c.radius_km, yaw_deg=c.yaw_deg,
                      alt_km=c.alt_km, max_sigma_km=split_max_sigma_km if c.split else None) for c in votes]


def spaced_places(lat, lon, k: int, spacing_km: float) -> np.ndarray:
    """Positions (ascending) of up to ``k`` places of a best-first list (``lat``, ``lon`` arrays), skipping
    any within ``spacing_km`` of a better kept one; when fewer than ``k`` are that far apart, the best
    skipped ones fill the list (so it stays in rank order)."""
    keep, skipped = [], []
    for i in range(len(lat)):
        if keep and float(geodesy.great_circle_km(lat[i], lon[i], lat[keep], lon[keep]).min()) <= spacing_km:
            skipped.append(i)
            continue
        keep.append(i)
        if len(keep) == k:
            break
    return np.array(sorted(keep + skipped[: max(k - len(keep), 0)]), dtype=np.int64)


class _Retrieval:
    """The encoder's retrieval for one frame, made once when first called: preprocess -> encode -> HNSW
    top-k (stage times into ``stages``). ``views``: the frame, then any cleaned views of it (config
    ``encoder_views``) whose descriptors are averaged with its own. ``candidates`` is None until it has run;
    ``seconds`` is what it cost. ``daylight``: the frame's ``sun.Daylight`` (config daylight_search) or None, the
    one the frame's votes keep to as well."""

    def __init__(self, loc: "Localizer", views: list, stages: dict, camera: Camera | None = None, daylight=None):
        self.loc, self.views, self.stages, self.camera = loc, list(views), stages, camera
        self.daylight = daylight
        self.candidates: list[Candidate] | None = None
        self.seconds = 0.0

    def __call__(self) -> list[Candidate]:
        if self.candidates is None:
            t0 = _time.perf_counter()
            x = np.concatenate([preprocess(v, self.loc.encoder.input_px) for v in self.views])
            t1 = _time.perf_counter()
            desc = self.loc.encoder.encode_views(x)
            t2 = _time.perf_counter()
            self.candidates = self.loc.candidates(desc, self.loc.cfg["top_k"], self.loc.spacing_km(self.camera),
                                                  self.daylight)
            t3 = _time.perf_counter()
            self.stages.update(preprocess_ms=(t1 - t0) * 1e3, encode_ms=(t2 - t1) * 1e3, search_ms=(t3 - t2) * 1e3)
            self.seconds = t3 - t0
            self.loc.encoder_clock.append(self.seconds * 1e3 / len(self.views))
        return self.candidates

    def estimate_ms(self) -> float:
        """What the retrieval should cost, for the deadline's plan: the constants measured on the machines the
        plan was tuned on, or what a view has cost this process (the median of its last ``ENCODER_CLOCK``
        runs) where that is more. Why: on a slower CPU (an AVX2 EPYC, session 82) a frame's three views took
        ~25 ms against the constants' 10, and the encoder's places planned with 10 ended frames up to 70 ms,
        past the 60 ms deadline; on the tuning machines a view costs ~2 ms and the constants rule."""
        n = len(self.views)
        clock = self.loc.encoder_clock
        learned = float(np.median(clock)) * n if len(clock) >= 4 else 0.0
        return max(ENCODER_MS + ENCODER_VIEW_MS * (n - 1), learned)


class Prepared(NamedTuple):
    """A frame made ready for verification: its looks in order (the first is verified first), the share of
    cloud-like pixels the fill found, the share of small cloud cells despeckling took out, the cleaned
    frames (None where the frame needs none), which the encoder may average with it (config ``encoder_views``),
    and how much of the clear ground lies next to the fill's cloud (``features.clear_near_cloud_share``)."""
    looks: list
    cloud_share: float
    speckle_share: float
    filled: np.ndarray | None
    despeckled: np.ndarray | None
    near_cloud_share: float = 0.0     # of the clear ground, the share within NEAR_CLOUD_KM of the fill's mask


class Conditioned(NamedTuple):
    """A frame as every stage sees it (``Localizer._conditioned``): the image, the exposure gain and the
    tone lift's power applied to it (1.0: none), its blur ratio and whether it was sharpened (evidence
    ``exposure_gain``, ``tone_gamma``, ``blur_ratio``, ``sharpened``)."""
    image: np.ndarray
    gain: float
    power: float
    blur_ratio: float
    sharpened: bool
    lines: int = 0              # stuck columns and rows mended (evidence ``lines_mended``)
    striping: float = 0.0       # the lines' gains' spread found (evidence ``striping``; equalised above the config's)
    mended: bool = False        # the line repair changed the frame (its poses meet repaired_max_bore_sigma_km)


class Look(NamedTuple):
    """One way of looking at a frame: its name (evidence ``look``), the image, the verifier that extracts
    and verifies on it, and the pixels no keypoint may be centred on (the filled cloud) or None. A look
    made only when it is reached has a function for its image that returns (image, drop) or None (no
    such look for this frame)."""
    name: str
    image: np.ndarray | Callable[[], tuple | None]
    verifier: object
    drop: np.ndarray | None


@dataclass
class _FrameSearch:
    """One frame's verification under way (``Localizer.locate``: ``_first_look``, ``_later_looks``,
    ``_after_looks``, ``_answer``). ``v`` is the answer that stands and ``look`` the index of the look it came
    from; ``candidates`` the list ``v.candidate`` indexes (the places verified lead it); ``v_first`` the first
    look's search, which later places resume; ``tried`` every look's answer (a frame without a fix reports the
    closest); ``slowest_s`` the slowest place of any look, the deadline's bar for the next; ``deadline`` a
    ``time.perf_counter`` time."""
    camera: Camera
    attitude: object
    deadline: float
    stages: dict
    retrieval: _Retrieval
    order: str                       # config encoder_places, "last" once no look's vote offered a place
    prep: Prepared
    first_feats: object              # the first look's Features (later places are verified with them too)
    first_query: object              # the first look's vote search (a wide vote's), or None
    weak: list                       # the first look's deferred vote places (config defer_votes_below)
    v: object
    v_first: object
    candidates: list
    slowest_s: float
    look: int = 0
    tried: list = field(default_factory=list)
    later_votes: list = field(default_factory=list)   # places later looks' votes found that did not verify
    verified: list = field(default_factory=list)      # the candidates the answer's place index refers to
    looks_cut: int = 0               # later looks the plan had no room for (evidence)
    lean_looks: int = 0              # later looks run lean (evidence)
    lowres_cut: bool = False         # the low-resolution store's look had no room in the deadline's plan


def despeckle_geometry(vcfg, camera: Camera) -> tuple[int, int]:
    """(shrink, cell_px) of ``features.despeckle_clouds`` for ``camera``: frames finer than
    ``DESPECKLE_KM_PER_PX`` at the nominal altitude are despeckled area-averaged by the nearest integer
    factor to it (a 1024 px / 40 deg frame by 3: ~2 ms instead of 8), and the erosion is the odd size (>= 3
    px) spanning ``CUMULUS_CELL_KM`` of ground there: 3 px at 256 px / 80 deg, 5 at 512 px / 60 deg."""
    from .verify import native_km_per_px
    km = native_km_per_px(vcfg, camera)
    if not km > 0.0 or not math.isfinite(km):      # a degenerate nominal altitude: judge at full size
        return 1, 3
    shrink = max(1, int(round(DESPECKLE_KM_PER_PX / km)))
    n = CUMULUS_CELL_KM / (km * shrink)
    return shrink, max(3, 2 * int(round((n - 1.0) / 2.0)) + 1)


def place_bar_s(slowest_s: float) -> float:
    """The bar a place is admitted against where none may have been timed yet (s): the slowest place so far
    (``slowest_s``), and at least a typical one (``SECOND_LOOK_EXTRA_MS``)."""
    return max(slowest_s, SECOND_LOOK_EXTRA_MS / 1e3)


def _look_stage(name: str, i: int) -> str:
    """The stage a later look's time is recorded under (``Fix.stages_ms``)."""
    return "balanced_look_ms" if name == "balanced" else "second_look_ms" if i == 1 else "third_look_ms"


def look_plan(now_s: float, deadline_s: float, full_ms: float, lean_ms: float | None) -> str | None:
    """How a later look runs at ``now_s`` (``time.perf_counter``): "full" when one of ``full_ms`` ends before
    ``deadline_s``, else "lean" when one of ``lean_ms`` does (None: no lean looks), else None (not at all)."""
    if now_s + full_ms / 1e3 < deadline_s:
        return "full"
    if lean_ms is not None and now_s + lean_ms / 1e3 < deadline_s:
        return "lean"
    return None


def fit_frame(img: np.ndarray, camera: Camera, max_side_px: int, shrink: int = 1):
    """(image, camera, shrunk): a frame area-averaged once by ``shrink``, or by the least integer factor that
    brings its longer side within ``max_side_px`` if that is more, the camera scaled with it
    (``Camera.scaled``)."""
    shrink = max(int(shrink), -(-max(img.shape[:2]) // max_side_px))
    if shrink <= 1:
        return img, camera, False
    # every stage works far coarser than a big frame's pixels: area-average it once (an integer
    # factor: OpenCV's fast path where it divides both sides) instead of resampling it per stage. The
    # size is given, not the factor: OpenCV maps by the factor given, and a side the factor does not
    # divide would then be off Camera.scaled's mapping (the sizes' ratio) by up to half a shrunk pixel
    h, w = img.shape[:2]
    size = (max(1, round(w / shrink)), max(1, round(h / shrink)))
    out = img
    # OpenCV's 2 x 2 area path is ~3x faster per pixel than its general integer one (2048 px by 4: 3.0 ms
    # as two halvings, 5.8 in one): halve while the factor and both sides are even, then the rest
    while shrink % 2 == 0 and out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0:
        out = cv2.resize(out, (out.shape[1] // 2, out.shape[0] // 2), interpolation=cv2.INTER_AREA)
        shrink //= 2
    if (out.shape[1], out.shape[0]) != size:
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    return out, camera.scaled(*size), True


def shipped_models_dir() -> Path:
    import earthfix.models as m
    return Path(list(m.__path__)[0])


class Localizer:
    def __init__(self, bundle: Bundle, encoder: Encoder, config: dict, confidence: ConfidenceModel):
        from .verify import Verifier, VerifyConfig
        self.bundle = bundle
        self.encoder = encoder
        self.cfg = config
        self.warm_up_ms = 0.0                    # the load's synthetic frame (warm_up), 0 until it has run
        self.encoder_clock: deque = deque(maxlen=ENCODER_CLOCK)   # ms a view of the encoder's last runs
        self.confidence = confidence
        vcfg = VerifyConfig(**{k: v for k, v in config.get("verify", {}).items()})
        self.verifier = Verifier(bundle.keystore, vcfg) if bundle.keystore is not None else None
        fine = getattr(bundle, "keystore_fine", None) if config.get("fine_store", True) else None
        self.fine_verifier = Verifier(fine, vcfg) if fine is not None and self.verifier is not None else None
        self._fill_verifiers: dict = {}
        self._work_shrinks: dict = {}         # camera -> work_shrink
        self.voter = self.lowres_voter = None
        self._twins: dict = {}                # (a verifier, a store, a precision gate) -> its twin (``_twin``)
        if config.get("vote", True) and self.verifier is not None and getattr(bundle, "keyindex", None) is not None:
            from .vote import KeypointVoter, VoteConfig
            vote_cfg = VoteConfig(min_votes=int(config["vote_min_votes"]),
                                  ef=max(int(config["vote_ef"]), int(config["vote_wide_k"])),
                                  wide_k=int(config["vote_wide_k"]),
                                  min_bin_share=float(config["vote_min_bin_share"]))
            self.voter = KeypointVoter(bundle.keystore, bundle.keyindex, vote_cfg)
            lowres = getattr(bundle, "keystore_lowres", None)
            if config.get("lowres_store", True) and lowres is not None:
                self.lowres_voter = KeypointVoter(lowres, bundle.keyindex_lowres, vote_cfg)
        # OpenCV's pool and OpenBLAS's (OpenCV's gemm runs on it) as the config says, whatever was imported first
        limit_threads(int(config["threads"]))

    @classmethod
    def load(cls, bundle_dir, config_path=None, config: dict | None = None) -> "Localizer":
        cfg = load_config(config_path, config)
        enc_path = Path(cfg["encoder"]) if cfg["encoder"] else shipped_models_dir() / "encoder_int8.onnx"
        if not enc_path.is_file():
            raise FileNotFoundError(f"encoder not found: {enc_path}")
        enc_bytes = enc_path.read_bytes()
        # the bundle's record of its encoder is checked before onnxruntime parses a single byte
        # parts the config never uses are checked but not held (fine_store, lowres_store, vote false)
        bundle = Bundle.load(bundle_dir, encoder_sha256=sha256_bytes(enc_bytes), threads=cfg["threads"],
                             providers=cfg["providers"], load_fine=bool(cfg["fine_store"]),
                             load_lowres=bool(cfg["lowres_store"]), load_keyindex=bool(cfg["vote"]))
        # query turns: as the bundle's references were encoded (its manifest), unless the config says
        rotations = cfg["rotations"] or int(bundle.manifest["encoder"].get("rotations", 4))
        encoder = Encoder(enc_bytes, threads=cfg["threads"], providers=cfg["providers"],
                          rotations=rotations, name=str(enc_path))
        conf_path = cfg["confidence"].get("path") or shipped_models_dir() / "confidence.json"
        loc = cls(bundle, encoder, cfg, ConfidenceModel.load(conf_path))
        if cfg["warm_up"]:
            loc.warm_up()
        return loc

    def warm_up(self) -> float:
        """One synthetic frame through every stage it reaches (config ``warm_up``, at load); returns its ms.

        Why: the first frame a process locates otherwise pays each library's first call — onnxruntime's
        sessions, OpenCV's SIFT and matcher, hnswlib's first searches — on top of its own work, inside its
        deadline: 2-4 ms over the same frame located again, 0-2 ms with this (numpy's lazy imports, 20-25 ms more,
        the flight modules now make at import; docs/BENCHMARKS.md, "The first frame"). A host that runs
        ``locate`` once per frame pays it on every frame. The frame is seeded texture (no place on Earth), so it
        changes no later answer."""
        t0 = _time.perf_counter()
        rng = np.random.default_rng(0)
        g = cv2.GaussianBlur(rng.random((256, 256), dtype=np.float32) * 255.0, (0, 0), 2.0)
        g = cv2.normalize(g, None, 20, 200, cv2.NORM_MINMAX).astype(np.uint8)
        self.locate(cv2.merge([g, (g * 0.8).astype(np.uint8), (g * 0.6).astype(np.uint8)]),
                    Camera.from_fov(256, 256, 80.0))
        self.encoder_clock.clear()              # first calls are not the machine's pace
        self.warm_up_ms = (_time.perf_counter() - t0) * 1e3
        return self.warm_up_ms

    # ---- one frame -----------------------------------------------------------------------------
    def spacing_km(self, camera: Camera | None) -> float:
        """The encoder's places closer than this to a better one are skipped (config ``encoder_spacing`` x the
        camera's footprint half-width at the nominal altitude; 0: off)."""
        f = self.cfg["encoder_spacing"]
        if not f or camera is None:
            return 0.0
        from .verify import VerifyConfig
        alt_km = (self.verifier.cfg if self.verifier is not None else VerifyConfig).nominal_alt_km
        return f * camera.footprint_half_width_km(alt_km)

    def candidates(self, desc: np.ndarray, k: int, spacing_km: float = 0.0, daylight=None) -> list[Candidate]:
        """The encoder's top-``k`` reference views as candidates, best first. With ``spacing_km`` > 0 the list
        is thinned from the first 4 k: a view within ``spacing_km`` of a better one is the same place for
        recall and for verification (which merges them), so the next distinct place takes its slot; when
        there are fewer than k distinct places, the best skipped views fill the list, in rank order. With
        ``daylight`` (``sun.Daylight`` at the frame's time) views none of whose ground is lit are dropped
        from the first 4 k before that."""
        if spacing_km > 0 or daylight is not None:
            idx, sim = self.bundle.search(desc, SPACING_FETCH * k)
            if daylight is not None:
                reach_deg = np.degrees(np.asarray(self.bundle.scales_km)[self.bundle.scale[idx]] / geodesy.R_MEAN_KM)
                lit = np.flatnonzero(daylight.lit(self.bundle.lat[idx], self.bundle.lon[idx], reach_deg))
                idx, sim = idx[lit], sim[lit]
            keep = (spaced_places(self.bundle.lat[idx], self.bundle.lon[idx], k, spacing_km) if spacing_km > 0
                    else np.arange(min(k, len(idx))))
            idx, sim = idx[keep], sim[keep]
        else:
            idx, sim = self.bundle.search(desc, k)
        return [Candidate(float(self.bundle.lat[i]), float(self.bundle.lon[i]), float(s), int(i),
                          int(self.bundle.scale[i])) for i, s in zip(idx, sim)]

    def verifier_for(self, camera: Camera):
        """The verifier of plain looks for ``camera``: on the bundle's fine keypoint store when the camera's
        working pixel is finer than the coarse store's sample (``verify.wants_fine_store``), else on the
        coarse one. The vote always uses the coarse store's key index."""
        from .verify import wants_fine_store
        if self.fine_verifier is not None and wants_fine_store(self.verifier.cfg, camera, self.verifier.store.gsd_km):
            return self.fine_verifier
        return self.verifier

    def fill_verifier(self, camera: Camera):
        """The verifier of cloud-filled looks for ``camera`` (``verify.cloud_fill_config``), on the store
        ``verifier_for`` picks but sampled for the coarse store: a 512 px / 60 deg frame filled and matched
        at the fine store's 4 km (173 px) gave 1 trusted pose 63 km off in 450 calibration frames, at the
        coarse store's sample (128 px) none, and 4 more right fixes (docs/VERIFICATION.md)."""
        key = (camera.width, camera.height, camera.fx, camera.fy)
        v = self._fill_verifiers.get(key)
        if v is None:
            from .verify import Verifier, cloud_fill_config
            base = self.verifier_for(camera)
            v = self._fill_verifiers[key] = Verifier(
                base.store, cloud_fill_config(base.cfg, camera, self.verifier.store.gsd_km))
        return v

    def _twin(self, verifier, gate_km: float | None = None, store=None):
        """``verifier``, or its twin (cached) on ``store`` (None: its own) whose precision gate
        (``max_bore_sigma_km``) is the tighter of its own and ``gate_km``: a mended frame's looks (every place of
        it held to the gate) and the low-resolution store's places verify with such twins."""
        store = verifier.store if store is None else store
        own = verifier.cfg.max_bore_sigma_km
        gate = own if gate_km is None else min(float(gate_km), own)
        if store is verifier.store and gate == own:
            return verifier
        key = (verifier, store, gate)
        if key not in self._twins:
            from .verify import Verifier
            self._twins[key] = Verifier(store, replace(verifier.cfg, max_bore_sigma_km=gate))
        return self._twins[key]

    def _places(self, cands, verifier) -> list[tuple]:
        """(lat, lon, search radius km[, yaw deg, altitude km]) of the first ``verify_k`` candidates: a vote
        place's own radius and pose prior, else the verifier's radius factor x the candidate view's footprint
        half-width."""
        rf = verifier.cfg.radius_factor
        out = []
        for c in cands[: self.cfg["verify_k"]]:
            r = c.radius_km if c.radius_km is not None else rf * self.bundle.scales_km[c.scale]
            prior = (c.yaw_deg, c.alt_km) if c.yaw_deg is not None and c.alt_km is not None else ()
            gate = (c.max_sigma_km,) if prior and c.max_sigma_km is not None else ()
            out.append((c.lat, c.lon, r) + prior + gate)
        return out

    def _look(self, img, verifier, drop, camera, attitude, deadline, cands, stages, place_s=0.0, retrieval=None,
              defer_below: int = 0, lean: bool = False, daylight=None, admit=None):
        """Local features (none centred on ``drop``) -> keypoint vote (merged ahead of the encoder's
        ``cands``) -> verification. Returns (candidate list, Verification, Features, the vote's search for a
        wide vote or None: ``vote.VoteQuery``, the vote places left unverified); stage times go into ``stages``.

        ``defer_below``: vote places with fewer votes are not verified here but returned last, for the caller
        to verify after the frame's later looks (``Verifier.resume`` of this look's search). ``lean``: the vote
        over the strongest ``VoteConfig.first_query`` keypoints only (its first batch); verification uses all.

        With ``retrieval`` (a ``_Retrieval`` not yet run) the encoder's candidates are that retrieval's, made
        only if the vote's places end without a clear pose (``encoder_places: lazy``): the places verified
        and the answer are the same as with them made first. ``daylight``: the vote keeps to lit ground.
        ``admit(n_keypoints)``: asked once the features are known, "full", "lean" or None (the look ends there,
        nothing verified): a later look's vote costs with its own keypoints, which the plan could not know."""
        t = _time.perf_counter()
        feats = verifier.extract(img, drop=drop)
        stages["features_ms"] = (_time.perf_counter() - t) * 1e3
        voted, query = [], None
        if admit is not None:
            how = admit(len(feats))
            if how is None:
                from .verify import Verification
                return [], Verification(reason=LOOK_CUT), feats, None, []
            lean = lean or how == "lean"
        if self.voter is not None:
            t = _time.perf_counter()
            strongest = feats
            if lean and 0 < self.voter.cfg.first_query < len(feats):
                strongest = feats.subset(np.arange(self.voter.cfg.first_query))
            votes = self.voter.candidates(strongest, camera, max_candidates=self.cfg["vote_k"], daylight=daylight)
            query = self.voter.last_query
            stages["vote_ms"] = (_time.perf_counter() - t) * 1e3
            voted = _as_candidates(votes, "vote", self.cfg["vote_split_max_sigma_km"])
        # weak places wait for the frame's later looks; so do places from split bins (they carry a gate of their
        # own: vote_min_bin_share), found where the vote's floor of one whole vote saw nothing: a chance slower
        # than the later looks' own (verified at once they cost those looks' fixes under the deadline)
        waits = [c.score < defer_below or (defer_below > 0 and c.max_sigma_km is not None) for c in voted]
        weak = [c for c, w in zip(voted, waits) if w]
        voted = [c for c, w in zip(voted, waits) if not w]
        lazy = retrieval is not None and bool(voted)
        if retrieval is not None and not voted:
            cands = retrieval()
        merged = (voted + ([] if lazy else list(cands)))[: self.cfg["top_k"]]
        t = _time.perf_counter()
        v = verifier.verify(feats, camera, self._places(merged, verifier), attitude=attitude, deadline=deadline,
                            place_s=place_s)
        stages["verify_ms"] = (_time.perf_counter() - t) * 1e3
        if lazy:
            merged, v = self._encoder_places(verifier, v, merged, retrieval, deadline, stages, "verify_ms")
        return merged, v, feats, query, weak

    def _encoder_places(self, verifier, v, merged, retrieval, deadline, stages, stage, place_s=0.0):
        """``v`` (a verification of the places ``merged``) resumed over the encoder's top-k behind them,
        when it is resumable: (candidate list, Verification). ``place_s``: the slowest place of any look
        (the deadline's bar). The encoder's time goes into its own stages, the places' into ``stages[stage]``."""
        if not v.resumable:
            return merged, v
        enc_s = retrieval.seconds
        t = _time.perf_counter()
        merged = (merged + retrieval())[: self.cfg["top_k"]]
        v = verifier.resume(v, self._places(merged, verifier), deadline, place_s)
        enc_s = retrieval.seconds - enc_s
        stages[stage] = stages.get(stage, 0.0) + (_time.perf_counter() - t - enc_s) * 1e3
        return merged, v

    def _wide_places(self, query, verifier, feats, camera, attitude, deadline, place_s, v, stages):
        """Last of all, the first look's wide vote (config ``vote_wide_k``; on other imagery the right store
        keypoint is more often a keypoint's 3rd or 4th neighbour): (its places as candidates, their
        Verification or None). Made only now, so that no frame another place fixes waits for it; its places are
        verified apart, each in its own circle from its own pose (merged into an encoder place's wider circle a
        wide place loses both), with ``feats``, the first look's features. A pose's margin over the second place
        counts the places ``v`` verified before, as one search over all of them would (the confidence model
        was fitted on such margins)."""
        t = _time.perf_counter()
        wide = _as_candidates(self.voter.wide_candidates(query, max_candidates=self.cfg["vote_k"]), "wide",
                              self.cfg["vote_split_max_sigma_km"])
        stages["wide_vote_ms"] = (_time.perf_counter() - t) * 1e3
        if not wide:
            return wide, None
        t = _time.perf_counter()
        vw = verifier.verify(feats, camera, self._places(wide, verifier), attitude=attitude, deadline=deadline,
                             place_s=place_s)
        if vw.ok:
            vw.second_inliers = max(int(vw.second_inliers), int(v.inliers))
            vw.evidence.update(second_inliers=vw.second_inliers, inlier_margin=int(vw.inliers) - vw.second_inliers)
        stages["wide_places_ms"] = (_time.perf_counter() - t) * 1e3
        return wide, vw

    def _lowres_look(self, s: _FrameSearch) -> None:
        """After the looks, as the deadline allows: the first look's features voted on the bundle's low-resolution
        keypoint store (``keystore_lowres.npz``: the same maps area-averaged to ``keystore.lowres_map_px`` pixels
        around the globe) and its places verified there with the first look's verifier settings.
        Why: frames of imagery coarser than the maps (global mosaics of 10-20 km a pixel) have lost the finer
        blobs the main store matches on; the low-resolution store holds what they still show. It never replaces
        the main store (it loses frames of fine imagery) and comes after every look's own places: made after a
        failed first look, it cut the later looks that fix veiled frames (docs/VERIFICATION.md, "Low-resolution
        imagery"); since session 74 it comes before the encoder's places. The frame's features are reused: a
        store's projection is made where they are matched."""
        first, stages = s.prep.looks[0], s.stages
        look_ms = stages.get("vote_ms", 0.0) + SECOND_LOOK_EXTRA_MS
        if look_plan(_time.perf_counter(), s.deadline, look_ms, None) is None:
            s.lowres_cut = True
            return
        t = _time.perf_counter()
        votes = self.lowres_voter.candidates(s.first_feats, s.camera, max_candidates=self.cfg["vote_k"],
                                             daylight=s.retrieval.daylight)
        cands = _as_candidates(votes, "lowres", self.cfg["vote_split_max_sigma_km"])
        stages["lowres_vote_ms"] = (_time.perf_counter() - t) * 1e3
        if not cands:
            return
        if _time.perf_counter() + place_bar_s(s.slowest_s) > s.deadline:
            s.lowres_cut = True
            return
        # the store's keypoints sit on blurred maps: a pose's errors run further past its sigma (82 fixes
        # deadline-free: error/sigma up to 6.3, one 46 km off at 7.3 km), so its precision gate is tighter
        ver = self._twin(first.verifier, self.cfg["lowres_max_bore_sigma_km"], self.bundle.keystore_lowres)
        t = _time.perf_counter()
        v = ver.verify(s.first_feats, s.camera, self._places(cands, ver), attitude=s.attitude, deadline=s.deadline,
                       place_s=s.slowest_s)
        stages["lowres_places_ms"] = (_time.perf_counter() - t) * 1e3
        s.slowest_s = max(s.slowest_s, v.slowest_place_s)
        if v.ok:
            s.candidates = (cands + s.candidates)[: self.cfg["top_k"]]
            s.v, s.verified, s.look = v, cands, 0
        else:
            s.tried.append((v, 0))
            s.later_votes += cands

    def _with_votes(self, cands: list[Candidate], votes: list[Candidate], camera: Camera) -> list[Candidate]:
        """A frame left without a pose reports every place retrieval proposed: ``votes`` (later looks'
        vote places) after the vote places of ``cands`` and ahead of its encoder places, each unless it lies
        within the encoder's spacing of a vote place already listed; cut to ``top_k``."""
        head = [c for c in cands if c.source == "vote"]
        sp = self.spacing_km(camera)
        for c in votes:
            if not head or float(geodesy.great_circle_km(c.lat, c.lon, np.array([h.lat for h in head]),
                                                         np.array([h.lon for h in head])).min()) > sp:
                head.append(c)
        return (head + [c for c in cands if c.source != "vote"])[: self.cfg["top_k"]]

    def _first_batch_share(self) -> float:
        """The share of the last vote's queried keypoints in its first batch (``VoteConfig.first_query``): what a
        lean look's vote costs of a full one's."""
        if self.voter is None:
            return 1.0
        queried, first = self.voter.last_stats.get("queried", 0), self.voter.cfg.first_query
        return min(1.0, first / queried) if first > 0 and queried > 0 else 1.0

    def _fit_frame(self, img: np.ndarray, camera: Camera):
        """(image, camera, shrunk): ``fit_frame`` at config ``max_frame_side_px``, and by ``work_shrink`` with
        config ``shrink_to_work``."""
        least = self.work_shrink(camera) if self.cfg["shrink_to_work"] else 1
        return fit_frame(img, camera, int(self.cfg["max_frame_side_px"]), least)

    def work_shrink(self, camera: Camera) -> int:
        """The integer factor a frame of ``camera`` is area-averaged by once with no stage then working finer
        than its pixels: the despeckling's sample (``despeckle_geometry``: ~1.2 km at the nominal altitude)
        and twice the cloud-filled look's working side (``features.fill_clouds``' mask); of the factors up to
        that, the largest that divides both sides (OpenCV's fast path: ~0.4 ms for 1024 px to 512, 4.7 ms to
        341), else that. 1 for 256 px at 80 deg and 512 px at 60 deg; 2 for 1024 px at 40 deg, 4 for 2048 px
        at 60 deg. Why: the tone, sharpening, despeckling and fill stages run on the frame as given (a 1024
        px frame's unsharp mask alone took ~20 ms; docs/BENCHMARKS.md, "Big frames")."""
        key = (camera.width, camera.height, camera.fx, camera.fy)
        k = self._work_shrinks.get(key)
        if k is None and self.verifier is None:
            k = 1                                      # nothing verified: the encoder alone, at its own size
        elif k is None:
            side = max(camera.width, camera.height)
            ds, _ = despeckle_geometry(self.verifier_for(camera).cfg, camera)
            fill = self.fill_verifier(camera).cfg.feature
            fill_side = 2.0 * work_scale(fill, (camera.height, camera.width)) * side
            most = max(1, min(ds, int(side // max(fill_side, 1.0))))
            k = next((f for f in range(most, 1, -1) if camera.width % f == 0 and camera.height % f == 0), most)
            self._work_shrinks[key] = k
        return k

    def prepare(self, img: np.ndarray, camera: Camera, stages: dict, gate_km: float | None = None) -> Prepared:
        """The looks of a frame to verify (despeckled, cloud-filled, as it came; stage times into
        ``stages``) and the cleaned views the encoder averages with it. ``gate_km``: a precision gate tighter
        than the verifiers' own that every look's poses are held to (``_twin``)."""
        # cloud: a frame with broken cloud is looked at with its cloud-like pixels filled from the
        # clear ground around them (features.fill_clouds) first, then as it is (snow, ice and pale
        # desert look like cloud and are better seen unfilled); a frame whose clear ground lies mostly
        # away from the cloud (config plain_first_below) is looked at as it is first, then filled
        plain_ver = self._twin(self.verifier_for(camera), gate_km)
        # a grey frame is judged and filled as three equal bands (features.cloud_mask: by brightness)
        bgr = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        speckle = 0.0
        raw = img
        filled = None
        if self.cfg["despeckle"]:
            # fair-weather cumulus: cells of a few km, each brightening the pixels it covers part of
            t = _time.perf_counter()
            ds_shrink, cell_px = despeckle_geometry(plain_ver.cfg, camera)
            out, speckle = despeckle_clouds(img, bgr, cell_px, plain_ver.cfg.feature, shrink=ds_shrink)
            if out is not img:
                img = out
                bgr = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            stages["despeckle_ms"] = (_time.perf_counter() - t) * 1e3
        looks = [Look("plain", img, plain_ver, None)]
        share = near = 0.0
        if self.cfg["cloud_fill"]:
            t = _time.perf_counter()
            fver = self._twin(self.fill_verifier(camera), gate_km)
            filled, mask = fill_clouds(bgr, fver.cfg.feature, share=FILL_SHARE)
            share = 0.0 if mask is None else cv2.countNonZero(mask.view(np.uint8)) / mask.size
            if filled is not bgr:
                # no keypoint centred on the filled cloud: the budget goes to the clear ground
                looks = [Look("filled", filled, fver, mask), Look("plain", img, plain_ver, None)]
                from .verify import native_km_per_px
                km_px = native_km_per_px(plain_ver.cfg, camera) * max(camera.width, camera.height) / max(mask.shape)
                near = clear_near_cloud_share(mask, NEAR_CLOUD_KM / km_px) if km_px > 0 else 1.0
                if near < self.cfg["plain_first_below"]:
                    # cloud in masses (or snow taken for it): the clear ground lies away from its edges, the
                    # frame as it is fixes sooner, and after a failed filled look it often had no time left
                    looks.reverse()
            else:
                filled = None
            stages["fill_ms"] = (_time.perf_counter() - t) * 1e3
            if filled is None and bgr.ndim == 3 and self.cfg["balance_look"]:
                # a colour cast (another sensor's band gains) gives clouds its colour and hides them
                # from the mask: a later look, made only when reached, with the mask of the balanced frame
                looks.append(Look("balanced", lambda b=bgr, v=fver: self._balanced(b, v), fver, None))
        if img is not raw:
            # erosion also widens dark ground features and takes patchy snow out: a frame it was
            # wrong about gets a last look as it came
            looks.append(Look("undespeckled", raw, plain_ver, None))
        return Prepared(looks, share, speckle, filled, None if img is raw else img, near)

    @staticmethod
    def _balanced(bgr: np.ndarray, fver) -> tuple | None:
        """(cloud-filled frame, its mask) with the cloud taken from the white-balanced frame, or None when
        the frame needs no balance or the balanced mask's share lies outside FILL_SHARE."""
        filled, mask = fill_clouds(bgr, fver.cfg.feature, share=FILL_SHARE, balance=True)
        return None if filled is bgr else (filled, mask)

    def encoder_views(self, prep: Prepared) -> list:
        """The cleaned frames of ``prep`` the encoder averages with the frame (config ``encoder_views``)."""
        named = {"filled": prep.filled, "despeckled": prep.despeckled}
        return [named[n] for n in self.cfg["encoder_views"] if named[n] is not None]

    def sharpened(self, img: np.ndarray, camera: Camera) -> tuple[np.ndarray, float]:
        """(the frame, unsharp-masked when its blur ratio at the plain look's working resolution is under
        config ``sharpen_below``; the ratio) (``features.sharpened``)."""
        return sharpened(img, self.verifier_for(camera).cfg.feature, self.cfg["sharpen_below"])

    def toned(self, img: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The tone stage: (the frame, the gain, the power applied). An underexposed frame (its brightest
        pixels under config ``exposure_below_dn``) is scaled up (``features.exposure_stretched``), then a frame
        darker than config ``tone_lift_dn`` at its 25th percentile is lifted to it (``features.tone_lifted``;
        1.0, 1.0: as it came)."""
        img, gain = exposure_stretched(img, self.cfg["exposure_below_dn"])
        img, power = tone_lifted(img, self.cfg["tone_lift_dn"])
        return img, gain, power

    def _conditioned(self, img: np.ndarray, camera: Camera, stages: dict) -> "Conditioned":
        """The frame every stage sees: its sensor's line defects mended (``features.repair_lines``), through the
        tone stage (``toned``), then sharpened when blurred; stage times into ``stages``. ``locate`` and the
        eval's encoder rows (``encoder_images``) both see the frame through this."""
        t = _time.perf_counter()
        repaired, lines = repair_lines(img, self.cfg["repair_striping_above"])
        stages["lines_ms"] = (_time.perf_counter() - t) * 1e3
        t = _time.perf_counter()
        lifted, gain, power = self.toned(repaired)
        stages["tone_ms"] = (_time.perf_counter() - t) * 1e3
        t = _time.perf_counter()
        out, blur = self.sharpened(lifted, camera)
        stages["sharpen_ms"] = (_time.perf_counter() - t) * 1e3
        return Conditioned(out, gain, power, blur, out is not lifted, lines["lines"], lines["striping"],
                           repaired is not img)

    def _verifying(self, img: np.ndarray) -> tuple[bool, bool]:
        """(blank, verifying) for a normalised frame."""
        grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        blank = float(grey.std()) < BLANK_STD
        if blank:
            f = max(1, max(grey.shape) // 32)
            coarse = cv2.resize(grey.astype(np.float32), None, fx=1.0 / f, fy=1.0 / f, interpolation=cv2.INTER_AREA)
            blank = float(coarse.std()) < BLANK_COARSE_STD
        return blank, self.verifier is not None and self.cfg["verify_k"] > 0 and not blank

    def encoder_candidates(self, frame, camera: Camera) -> list[Candidate]:
        """The encoder's own top-k for ``frame``, as ``locate`` makes it (``fix.encoder_candidates``), for
        evaluation: ``locate`` makes it only when the vote's places leave the answer open (config
        ``encoder_places``)."""
        views, cam = self.encoder_images(frame, camera)
        return _Retrieval(self, views, {}, cam)()

    def encoder_images(self, frame, camera: Camera) -> tuple[list, Camera]:
        """(the images whose descriptors the encoder averages for ``frame``: the frame first, as ``locate``
        fits it, then its cleaned views; the camera they are seen with), for evaluation."""
        img = normalise_frame(frame)
        check_size(img, camera.width, camera.height)
        img, cam, _ = self._fit_frame(img, camera)
        _, verifying = self._verifying(img)
        if not verifying:
            return [img], cam
        img = self._conditioned(img, cam, {}).image
        return [img] + self.encoder_views(self.prepare(img, cam, {})), cam

    def locate(self, frame, camera: Camera, attitude=None, time=None) -> Fix:
        """Localize one frame (uint8 BGR or grey, or any array ``frames.normalise_frame`` accepts). ``attitude``:
        the camera->ECEF quaternion (w, x, y, z) or rotation matrix, when a star tracker gives it; ``time``: the
        frame's UTC time (POSIX seconds, a datetime or ISO 8601), when the clock gives it: a pose whose
        boresight point is dark at that time is then no fix (config ``min_sun_elev_deg``)."""
        t0 = _time.perf_counter()
        stages = {}
        try:
            img = normalise_frame(frame)
            check_size(img, camera.width, camera.height)
            time_s = None if time is None else utc_posix_s(time)
        except (FrameError, ValueError) as exc:
            return Fix.failed(str(exc))
        t = _time.perf_counter()
        img, camera, shrunk = self._fit_frame(img, camera)
        if shrunk:
            stages["shrink_ms"] = (_time.perf_counter() - t) * 1e3
        blank, verifying = self._verifying(img)
        cond = Conditioned(img, 1.0, 1.0, 1.0, False)
        if verifying:
            cond = self._conditioned(img, camera, stages)
            img = cond.image
        # with the frame's time, the Sun (once): retrieval keeps to ground lit then (config daylight_search)
        # and a pose in the dark is no fix (_answer)
        sun = None if time_s is None else sun_direction_ecef(time_s)
        daylight = None
        if sun is not None and self.cfg["daylight_search"] and self.cfg["min_sun_elev_deg"] > -90.0:
            daylight = Daylight(sun, self.cfg["min_sun_elev_deg"] - DAYLIGHT_SLACK_DEG)
        retrieval = _Retrieval(self, [img], stages, camera, daylight)
        # the encoder runs only when its places are to be verified: "lazy" when the first look's vote
        # places leave the answer open, "last" when every look's have (docs/VERIFICATION.md)
        order = self.cfg["encoder_places"] if verifying and self.voter is not None else "first"
        fix = Fix(candidates=[], encoder_candidates=[])
        if not verifying:
            fix.candidates = fix.encoder_candidates = retrieval()
        if blank:
            fix.reason = "blank frame"
        elif verifying:
            # a frame whose lines were mended keeps their residue (interpolated columns, a part of the gain pattern),
            # which can pin a few-inlier pose wrongly (two such fixes 54 and 69 km off at sigma 6.9-7.7 km on a
            # held-out map): every place and look of it is held to a tighter precision gate, so that a pose
            # refused there leaves the search to go on (docs/VERIFICATION.md, "A sensor's line defects")
            gate_km = self.cfg["repaired_max_bore_sigma_km"] if cond.mended else None
            search = self._first_look(img, camera, attitude, t0, stages, retrieval, order, gate_km)
            self._later_looks(search)
            self._after_looks(search)
            self._answer(fix, search, cond, sun)
        fix.latency_ms = (_time.perf_counter() - t0) * 1e3
        stages["total_ms"] = fix.latency_ms
        fix.stages_ms = {k: round(v, 3) for k, v in stages.items()}
        return fix

    def _first_look(self, img, camera, attitude, t0, stages, retrieval, order, gate_km=None) -> _FrameSearch:
        """The frame's looks made (``prepare``, every look's poses held to ``gate_km`` when it is given) and the
        first one verified: the search that later looks go on."""
        # a place or a look, once started, runs to its end: work is admitted against a plan that ends
        # DEADLINE_MARGIN inside the budget, so that the frame ends within it
        deadline = t0 + self.cfg["deadline_ms"] * (1.0 - DEADLINE_MARGIN) / 1e3
        prep = self.prepare(img, camera, stages, gate_km)
        retrieval.views += self.encoder_views(prep)
        cands = retrieval() if order == "first" else []
        first = prep.looks[0]
        # a frame with later looks verifies its first look's weakest vote places after them: two-vote
        # places fix ~1 % of the frames they are tried on, a later look a good share of the rest
        defer = self.cfg["defer_votes_below"] if len(prep.looks) > 1 and order != "lazy" else 0
        merged, v, feats, query, weak = self._look(
            first.image, first.verifier, first.drop, camera, attitude, deadline, cands, stages,
            retrieval=retrieval if order == "lazy" else None, defer_below=defer, daylight=retrieval.daylight)
        slowest_s = v.slowest_place_s
        if weak and not v.groups_evaluated:     # none yet (all deferred): a typical place's cost
            slowest_s = place_bar_s(slowest_s)
        # the deferred places are listed after the places verified (which index the list), so that v_first's
        # search resumes over them
        return _FrameSearch(camera, attitude, deadline, stages, retrieval, order, prep, feats, query, weak, v=v,
                            v_first=v, candidates=(merged + weak)[: self.cfg["top_k"]], slowest_s=slowest_s,
                            tried=[(v, 0)])

    def _later_looks(self, s: _FrameSearch) -> None:
        """The frame's later looks in turn while none has verified and the deadline's plan has room for one
        (full, else lean: ``look_plan``); each verifies only the places its own vote finds (the first look's
        were just tried; the encoder's were tried with them or come last)."""
        looks, first, stages = s.prep.looks, s.prep.looks[0], s.stages
        encoder_cands = s.retrieval.candidates or []
        # a later look costs about the first's features and vote plus one verified place; a lean one (config
        # lean_looks) votes with the first batch of keypoints only, at that share of the first look's vote
        later_ms = stages["features_ms"] + stages.get("vote_ms", 0.0) + SECOND_LOOK_EXTRA_MS
        lean_ms = later_ms - stages.get("vote_ms", 0.0) * (1.0 - self._first_batch_share())
        check = self.cfg["later_look_check"]
        admit = self._later_look_admission(s) if check else None

        def bar() -> float:     # a later look's places: with the check, never started blind
            return place_bar_s(s.slowest_s) if check else s.slowest_s

        for i, nxt in enumerate(looks[1:], 1):
            if s.v.ok and not self._weak_prior_pose(s.v):
                break
            how = look_plan(_time.perf_counter(), s.deadline, later_ms, lean_ms if self.cfg["lean_looks"] else None)
            if how is None:
                s.looks_cut = len(looks) - i
                break
            s.lean_looks += how == "lean"
            if callable(nxt.image):
                t = _time.perf_counter()
                made = nxt.image()
                stages["balance_ms"] = (_time.perf_counter() - t) * 1e3
                if made is None:
                    continue
                nxt = looks[i] = nxt._replace(image=made[0], drop=made[1])
            t = _time.perf_counter()
            # the slowest place so far sets the bar for this look's first one too
            cands2, v2, _, _, _ = self._look(nxt.image, nxt.verifier, nxt.drop, s.camera, s.attitude, s.deadline,
                                             [], {}, bar(), lean=how == "lean",
                                             daylight=s.retrieval.daylight, admit=admit)
            hit = i
            if v2.reason == LOOK_CUT:           # its features done, the plan had no room for its vote: cut here
                s.looks_cut = len(looks) - i
                stages[_look_stage(nxt.name, i)] = (_time.perf_counter() - t) * 1e3
                break
            s.slowest_s = max(s.slowest_s, v2.slowest_place_s)
            if not v2.ok and first.name == "filled" and cands2:
                # a place this look's vote found, seen through the cloud: the filled look's features (its bar
                # the slowest place so far, this look's included: before session 72 the bar left this look's
                # own places out and a 13 ms verification started with 1 ms left)
                v2, hit = first.verifier.verify(s.first_feats, s.camera, self._places(cands2, first.verifier),
                                                attitude=s.attitude, deadline=s.deadline, place_s=bar()), 0
                s.slowest_s = max(s.slowest_s, v2.slowest_place_s)
            s.tried.append((v2, hit))
            if v2.ok and (not s.v.ok or self.confidence(v2.evidence) > self.confidence(s.v.evidence)):
                s.candidates, s.v, s.look = (cands2 + encoder_cands)[: self.cfg["top_k"]], v2, hit
            elif not v2.ok:
                s.later_votes += cands2
            stages[_look_stage(nxt.name, i)] = (_time.perf_counter() - t) * 1e3

    def _later_look_admission(self, s: _FrameSearch):
        """The check a later look's features are put to before its vote (config ``later_look_check``): the plan
        (``look_plan``) again, now with this look's own keypoint count at the first look's vote cost per keypoint
        and a place of at least ``SECOND_LOOK_EXTRA_MS`` after it. A plain look after a filled one holds up to
        twice the keypoints, and its vote twice the time the plan had set aside."""
        n_first = max(1, len(s.first_feats))
        vote_ms_kp = s.stages.get("vote_ms", 0.0) / n_first
        first_query = self.voter.cfg.first_query if self.voter is not None else 0

        def admit(n: int):
            place_ms = place_bar_s(s.slowest_s) * 1e3
            lean_n = min(n, first_query) if first_query > 0 else n
            return look_plan(_time.perf_counter(), s.deadline, vote_ms_kp * n + place_ms,
                             vote_ms_kp * lean_n + place_ms if self.cfg["lean_looks"] else None)
        return admit

    def _weak_prior_pose(self, v) -> bool:
        """A verified pose matched from its vote place's own pose (``from_prior``: its matches were sought where
        that prior put them) on fewer inliers than config ``weak_prior_pose_inliers``: such a pose follows a
        biased prior (a vote place's altitude or yaw off) into a bent fit, so it does not end the frame's search
        (``_later_looks``). Measured: docs/VERIFICATION.md, "A weak prior pose does not end the search"."""
        return bool(v.ok and v.from_prior and v.inliers < self.cfg["weak_prior_pose_inliers"])

    def _after_looks(self, s: _FrameSearch) -> None:
        """When every look's own places have failed, as time allows: the first look's deferred places, the
        low-resolution store's look, the encoder's places (verified or only listed: config ``encoder_places``), a
        wide vote's; then, still without a pose, the later looks' places listed and the closest look's answer
        kept."""
        first, stages = s.prep.looks[0], s.stages
        if s.weak and not s.v.ok and s.v_first.resumable and _time.perf_counter() + s.slowest_s < s.deadline:
            # the first look's deferred places, in its own search (the answer one search over all its places
            # would give)
            t = _time.perf_counter()
            s.v_first = first.verifier.resume(s.v_first, self._places(s.candidates, first.verifier), s.deadline,
                                              s.slowest_s)
            stages["deferred_ms"] = (_time.perf_counter() - t) * 1e3
            s.slowest_s = max(s.slowest_s, s.v_first.slowest_place_s)
            s.tried.append((s.v_first, 0))
            if s.v_first.ok:
                s.v, s.look = s.v_first, 0
        if self.lowres_voter is not None and not s.v.ok:
            # before the encoder: on imagery coarser than the maps it fixes frames the deadline left it no room
            # for when it came last, and the encoder's places fix ~1 frame in 1,500 (docs/VERIFICATION.md, "The
            # low-resolution store before the encoder's places")
            self._lowres_look(s)
        if s.order == "listed" and not (s.later_votes or any(c.source == "vote" for c in s.candidates)):
            s.order = "last"                    # no look's vote offered a place: the encoder's are all there are
        if (s.order == "last" and not s.v.ok and s.v_first.resumable
                and _time.perf_counter() + s.retrieval.estimate_ms() / 1e3 + s.slowest_s < s.deadline):
            # every look's own places failed: the encoder's, with the first look's features (the first
            # look's search goes on, so the answer is the best of its places and these)
            s.candidates, s.v = self._encoder_places(first.verifier, s.v_first, s.candidates, s.retrieval,
                                                     s.deadline, stages, "encoder_places_ms", s.slowest_s)
            s.look = 0
        elif (s.order == "listed" and not s.v.ok
              and _time.perf_counter() + s.retrieval.estimate_ms() / 1e3 < s.deadline):
            # every look's own places failed: the encoder's places join the candidates, unverified
            s.candidates = (s.candidates + s.retrieval())[: self.cfg["top_k"]]
        s.verified = s.candidates[: self.cfg["verify_k"]]
        if s.first_query is not None and not s.v.ok and _time.perf_counter() + s.slowest_s < s.deadline:
            wide, vw = self._wide_places(s.first_query, first.verifier, s.first_feats, s.camera, s.attitude,
                                         s.deadline, s.slowest_s, s.v, stages)
            s.candidates = (s.candidates + wide)[: self.cfg["top_k"]]
            if vw is not None and vw.ok:
                s.v, s.verified, s.look = vw, wide, 0
        if not s.v.ok and s.later_votes:
            s.candidates = self._with_votes(s.candidates, s.later_votes, s.camera)
        if not s.v.ok:
            # no look verified: the reason and evidence are the closest look's (the most inliers, then
            # matches; the first look on a tie), not the first look's whatever a later one came to
            s.v, s.look = max([(s.v, s.look)] + s.tried, key=lambda t: (t[0].inliers, t[0].matches))

    def _answer(self, fix: Fix, s: _FrameSearch, cond: Conditioned, sun: np.ndarray | None = None) -> None:
        """``fix`` from the search's answer: candidates, evidence, the calibrated confidence and, above the bar,
        the position (the locate contract: position fields only with a trusted fix). With the frame's time
        (``sun``: the Sun's ECEF direction then) a pose whose boresight point lies in the dark (the Sun below
        config ``min_sun_elev_deg``) is no fix: the frame shows lit ground, so it cannot be there."""
        v, prep = s.v, s.prep
        fix.candidates, fix.encoder_candidates = s.candidates, s.retrieval.candidates or []
        fix.inliers = int(v.inliers)
        fix.confidence = self.confidence(v.evidence) if v.ok else 0.0
        fix.reason = v.reason
        source = s.verified[v.candidate].source if v.ok and 0 <= v.candidate < len(s.verified) else None
        fix.evidence = dict(v.evidence, hyp_lat=v.lat, hyp_lon=v.lon, hyp_alt_km=v.alt_km,
                            hyp_yaw_deg=v.yaw_deg, hyp_sub_lat=v.sub_lat, hyp_sub_lon=v.sub_lon,
                            source=source, vote_candidates=sum(c.source == "vote" for c in s.candidates),
                            cloud_share=round(prep.cloud_share, 3), speckle_share=round(prep.speckle_share, 3),
                            near_cloud_share=round(prep.near_cloud_share, 3),
                            look=prep.looks[s.look].name, looks_cut=s.looks_cut, lean_looks=s.lean_looks,
                            lowres_cut=s.lowres_cut, deferred=len(s.weak), exposure_gain=round(cond.gain, 3),
                            tone_gamma=round(cond.power, 3), blur_ratio=round(cond.blur_ratio, 3),
                            sharpened=cond.sharpened, lines_mended=cond.lines, striping=cond.striping)
        # a wide-vote place (chancier neighbours, on a frame every other place failed; the confidence model
        # was fitted without them) is trusted only at its own, higher bar
        bar = self.cfg["min_confidence"]
        if source == "wide":
            bar = max(bar, self.cfg["vote_wide_min_confidence"])
        fix.fix = bool(v.ok and fix.confidence >= bar)
        if sun is not None and v.ok and v.lat is not None:
            sun_deg = float(sun_elevation_deg(v.lat, v.lon, sun_dir=sun))
            fix.evidence["sun_elev_deg"] = round(sun_deg, 2)
            if sun_deg < self.cfg["min_sun_elev_deg"]:
                fix.fix, fix.confidence = False, 0.0
                fix.reason = f"boresight point in the dark at the frame's time (sun {sun_deg:.0f} deg)"
        if fix.fix:
            fix.lat, fix.lon, fix.sub_lat, fix.sub_lon = v.lat, v.lon, v.sub_lat, v.sub_lon
            fix.alt_km, fix.yaw_deg = v.alt_km, v.yaw_deg
            fix.ecef_km = None if v.position_ecef_km is None else [float(a) for a in v.position_ecef_km]
