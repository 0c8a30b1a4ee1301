"""Keypoint voting (earthfix.onboard.vote): candidates from the keypoint store alone, on a regional store.

Frames are rendered with the simulator's effects (clouds, sun, haze, noise) at random yaw, 400-800 km, over
textured land; the voter's first candidate must lie within the footprint half-width of the true boresight
on most of them, and open ocean or noise must not produce a strong peak (nor a verified one). Also: the
bundle carries the key index (or loads without it), and the Localizer falls back to voting when the
encoder's candidates fail, keeping the encoder's candidates as the reported retrieval.
"""
from __future__ import annotations

import dataclasses
import hashlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

from earthfix.onboard import geodesy
from earthfix.onboard.keystore import KeypointStore
from earthfix.onboard.verify import Verifier
from earthfix.onboard.vote import KeypointVoter, VoteConfig
from earthfix.sim import scenario
from earthfix.sim.effects import EffectsConfig
from earthfix.tools.build_keyindex import build_keyindex
from earthfix.tools.build_keystore import BuildConfig, build_keystore

# North Africa and Arabia (as tests/test_verify.py): textured desert, wide enough for 800 km frames
REGION = (12.0, 36.0, -5.0, 45.0)


@pytest.fixture(scope="module")
def setup(basemap, tmp_path_factory):
    cv2.setNumThreads(2)
    st = build_keystore(basemap, BuildConfig(bbox=REGION), progress=False)
    d = tmp_path_factory.mktemp("vote")
    st.save(d / "keystore.npz")
    store = KeypointStore.load(d / "keystore.npz")
    index, meta = build_keyindex(store)
    index.save_index(str(d / "keyindex.hnsw"))
    index.set_num_threads(1)
    cv2.setNumThreads(1)
    return SimpleNamespace(store=store, index=index, meta=meta, dir=d, voter=KeypointVoter(store, index),
                           verifier=Verifier(store))


def sim_frame(basemap, cam, lat, lon, alt, yaw, seed, tilt=0.0):
    return scenario.single_frame(basemap, cam, lat, lon, alt, yaw, tilt_deg=tilt, tilt_az_deg=37.0,
                                 effects=EffectsConfig.default(), rng=np.random.default_rng(seed))


def test_keyindex_meta(setup):
    assert setup.meta["count"] == len(setup.store) and setup.meta["dim"] == setup.store.dim
    assert setup.meta["space"] == "l2" and setup.index.get_current_count() == len(setup.store)
    # labels are store rows: a stored descriptor finds itself
    rows = np.arange(0, len(setup.store), 97)
    labels, _ = setup.index.knn_query(setup.store.decode(rows), k=1)
    assert np.mean(labels[:, 0] == rows) > 0.95


def test_clean_frame_geometry(setup, basemap, cam256):
    img, tr = scenario.single_frame(basemap, cam256, 24.0, 20.0, 600.0, 117.0)
    c = setup.voter.candidates(setup.verifier.extract(img), cam256)
    assert c, "no candidate on a clean desert frame"
    lat, lon, radius, votes = c[0]                     # unpacks as the API promises
    assert geodesy.great_circle_km(lat, lon, tr["bore_lat"], tr["bore_lon"]) < 30.0
    assert votes >= 20 and abs((c[0].yaw_deg - 117.0 + 180) % 360 - 180) < 8.0
    assert abs(c[0].alt_km / 600.0 - 1.0) < 0.2
    hw = cam256.footprint_half_width_km(600.0)
    assert 1.1 * hw < radius < 2.0 * hw                 # about the half-diagonal of the implied footprint


def test_textured_land_frames(setup, basemap, cam256):
    rng = np.random.default_rng(2024)
    hits, n = 0, 10
    for i in range(n):
        lat, lon = rng.uniform(17.0, 31.0), rng.uniform(5.0, 35.0)
        img, tr = sim_frame(basemap, cam256, lat, lon, rng.uniform(400, 800), rng.uniform(0, 360), seed=i,
                            tilt=rng.uniform(0, 5))
        c = setup.voter.candidates(setup.verifier.extract(img), cam256)
        if c and geodesy.great_circle_km(c[0].lat, c[0].lon, tr["bore_lat"], tr["bore_lon"]) \
                <= tr["footprint_half_width_km"]:
            hits += 1
    assert hits >= 0.7 * n, f"{hits} of {n}"


