"""A keypoint store can hold the keypoints of several images of the same ground (another product or season of
the map: docs/BENCHMARKS.md, "Other months of the Blue Marble"), under one PCA."""
from __future__ import annotations

import numpy as np

from earthfix.sim.basemap import Basemap
from earthfix.tools.build_keystore import BuildConfig, build_keystore

REGION = (33.0, 36.0, -112.0, -108.0)


def test_another_maps_keypoints_join_the_store_under_one_pca():
    bm = Basemap.default()
    brighter = np.clip(255.0 * (bm.image / 255.0) ** 0.6, 0, 255).astype(np.uint8)   # another rendering
    other = Basemap(brighter, bm.land, source="brighter")
    cfg = BuildConfig(bbox=REGION)
    one = build_keystore(bm, cfg, progress=False)
    both = build_keystore(bm, cfg, progress=False, extra_basemaps=(other,))
    alone = build_keystore(other, cfg, progress=False)
    assert len(both) == len(one) + len(alone)                  # each map's keypoints, each under its own cap
    assert both.meta["extra_basemaps"] == ["brighter"] and one.meta["extra_basemaps"] == []
    assert both.desc.shape[1] == one.desc.shape[1]             # one PCA, one quantisation for all
    assert not np.array_equal(both.pca_components, one.pca_components)


def test_the_shipped_map_loads_only_with_its_recorded_sha256(tmp_path, monkeypatch):
    """The default recipe's second map ships in maps/ (maps/README.md) and is refused, with one line, when its
    bytes are not the recorded ones or when the name is not a shipped map."""
    import pytest

    from earthfix.sim import basemap as bmod
    from earthfix.sim.basemap import SHIPPED_MAPS, BasemapError
    from earthfix.tools.build_index import DEFAULT_KEYSTORE_EXTRA
    name = DEFAULT_KEYSTORE_EXTRA[0]
    assert name in SHIPPED_MAPS
    good = Basemap.shipped(name)
    assert good.is_global and good.image.shape[:2] == (1024, 2048)
    # its land is the GSHHS mask, as the default map's
    assert good.land.mean() > 0.25
    data = bytearray((bmod.shipped_maps_dir() / name).read_bytes())
    data[len(data) // 2] ^= 0x40
    (tmp_path / name).write_bytes(bytes(data))
    monkeypatch.setattr(bmod, "shipped_maps_dir", lambda: tmp_path)
    bmod._shipped_cached.cache_clear()
    try:
        with pytest.raises(BasemapError, match="corrupted"):
            Basemap.shipped(name)
        with pytest.raises(BasemapError, match="not a shipped map"):
            Basemap.shipped("bmng.jpg")
    finally:
        bmod._shipped_cached.cache_clear()
