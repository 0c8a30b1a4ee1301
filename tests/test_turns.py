"""Rotated reference views: an encoder whose card says ``reference_turns: 4`` gets a bundle that stores every
reference at the four quarter turns, searched with a query encoded once (onboard/encoder.py)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from earthfix.onboard.bundle import Bundle, first_views
from earthfix.onboard.encoder import LEGACY_CARD, Encoder, rotation_handling
from earthfix.onboard.preprocess import standardise

from support import ENCODER, TINY_REGION, needs_model

pytestmark = needs_model


@pytest.fixture(scope="module")
def turned_bundle(tmp_path_factory):
    """The tiny region's bundle from the encoder under test, carded as trained for +-45 deg (4 turns)."""
    from earthfix.tools.build_index import build_bundle
    root = tmp_path_factory.mktemp("turns")
    enc = root / "models" / "encoder_int8.onnx"
    enc.parent.mkdir()
    shutil.copy(ENCODER, enc)
    (enc.parent / "encoder.json").write_text(json.dumps({"rotations": 1, "reference_turns": 4,
                                                         "files": {enc.name: {}}}))
    out = build_bundle(root / "bundle", encoder_path=enc, region=TINY_REGION, keystore=False, progress=False,
                       threads=1, log=lambda s: None)
    return out, enc


def test_the_card_decides_the_rotation_handling(tmp_path):
    enc = tmp_path / "e.onnx"
    assert rotation_handling(enc) == LEGACY_CARD                       # no card: the legacy any-yaw model
    (tmp_path / "encoder.json").write_text(json.dumps({"rotations": 1, "reference_turns": 4, "files": {"x.onnx": {}}}))
    assert rotation_handling(enc) == LEGACY_CARD                       # a card about another file
    (tmp_path / "encoder.json").write_text(json.dumps({"rotations": 1, "reference_turns": 4, "files": {"e.onnx": {}}}))
    assert rotation_handling(enc) == {"rotations": 1, "reference_turns": 4}
    (tmp_path / "encoder.json").write_text(json.dumps({"rotations": 3, "files": {"e.onnx": {}}}))
    with pytest.raises(ValueError, match="rotations"):
        rotation_handling(enc)


def test_first_views_keeps_the_best_turn_of_each_view():
    rows = [9, 8, 3, 11, 0, 20]                 # views 2, 2, 0, 2, 0, 5 at 4 turns
    views, sims = first_views(rows, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 4, k=3)
    assert views.tolist() == [2, 0, 5]
    assert np.allclose(sims, [0.9, 0.7, 0.4])


def test_every_turn_of_a_reference_finds_its_view(turned_bundle, basemap):
    from earthfix.onboard.localizer import Localizer
    from earthfix.tools.train_encoder import render_reference
    out, enc_path = turned_bundle
    b = Bundle.load(out, load_keystore=False, load_descriptors=True)
    assert b.turns == 4 and b.manifest["encoder"]["rotations"] == 1
    assert b.manifest["index"]["dim"] == 32                           # 4x the rows at half the dimension
    assert b.index.get_current_count() == 4 * b.views and len(b.descriptors) == 4 * b.views
    enc = Encoder.from_file(enc_path, threads=1, rotations=1)
    rng = np.random.default_rng(3)
    for i in rng.choice(b.views, 4, replace=False):
        x = standardise(render_reference(basemap, float(b.lat[i]), float(b.lon[i]), int(b.scale[i])).image)[None]
        for turn in range(4):
            idx, sim = b.search(enc.encode_input(np.rot90(x, turn, axes=(2, 3)).copy()), 10)
            assert idx[0] == i and sim[0] > 0.99
            assert len(set(idx.tolist())) == len(idx) == 10           # distinct views, not turns of one
    # the Localizer encodes a query once for such a bundle (manifest encoder.rotations), unless told
    loc = Localizer.load(out, config={"encoder": str(enc_path), "vote": False})
    assert loc.encoder.rotations == 1
    assert Localizer.load(out, config={"encoder": str(enc_path), "rotations": 4}).encoder.rotations == 4