def test_a_sure_place_from_the_strongest_keypoints_spares_the_rest_of_the_search(setup, basemap, cam256):
    """The strongest ``first_query`` keypoints are queried first; a place of ``sure_votes`` among them ends
    the search there, and otherwise the rest are queried and the vote is exactly the one-pass vote."""
    img, tr = sim_frame(basemap, cam256, 24.0, 20.0, 600.0, 117.0, seed=3)
    f = setup.verifier.extract(img)
    n = len(f)
    assert 150 < n <= VoteConfig().max_query and VoteConfig().first_query == 150
    one = KeypointVoter(setup.store, setup.index, VoteConfig(first_query=0))
    full = one.candidates(f, cam256)
    assert one.last_stats["queried"] == n
    two = KeypointVoter(setup.store, setup.index, VoteConfig())
    early = two.candidates(f, cam256)
    assert two.last_stats["queried"] == 150 and early[0].votes >= two.cfg.sure_votes
    assert geodesy.great_circle_km(early[0].lat, early[0].lon, full[0].lat, full[0].lon) < 20.0
    assert geodesy.great_circle_km(early[0].lat, early[0].lon, tr["bore_lat"], tr["bore_lon"]) < 30.0
    # never sure: both halves are queried and the vote is the one-pass vote, place for place
    unsure = KeypointVoter(setup.store, setup.index, VoteConfig(sure_votes=10_000))
    rest = unsure.candidates(f, cam256)
    assert unsure.last_stats["queried"] == n
    assert [(c.lat, c.lon, c.votes, c.radius_km) for c in rest] == [(c.lat, c.lon, c.votes, c.radius_km) for c in full]
    with pytest.raises(ValueError):
        VoteConfig(sure_votes=0)


def test_ocean_and_noise_give_no_strong_peak(setup, basemap, cam256):
    ocean, _ = sim_frame(basemap, cam256, 20.0, -35.0, 600.0, 10.0, seed=5)   # mid-Atlantic
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 2.0)
    for img in (ocean, noise, blurred):
        f = setup.verifier.extract(img)
        c = setup.voter.candidates(f, cam256)
        assert all(x.votes < 8 for x in c), [x.votes for x in c]
        if c:
            assert not setup.verifier.verify(f, cam256, c).ok


def test_a_wide_vote_keeps_the_first_votes_places_and_makes_its_own_only_when_asked(setup, basemap, cam256):
    """``wide_k``: the same search returns more neighbours a keypoint; the first vote, over the first ``k``,
    offers exactly the places it offers without them, and the wide vote over all of them is made only by
    ``wide_candidates``, never within half a verification radius of a first-vote place."""
    img, _ = sim_frame(basemap, cam256, 24.0, 20.0, 600.0, 117.0, seed=3)
    f = setup.verifier.extract(img)
    plain = KeypointVoter(setup.store, setup.index, VoteConfig(sure_votes=10_000))
    wide = KeypointVoter(setup.store, setup.index, VoteConfig(sure_votes=10_000, wide_k=4))
    first = plain.candidates(f, cam256)
    got = wide.candidates(f, cam256)
    assert first and [(c.lat, c.lon, c.votes, c.radius_km) for c in got] == \
        [(c.lat, c.lon, c.votes, c.radius_km) for c in first]
    assert plain.last_query is None
    q = wide.last_query
    assert q.labels.shape == (wide.last_stats["queried"], 4) and len(q.places) == len(got)
    places = wide.wide_candidates(q, max_candidates=3)
    assert len(places) <= 3
    for w in places:
        assert all(geodesy.great_circle_km(w.lat, w.lon, o.lat, o.lon) > 0.5 * o.radius_km for o in got)
    # with no first-vote places to keep clear of, the wide vote's first place is the frame's place too
    free = wide.wide_candidates(dataclasses.replace(q, places=()), max_candidates=1)
    assert free and geodesy.great_circle_km(free[0].lat, free[0].lon, got[0].lat, got[0].lon) < 50.0
    with pytest.raises(ValueError):
        VoteConfig(wide_k=24, ef=20)


