"""The encoder's places are spaced (config ``encoder_spacing``): a reference view within the spacing of a
better one is the same place (for CONVENTIONS recall and for verification, which merges them), so the list
goes on to the next distinct place instead."""
from __future__ import annotations

import itertools

import pytest

from support import localizer_config


@pytest.fixture(scope="module")
def loc(tiny_bundle):
    from earthfix.onboard.localizer import Localizer
    return Localizer.load(tiny_bundle, config=localizer_config())


def _min_gap_km(cands) -> float:
    from earthfix.onboard import geodesy
    return min(float(geodesy.great_circle_km(a.lat, a.lon, b.lat, b.lon)) for a, b in itertools.combinations(cands, 2))


def test_encoder_places_are_spaced_best_first(loc, basemap, cam256):
    from earthfix.onboard.preprocess import preprocess
    from earthfix.sim.scenario import single_frame
    img, _ = single_frame(basemap, cam256, 35.0, -108.0, 600.0, 20.0)
    desc = loc.encoder.encode_input(preprocess(img, loc.encoder.input_px))
    plain = loc.candidates(desc, 10)
    spacing = loc.spacing_km(cam256)
    assert spacing == pytest.approx(0.5 * cam256.footprint_half_width_km(600.0))
    spaced = loc.candidates(desc, 10, spacing)
    # the tiny bundle's views overlap at four scales: the plain list repeats places; the spaced one's first
    # distinct places do not, and its ~1,100 x 1,400 km region holds fewer than 10 of them: the best skipped
    # views fill the rest, in rank order
    distinct = [c for i, c in enumerate(spaced) if all(
        _min_gap_km([c, d]) > spacing for d in spaced[:i])]
    assert _min_gap_km(plain) <= spacing and 3 <= len(distinct) < 10
    assert len(spaced) == 10 and spaced[0].view == plain[0].view
    sims = [c.score for c in spaced]
    assert sims == sorted(sims, reverse=True)
    assert {c.view for c in plain} != {c.view for c in spaced}
    # 0 turns it off
    loc.cfg["encoder_spacing"] = 0.0
    try:
        assert loc.spacing_km(cam256) == 0.0
        assert [c.view for c in loc.encoder_candidates(img, cam256)] == [c.view for c in plain]
    finally:
        loc.cfg["encoder_spacing"] = 0.5
    assert [c.view for c in loc.encoder_candidates(img, cam256)] == [c.view for c in spaced]
