"""Training pairs of the learned local descriptor cover the same ground on both sides; a short training run
exports a network the flight describer loads (torch: skipped without the train extra)."""
from __future__ import annotations

import numpy as np
import pytest

from earthfix.onboard.localdesc import PATCH_PX, PatchDescriber
from earthfix.tools.train_localdesc import frame_pairs


def _standardised(p):
    p = p.astype(np.float32).reshape(len(p), -1)
    p -= p.mean(1, keepdims=True)
    return p / (p.std(1, keepdims=True) + 1.0)


def _first_pairs(seed=5, start=0):
    for i in range(start, start + 20):
        pairs = frame_pairs(seed, i, per_frame=60)
        if pairs is not None:
            return pairs
    raise AssertionError("no eligible frame in 20")


def test_pairs_show_the_same_ground_in_tile_and_frame():
    pairs = _first_pairs()
    k = len(pairs["tile"])
    assert 5 <= k <= 60
    for look in ("tile", "plain", "filled"):
        assert pairs[look].shape == (k, PATCH_PX, PATCH_PX) and pairs[look].dtype == np.uint8
    t = _standardised(pairs["tile"])
    for look in ("plain", "filled"):
        f = _standardised(pairs[look])
        same = np.median((t * f).mean(1))
        other = np.median((t * np.roll(f, 1, axis=0)).mean(1))      # another keypoint's frame patch
        assert same > 0.3 and same > other + 0.2, (look, same, other)


def test_translucent_cloud_frames_are_an_option_that_leaves_the_shipped_recipes_frames_alone():
    """``cloud_edge_max``: half the frames get wider translucent cloud margins, drawn from a stream of their own:
    0 gives the shipped recipe's pairs exactly, and some frame changes with it on."""
    changed = 0
    for i in range(6):
        base = frame_pairs(91, i, per_frame=60)
        assert _same(base, frame_pairs(91, i, per_frame=60, cloud_edge_max=0.0))
        changed += not _same(base, frame_pairs(91, i, per_frame=60, cloud_edge_max=2.4))
    assert changed >= 1


def test_frames_from_another_map_are_an_option_that_shows_the_same_ground(tmp_path):
    """``frame_maps``: a share of the frames is rendered from another global image (here the Blue Marble with
    its red and blue bands swapped, as another product would render them differently), the map tile staying
    the default's: share 0 gives the shipped recipe's pairs exactly; at share 1 the frame patches change and
    still show the tile patch's ground."""
    import cv2
    from earthfix.sim.basemap import Basemap
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), Basemap.default().image[..., ::-1])
    changed = 0
    for i in range(6):
        base = frame_pairs(91, i, per_frame=60)
        assert _same(base, frame_pairs(91, i, per_frame=60, frame_maps=(str(other),), frame_map_share=0.0))
        moved = frame_pairs(91, i, per_frame=60, frame_maps=(str(other),), frame_map_share=1.0)
        if base is None or moved is None:
            continue
        changed += not _same(base, moved)
        t, f = _standardised(moved["tile"]), _standardised(moved["plain"])
        same, shifted = np.median((t * f).mean(1)), np.median((t * np.roll(f, 1, axis=0)).mean(1))
        assert same > shifted + 0.2, (i, same, shifted)
    assert changed >= 1



