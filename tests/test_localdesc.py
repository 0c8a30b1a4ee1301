"""The learned local descriptor's plumbing: patch geometry, extraction with a describer, and the rule that a
keypoint store built with a network is only ever matched against frames described by that same network.
A tiny numpy-free ONNX stand-in (4 block means of the patch) plays the network."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from earthfix.onboard.features import FeatureConfig, extract_features
from earthfix.onboard.keystore import KeypointStore, KeystoreError
from earthfix.onboard.localdesc import (PATCH_PX, WINDOW_PER_SIZE, LocalDescError, PatchDescriber, patch_grid,
                                        sample_patches)


def _block_means(kernel: int = 16) -> bytes:
    """N x 1 x 32 x 32 -> N x (32 / kernel)^2: block means, a stand-in descriptor network."""
    out = (PATCH_PX // kernel) ** 2
    x = helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["n", 1, PATCH_PX, PATCH_PX])
    y = helper.make_tensor_value_info("desc", TensorProto.FLOAT, ["n", out])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, out])
    graph = helper.make_graph([helper.make_node("AveragePool", ["patches"], ["p"], kernel_shape=[kernel, kernel],
                                                strides=[kernel, kernel]),
                               helper.make_node("Reshape", ["p", "shape"], ["desc"])],
                              "block_means", [x], [y], initializer=[shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _texture(side=128, seed=0) -> np.ndarray:
    import cv2
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.uniform(0, 255, (side, side)).astype(np.float32), (0, 0), 2.0)
    return cv2.normalize(g, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def test_a_patch_turns_with_its_keypoint():
    # the same ground seen turned by 90 deg: the keypoint's OpenCV angle turns by -90 in np.rot90's sense
    g = _texture()
    w = g.shape[1]
    turned = np.ascontiguousarray(np.rot90(g))          # new[r, c] = old[c, w - 1 - r]
    xy = np.array([[40.0, 70.0], [64.0, 64.0], [90.5, 33.25]])
    angle = np.array([0.0, 30.0, 217.0])
    xy_turned = np.stack([xy[:, 1], w - 1 - xy[:, 0]], axis=1)
    a = sample_patches(g, *patch_grid(xy, [3.0, 4.0, 2.5], angle))
    b = sample_patches(turned, *patch_grid(xy_turned, [3.0, 4.0, 2.5], angle - 90.0))
    assert a.shape == (3, PATCH_PX, PATCH_PX)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # and the other sense would not be the same patch
    c = sample_patches(turned, *patch_grid(xy_turned, [3.0, 4.0, 2.5], angle + 90.0))
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10


def test_features_described_by_a_network_keep_sift_geometry():
    d = PatchDescriber(_block_means(8))
    img = _texture(256, seed=3)
    sift = extract_features(img, FeatureConfig())
    net = extract_features(img, FeatureConfig(), describer=d)
    assert len(net) == len(sift) > 20
    np.testing.assert_array_equal(net.xy, sift.xy)
    np.testing.assert_array_equal(net.angle, sift.angle)
    assert net.desc.shape == (len(sift), 16)
    np.testing.assert_allclose(np.linalg.norm(net.desc, axis=1), 1.0, atol=1e-5)


def test_a_network_of_another_input_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 1, 1])
    g = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["y"])], "rgb", [x], [y])
    with pytest.raises(LocalDescError, match="input shape"):
        PatchDescriber(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(LocalDescError, match="not a usable ONNX"):
        PatchDescriber(b"not a model")


def test_a_store_built_with_a_network_describes_frames_only_with_it(tmp_path):
    from earthfix.sim.basemap import Basemap
    from earthfix.tools.build_keystore import BuildConfig, build_keystore, load_store
    d = PatchDescriber(_block_means(8), name=str(tmp_path / "net.onnx"))
    (tmp_path / "net.onnx").write_bytes(_block_means(8))
    store = build_keystore(Basemap.default(), BuildConfig(bbox=(33.0, 36.0, -112.0, -108.0)), progress=False,
                           describer=d)
    assert store.descriptor == {"kind": "patchnet", "sha256": d.sha256, "file": "net.onnx"}
    assert store.describer_for_frames() is d and store.dim == 16
    store.save(tmp_path / "ks.npz")
    bare = KeypointStore.load(tmp_path / "ks.npz")
    with pytest.raises(KeystoreError, match="not attached"):
        bare.describer_for_frames()
    with pytest.raises(KeystoreError, match="built with local descriptor"):
        bare.attach_describer(PatchDescriber(_block_means(16)))
    assert load_store(tmp_path / "ks.npz", tmp_path / "net.onnx").describer.sha256 == d.sha256
    assert bare.truncated(8).descriptor["kind"] == "patchnet"
    # a RootSIFT store takes no network
    plain = build_keystore(Basemap.default(), BuildConfig(bbox=(33.0, 36.0, -112.0, -108.0)), progress=False)
    assert plain.descriptor == {"kind": "rootsift"} and plain.describer_for_frames() is None
    with pytest.raises(KeystoreError, match="RootSIFT"):
        plain.attach_describer(d)


def test_a_bundle_describes_frames_with_its_own_network_or_is_refused(tiny_bundle, tmp_path):
    import shutil

    import yaml

    from earthfix.onboard.bundle import MANIFEST, Bundle, BundleError, seal_manifest
    m = yaml.safe_load((tiny_bundle / MANIFEST).read_text())
    if "local_descriptor" not in m:
        pytest.skip("the tiny bundle was built without a learned local descriptor (none shipped)")
    b = Bundle.load(tiny_bundle)
    assert b.keystore.describer.sha256 == m["local_descriptor"]["sha256"]
    assert b.keystore.descriptor["sha256"] == m["local_descriptor"]["sha256"]
    if b.keystore_fine is not None:
        assert b.keystore_fine.describer is b.keystore.describer
    bad = tmp_path / "bad"
    shutil.copytree(tiny_bundle, bad)
    # the manifest names another network than the stores were built with
    other = dict(m, local_descriptor=dict(m["local_descriptor"], sha256="0" * 64))
    (bad / MANIFEST).write_text(yaml.safe_dump(other, sort_keys=False))
    seal_manifest(bad)
    with pytest.raises(BundleError, match="another local descriptor"):
        Bundle.load(bad)
    # the manifest no longer lists the network's file
    files = {k: v for k, v in m["files"].items() if k != m["local_descriptor"]["file"]}
    (bad / MANIFEST).write_text(yaml.safe_dump(dict(m, files=files), sort_keys=False))
    seal_manifest(bad)
    with pytest.raises(BundleError, match="lists no localdesc.onnx"):
        Bundle.load(bad)


def test_the_int8_descriptor_describes_like_the_fp32_one(tmp_path):
    """quantize_int8 with the descriptor's own input name and batches: the INT8 copy of the shipped network
    gives nearly the FP32 vectors on real texture patches, and an INT8 model is what a QDQ graph holds."""
    import onnx

    from earthfix.onboard.localizer import shipped_models_dir
    from earthfix.tools.export_encoder import quantize_int8
    fp32 = shipped_models_dir() / "localdesc.onnx"
    if not fp32.is_file():
        pytest.skip("no shipped localdesc.onnx")
    d32 = PatchDescriber(fp32.read_bytes())
    g = _texture(256, seed=3)
    rng = np.random.default_rng(0)
    xy = rng.uniform(40, 216, (600, 2))
    size = rng.uniform(3.0, 8.0, 600)
    ang = rng.uniform(0, 360, 600)
    x = sample_patches(g, *patch_grid(xy, size, ang)).astype(np.float32)[:, None]
    out = tmp_path / "ld_int8.onnx"
    # 500 rows in batches of 128: the last, partial batch is left out (onnxruntime needs equal batches)
    quantize_int8(fp32, out, x[:500], input_name=d32.input_name, batch=128)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    d8 = PatchDescriber(out.read_bytes())
    a, b = d32.describe(g, xy[512:], size[512:], ang[512:]), d8.describe(g, xy[512:], size[512:], ang[512:])
    assert np.median((a * b).sum(1)) > 0.99
    # nearest neighbours among the held-out patches mostly agree
    assert ((b @ a.T).argmax(1) == np.arange(len(a))).mean() > 0.9


def test_bundles_are_built_with_the_int8_descriptor_when_it_is_shipped(tmp_path, monkeypatch):
    from earthfix.tools import build_keystore
    import earthfix.onboard.localizer as L
    monkeypatch.setattr(L, "shipped_models_dir", lambda: tmp_path)
    assert build_keystore.shipped_local_descriptor() is None
    (tmp_path / "localdesc.onnx").write_bytes(_block_means())
    assert build_keystore.shipped_local_descriptor().name == "localdesc.onnx"
    (tmp_path / "localdesc_int8.onnx").write_bytes(_block_means(8))
    assert build_keystore.shipped_local_descriptor().name == "localdesc_int8.onnx"


def test_a_network_samples_its_patches_at_the_window_it_records(tmp_path):
    # the window travels in the network's ONNX metadata: the store's and the flight's patches follow it
    from earthfix.tools.train_localdesc import set_window
    path = tmp_path / "net.onnx"
    path.write_bytes(_block_means(8))
    set_window(path, WINDOW_PER_SIZE)                   # the default writes nothing: the bytes stay the same
    assert path.read_bytes() == _block_means(8)
    plain = PatchDescriber(path.read_bytes())
    assert plain.window_per_size == WINDOW_PER_SIZE
    set_window(path, 9.0)
    wide = PatchDescriber(path.read_bytes())
    assert wide.window_per_size == 9.0
    g = _texture(256, seed=5)
    xy, size, angle = np.array([[100.0, 120.0], [150.5, 90.25]]), np.array([3.0, 4.5]), np.array([10.0, 250.0])
    np.testing.assert_allclose(wide.describe(g, xy, size, angle),
                               wide.describe_patches(sample_patches(g, *patch_grid(xy, size, angle, 9.0))))
    assert np.abs(wide.describe(g, xy, size, angle) - plain.describe(g, xy, size, angle)).max() > 1e-3
    # writing again replaces the window and keeps the file's other metadata
    model = onnx.load(str(path))
    model.metadata_props.add(key="note", value="kept")
    onnx.save(model, str(path))
    set_window(path, 12.0)
    assert {(e.key, e.value) for e in onnx.load(str(path)).metadata_props} == {("note", "kept"),
                                                                             ("window_per_size", "12.0")}
    assert PatchDescriber(path.read_bytes()).window_per_size == 12.0
    # a window no network could have been trained at is a corrupt file, refused with one line
    model = onnx.load(str(path))
    next(e for e in model.metadata_props if e.key == "window_per_size").value = "nine"
    with pytest.raises(LocalDescError, match="window_per_size='nine'"):
        PatchDescriber(model.SerializeToString())
