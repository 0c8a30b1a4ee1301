"""Per-stage latency at one thread (onnxruntime ``intra_op_num_threads=1``, ``cv2.setNumThreads(1)``).

    python -m pytest tests/bench --benchmark-enable --benchmark-only          # the table
    python -m pytest tests/bench                                               # each runs once (a test)

Stages: decode (PNG bytes -> array), preprocess, encode FP32, encode INT8 (both with the rotations flown:
the bundle's query turns),
search (HNSW top-k on the bundle), tone (the tone lift's check, and the lift when it fires), sharpen
(the blur ratio, and the unsharp mask when it fires), fill (cloud mask and fill of the cloud-filled look), features (the
plain look's, with the bundle's descriptor, and with RootSIFT for the ratio), describe (the local
descriptor alone on 300 patches, FP32 and an INT8 copy), vote (keypoint
voting), verify (features + verification of the top candidates), fuse (one orbit-fuser update), end to
end (``Localizer.locate``, decoding excluded). The machine may be shared: compare figures as ratios
within one run.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from support import ENCODER, tilted_view, under_cloud

if not ENCODER.is_file():
    pytest.skip(f"benchmarks need the shipped encoder {ENCODER} (not exported yet)", allow_module_level=True)
pytest.importorskip("pytest_benchmark")

TOP_K = 10


def test_decode(benchmark, frame_png, one_thread):
    from earthfix.onboard.frames import decode_frame
    img = benchmark(decode_frame, frame_png)
    assert img.shape == (256, 256, 3)


def test_preprocess(benchmark, frame, localizer):
    from earthfix.onboard.preprocess import preprocess
    x = benchmark(preprocess, frame, localizer.encoder.input_px)
    assert x.shape == (1, 3, localizer.encoder.input_px, localizer.encoder.input_px)


def test_encode_fp32(benchmark, frame, localizer, models_dir):
    from earthfix.onboard.encoder import Encoder
    from earthfix.onboard.preprocess import preprocess
    path = models_dir / "encoder_fp32.onnx"
    if not path.is_file():
        pytest.skip(f"no FP32 encoder at {path}")
    enc = Encoder.from_file(path, threads=1, rotations=localizer.encoder.rotations)
    x = preprocess(frame, enc.input_px)
    d = benchmark(enc.encode_input, x)
    assert d.shape == (enc.dim,)


def test_encode_int8(benchmark, frame, localizer):
    from earthfix.onboard.preprocess import preprocess
    x = preprocess(frame, localizer.encoder.input_px)
    d = benchmark(localizer.encoder.encode_input, x)
    assert d.shape == (localizer.encoder.dim,) and abs(float(np.linalg.norm(d)) - 1.0) < 1e-3


def test_search(benchmark, frame, localizer):
    desc = localizer.encoder.encode(frame)
    idx, sim = benchmark(localizer.bundle.search, desc, TOP_K)
    assert len(idx) == min(TOP_K, localizer.bundle.views) and np.all(np.diff(sim) <= 1e-6)


def test_fill(benchmark, frame, camera, localizer):
    """Cloud mask and fill of a frame under broken cloud (the cloud-filled look's extra cost)."""
    from earthfix.onboard.features import fill_clouds
    from earthfix.sim.effects import CloudField
    view_alpha = CloudField(seed=3).sample(*np.meshgrid(np.linspace(20, 24, 256), np.linspace(10, 14, 256),
                                                        indexing="ij"), 0.5)[..., None]
    cloudy = under_cloud(frame, view_alpha)
    fver = localizer.fill_verifier(camera)
    filled, mask = benchmark(fill_clouds, cloudy, fver.cfg.feature)
    assert mask is not None and 0.05 < mask.mean() < 0.95 and filled is not cloudy


def test_despeckle(benchmark, frame, camera, localizer):
    """Speckle test and erosion of a frame under small cumulus cells (the cost when it triggers)."""
    from earthfix.onboard.features import despeckle_clouds
    from earthfix.onboard.localizer import despeckle_geometry
    from earthfix.sim.effects import CloudField
    lat, lon = np.meshgrid(np.linspace(-20, -16, 256), np.linspace(-56, -52, 256), indexing="ij")
    cells = CloudField(seed=0).cumulus(lat, lon, 0.4, 1.0)[..., None]
    speckled = under_cloud(frame, cells)
    _, k = despeckle_geometry(localizer.verifier.cfg, camera)
    out, share = benchmark(despeckle_clouds, speckled, speckled, k, localizer.verifier.cfg.feature)
    assert share > 0.09 and out is not speckled


def test_line_check(benchmark, frame):
    """The line-defect check on every frame (each column's and row's mean grey against its neighbours'; the
    frame has no stuck line and no gain pattern: it comes back as it is)."""
    from earthfix.onboard.features import repair_lines
    out, found = benchmark(repair_lines, frame)
    assert out is frame and found["lines"] == 0


def test_line_repair(benchmark, frame):
    """The line repair when it fires: four stuck columns mended, then a 4 % column gain pattern divided out
    (``stripe_gains``)."""
    from earthfix.onboard.features import repair_lines
    gains = 1.0 + np.random.default_rng(0).normal(0.0, 0.04, frame.shape[1])
    bad = np.clip(frame * gains[None, :, None], 0, 255).astype(np.uint8)
    bad[:, [30, 90, 150, 210]] = 0
    out, found = benchmark(repair_lines, bad)
    assert out is not bad and found["lines"] == 4 and found["striping"] > 0.03


def test_tone(benchmark, frame, localizer):
    """The exposure and tone checks on every frame (a histogram of the brightest band, one of the grey; the
    frame is exposed as the map is and on its curve)."""
    out, k, g = benchmark(localizer.toned, frame)
    assert out is frame and k == 1.0 and g == 1.0


def test_tone_lifting(benchmark, frame, localizer):
    """The tone lift when it fires: the frame through a steep tone curve (x ** 4: its 25th percentile under
    20 DN; its cloud keeps its brightest pixels over the exposure gain's threshold)."""
    dark = np.clip(255.0 * (frame / 255.0) ** 4.0 + 0.5, 0, 255).astype(np.uint8)
    out, k, g = benchmark(localizer.toned, dark)
    assert g < 1.0 and out is not dark


def test_exposure_stretching(benchmark, frame, localizer):
    """The exposure gain when it fires: the frame at a third of its light (its brightest pixels under 110 DN)."""
    dim = np.round(frame * (1.0 / 3.0)).astype(np.uint8)
    out, k, g = benchmark(localizer.toned, dim)
    assert k > 1.0 and out is not dim


def test_sharpen_check(benchmark, frame, camera, localizer):
    """The blur ratio on every frame (three Gaussians of the working image; a sharp frame is left alone)."""
    out, r = benchmark(localizer.sharpened, frame, camera)
    assert out is frame and r >= localizer.cfg["sharpen_below"]


def test_sharpening(benchmark, frame, camera, localizer):
    """The unsharp mask when it fires: the frame blurred by 3 px."""
    import cv2
    soft = cv2.GaussianBlur(frame, (0, 0), 3.0)
    out, r = benchmark(localizer.sharpened, soft, camera)
    assert out is not soft and r < localizer.cfg["sharpen_below"]


def test_features(benchmark, frame, localizer):
    """Local features of the plain look as flown: SIFT keypoints described by the bundle's learned local
    descriptor (``localdesc.onnx``; RootSIFT for a bundle without one)."""
    feats = benchmark(localizer.verifier.extract, frame)
    assert len(feats) > 50


def test_features_rootsift(benchmark, frame, localizer):
    """The same keypoints described by RootSIFT (the descriptor before session 26), for the ratio."""
    from earthfix.onboard.features import extract_features
    feats = benchmark(extract_features, frame, localizer.verifier.cfg.feature)
    assert len(feats) > 50 and feats.desc.shape[1] == 128


@pytest.fixture(scope="module")
def patches(frame, localizer):
    """812 patches of the frame's working grey image at seeded keypoints: 300 to describe, 512 to calibrate."""
    from earthfix.onboard.features import preprocess as work_grey
    from earthfix.onboard.localdesc import patch_grid, sample_patches
    g = work_grey(frame, localizer.verifier.cfg.feature)[0]
    rng = np.random.default_rng(0)
    n = 812
    xy = rng.uniform(8, min(g.shape) - 8, (n, 2))
    return sample_patches(g, *patch_grid(xy, rng.uniform(2.0, 6.0, n), rng.uniform(0, 360, n)))


@pytest.fixture(scope="module")
def describers(models_dir, patches, tmp_path_factory, one_thread):
    """The shipped local descriptor (FP32) and its INT8 copy (``quantize_int8``, as quantize-localdesc)."""
    from earthfix.onboard.localdesc import PatchDescriber
    from earthfix.tools.export_encoder import quantize_int8
    fp32 = models_dir / "localdesc.onnx"
    if not fp32.is_file():
        pytest.skip(f"no local descriptor at {fp32}")
    d32 = PatchDescriber(fp32.read_bytes(), threads=1)
    out = tmp_path_factory.mktemp("localdesc") / "localdesc_int8.onnx"
    quantize_int8(fp32, out, patches[300:].astype(np.float32)[:, None], input_name=d32.input_name, batch=128)
    return {"fp32": d32, "int8": PatchDescriber(out.read_bytes(), threads=1)}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_describe_300_patches(benchmark, patches, describers, precision):
    """The local descriptor alone on 300 patches (a look's keypoint budget), FP32 against its INT8 copy
    (not shipped: models/README.md, "Local descriptor")."""
    d = benchmark(describers[precision].describe_patches, patches[:300])
    assert d.shape[0] == 300 and np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("time", [None, "2025-06-21T12:00:00Z"])
def test_vote(benchmark, frame, camera, localizer, time):
    """Keypoint voting on the frame's features (extracted once, as ``Localizer.locate`` shares them); with a
    frame time, on lit ground only (``sun.Daylight``: each keypoint's first 2 lit neighbours among its first 4)."""
    if localizer.voter is None:
        pytest.skip("the bench bundle has no key index")
    from earthfix.onboard.localizer import DAYLIGHT_SLACK_DEG
    from earthfix.onboard.sun import Daylight
    feats = localizer.verifier.extract(frame)
    daylight = None if time is None else Daylight.at(time, localizer.cfg["min_sun_elev_deg"] - DAYLIGHT_SLACK_DEG)
    cands = benchmark(localizer.voter.candidates, feats, camera, daylight=daylight)
    assert isinstance(cands, list)


def test_verify(benchmark, frame, camera, localizer):
    """Features of the frame + verification of the top ``verify_k`` candidates (as ``Localizer.locate``)."""
    v = localizer.verifier
    if v is None:
        pytest.skip("the bench bundle has no keystore")
    cands = localizer.candidates(localizer.encoder.encode(frame), localizer.cfg["top_k"])
    rf = v.cfg.radius_factor
    vc = [(c.lat, c.lon, rf * localizer.bundle.scales_km[c.scale]) for c in cands[: localizer.cfg["verify_k"]]]

    def verify_stage():
        return v.verify(v.extract(frame), camera, vc)

    res = benchmark(verify_stage)
    assert res is not None


def test_tilt_prior_refit(benchmark, one_thread):
    """The pose refit with a tilt prior (every pose, lever and guided refit of a place runs it) on 12
    bunched correspondences, 600 km up, 3 deg off nadir: the cost the analytic Jacobians cut (session 34)."""
    from earthfix.onboard.verify import _refine_with_tilt_prior
    enu, uv, k, rvec, tvec, basis, origin = tilted_view(n=12, bunch=(150, 246))
    tvec = tvec + np.array([[1.0], [-0.5], [2.0]])                 # start a few km off
    rv, tv = benchmark(_refine_with_tilt_prior, enu, uv, k, rvec, tvec, basis, origin, 0.5, 5.0)
    assert np.all(np.isfinite(rv)) and np.all(np.isfinite(tv))


def _orbit_fixes(n: int, t0: datetime, step_s: float = 10.0, noise_km: float = 2.0):
    """ECEF positions (km) of a 550 km circular orbit at 51.6 deg, with noise: stand-in fixes."""
    from earthfix.onboard import fusion
    rng = np.random.default_rng(0)
    r = 6378.137 + 550.0
    w = np.sqrt(fusion.MU_KM3_S2 / r ** 3)
    inc = np.radians(51.6)
    out = []
    for i in range(n):
        t = t0 + timedelta(seconds=i * step_s)
        u = w * i * step_s
        p = r * np.array([np.cos(u), np.sin(u) * np.cos(inc), np.sin(u) * np.sin(inc)])
        v = r * w * np.array([-np.sin(u), np.cos(u) * np.cos(inc), np.cos(u) * np.sin(inc)])
        pe, _ = fusion.eci_to_ecef(p, v, t)
        out.append((t, np.asarray(pe) + rng.normal(0.0, noise_km, 3)))
    return out


def test_fuse(benchmark, one_thread):
    """One streaming update of the orbit fuser (add a fix, estimate the state) on a young solution."""
    fusion = pytest.importorskip("earthfix.onboard.fusion", reason="earthfix.onboard.fusion not present yet")
    t0 = datetime(2026, 3, 20, 12, 0, tzinfo=timezone.utc)
    fixes = _orbit_fixes(13, t0)

    def warm():
        f = fusion.OrbitFuser()
        for t, p in fixes[:12]:
            f.add(t, p)
        f.estimate(fixes[11][0])
        return (f,), {}

    def update(f):
        t, p = fixes[12]
        f.add(t, p)
        return f.estimate(t)

    est = benchmark.pedantic(update, setup=warm, rounds=5, iterations=1)
    assert est is not None


def test_end_to_end(benchmark, frame, camera, localizer):
    fix = benchmark(localizer.locate, frame, camera)
    assert fix.error is None and fix.stages_ms.get("total_ms", 0) > 0


def test_end_to_end_encoder_first(benchmark, frame, camera, localizer):
    """The same frame with the encoder made before the vote (``encoder_places: first``, the pipeline until
    session 33): the ratio to ``test_end_to_end`` is what deferring the encoder saves on a frame whose vote
    place verifies."""
    from earthfix.onboard.localizer import Localizer
    eager = Localizer(localizer.bundle, localizer.encoder, dict(localizer.cfg, encoder_places="first"), localizer.confidence)
    fix = benchmark(eager.locate, frame, camera)
    assert fix.error is None and "encode_ms" in fix.stages_ms
    lazy = localizer.locate(frame, camera)
    assert (lazy.fix, lazy.lat, lazy.lon) == (fix.fix, fix.lat, fix.lon)
