"""Keypoint voting: candidate places from the keypoint store alone (a Hough transform), no encoder.

The global encoder's retrieval is the weak link of the chain; verification succeeds when a candidate near
the truth is offered. This module offers candidates another way: every frame keypoint is matched to its
nearest store keypoints *globally* (an HNSW index over the store's descriptors, ``keyindex.graph`` in the
bundle), and each match, with the keypoint pair's orientation and scale, predicts where the frame's
boresight lies on the ground, its yaw and its altitude. Random matches scatter over the globe; true ones
pile up at one place, yaw and scale. The peaks of a vote over (near-equal-area ground cell, yaw[, implied
altitude]) become candidates for :class:`earthfix.onboard.verify.Verifier`, which alone decides (nothing here is a
fix).

Geometry of one match (frame keypoint i at pixel ``xy``, image angle ``a``, diameter ``s`` px; store
keypoint j at ``lat, lon``, ground azimuth ``az``, diameter ``size_km``), for a near-nadir view:
- yaw ``psi = az - a - 90`` (the relation ``verify.orientation_filter`` uses);
- scale ``g = size_km / s`` km per frame pixel; a near-nadir pinhole maps the ground to the image with one
  scale (a similarity), so the implied altitude is ``g * fx`` (rejected outside ``alt_range_km``);
- the image offset from the keypoint to the image centre (the boresight; the principal point of a centred
  camera), ``(dx, dy) = ((w-1)/2 - x, (h-1)/2 - y)`` (x right,
  y down), is on the ground ``g * (dx * right + (-dy) * up)`` with ``up`` at azimuth ``psi`` and ``right``
  at ``psi + 90`` (the image is not mirrored: a nadir camera with yaw 0 has east to the right); the
  boresight is that offset walked from (lat, lon) along a great circle.

Only numpy, OpenCV and hnswlib (flight code).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import numpy.ma  # noqa: F401  np.unique imports it on first use: 10-20 ms of a frame's vote, paid at load instead

from . import geodesy
from .camera import Camera
from .features import Features
from .keystore import KeypointStore


SPLIT_BIN_SHARE = 0.5   # a bin under this x min_votes of soft score holds a place split across bins (or a weak one)


@dataclass(frozen=True)
class VoteConfig:
    k: int = 2                    # store neighbours per frame keypoint (true matches are 93 % first NN)
    wide_k: int = 0               # > k: the same search returns this many neighbours, kept for a wide vote
                                  # (``KeypointVoter.wide_candidates``) made only when asked: on other imagery
                                  # the right store keypoint is more often the 3rd or 4th; 0: off
    ef: int = 20                  # hnswlib search breadth (>= k), set on the index: 12 until session 28, 32 until
                                  # session 38 (broken cloud needs the few right neighbours found); the key index's
                                  # M 12 graph finds more of them at 20 than M 8 did at 32, 5-25 % sooner
                                  # (tools/build_keyindex.py; docs/VERIFICATION.md, "A denser key index")
    max_query: int = 300          # frame keypoints queried, strongest first...
    first_query: int = 150        # ...the first this many alone (0: all at once); when their vote already has a
                                  # place of ``sure_votes``, the rest are not queried (the key-index search is
                                  # most of the vote's time, ~33 us per keypoint at ef 32)
    sure_votes: int = 8           # (seed 7, 665 looks: a first-150 top place of >= 8 votes was never wrong,
                                  # a full vote's wrong top place had <= 6; docs/VERIFICATION.md)
    cell_km: float = 150.0        # ground cell (near-equal-area grid: latitude rows of this height)
    yaw_bin_deg: float = 30.0     # yaw bin
    scale_bin_log2: float = 0.0   # implied-altitude bin (octaves); 0: no scale dimension (0.5 and 1.0
                                  # lost 2-6 % recall on season-shifted frames)
    alt_range_km: tuple = (200.0, 2000.0)   # implied altitude (g * fx) accepted
    min_votes: int = 2            # distinct frame keypoints supporting a peak (3 until 2026-12-01: 2 finds
                                  # the place under broken cloud; verification alone decides)
    max_peaks: int = 20           # bins examined for candidates
    min_bin_share: float = 0.125  # bins are examined, best soft score first, down to this x min_votes. Each
                                  # prediction's vote is spread over 8 bins (2 x 2 cells x 2 yaw bins), so a
                                  # place at their corners holds an eighth of its votes in each (0.5 until
                                  # session 71: places of 3-5 votes split so were never examined)...
    split_extra_votes: int = 1    # ...and a place from a bin under SPLIT_BIN_SHARE x min_votes (``split``) needs
                                  # this many votes more (such places of min_votes are chance: ~1 right in 80).
                                  # The Localizer verifies split places after the frame's later looks, with a
                                  # precision gate of their own (config vote_split_max_sigma_km; docs/
                                  # VERIFICATION.md, "Places split across the vote's bins")
    support_km: float = 200.0     # a peak's support: predictions this close to its centre (re-centred)...
    support_yaw_deg: float = 20.0 # ...with a yaw this close to its mean
    nms_factor: float = 1.0       # candidates closer than factor x implied footprint half-width are one
    radius_factor: float = 1.0    # verification radius = factor x implied half-diagonal (km)... (1.0,
                                  # 1.15, 1.4 verified alike: the centre is ~5 km p50, ~20 km p90 off)
    min_radius_km: float = 150.0  # ...clamped to this range
    max_radius_km: float = 2500.0

    def __post_init__(self):
        object.__setattr__(self, "alt_range_km", tuple(self.alt_range_km))
        if self.k < 1 or self.ef < self.k:
            raise ValueError("vote: need 1 <= k <= ef")
        if self.wide_k < 0 or self.ef < self.wide_k:
            raise ValueError("vote: need 0 <= wide_k <= ef")
        if self.first_query < 0 or self.sure_votes < 1:
            raise ValueError("vote: need first_query >= 0 and sure_votes >= 1")
        if self.cell_km <= 0 or self.yaw_bin_deg <= 0 or not (0 < self.alt_range_km[0] < self.alt_range_km[1]):
            raise ValueError("vote: cell_km, yaw_bin_deg and alt_range_km must be positive and ordered")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VoteCandidate:
    lat: float
    lon: float
    radius_km: float
    votes: int
    yaw_deg: float = float("nan")
    alt_km: float = float("nan")
    split: bool = False          # found in a bin under SPLIT_BIN_SHARE x min_votes (``min_bin_share`` < 0.5)

    def __iter__(self):          # (lat, lon, radius_km, votes), as the API promises
        return iter((self.lat, self.lon, self.radius_km, self.votes))

    def __getitem__(self, i):
        return (self.lat, self.lon, self.radius_km, self.votes)[i]

    def __len__(self):
        return 4


@dataclass(frozen=True)
class VoteQuery:
    """What one ``candidates`` call searched, kept for its wide vote: the features queried, the camera, the
    store neighbours found (queried keypoints x ``wide_k``) and the places the first vote made of them."""
    features: Features
    camera: Camera
    labels: np.ndarray
    places: tuple
    daylight: object = None      # ``sun.Daylight`` of the frame's time, or None


class KeypointVoter:
    """Hough voting of frame-to-store keypoint matches for the boresight point (see module docstring).

    ``index``: an hnswlib index (space l2) over ``store.decode`` of every store keypoint, label = row.
    """

    def __init__(self, store: KeypointStore, index, cfg: VoteConfig | None = None):
        self.store = store
        self.index = index
        self.cfg = cfg or VoteConfig()
        if index.get_current_count() != len(store):
            raise ValueError(f"vote: key index holds {index.get_current_count()} items, "
                             f"the store {len(store)} keypoints")
        if index.dim != store.dim:
            raise ValueError(f"vote: key index dimension {index.dim} != store dimension {store.dim}")
        index.set_ef(int(self.cfg.ef))
        c = self.cfg
        self._dlat = math.degrees(c.cell_km / geodesy.R_MEAN_KM)
        self._n_rows = max(1, int(math.ceil(180.0 / self._dlat)))
        self._dlat = 180.0 / self._n_rows
        lat_c = -90.0 + (np.arange(self._n_rows) + 0.5) * self._dlat
        circ = 2.0 * math.pi * geodesy.R_MEAN_KM * np.cos(np.radians(lat_c))
        self._n_cols = np.maximum(1, np.round(circ / c.cell_km)).astype(np.int64)
        self._row_start = np.concatenate([[0], np.cumsum(self._n_cols)]).astype(np.int64)
        self._n_yaw = max(1, int(round(360.0 / c.yaw_bin_deg)))
        self._log_alt0 = math.log2(c.alt_range_km[0])
        span = math.log2(c.alt_range_km[1]) - self._log_alt0
        self._n_scale = max(1, int(math.ceil(span / c.scale_bin_log2))) if c.scale_bin_log2 > 0 else 1
        # per-keypoint arrays in RAM (element access on a memmap is slow)
        self._lat = np.asarray(store.lat, np.float64)
        self._lon = np.asarray(store.lon, np.float64)
        self._size = np.asarray(store.size_km, np.float64)
        self._az = np.asarray(store.azimuth, np.float64) * (360.0 / 256.0)
        self.last_stats: dict = {}
        self.last_query: VoteQuery | None = None

    # ---- main entry ------------------------------------------------------------------------------
    def candidates(self, features: Features, camera: Camera, max_candidates: int = 3,
                   daylight=None) -> list[VoteCandidate]:
        """Up to ``max_candidates`` places, most votes first: ``VoteCandidate`` (unpacks as
        ``lat, lon, radius_km, votes``; also carries the peak's yaw and implied altitude). Empty when no
        peak has ``min_votes`` distinct frame keypoints. Timings and counts in ``self.last_stats``; with
        ``wide_k`` the search, for ``wide_candidates``, in ``self.last_query``.

        ``daylight`` (a ``sun.Daylight`` of the frame's time, or None): a frame keypoint votes with its first
        ``k`` store neighbours on lit ground, found among its first ``2 k`` (at most ``ef``): a neighbour in the
        night cannot be the ground a daytime frame shows, and its slot goes to the next lit one. (Measured:
        leaving the night's neighbours out alone changes no answer; the lit third and fourth neighbours that take
        their slots place more frames of other imagery, whose right store keypoint is more often a keypoint's
        third or fourth: docs/VERIFICATION.md, "The frame's time in the search".)"""
        c = self.cfg
        t0 = time.perf_counter()
        stats = {"query_ms": 0.0, "vote_ms": 0.0, "matches": 0, "peaks": []}
        self.last_stats = stats
        self.last_query = None
        n = min(len(features), c.max_query)
        k = min(c.k, len(self.store))
        # neighbours searched (the same ef-wide search: more of them cost almost nothing); the first k vote
        kq = min(max(c.k, c.wide_k, min(c.ef, 2 * c.k) if daylight is not None else 0), len(self.store))
        if n < c.min_votes or k < 1:
            return []
        f = features.subset(np.arange(n)) if n < len(features) else features
        q = self.store.project(f.desc)
        # strongest keypoints first: a clear frame's place is usually certain from them, and each query
        # is independent, so querying the rest later gives exactly the vote of querying all at once
        n1 = c.first_query if 0 < c.first_query < n else n
        labels = np.zeros((0, kq), np.uint64)
        out: list[VoteCandidate] = []
        for lo, hi in ((0, n1), (n1, n)):
            if hi <= lo or (out and out[0].votes >= c.sure_votes):
                break
            t = time.perf_counter()
            try:
                more, _ = self.index.knn_query(q[lo:hi], k=kq)
            except RuntimeError:      # hnswlib: fewer than k results reachable (tiny or degenerate index)
                return []
            labels = np.concatenate([labels, more])
            t1 = time.perf_counter()
            stats["query_ms"] += (t1 - t) * 1e3
            stats["queried"] = hi
            stats["peaks"] = []
            out = self._vote(f, camera, labels, max_candidates, stats, k, daylight)
            stats["vote_ms"] += (time.perf_counter() - t1) * 1e3
        if c.wide_k > k and len(labels):
            self.last_query = VoteQuery(f, camera, labels[:, :c.wide_k], tuple(out), daylight)
        stats["total_ms"] = (time.perf_counter() - t0) * 1e3
        return out

    def wide_candidates(self, query: VoteQuery, max_candidates: int = 3) -> list[VoteCandidate]:
        """The places of a vote over every neighbour ``query`` holds (``wide_k`` a keypoint), each unless it
        lies within half the verification radius of a place the first vote made (those were verified)."""
        got = self._vote(query.features, query.camera, query.labels, max_candidates + len(query.places),
                         {"peaks": []}, query.labels.shape[1], query.daylight)
        return [w for w in got
                if all(float(geodesy.great_circle_km(w.lat, w.lon, o.lat, o.lon)) > 0.5 * o.radius_km
                       for o in query.places)][:max_candidates]

    def _vote(self, f: Features, camera: Camera, labels: np.ndarray, max_candidates: int, stats: dict,
              k: int, daylight=None):
        """The places of one vote over the first ``k`` store neighbours of each queried keypoint in ``labels``
        (queried keypoints x neighbours searched, best first): the first ``k`` on lit ground with ``daylight``."""
        sj = labels.astype(np.int64)
        if daylight is None:
            k = min(k, sj.shape[1])
            qi, sj = np.repeat(np.arange(len(sj)), k), sj[:, :k].reshape(-1)
        else:
            lit = daylight.lit(self._lat[sj], self._lon[sj])
            qi, col = np.nonzero(lit & (np.cumsum(lit, axis=1) <= k))
            sj = sj[qi, col]
        pred = self._predict(f, camera, qi, sj)
        if pred is None:
            return []
        stats["matches"] = int(len(pred[0]))
        return self._peaks(camera, *pred, max_candidates=max_candidates, stats=stats)

    # ---- one match -> boresight, yaw, altitude ---------------------------------------------------------
    def _predict(self, f: Features, camera: Camera, qi, sj):
        c = self.cfg
        size_px = np.asarray(f.size, np.float64)[qi]
        g = self._size[sj] / np.maximum(size_px, 1e-6)                  # km per frame pixel
        log_alt = np.log2(np.maximum(g * 0.5 * (camera.fx + camera.fy), 1e-9))
        ok = (log_alt >= self._log_alt0) & (log_alt < math.log2(c.alt_range_km[1]))
        if ok.sum() < c.min_votes:
            return None
        qi, sj, g, log_alt = qi[ok], sj[ok], g[ok], log_alt[ok]
        yaw = (self._az[sj] - np.asarray(f.angle, np.float64)[qi] - 90.0) % 360.0
        xy = np.asarray(f.xy, np.float64)[qi]
        dx = (camera.width - 1) / 2.0 - xy[:, 0]      # to the image centre: the boresight (CONVENTIONS)
        dy = (camera.height - 1) / 2.0 - xy[:, 1]
        ps = np.radians(yaw)
        sp, cp = np.sin(ps), np.cos(ps)
        east = g * (dx * cp - dy * sp)        # right = (cos psi, -sin psi), up = (sin psi, cos psi) in (e, n)
        north = g * (-dx * sp - dy * cp)
        dist = np.hypot(east, north)
        az = np.degrees(np.arctan2(east, north))
        blat, blon = geodesy.destination(self._lat[sj], self._lon[sj], az, dist)
        return qi, blat, blon, yaw, log_alt, g

    # ---- the vote ------------------------------------------------------------------------------------
    def _keys(self, lat, lon, yaw, log_alt):
        """Soft-vote entries: 2 x 2 cells x 2 yaw bins (x 2 scale bins) per prediction -> (keys, weights),
        each (m, 8 or 16); weights are bilinear and sum to 1 per prediction."""
        c = self.cfg
        fr = (lat + 90.0) / self._dlat - 0.5
        r0 = np.floor(fr)
        wr1 = fr - r0
        rows = [np.clip(r0, 0, self._n_rows - 1).astype(np.int64), np.clip(r0 + 1, 0, self._n_rows - 1).astype(np.int64)]
        wrows = [1.0 - wr1, wr1]
        fy = yaw / (360.0 / self._n_yaw) - 0.5
        y0 = np.floor(fy)
        wy1 = fy - y0
        ys = [y0.astype(np.int64) % self._n_yaw, (y0.astype(np.int64) + 1) % self._n_yaw]
        wys = [1.0 - wy1, wy1]
        if self._n_scale > 1:
            fs = (log_alt - self._log_alt0) / c.scale_bin_log2 - 0.5
            s0 = np.floor(fs)
            ws1 = fs - s0
            ss = [np.clip(s0, 0, self._n_scale - 1).astype(np.int64), np.clip(s0 + 1, 0, self._n_scale - 1).astype(np.int64)]
            wss = [1.0 - ws1, ws1]
        else:
            ss = [np.zeros(len(lat), np.int64)]
            wss = [1.0]
        keys, wts = [], []
        for r, wr in zip(rows, wrows):
            ncol = self._n_cols[r]
            fc = (lon + 180.0) / 360.0 * ncol - 0.5
            c0 = np.floor(fc)
            wc1 = fc - c0
            cols = [c0.astype(np.int64) % ncol, (c0.astype(np.int64) + 1) % ncol]
            for col, wc in zip(cols, (1.0 - wc1, wc1)):
                cell = self._row_start[r] + col
                for y, wy in zip(ys, wys):
                    for s, ws in zip(ss, wss):
                        keys.append((cell * self._n_yaw + y) * self._n_scale + s)
                        wts.append(wr * wc * wy * ws)
        return np.stack(keys, axis=1), np.stack(wts, axis=1)

    def _peaks(self, camera, qi, blat, blon, yaw, log_alt, g, max_candidates, stats):
        """Bins by soft score, best first; each becomes a candidate when at least ``min_votes`` distinct
        frame keypoints predict (after re-centring) the same place and yaw. Matches of a candidate are
        used up; a candidate within ``nms_factor`` footprint half-widths of a better one is dropped."""
        c = self.cfg
        keys, wts = self._keys(blat, blon, yaw, log_alt)
        # one frame keypoint counts at most once per bin (its k neighbours may agree): its largest weight
        nq = int(qi.max()) + 1
        comp = (keys * nq + qi[:, None]).ravel()
        w = wts.ravel()
        order = np.argsort(comp)        # the order within a pair does not matter: its largest weight is kept
        comp_s = comp[order]
        starts = np.flatnonzero(np.concatenate(([True], comp_s[1:] != comp_s[:-1])))
        best_w = np.maximum.reduceat(w[order], starts)         # each (bin, keypoint) pair's largest weight
        pair_bin = comp_s[starts] // nq                       # sorted, as comp_s is
        bin_start = np.concatenate(([True], pair_bin[1:] != pair_bin[:-1]))
        bins, inv = pair_bin[bin_start], np.cumsum(bin_start) - 1
        score = np.bincount(inv, weights=best_w)
        # distinct frame keypoints a bin holds: one with fewer than min_votes can hold no place, whatever the
        # places before it used up (most bins examined; skipped without a look, the answer the same)
        distinct = np.bincount(inv, minlength=len(bins))
        n_distinct = _n_distinct if bool(np.all(qi[1:] >= qi[:-1])) else (lambda q: len(np.unique(q)))
        la, lo = np.radians(blat), np.radians(blon)
        u = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
        cos_support = math.cos(c.support_km / geodesy.R_MEAN_KM)
        half_diag_px = math.hypot(camera.width / 2.0, camera.height / 2.0)
        out: list[VoteCandidate] = []
        used = np.zeros(len(qi), bool)
        for b in _top(score, c.max_peaks):
            if len(out) >= max_candidates or score[b] < c.min_bin_share * c.min_votes:
                break
            if distinct[b] < c.min_votes:
                continue
            sel = np.flatnonzero((keys == bins[b]).any(axis=1) & ~used)
            if n_distinct(qi[sel]) < c.min_votes:
                continue
            # re-centre twice: mean direction and circular-mean yaw of the support, then every unused
            # prediction near both (the bin edges cut true clusters; this gathers them whole)
            for _ in range(2):
                ctr = _mean_direction(u[sel])
                near = ((u @ ctr >= cos_support) & (_ang_diff(yaw, _circ_mean(yaw[sel])) <= c.support_yaw_deg)
                        & ~used)
                if near.sum() < c.min_votes:
                    break
                sel = np.flatnonzero(near)
            votes = n_distinct(qi[sel])
            split = bool(score[b] < SPLIT_BIN_SHARE * c.min_votes)
            if votes < c.min_votes + (c.split_extra_votes if split else 0):
                continue
            used[sel] = True
            ctr = np.median(u[sel], axis=0)
            ctr /= np.linalg.norm(ctr) + 1e-12
            clat = math.degrees(math.asin(float(np.clip(ctr[2], -1.0, 1.0))))
            clon = float(geodesy.wrap_lon(math.degrees(math.atan2(ctr[1], ctr[0]))))
            gm = float(np.median(g[sel]))                       # km per frame pixel
            half_w_km = gm * camera.width / 2.0
            if any(float(geodesy.great_circle_km(clat, clon, o.lat, o.lon)) < c.nms_factor * half_w_km
                   for o in out):
                continue
            radius = min(max(c.radius_factor * gm * half_diag_px, c.min_radius_km), c.max_radius_km)
            out.append(VoteCandidate(clat, clon, float(radius), int(votes), _circ_mean(yaw[sel]),
                                     float(2.0 ** np.median(log_alt[sel])), split))
            stats["peaks"].append(round(float(score[b]), 2))
        out.sort(key=lambda o: -o.votes)
        return out


def _top(score: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest scores, largest first, ties in index order: a stable sort's first ``n``,
    sorting only the scores that can be among them."""
    if n <= 0:
        return np.zeros(0, np.int64)
    if len(score) > n:
        cut = np.partition(score, len(score) - n)[len(score) - n]
        idx = np.flatnonzero(score >= cut)
        return idx[np.argsort(-score[idx], kind="stable")][:n]
    return np.argsort(-score, kind="stable")


def _n_distinct(q: np.ndarray) -> int:
    """Distinct values of ``q``, a run of the vote's keypoint indices in order (``_vote`` makes them so): no
    sort as np.unique's."""
    return int(len(q) > 0) + int(np.count_nonzero(q[1:] != q[:-1]))


def _mean_direction(u: np.ndarray) -> np.ndarray:
    m = u.mean(axis=0)
    return m / (np.linalg.norm(m) + 1e-12)


def _circ_mean(deg: np.ndarray) -> float:
    r = np.radians(deg)
    return math.degrees(math.atan2(float(np.sin(r).sum()), float(np.cos(r).sum()))) % 360.0


def _ang_diff(a, b):
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0)
