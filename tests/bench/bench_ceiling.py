"""Verification ceiling: the fix rate if retrieval were perfect (not a pytest test; run as a script).

    PYTHONPATH=. python tests/bench/bench_ceiling.py [--n 120] [--set kind] [--seed 4242]
        [--cfg '{"name": {"feature": {"max_keypoints": 400}}}'] [--by-share] [--eval-seed S]
        [--bundle DIR | --store KEYSTORE.npz [--local-descriptor ONNX]]

Frames are drawn like ``earthfix eval``'s scenario sets (``framesets.make_frameset``, simulator effects)
but from another seed, so tuning here never sees the evaluation frames. For every eligible frame the
verifier gets one candidate: the true boresight point, with the pipeline's search radius. A frame counts
when the hypothesis is within 50 km. Each frame is verified three times: as rendered (the first look),
with its cloud-like pixels filled (``features.fill_clouds``: the Localizer's cloud-filled look; "either" is
the pipeline's ceiling), and rendered again with the cloud layer off (same place, time and camera),
which isolates what clouds cost. ``--eval-seed S`` takes the frames of ``earthfix eval --seed S`` instead
(the same scenario sets, the pipeline's own frames; no cloud-free render, so that column is left out; ``--set`` may then also name a stress set, e.g. ``stress_thin``). ``--by-share`` also splits the plain and cloud-filled looks' results
by the frame's cloud-like share of pixels (``features.cloud_mask``): the basis of the Localizer's
``FILL_SHARE``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from earthfix.onboard.bundle import Bundle  # noqa: E402
from earthfix.onboard.camera import Camera  # noqa: E402
from earthfix.onboard.features import FeatureConfig, fill_clouds  # noqa: E402
from earthfix.onboard.verify import Verifier, VerifyConfig, cloud_fill_config, wants_fine_store  # noqa: E402
from earthfix.sim.basemap import Basemap  # noqa: E402
from earthfix.tools.build_index import default_bundle_dir  # noqa: E402
from earthfix.tools.build_keystore import load_store  # noqa: E402
from earthfix.tools.evaluate import (FALSE_FIX_KM, SCENARIOS, is_eligible, position_error_km,  # noqa: E402
                                     scenario_frames, scenario_seed)
from earthfix.tools.framesets import FrameSpec, make_frameset, shifted_basemap  # noqa: E402

SETS = {   # name: (width, fov_deg, basemap shift, cloud cover or None for the effects default)
    "land256": (256, 80.0, None, None),
    "season256": (256, 80.0, "season", None),
    "land512": (512, 60.0, None, None),
    "cloudy": (256, 80.0, None, 0.7),
    "narrow1024": (1024, 40.0, None, None),   # a narrow camera (bench_cameras), not an eval set
}
EVAL_NAMES = [sd.name for sd in SCENARIOS]
# eval scenarios with eligible frames that only --eval-seed can draw (the stress sets)
EVAL_ONLY = [sd.name for sd in SCENARIOS if sd.name not in SETS and sd.kind == "land" and sd.daylight]


def true_place_fixed(verifier: Verifier, feats, camera: Camera, truth: dict) -> bool:
    """``verifier`` offered only the true boresight point (with the pipeline's search radius): True when its
    hypothesis lies within ``FALSE_FIX_KM`` of the truth. The question of every ceiling in these benches."""
    v = verifier.verify(feats, camera, [(truth["bore_lat"], truth["bore_lon"],
                                         verifier.cfg.radius_factor * truth["footprint_half_width_km"])])
    return bool(v.ok and position_error_km(v.lat, v.lon, truth) < FALSE_FIX_KM)


def ceiling(verifier: Verifier, frames, camera: Camera, fill: bool = False,
            fill_gsd_km: float | None = None) -> tuple[np.ndarray, list[float]]:
    """Per frame: True when the verifier, given the true place only, fixes within 50 km. ``fill``: the
    Localizer's cloud-filled look (its own verifier configuration, every frame filled), sampled for a store
    of ``fill_gsd_km`` (default: the verifier's store; the Localizer uses the coarse store's)."""
    ok, ms = [], []
    if fill:
        gsd = fill_gsd_km or verifier.store.gsd_km
        verifier = Verifier(verifier.store, cloud_fill_config(verifier.cfg, camera, gsd))
    for img, truth in frames:
        t = time.perf_counter()
        drop = None
        if fill:
            img, drop = fill_clouds(img, verifier.cfg.feature)
        ok.append(true_place_fixed(verifier, verifier.extract(img, drop=drop), camera, truth))
        ms.append((time.perf_counter() - t) * 1e3)
    return np.array(ok), ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120, help="frames drawn per set (eligible ones are used)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--set", dest="sets", action="append", choices=list(SETS) + EVAL_ONLY,
                    help="default: every set of SETS (with --eval-seed: every eval set of SETS); with --eval-seed "
                         "also an eval stress set (stress_thin, ...)")
    ap.add_argument("--bundle", default=None, help="bundle whose keypoint store is used (default bundle)")
    ap.add_argument("--store", default=None, help="a keypoint store .npz instead of the bundle's")
    ap.add_argument("--local-descriptor", default=None,
                    help="with --store: the learned local descriptor it was built with (default: the shipped one)")
    ap.add_argument("--cfg", default='{"default": {}}', help="JSON {name: VerifyConfig overrides}")
    ap.add_argument("--by-share", action="store_true", help="split by the frame's cloud-like pixel share")
    ap.add_argument("--eval-seed", type=int, default=None,
                    help="use the frames of `earthfix eval --frames N --seed S` (N = --n)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    bundle = None if args.store else Bundle.load(args.bundle or default_bundle_dir())
    given = load_store(args.store, args.local_descriptor) if args.store else None
    variants = json.loads(args.cfg)
    names = args.sets or [n for n in SETS if args.eval_seed is None or n in EVAL_NAMES]
    for name in names:
        if args.eval_seed is None and name not in SETS:
            ap.error(f"--set {name} needs --eval-seed (it is an eval scenario, not a ceiling set)")
        if name in SETS:
            width, fov, shift, cover = SETS[name]
            cam = Camera.from_fov(width, width, fov)
            bm = shifted_basemap(shift) if shift else Basemap.default()
        if args.eval_seed is None:
            cloudy = list(make_frameset(args.n, args.seed, cam, bm, FrameSpec(cloud_cover=cover)))
            clear_ = list(make_frameset(args.n, args.seed, cam, bm, FrameSpec(cloud_cover=0.0)))
        else:
            k = next(i for i, sd in enumerate(SCENARIOS) if sd.name == name)
            cam, frames = scenario_frames(SCENARIOS[k], args.n, scenario_seed(args.eval_seed, k))
            cloudy, clear_ = list(frames), None
        keep = [k for k, (_, t) in enumerate(cloudy) if is_eligible(t)]
        for vname, over in variants.items():
            over = dict(over)
            fcfg = FeatureConfig(**over.pop("feature", {}))
            vcfg = VerifyConfig(feature=fcfg, **over)
            if given is not None:
                store = given
            else:   # the store the Localizer verifies this camera on
                fine = bundle.keystore_fine is not None and wants_fine_store(vcfg, cam, bundle.keystore.gsd_km)
                store = bundle.keystore_fine if fine else bundle.keystore
            ver = Verifier(store, vcfg)
            first, ms = ceiling(ver, [cloudy[k] for k in keep], cam)
            filled, _ = ceiling(ver, [cloudy[k] for k in keep], cam, fill=True,
                                fill_gsd_km=None if args.store else bundle.keystore.gsd_km)
            no_cloud = "–"
            if clear_ is not None:
                no_cloud = f"{ceiling(ver, [clear_[k] for k in keep], cam)[0].mean():6.1%}"
            print(f"{name:10s} {vname:10s} eligible {len(keep):4d}  true-candidate fix rate: first look "
                  f"{first.mean():6.1%} ({first.sum()})  cloud-filled {filled.mean():6.1%} ({filled.sum()})  "
                  f"either {(first | filled).mean():6.1%} ({(first | filled).sum()})"
                  f"  |  same frames without clouds {no_cloud}  ms p50 {np.median(ms):5.1f}", flush=True)
            if args.by_share:
                by_share(ver, [cloudy[k][0] for k in keep], first, filled)


def by_share(verifier: Verifier, images, first: np.ndarray, filled: np.ndarray) -> None:
    """Plain vs cloud-filled look per bin of the cloud-like share of pixels."""
    share = []
    for img in images:
        m = fill_clouds(img, verifier.cfg.feature)[1]
        share.append(0.0 if m is None else float(m.mean()))
    share = np.array(share)
    for lo, hi in ((0.0, 0.05), (0.05, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)):
        s = (share >= lo) & (share < hi)
        print(f"    cloud-like share {lo:4.2f}-{min(hi, 1.0):4.2f}: frames {s.sum():3d}  plain {first[s].sum():3d}  "
              f"filled {filled[s].sum():3d}  plain only {(first & ~filled)[s].sum():3d}  "
              f"filled only {(filled & ~first)[s].sum():3d}", flush=True)


if __name__ == "__main__":
    main()
