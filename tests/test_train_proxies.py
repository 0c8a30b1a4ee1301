"""The place proxies of `earthfix train --proxies`: classes and masks are numpy (run without torch); the
training step with them needs the ``train`` extra and is skipped without it."""
import numpy as np

from earthfix.onboard import geodesy
from earthfix.tools import grid
from earthfix.tools.train_encoder import PlaceProxies


def test_a_sample_is_classed_as_the_nearest_view_of_its_reference_scale():
    places = PlaceProxies()
    lat, lon, sidx = grid.reference_grid()
    assert len(places) == len(lat)
    j = int(np.flatnonzero(sidx == 2)[100])              # a 490 km view
    # a sample 20 km from that view, classed at 490 km: that view; at 250 km: a 250 km view nearby
    slat, slon = geodesy.destination(lat[j], lon[j], 30.0, 20.0)
    cls, _ = places.targets([slat], [slon], [490.0], [490.0])
    assert cls[0] == j
    cls, _ = places.targets([slat], [slon], [490.0], [250.0])
    assert sidx[cls[0]] == 0
    assert geodesy.great_circle_km(slat, slon, lat[cls[0]], lon[cls[0]]) < 0.5 * 250.0


def test_views_the_recall_counts_right_are_neither_positive_nor_negative():
    places = PlaceProxies()
    lat, lon, _ = grid.reference_grid()
    j = 5000
    cls, near = places.targets([lat[j]], [lon[j]], [400.0], [grid.SCALES_KM[int(grid.reference_grid()[2][j])]])
    d = geodesy.great_circle_km(lat[j], lon[j], lat, lon)
    assert cls[0] == j and not near[0, j]                # the class itself stays the positive
    others = np.arange(len(lat)) != j
    # masked exactly where CONVENTIONS' recall would count the view right: within half the half-width
    assert np.array_equal(near[0, others], (d < 0.5 * 400.0)[others])
    assert near[0].sum() >= 4                             # the dense lattice: several views at every scale


def test_training_with_proxies_takes_finite_steps_and_records_them(tmp_path):
    import json

    import pytest
    torch = pytest.importorskip("torch")     # the train extra; CI installs dev only
    from earthfix.tools.train_encoder import train
    train(tmp_path, minutes=0, steps=2, seed=0, lr=1e-3, dim=128, threads=1, workers=0,
          proxy_weight=1.0, proxy_lr_mult=2.0, log=lambda s: None)
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert (log["proxy_weight"], log["proxy_lr_mult"]) == (1.0, 2.0)
    assert all(len(h) == 4 and np.all(np.isfinite(h[1:])) for h in log["history"])
    # the place term is in the loss: over ~26,000 proxies it starts near log(26,000) ~ 10
    assert log["history"][0][3] > 8.0 and log["history"][0][1] > log["history"][0][3]
    state = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert state["proxies"].shape == (len(PlaceProxies()), 128)
