"""``earthfix locate``: stream frames through one loaded onboard Localizer, one JSON line per frame.

stdout carries only JSON lines (CONVENTIONS 'locate contract'), one per input frame, in input order;
a frame that cannot be processed gets an ``error`` and the batch goes on. Progress and diagnostics go
to stderr. ``candidates`` is the retrieval's list before verification, best first: keypoint-vote places
(``score`` = votes, at least 2) then the encoder's reference views (``score`` = cosine similarity, at
most 1; absent when a vote place gave the answer and the encoder was not needed: config ``encoder_places``);
see ``earthfix.onboard.fix.Candidate``. Without ``--bundle`` the default bundle is used, and
built first if it is not there yet.

With a star tracker: ``--attitude w,x,y,z`` gives every frame the same camera->ECEF quaternion (OpenCV camera
axes: +x right, +y down, +z the optical axis), ``--attitudes FILE`` each frame its own (JSON lines with
``frame`` and ``q_cam2ecef_wxyz``, matched by file name; the simulator's truth.jsonl is such a file). The
fix then fits the position only, at any off-nadir angle. A wrong attitude (another frame's, or turned about the
boresight) makes no fix; a pointing error of a few degrees is absorbed by the position: the sub-satellite point
moves by about altitude x tan(error) and the boresight point far less (docs/VERIFICATION.md, "Off-nadir imaging
with a known attitude").

Without an attitude the sub-satellite point is the pose's, its offset from above the boresight point drawn toward
nadir by as much as the frame's matches leave the tilt unknown (config ``verify.nadir_prior_deg``, 2° per axis;
docs/VERIFICATION.md, "The sub-satellite point: the pose's tilt against nadir").

A ``FRAME`` of ``-`` reads frame paths from stdin, one a line (blank lines skipped), and answers each as it
arrives, one flushed line, with the bundle loaded once before the first: a camera process or a directory
watcher can pipe frames in as it writes them (``inotifywait -m -e close_write --format '%w%f' DIR | earthfix
locate --camera CAM.yaml -``), and a batch too long for one command line can come from a file (``- < LIST``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub):
    p = sub.add_parser("locate", help="localize frames (one JSON line per frame on stdout)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("frames", nargs="+", metavar="FRAME",
                   help="PNG/JPEG frames; '-' reads frame paths from stdin, one a line, each answered as it arrives")
    p.add_argument("--camera", required=True, help="camera YAML (width, height, fov_deg or fx/fy/cx/cy)")
    p.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    p.add_argument("--fallback-bundle", default=None,
                   help="second bundle (last known good) used when the first is refused")
    p.add_argument("--config", default=None, help="onboard config YAML (default: configs/default.yaml values)")
    p.add_argument("--attitude", default=None,
                   help="camera->ECEF quaternion w,x,y,z applied to every frame (star tracker)")
    p.add_argument("--attitudes", default=None, metavar="FILE.jsonl",
                   help="per-frame attitudes: JSON lines with 'frame' and 'q_cam2ecef_wxyz' (w, x, y, z), matched "
                        "by file name (the simulator's truth.jsonl is one); frames not in it get --attitude or none")
    p.add_argument("--time", default=None,
                   help="UTC time of the frames (ISO 8601; one time for all of them: a frame or a short burst): a "
                        "fix whose boresight point is dark at that time is refused (config min_sun_elev_deg) and "
                        "retrieval keeps to ground lit then (config daylight_search)")
    p.add_argument("--times", default=None, metavar="FILE.jsonl",
                   help="per-frame UTC times: JSON lines with 'frame' and 'time', matched by file name (the "
                        "simulator's truth.jsonl is one; as fuse --times); frames not in it get --time or none")
    p.set_defaults(func=run)


def _finite_json(x):
    """Non-finite floats -> null (strict JSON has no NaN/Infinity), recursively."""
    if isinstance(x, float):
        return x if x == x and x not in (float("inf"), float("-inf")) else None
    if isinstance(x, dict):
        return {k: _finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_json(v) for v in x]
    return x


def _emit(obj) -> None:
    try:
        text = json.dumps(obj, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite_json(obj), allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def frame_paths(frames):
    """The frames as given, each ``-`` replaced by the paths read from stdin one line at a time, blank lines
    skipped: a line is yielded as soon as it is read, so its answer does not wait for the next."""
    for f in frames:
        if f != "-":
            yield f
            continue
        for line in iter(sys.stdin.readline, ""):
            path = line.rstrip("\r\n")
            if path.strip():
                yield path


def parse_quaternion(values):
    """Four finite numbers w, x, y, z, not all ~0, as an array; ValueError otherwise."""
    import numpy as np
    q = np.asarray(values, dtype=float)
    if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-6:
        raise ValueError("a quaternion must be four finite numbers w, x, y, z")
    return q


def read_attitudes(path) -> dict:
    """frame file name -> camera->ECEF quaternion (w, x, y, z) from JSON lines with ``frame`` and
    ``q_cam2ecef_wxyz``. Raises ValueError naming the first line that is not such a record."""
    out = {}
    for no, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            values, name = rec["q_cam2ecef_wxyz"], Path(str(rec["frame"])).name
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {no}: not a JSON record with 'frame' and 'q_cam2ecef_wxyz' ({exc})") from None
        try:
            out[name] = parse_quaternion(values)
        except (ValueError, TypeError):
            raise ValueError(f"line {no}: q_cam2ecef_wxyz must be four finite numbers w, x, y, z") from None
    return out


def read_times(path) -> dict:
    """frame file name -> UTC time (ISO 8601 string) from JSON lines with ``frame`` and ``time`` (``fuse
    --times``'s format). Raises ValueError naming the first frame whose time is not a time."""
    from ..onboard.sun import utc_posix_s
    from .fuse import read_times as records
    try:
        recs = records(path)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    out = {}
    for name, rec in recs.items():
        try:
            utc_posix_s(rec["time"])
        except ValueError as exc:
            raise ValueError(f"frame {name}: {exc}") from None
        out[name] = rec["time"]
    return out


def encoder_path(config_path) -> Path:
    """The encoder file a Localizer loaded with this config would use."""
    from ..onboard.config import load_config
    from ..onboard.localizer import shipped_models_dir
    cfg = load_config(config_path)
    return Path(cfg["encoder"]) if cfg["encoder"] else shipped_models_dir() / "encoder_int8.onnx"


def load_checked(bundle, config_path):
    """Localizer on ``bundle``; the encoder file is checked against its export record (encoder.json) and the
    bundle's record of it before any parser (onnxruntime) reads it: a corrupted encoder is refused as
    BundleError, not parsed."""
    from ..onboard.bundle import check_encoder, check_encoder_record
    from ..onboard.localizer import Localizer
    enc = encoder_path(config_path)
    check_encoder_record(enc)
    check_encoder(bundle, enc)
    return Localizer.load(bundle, config_path)


def run(args) -> int:
    from ..onboard.bundle import BundleError
    from ..onboard.camera import Camera, CameraError
    from ..onboard.config import ConfigError
    from ..onboard.fix import Fix
    from ..onboard.frames import FrameError, read_frame

    try:
        camera = Camera.from_yaml(args.camera)
    except CameraError as exc:    # a missing, unreadable, binary or invalid file (camera.py)
        print(f"earthfix locate: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    attitude = None
    if args.attitude:
        try:
            attitude = parse_quaternion([float(x) for x in args.attitude.split(",")])
        except ValueError:
            print("earthfix locate: --attitude must be four finite numbers w,x,y,z", file=sys.stderr)
            return 2
    flag = "--time"     # the frames' times, checked before any frame: one bad time is one line, not one a frame
    try:
        if args.time is not None:
            from ..onboard.sun import utc_posix_s
            utc_posix_s(args.time)
        flag = "--times"
        times = read_times(args.times) if args.times else {}
    except ValueError as exc:
        print(f"earthfix locate: {flag}: {exc}", file=sys.stderr)
        return 2
    per_frame = {}
    if args.attitudes:
        try:
            per_frame = read_attitudes(args.attitudes)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"earthfix locate: cannot read --attitudes {args.attitudes}: {why}", file=sys.stderr)
            return 2
    try:
        bundle = args.bundle
        if bundle is None:
            from ..onboard.bundle import check_encoder_record
            from .build_index import default_encoder_path, ensure_default_bundle
            check_encoder_record(default_encoder_path())   # never (re)build the default bundle from a bad model
            bundle = ensure_default_bundle()
        try:
            loc = load_checked(bundle, args.config)
        except BundleError as exc:
            if not args.fallback_bundle:
                raise
            print(f"earthfix locate: WARNING: BUNDLE REFUSED: {exc}", file=sys.stderr)
            print(f"earthfix locate: WARNING: USING FALLBACK BUNDLE {args.fallback_bundle} "
                  f"(last known good; fixes come from it)", file=sys.stderr)
            bundle = args.fallback_bundle
            try:
                loc = load_checked(bundle, args.config)
            except BundleError as exc2:
                raise BundleError(f"fallback bundle refused too: {exc2}") from None
    except (BundleError, ConfigError, FileNotFoundError) as exc:
        print(f"earthfix locate: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except Exception as exc:   # anything else at load (e.g. a parser error): one line, nothing located
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"earthfix locate: cannot load bundle {bundle or '(default)'}: {type(exc).__name__}: {msg}",
              file=sys.stderr)
        return 2
    if getattr(loc.bundle, "unlisted", ()):
        print(f"earthfix locate: note: ignoring files not in the manifest of {bundle}: "
              f"{', '.join(loc.bundle.unlisted[:5])}{' ...' if len(loc.bundle.unlisted) > 5 else ''}",
              file=sys.stderr)
    size = (camera.width, camera.height)
    for path in frame_paths(args.frames):
        try:
            frame = read_frame(path, size)
            att = per_frame.get(Path(path).name, attitude)
            fix = loc.locate(frame, camera, attitude=att, time=times.get(Path(path).name, args.time))
        except FrameError as exc:
            fix = Fix.failed(str(exc))
        except Exception as exc:  # never stop the batch for one frame
            fix = Fix.failed(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        try:
            line = fix.to_json(path)
        except Exception as exc:
            line = Fix.failed(f"internal error: {type(exc).__name__} while formatting the result").to_json(path)
        _emit(line)
    return 0