def test_with_the_frames_time_a_keypoint_votes_with_its_lit_store_neighbours_only(setup, basemap, cam256):
    """``daylight`` (``sun.Daylight``): each frame keypoint votes with its first ``k`` store neighbours on lit
    ground: the same places as without it where all the ground is lit, none from the night side, and a frame of
    lit ground is still placed when the terminator crosses the store."""
    from earthfix.onboard.sun import Daylight

    class Spy(KeypointVoter):
        def _predict(self, f, camera, qi, sj):
            self.seen = np.asarray(sj)
            return super()._predict(f, camera, qi, sj)

    voter = Spy(setup.store, setup.index, VoteConfig(sure_votes=10_000))
    noon = Daylight.at("2025-06-21T10:40:00Z", -11.0)           # the Sun high over the whole region
    # a Sun over the equator at 70 W: the horizon runs along 20 E, the store's west lit and its east dark
    sun = geodesy.geodetic_to_ecef(0.0, -70.0, 0.0)
    dusk = Daylight(sun / np.linalg.norm(sun), 0.0)
    west, _ = sim_frame(basemap, cam256, 24.0, 8.0, 600.0, 117.0, seed=3)
    east, _ = sim_frame(basemap, cam256, 24.0, 33.0, 600.0, 117.0, seed=3)
    fw, fe = setup.verifier.extract(west), setup.verifier.extract(east)
    whole = voter.candidates(fw, cam256)
    everywhere = len(voter.seen)
    assert [tuple(c) for c in voter.candidates(fw, cam256, daylight=noon)] == [tuple(c) for c in whole]
    got = voter.candidates(fw, cam256, daylight=dusk)
    assert dusk.lit(setup.store.lat[voter.seen], setup.store.lon[voter.seen]).all()
    assert len(voter.seen) < everywhere
    assert got and geodesy.great_circle_km(got[0].lat, got[0].lon, 24.0, 8.0) < 50.0
    placed = voter.candidates(fe, cam256)                  # the dark side's frame, placed without the time...
    assert placed and geodesy.great_circle_km(placed[0].lat, placed[0].lon, 24.0, 33.0) < 50.0
    assert all(geodesy.great_circle_km(c.lat, c.lon, 24.0, 33.0) > 500.0      # ...but not in the night
               for c in voter.candidates(fe, cam256, daylight=dusk))
    # a wide vote (made last, over all the neighbours searched) keeps to the frame's lit ground too
    wide = Spy(setup.store, setup.index, VoteConfig(sure_votes=10_000, wide_k=4))
    wide.candidates(fw, cam256, daylight=dusk)
    assert wide.last_query.daylight is dusk
    wide.wide_candidates(dataclasses.replace(wide.last_query, places=()), max_candidates=3)
    assert len(wide.seen) and dusk.lit(setup.store.lat[wide.seen], setup.store.lon[wide.seen]).all()


def test_a_place_whose_votes_straddle_the_bins_corners_is_still_found(setup, basemap, cam256):
    """Each prediction's vote is spread bilinearly over 2 x 2 cells x 2 yaw bins, so a tight cluster at a corner
    of the grid leaves at most an eighth of its votes in any one bin. With bins examined down to a soft score
    of ``min_bin_share`` x ``min_votes`` = an eighth of 2 (session 71), four keypoints agreeing there make a
    place of 4 votes, which the floor of one whole vote (0.5 x 2, before) never examined; from such a bin a
    place needs a vote more than ``min_votes``, and it goes to verification with a gate of its own; one keypoint
    agreeing with itself through several store neighbours is still no place."""
    v = setup.voter
    r = int((24.0 + 90.0) / v._dlat) - 1                  # a row edge near 24 N, a column edge, a yaw edge
    lat = (r + 1) * v._dlat - 90.0
    ncol = int(v._n_cols[r])
    lon = (int((20.0 + 180.0) / 360.0 * ncol) + 1) / ncol * 360.0 - 180.0
    yaw0 = 2 * 360.0 / v._n_yaw
    rng = np.random.default_rng(5)
    n = 4
    blat = lat + rng.normal(0.0, 0.02, n)                 # ~2 km apart: one place
    blon = lon + rng.normal(0.0, 0.02, n)
    yaw = yaw0 + rng.normal(0.0, 1.0, n)
    log_alt = np.full(n, np.log2(600.0))
    g = np.full(n, 600.0 * np.tan(np.radians(40.0)) / 128.0)
    keys, wts = v._keys(blat, blon, yaw, log_alt)
    score = {}
    for k, w in zip(keys.ravel(), wts.ravel()):
        score[k] = score.get(k, 0.0) + w
    assert max(score.values()) < 1.0                      # no bin holds one whole vote

    def places(qi, share):
        voter = KeypointVoter(setup.store, setup.index, dataclasses.replace(v.cfg, min_bin_share=share))
        return voter._peaks(cam256, np.asarray(qi), blat, blon, yaw, log_alt, g, 3, {"peaks": []})

    assert VoteConfig.min_bin_share == 0.125 and places(np.arange(n), 0.5) == []
    got = places(np.arange(n), 0.125)
    assert len(got) == 1 and got[0].votes == n
    assert geodesy.great_circle_km(got[0].lat, got[0].lon, lat, lon) < 10.0
    assert places(np.zeros(n, np.int64), 0.125) == []           # one keypoint: one vote
    assert places(np.array([0, 0, 1, 1]), 0.125) == []          # two: min_votes, but split: one vote short
    assert got[0].split and not any(c.split for c in KeypointVoter(                # the floor as before: never
        setup.store, setup.index, dataclasses.replace(v.cfg, min_bin_share=0.5)).candidates(
        setup.verifier.extract(sim_frame(basemap, cam256, 24.0, 20.0, 600.0, 30.0, seed=2)[0]), cam256))
    # a split place goes to verification with the tighter gate of its own (vote_split_max_sigma_km)
    from earthfix.onboard.localizer import _as_candidates
    assert [c.max_sigma_km for c in _as_candidates(got + [dataclasses.replace(got[0], split=False)], "vote",
                                                     5.0)] == [5.0, None]


