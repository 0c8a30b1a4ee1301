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