def test_snow_pairs_keep_the_snowy_ground_the_cloud_mask_took_for_cloud():
    """``snow_pairs`` on a frame of the simulator's winter (frame 28 of seed 91: northern land under snow): the
    cloud mask takes the snow for cloud, so the shipped rule keeps no pair there; with the mask of the same
    frame rendered from the default basemap (same clouds) the snowy ground gives pairs, which still show the
    tile's ground in the plain look, and the filled look's patches of ground it filled over are the plain ones."""
    kw = dict(per_frame=60, frame_maps=("winter",), frame_map_share=1.0)
    assert frame_pairs(91, 28, **kw) is None
    snowy = frame_pairs(91, 28, snow_pairs=True, **kw)
    assert snowy is not None and len(snowy["tile"]) >= 20
    t, f = _standardised(snowy["tile"]), _standardised(snowy["plain"])
    same, shifted = np.median((t * f).mean(1)), np.median((t * np.roll(f, 1, axis=0)).mean(1))
    assert same > shifted + 0.2, (same, shifted)
    assert np.mean([np.array_equal(a, b) for a, b in zip(snowy["filled"], snowy["plain"])]) > 0.5
    assert _same(frame_pairs(91, 1, per_frame=60), frame_pairs(91, 1, per_frame=60, snow_pairs=True))

def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_pairs_are_reproducible():
    a, b = _first_pairs(), _first_pairs()
    for look in a:
        np.testing.assert_array_equal(a[look], b[look])


def test_a_short_training_exports_a_network_the_flight_loads(tmp_path):
    pytest.importorskip("torch")
    from earthfix.tools.train_localdesc import export, train
    pairs = _first_pairs()
    val = _first_pairs(start=20)
    net, rec = train(pairs, val, minutes=0.0, batch=len(pairs["tile"]), log=lambda s: None, steps=3)
    assert rec["steps"] == 3 and set(rec["val_top1"]) == {"plain", "filled"}
    sha = export(net, tmp_path / "localdesc.onnx")
    d = PatchDescriber((tmp_path / "localdesc.onnx").read_bytes())
    assert d.sha256 == sha and d.dim == 128
    rng = np.random.default_rng(0)
    g = rng.integers(0, 255, (64, 64)).astype(np.uint8)
    desc = d.describe(g, rng.uniform(10, 54, (7, 2)), np.full(7, 3.0), rng.uniform(0, 360, 7))
    assert desc.shape == (7, 128)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)
    # --widths: the first two convolutions' channels, recorded; the flight side loads any width
    net8, rec8 = train(pairs, val, minutes=0.0, batch=len(pairs["tile"]), log=lambda s: None, steps=1, widths=(8, 16))
    assert rec8["widths"] == [8, 16] and rec["widths"] == [24, 48]
    export(net8, tmp_path / "narrow.onnx")
    assert PatchDescriber((tmp_path / "narrow.onnx").read_bytes()).describe(
        g, rng.uniform(10, 54, (3, 2)), np.full(3, 3.0), rng.uniform(0, 360, 3)).shape == (3, 128)
    assert (tmp_path / "narrow.onnx").stat().st_size < (tmp_path / "localdesc.onnx").stat().st_size


def test_the_photometric_shift_changes_appearance_but_keeps_the_patchs_structure():
    torch = pytest.importorskip("torch")
    from earthfix.tools.train_localdesc import photometric_shift
    rng = np.random.default_rng(3)
    # a patch with structure: a bright blob on a ramp
    yy, xx = np.mgrid[0:PATCH_PX, 0:PATCH_PX].astype(np.float32)
    base = 60.0 + 3.0 * xx + 120.0 * np.exp(-((xx - 12) ** 2 + (yy - 20) ** 2) / 30.0)
    x = torch.from_numpy(np.repeat(base[None, None], 256, 0))
    assert photometric_shift(x, rng, 0.0) is x                     # strength 0: the shipped recipe
    y = photometric_shift(x, rng, 1.0)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 255.0
    changed = (y - x).abs().flatten(1).mean(1)
    assert float((changed > 2.0).float().mean()) > 0.5               # most patches look different...
    s0 = _standardised(x[:, 0].numpy())
    s1 = _standardised(y[:, 0].numpy())
    corr = (s0 * s1).mean(1) / np.sqrt((s0 ** 2).mean(1) * (s1 ** 2).mean(1))
    # ...yet show the same structure (a ramp against the patch's own can take a few a good way off)
    assert float(np.median(corr)) > 0.95 and float(np.percentile(corr, 5)) > 0.8
