"""``earthfix locate``: stream frames through one loaded onboard Localizer, one JSON line per frame.

stdout carries only JSON lines (CONVENTIONS 'locate contract'), one per input frame, in input order;
a frame that cannot be processed gets an ``error`` and the batch goes on. Progress and diagnostics go
to stderr. Without ``--bundle`` the default bundle is used, and built first if it is not there yet.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub):
    p = sub.add_parser("locate", help="localize frames (one JSON line per frame on stdout)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("frames", nargs="+", metavar="FRAME", help="PNG/JPEG frames")
    p.add_argument("--camera", required=True, help="camera YAML (width, height, fov_deg or fx/fy/cx/cy)")
    p.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    p.add_argument("--fallback-bundle", default=None,
                   help="second bundle (last known good) used when the first is refused")
    p.add_argument("--config", default=None, help="onboard config YAML (default: configs/default.yaml values)")
    p.add_argument("--attitude", default=None,
                   help="camera->ECEF quaternion w,x,y,z applied to every frame (star tracker)")
    p.add_argument("--time", default=None, help="UTC time of the frames (ISO 8601), for fusion/diagnostics")
    p.set_defaults(func=run)


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run(args) -> int:
    import numpy as np

    from ..onboard.bundle import BundleError
    from ..onboard.camera import Camera, CameraError
    from ..onboard.config import ConfigError
    from ..onboard.fix import Fix
    from ..onboard.frames import FrameError, read_frame
    from ..onboard.localizer import Localizer

    try:
        camera = Camera.from_yaml(args.camera)
    except CameraError as exc:
        print(f"earthfix locate: {exc}", file=sys.stderr)
        return 2
    attitude = None
    if args.attitude:
        try:
            q = [float(x) for x in args.attitude.split(",")]
            if len(q) != 4 or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-6:
                raise ValueError
            attitude = np.asarray(q)
        except ValueError:
            print("earthfix locate: --attitude must be four finite numbers w,x,y,z", file=sys.stderr)
            return 2
    try:
        bundle = args.bundle
        if bundle is None:
            from .build_index import ensure_default_bundle
            bundle = ensure_default_bundle()
        try:
            loc = Localizer.load(bundle, args.config)
        except BundleError as exc:
            if not args.fallback_bundle:
                raise
            print(f"earthfix locate: WARNING: {exc}; falling back to {args.fallback_bundle}", file=sys.stderr)
            loc = Localizer.load(args.fallback_bundle, args.config)
    except (BundleError, ConfigError, FileNotFoundError) as exc:
        print(f"earthfix locate: {exc}", file=sys.stderr)
        return 2
    for path in args.frames:
        try:
            frame = read_frame(path)
            fix = loc.locate(frame, camera, attitude=attitude, time=args.time)
        except FrameError as exc:
            fix = Fix.failed(str(exc))
        except Exception as exc:  # never stop the batch for one frame
            fix = Fix.failed(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        _emit(fix.to_json(path))
    return 0