def test_the_votes_bins_are_taken_in_a_stable_sorts_order_and_keypoints_counted_once():
    """The vote's bookkeeping without a full sort (session 83: the same places 1.6x sooner): ``_top`` is a
    stable descending sort's first n (ties in index order, as the bins were examined before), ``_n_distinct``
    counts the distinct keypoints of an ordered run as np.unique does."""
    from earthfix.onboard.vote import _n_distinct, _top
    rng = np.random.default_rng(3)
    for size, n in ((50, 20), (2000, 20), (30, 20), (20, 20), (5, 20), (0, 20), (300, 1), (300, 0)):
        score = rng.integers(0, 6, size) / 4.0            # many ties, at the cut too
        assert _top(score, n).tolist() == np.argsort(-score, kind="stable")[:n].tolist()
    for size in (0, 1, 2, 40, 600):
        q = np.sort(rng.integers(0, 30, size))
        assert _n_distinct(q) == len(np.unique(q))


def test_config_checks(setup):
    with pytest.raises(ValueError):
        VoteConfig(k=3, ef=2)
    small = build_keyindex(setup.store.truncated(16))[0]
    with pytest.raises(ValueError):
        KeypointVoter(setup.store, small)                # dimension disagrees with the store


# ---- bundle and localizer ----------------------------------------------------------------------------

