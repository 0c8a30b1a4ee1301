"""The bundle's descriptor compression: PCA with partial whitening (build_index.WHITEN_POWER).

Flight applies whatever projection the bundle stores (``Bundle.reduce``), so whitening lives in the build
alone; these tests pin what the build writes and that a cached default bundle of an older recipe is rebuilt.
"""
from __future__ import annotations

import numpy as np
import yaml

from earthfix.onboard.bundle import MANIFEST, Bundle
from earthfix.tools.build_keystore import BuildConfig
from earthfix.tools.build_index import (DEFAULT_KEYINDEX, DEFAULT_KEYSTORE_EXTRA, FINE_KEYSTORE_GSD_KM, LOWRES_MAP_PX,
                                       WHITEN_POWER, fit_pca, is_current, shipped_local_sha256, snow_season_recipe)
from earthfix.tools.season_map import SNOW_COLOURS_SHA256


def _descriptors(n=2000, d=16, seed=0):
    """Unit vectors with a few dominant directions, as encoder descriptors have."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.geomspace(10.0, 0.1, d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_plain_pca_is_orthonormal_and_full_whitening_gives_unit_variance():
    x = _descriptors()
    mean, comps = fit_pca(x, 8, 0.0)
    assert np.allclose(comps.T @ comps, np.eye(8), atol=1e-5)
    _, white = fit_pca(x, 8, 1.0)
    z = (x - mean) @ white
    assert np.allclose(np.cov(z.T, bias=True), np.eye(8), atol=1e-3)


def test_half_whitening_takes_the_square_root_of_each_standard_deviation():
    x = _descriptors()
    mean, plain = fit_pca(x, 8, 0.0)
    _, half = fit_pca(x, 8, 0.5)
    sd_plain = ((x - mean) @ plain).std(axis=0)
    sd_half = ((x - mean) @ half).std(axis=0)
    assert np.allclose(sd_half, np.sqrt(sd_plain), rtol=1e-3)
    # same directions, only rescaled
    assert np.allclose(np.abs(np.sum(plain / np.linalg.norm(plain, axis=0) * half / np.linalg.norm(half, axis=0),
                                     axis=0)), 1.0, atol=1e-5)


def test_built_bundle_records_the_power_and_flight_reduction_reproduces_its_rows(tiny_bundle):
    manifest = yaml.safe_load((tiny_bundle / MANIFEST).read_text())
    assert manifest["pca"]["whiten_power"] == WHITEN_POWER
    b = Bundle.load(tiny_bundle, load_keystore=False)
    # built without the shipped maps and the snow season in its keypoint stores: of the default recipe but for them
    assert not is_current(manifest, b.manifest["encoder"]["sha256"], shipped_local_sha256())
    shipped = dict(manifest, keystore=dict(manifest["keystore"], extra_basemaps=_shipped_extra(),
                                           snow_season=_shipped_snow()))
    assert is_current(shipped, b.manifest["encoder"]["sha256"], shipped_local_sha256())
    # the stored rows are unit vectors of the whitened projection: a stored row, mapped back to descriptor
    # space through the projection's pseudo-inverse and reduced again, is itself
    rows = np.load(tiny_bundle / "descriptors.npy").astype(np.float32)[:20]
    back = rows @ np.linalg.pinv(b.pca_components) + b.pca_mean
    assert np.allclose(b.reduce(back), rows, atol=2e-3)


def _shipped_extra():
    from earthfix.sim.basemap import SHIPPED_MAPS
    return [{"source": n, "sha256": SHIPPED_MAPS[n]} for n in DEFAULT_KEYSTORE_EXTRA]


def _shipped_snow():
    return {"sha256": SNOW_COLOURS_SHA256, **snow_season_recipe()}


def test_a_cached_default_bundle_of_another_recipe_or_encoder_is_not_reused():
    fine = {"gsd_km": 6.0, "fine_gsd_km": FINE_KEYSTORE_GSD_KM, "fine_keypoints": 10,
            "extra_basemaps": _shipped_extra(), "lowres_map_px": LOWRES_MAP_PX, "lowres_keypoints": 10,
            "snow_season": _shipped_snow()}
    ki = {"library": "hnswlib", "space": "l2", "M": DEFAULT_KEYINDEX["M"],
          "ef_construction": DEFAULT_KEYINDEX["ef_construction"], "ef": DEFAULT_KEYINDEX["ef"],
          "file": "keyindex.graph", "dim": BuildConfig.pca_dim}
    m = {"encoder": {"sha256": "abc"}, "pca": {"dim_in": 128, "dim_out": 64, "whiten_power": WHITEN_POWER},
         "keystore": fine, "keyindex": ki}
    assert is_current(m, "abc")
    # without the low-resolution store (before session 67) or of another sample: rebuilt
    assert not is_current(dict(m, keystore=dict(fine, lowres_map_px=None)), "abc")
    assert not is_current(dict(m, keystore=dict(fine, lowres_map_px=1024)), "abc")
    # without the snow season (before session 76), with another colour map or another snowline: rebuilt
    assert not is_current(dict(m, keystore={k: v for k, v in fine.items() if k != "snow_season"}), "abc")
    assert not is_current(dict(m, keystore=dict(fine, snow_season=dict(_shipped_snow(), sha256="0" * 64))), "abc")
    assert not is_current(dict(m, keystore=dict(fine, snow_season=dict(_shipped_snow(), snowline_deg=50.0))), "abc")
    # the key index kept whole (keyindex.hnsw, before session 51): still read, but not the default recipe
    assert not is_current(dict(m, keyindex={k: v for k, v in ki.items() if k != "file"}), "abc")
    # the key index's graph: the flight's vote_ef is tuned to it (M 8 / ef_construction 100 until session 38)
    assert not is_current(dict(m, keyindex=dict(ki, M=8, ef_construction=100)), "abc")
    assert not is_current(dict(m, keyindex=dict(ki, M=8)), "abc")
    assert not is_current({k: v for k, v in m.items() if k != "keyindex"}, "abc")
    assert is_current(dict(m, keyindex=dict(ki, ef=12)), "abc")      # the build's own ef is not the flight's
    # the stores' descriptor dimension (a manifest without it is of the 32-D stores every build made before session 57)
    assert not is_current(dict(m, keyindex=dict(ki, dim=2 * BuildConfig.pca_dim)), "abc")
    assert is_current(dict(m, keyindex={k: v for k, v in ki.items() if k != "dim"}), "abc") == (BuildConfig.pca_dim == 32)
    assert not is_current(m, "abd")
    old = {"encoder": {"sha256": "abc"}, "pca": {"dim_in": 128, "dim_out": 64}, "keystore": fine,   # before whitening
           "keyindex": ki}
    assert not is_current(old, "abc")
    no_fine = {k: v for k, v in m.items() if k != "keystore"}        # before the fine keypoint store
    assert not is_current(no_fine, "abc")
    assert not is_current(dict(m, keystore=dict(fine, fine_gsd_km=None)), "abc")
    # the shipped maps whose keypoints join the stores (none before session 50; another file of the same name)
    assert DEFAULT_KEYSTORE_EXTRA
    assert not is_current(dict(m, keystore={k: v for k, v in fine.items() if k != "extra_basemaps"}), "abc")
    assert not is_current(dict(m, keystore=dict(fine, extra_basemaps=[])), "abc")
    other = [dict(e, sha256="0" * 64) for e in _shipped_extra()]
    assert not is_current(dict(m, keystore=dict(fine, extra_basemaps=other)), "abc")
    # the local descriptor: a RootSIFT bundle when a network ships, or one built with another network
    learned = dict(m, local_descriptor={"file": "localdesc.onnx", "kind": "patchnet", "sha256": "d13"})
    assert is_current(learned, "abc", "d13")
    assert not is_current(m, "abc", "d13")
    assert not is_current(learned, "abc", "e42")
    assert not is_current(learned, "abc", None)