def _fake_bundle(d, setup, keyindex=True, count=None, store_sha=None, graph: bytes | None = None):
    """A structurally valid bundle around the regional store: 2 views, a 4-D index (no encoder needed);
    ``graph``: the key index as ``keyindex.graph`` with these bytes instead of ``keyindex.hnsw``."""
    import hnswlib
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "views.npz", lat=np.array([0.0, 1.0], np.float32), lon=np.array([0.0, 1.0], np.float32),
             scale=np.zeros(2, np.int16))
    np.savez(d / "pca.npz", mean=np.zeros(8, np.float32), components=np.eye(8, 4, dtype=np.float32))
    idx = hnswlib.Index(space="ip", dim=4)
    idx.init_index(max_elements=2, M=4, ef_construction=10, random_seed=1)
    idx.add_items(np.eye(2, 4, dtype=np.float32), np.arange(2))
    idx.save_index(str(d / "index.hnsw"))
    (d / "keystore.npz").write_bytes((setup.dir / "keystore.npz").read_bytes())
    if keyindex and graph is not None:
        (d / "keyindex.graph").write_bytes(graph)
    elif keyindex:
        (d / "keyindex.hnsw").write_bytes((setup.dir / "keyindex.hnsw").read_bytes())
    files = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
             for p in sorted(d.iterdir()) if p.name != "manifest.yaml"}
    m = {"format_version": 1, "encoder": {"sha256": "0" * 64}, "grid": {"scales_km": [300.0]},
         "index": {"space": "ip", "dim": 4, "ef": 10}, "counts": {"views": 2}, "files": files}
    if keyindex:
        m["keyindex"] = dict(setup.meta, count=count or setup.meta["count"],
                             store_desc_sha256=store_sha or setup.meta["store_desc_sha256"])
    (d / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    return d


def test_bundle_loads_keyindex(setup, tmp_path):
    from earthfix.onboard.bundle import Bundle, BundleError
    b = Bundle.load(_fake_bundle(tmp_path / "with", setup))
    assert b.keyindex is not None and b.keyindex.get_current_count() == len(b.keystore)
    assert Bundle.load(_fake_bundle(tmp_path / "without", setup, keyindex=False)).keyindex is None
    assert Bundle.load(tmp_path / "with", load_keystore=False).keyindex is None
    with pytest.raises(BundleError, match="keyindex"):
        Bundle.load(_fake_bundle(tmp_path / "bad", setup, count=len(setup.store) + 1))
    with pytest.raises(BundleError, match="another keystore"):
        Bundle.load(_fake_bundle(tmp_path / "other", setup, store_sha="ab" * 32))


def test_a_key_index_kept_without_its_vectors_loads_as_the_whole_file(setup, tmp_path):
    from earthfix.onboard.bundle import Bundle, BundleError
    from earthfix.onboard.hnsw_file import pack_graph
    whole = (setup.dir / "keyindex.hnsw").read_bytes()
    packed = pack_graph(whole, setup.store.dim)
    assert len(packed) < len(whole) / 2
    b = Bundle.load(_fake_bundle(tmp_path / "graph", setup, graph=packed))
    q = setup.store.decode(np.arange(0, len(setup.store), 53))
    assert np.array_equal(b.keyindex.knn_query(q, k=3)[0], setup.index.knn_query(q, k=3)[0])
    with pytest.raises(BundleError, match="keyindex.graph"):
        Bundle.load(_fake_bundle(tmp_path / "cut", setup, graph=packed[: len(packed) // 2]))


class _FarEncoder:
    """An encoder stub whose retrieval (see _far_bundle) always offers places far from the truth."""
    input_px = 32

    def encode_input(self, x):
        return np.zeros(8, np.float32)

    def encode_views(self, x):      # the Localizer encodes a frame and its cleaned views in one call
        return self.encode_input(x)


def _far_bundle(setup, keyindex=True, places=((-30.0, 140.0), (60.0, 100.0), (45.0, -100.0))):
    """A bundle stub whose encoder retrieval always offers ``places`` (far from the test frame's truth)."""
    lat, lon = np.array(places, np.float64).T
    n = len(places)
    return SimpleNamespace(keystore=setup.store, keyindex=setup.index if keyindex else None, lat=lat, lon=lon,
                           scale=np.zeros(n, np.int64), scales_km=(400.0,),
                           search=lambda desc, k: (np.arange(n)[:k], np.linspace(0.9, 0.7, n)[:k]))


@pytest.mark.parametrize("vote", [True, False])
def test_localizer_retrieves_by_voting_too(setup, basemap, cam256, vote):
    """The encoder proposes only far places; the keypoint vote's place leads the merged list and verifies."""
    from earthfix.onboard.confidence import ConfidenceModel
    from earthfix.onboard.config import load_config
    from earthfix.onboard.localizer import Localizer
    # the encoder made first (encoder_places: first): its places are merged behind the vote's
    loc = Localizer(_far_bundle(setup), _FarEncoder(), load_config(None, {"vote": vote, "vote_min_votes": 4, "vote_ef": 40,
                                                                          "encoder_places": "first"}),
                    ConfidenceModel.load(None))
    img, tr = scenario.single_frame(basemap, cam256, 26.0, 12.0, 550.0, 200.0)
    fix = loc.locate(img, cam256)
    far = [(-30.0, 140.0), (60.0, 100.0), (45.0, -100.0)]
    assert [(c.lat, c.lon) for c in fix.encoder_candidates] == far
    if vote:
        first = fix.candidates[0]
        assert loc.voter.cfg.min_votes == 4 and loc.voter.cfg.ef == 40   # the config reaches the voter
        assert first.source == "vote" and first.score >= 4
        assert geodesy.great_circle_km(first.lat, first.lon, tr["bore_lat"], tr["bore_lon"]) < 100.0
        # the vote's own pose goes to verification with its place (verify.prior_work_px); an encoder place has none
        assert abs((first.yaw_deg - 200.0 + 180.0) % 360.0 - 180.0) < 20.0 and 400.0 < first.alt_km < 700.0
        places = loc._places(fix.candidates, loc.verifier)
        assert places[0] == (first.lat, first.lon, first.radius_km, first.yaw_deg, first.alt_km)
        assert all(len(p) == 3 for p, c in zip(places, fix.candidates) if c.source == "encoder")
        assert [(c.lat, c.lon) for c in fix.candidates if c.source == "encoder"] == far
        assert [c.score for c in fix.candidates] == sorted((c.score for c in fix.candidates), reverse=True)
        assert fix.fix and fix.evidence["source"] == "vote"
        assert geodesy.great_circle_km(fix.lat, fix.lon, tr["bore_lat"], tr["bore_lon"]) < 5.0
        assert "vote_ms" in fix.stages_ms
    else:
        assert [(c.lat, c.lon) for c in fix.candidates] == far
        assert not fix.fix and fix.evidence["source"] is None and "vote_ms" not in fix.stages_ms


class _CountingEncoder(_FarEncoder):
    calls = 0

    def encode_input(self, x):
        self.calls += 1
        return super().encode_input(x)


@pytest.mark.parametrize("clear", [True, False])
def test_the_encoder_runs_only_when_the_vote_leaves_the_answer_open(setup, basemap, cam256, clear):
    """encoder_places lazy: a vote place that verifies clearly ends the frame without the encoder, with the fix the
    encoder-first pipeline gives; when no pose is clear (the early-stop bar out of reach) the encoder runs
    after the vote's places and everything, candidates included, is as with it first."""
    from earthfix.onboard.confidence import ConfidenceModel
    from earthfix.onboard.config import load_config
    from earthfix.onboard.localizer import Localizer
    img, tr = scenario.single_frame(basemap, cam256, 26.0, 12.0, 550.0, 200.0)
    base = {"vote_min_votes": 4, "deadline_ms": 10000, **({} if clear else {"verify": {"early_inliers": 10 ** 6}})}
    fixes, encoders = {}, {}
    for lazy in (True, False):
        enc = encoders[lazy] = _CountingEncoder()
        loc = Localizer(_far_bundle(setup), enc, load_config(None, dict(base, encoder_places="lazy" if lazy else "first")),
                        ConfidenceModel.load(None))
        fixes[lazy] = loc.locate(img, cam256)
    lz, eager = fixes[True], fixes[False]
    far = [(-30.0, 140.0), (60.0, 100.0), (45.0, -100.0)]
    assert eager.fix and lz.fix and (lz.lat, lz.lon, lz.alt_km, lz.yaw_deg) == (eager.lat, eager.lon, eager.alt_km, eager.yaw_deg)
    assert lz.confidence == eager.confidence and lz.inliers == eager.inliers
    assert geodesy.great_circle_km(lz.lat, lz.lon, tr["bore_lat"], tr["bore_lon"]) < 5.0
    assert encoders[False].calls == 1 and "encode_ms" in eager.stages_ms
    if clear:
        assert encoders[True].calls == 0 and "encode_ms" not in lz.stages_ms and lz.encoder_candidates == []
        assert lz.candidates and all(c.source == "vote" for c in lz.candidates)
        assert lz.candidates == [c for c in eager.candidates if c.source == "vote"]
        assert [(c.lat, c.lon) for c in loc.encoder_candidates(img, cam256)] == far   # for evaluation
    else:
        assert encoders[True].calls == 1 and "encode_ms" in lz.stages_ms
        assert lz.candidates == eager.candidates and [(c.lat, c.lon) for c in lz.encoder_candidates] == far
        assert lz.evidence["groups_evaluated"] == eager.evidence["groups_evaluated"] == 4   # the vote's + 3 far
        assert lz.evidence["second_inliers"] == eager.evidence["second_inliers"]


def test_the_encoders_places_come_last_when_every_looks_own_places_fail(setup, basemap, cam256):
    """encoder_places last: a vote place that holds a pose, clear or not, ends the frame with no
    encoder call; when the vote offers nothing the encoder runs once, after the looks, and its place is
    verified with the first look's features; with no time left for it, it does not run."""
    from earthfix.onboard.confidence import ConfidenceModel
    from earthfix.onboard.config import load_config
    from earthfix.onboard.localizer import Localizer
    img, tr = scenario.single_frame(basemap, cam256, 26.0, 12.0, 550.0, 200.0)

    def run(bundle, no_vote=False, **cfg):
        enc = _CountingEncoder()
        loc = Localizer(bundle, enc, load_config(None, dict({"deadline_ms": 10000, "encoder_places": "last"}, **cfg)),
                        ConfidenceModel.load(None))
        if no_vote:                  # the vote finds no place (as on a frame whose keypoints it cannot match)
            loc.voter.candidates = lambda *a, **k: []
        return loc.locate(img, cam256), enc.calls

    # a vote place that verifies, not clearly (the early-stop bar out of reach): lazy would run the encoder
    open_ = {"vote_min_votes": 4, "verify": {"early_inliers": 10 ** 6}}
    fix, calls = run(_far_bundle(setup), **open_)
    lazy, lazy_calls = run(_far_bundle(setup), encoder_places="lazy", **open_)
    assert fix.fix and calls == 0 and "encode_ms" not in fix.stages_ms and fix.encoder_candidates == []
    assert lazy_calls == 1 and (fix.lat, fix.lon, fix.inliers) == (lazy.lat, lazy.lon, lazy.inliers)
    assert fix.candidates and all(c.source == "vote" for c in fix.candidates)
    # the vote offers nothing; the encoder's second view is the true place
    near = _far_bundle(setup, places=((-30.0, 140.0), (26.0, 12.0), (45.0, -100.0)))
    fix, calls = run(near, no_vote=True)
    assert calls == 1 and fix.fix and fix.evidence["source"] == "encoder" and fix.evidence["look"] == "plain"
    assert geodesy.great_circle_km(fix.lat, fix.lon, tr["bore_lat"], tr["bore_lon"]) < 5.0
    assert [(c.lat, c.lon) for c in fix.candidates] == [(-30.0, 140.0), (26.0, 12.0), (45.0, -100.0)]
    assert "encode_ms" in fix.stages_ms and "encoder_places_ms" in fix.stages_ms
    # no time left after the looks: the encoder is not made, and nothing is fixed
    fix, calls = run(near, no_vote=True, deadline_ms=1)
    assert calls == 0 and not fix.fix and "encode_ms" not in fix.stages_ms


@pytest.mark.parametrize("places", ["last", "listed"])
def test_the_encoders_places_are_listed_unverified_where_a_vote_offered_places(setup, basemap, cam256, places):
    """encoder_places listed (the default): when every look's vote places fail, the encoder's places join the
    candidates unverified (in 16,500 release frames they fixed 10, for 10-20 ms on a third of all frames); a frame
    whose vote offered no place at all verifies them as ``last`` does (they are all the places there are)."""
    from earthfix.onboard.confidence import ConfidenceModel
    from earthfix.onboard.config import load_config
    from earthfix.onboard.localizer import Localizer
    from earthfix.onboard.vote import VoteCandidate
    assert load_config(None)["encoder_places"] == "listed"
    img, tr = scenario.single_frame(basemap, cam256, 26.0, 12.0, 550.0, 200.0)
    near = _far_bundle(setup, places=((-30.0, 140.0), (26.0, 12.0), (45.0, -100.0)))

    def run(vote_places):
        enc = _CountingEncoder()
        loc = Localizer(near, enc, load_config(None, {"deadline_ms": 10000, "encoder_places": places}),
                        ConfidenceModel.load(None))
        loc.voter.candidates = lambda *a, **k: list(vote_places)
        return loc.locate(img, cam256), enc.calls

    # the vote offers a wrong place (it fails); the encoder's second place is the true one
    fix, calls = run([VoteCandidate(60.0, 100.0, 300.0, 5)])
    assert calls == 1 and [(c.lat, c.lon) for c in fix.encoder_candidates][1] == (26.0, 12.0)
    assert (26.0, 12.0) in [(c.lat, c.lon) for c in fix.candidates] and fix.candidates[0].source == "vote"
    if places == "last":
        assert fix.fix and fix.evidence["source"] == "encoder" and "encoder_places_ms" in fix.stages_ms
    else:
        assert not fix.fix and "encoder_places_ms" not in fix.stages_ms and "encode_ms" in fix.stages_ms
    # the vote offers nothing: the encoder's places are verified either way
    fix, calls = run([])
    assert calls == 1 and fix.fix and fix.evidence["source"] == "encoder"
    assert geodesy.great_circle_km(fix.lat, fix.lon, tr["bore_lat"], tr["bore_lon"]) < 5.0


def test_work_is_planned_to_end_inside_the_frames_budget(setup, basemap, cam256, monkeypatch):
    """A place or a look runs to its end once started, so the Localizer admits work against a plan that ends
    ``DEADLINE_MARGIN`` of ``deadline_ms`` before the budget does."""
    import time
    from earthfix.onboard import verify as verify_mod
    from earthfix.onboard.confidence import ConfidenceModel
    from earthfix.onboard.config import load_config
    from earthfix.onboard.localizer import DEADLINE_MARGIN, Localizer
    assert 0.0 < DEADLINE_MARGIN < 0.2
    left = []
    real = verify_mod.Verifier.verify

    def spy(self, *a, deadline=None, **k):
        left.append(deadline - time.perf_counter())
        return real(self, *a, deadline=deadline, **k)

    monkeypatch.setattr(verify_mod.Verifier, "verify", spy)
    img, _ = scenario.single_frame(basemap, cam256, 26.0, 12.0, 550.0, 200.0)
    loc = Localizer(_far_bundle(setup), _FarEncoder(), load_config(None, {"deadline_ms": 10000}), ConfidenceModel.load(None))
    t0 = time.perf_counter()
    loc.locate(img, cam256)
    spent = time.perf_counter() - t0
    assert left and all(10.0 * (1 - DEADLINE_MARGIN) - spent <= s <= 10.0 * (1 - DEADLINE_MARGIN) for s in left)


def test_the_wide_votes_places_are_made_and_verified_last(setup, basemap, cam256):
    """config ``vote_wide_k``: a frame a vote place fixes never makes the wide vote; a frame whose own looks'
    places and the encoder's all fail makes it from the first look's search and verifies its places after
    everything else, with the first look's features (the fix's source says so)."""
    from earthfix.onboard.confidence import ConfidenceModel
    from earthfix.onboard.config import load_config
    from earthfix.onboard.localizer import Localizer
    from earthfix.onboard.vote import VoteCandidate
    img, tr = scenario.single_frame(basemap, cam256, 26.0, 12.0, 550.0, 200.0)
    cfg = {"deadline_ms": 10000, "vote_min_votes": 4, "vote_wide_k": 4}
    assert load_config(None)["vote_wide_k"] == VoteConfig.wide_k
    loc = Localizer(_far_bundle(setup), _CountingEncoder(), load_config(None, cfg), ConfidenceModel.load(None))
    assert loc.voter.cfg.wide_k == 4
    fix = loc.locate(img, cam256)
    assert fix.fix and fix.evidence["source"] == "vote" and "wide_vote_ms" not in fix.stages_ms

    enc = _CountingEncoder()
    asked = []

    def rigged(loc, enc):
        """The first vote's places all far (its search kept as it was made); the wide vote's place true."""
        real = loc.voter.candidates

        def first_vote_lost(*a, **k):
            real(*a, **k)
            return [VoteCandidate(-30.0, 140.0, 400.0, 5)]

        def wide(query, max_candidates=3):
            asked.append((query, enc.calls))
            return [VoteCandidate(tr["bore_lat"] + 0.3, tr["bore_lon"] - 0.3, 400.0, 3, 200.0, 550.0)]

        loc.voter.candidates, loc.voter.wide_candidates = first_vote_lost, wide
        return loc

    fix = rigged(Localizer(_far_bundle(setup), enc, load_config(None, cfg), ConfidenceModel.load(None)), enc).locate(
        img, cam256)
    assert len(asked) == 1 and asked[0][0] is not None and asked[0][1] == 1    # after the encoder's places
    assert fix.fix and fix.evidence["source"] == "wide" and fix.evidence["look"] == "plain"
    assert geodesy.great_circle_km(fix.lat, fix.lon, tr["bore_lat"], tr["bore_lon"]) < 5.0
    assert [c.source for c in fix.candidates] == ["vote", "encoder", "encoder", "encoder", "wide"]
    assert "wide_vote_ms" in fix.stages_ms and "wide_places_ms" in fix.stages_ms
    # a wide place's pose is trusted at its own bar only (p between the two bars: held), never below min_confidence
    wide_bar, bar = load_config(None)["vote_wide_min_confidence"], load_config(None)["min_confidence"]
    assert wide_bar > bar
    for extra in ({}, {"vote_wide_min_confidence": 0.0, "min_confidence": 0.97}):
        enc = _CountingEncoder()
        loc = Localizer(_far_bundle(setup), enc, load_config(None, dict(cfg, **extra)),
                        lambda ev: 0.5 * (wide_bar + bar) if ev.get("ok") else 0.0)
        held = rigged(loc, enc).locate(img, cam256)
        assert not held.fix and held.lat is None and held.evidence["source"] == "wide"
        assert held.confidence == 0.5 * (wide_bar + bar) and held.evidence["hyp_lat"] is not None
