"""``earthfix sim``: replay an orbit and write frames, the camera and the truth (CONVENTIONS simulator contract).

    earthfix sim --preset iss --start 2026-03-20T12:00:00 --duration 95m --interval 10s \\
                 --camera configs/cameras/cam256_fov80.yaml --out runs/sim_iss

writes OUT/camera.yaml, OUT/frame_00000.png ... and OUT/truth.jsonl (one JSON object per frame, written as
the frames are made). Bad inputs end with a one-line ``earthfix sim: error: ...`` and exit code 2.
"""
from __future__ import annotations

import sys

DEFAULT_CAMERA = {"width": 256, "height": 256, "fov_deg": 80}


def register(subparsers) -> None:
    from . import real_clouds
    p = subparsers.add_parser(
        "sim", help="replay an orbit: frames + truth.jsonl",
        description="Simulate camera frames along an orbit (sgp4) over a basemap, with truth per frame.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", metavar="NAME", help="orbit preset: iss, sso")
    src.add_argument("--tle", metavar="FILE", help="two-line element file (optional name line before line 1)")
    p.add_argument("--start", metavar="ISO", help="UTC start time (default: a preset's start over daylit land, "
                   "as replay's; a TLE file's epoch)")
    p.add_argument("--duration", default="95m", help="e.g. 95m, 2h, 600s (default 95m)")
    p.add_argument("--interval", default="10s", help="time between frames, e.g. 10s (default 10s)")
    p.add_argument("--camera", metavar="CAMERA.yaml",
                   help="camera file (width, height, fov_deg | fx, fy, cx, cy); default 256x256, 80 deg")
    p.add_argument("--attitude", choices=["nadir", "jitter", "tilt"], default="jitter",
                   help="nadir: exact nadir; jitter (default): nadir with a few tenths of a degree of pointing "
                        "noise and ~1 deg of yaw noise; tilt: off nadir by --tilt-deg, random direction")
    p.add_argument("--tilt-deg", type=float, default=10.0, help="off-nadir angle for --attitude tilt (deg)")
    p.add_argument("--yaw", default="track",
                   help="yaw law: track (image up along the ground track, default), random, or degrees")
    p.add_argument("--clean", action="store_true",
                   help="geometry only: no clouds, illumination, noise or colour effects")
    p.add_argument("--effects", metavar="YAML", help="effects settings (keys of EffectsConfig) over the defaults")
    p.add_argument("--cloud-cover", type=float, metavar="F", help="share of the globe under cloud, 0..1")
    p.add_argument("--cloud-field", metavar="CLOUDS.png", help=real_clouds.CLI_HELP)
    p.add_argument("--seed", type=int, default=0, help="random seed (frames are reproducible from it)")
    p.add_argument("--basemap", metavar="PATH", help="another equirectangular basemap image")
    p.add_argument("--bounds", type=float, nargs=4, metavar=("LONMIN", "LONMAX", "LATMIN", "LATMAX"),
                   default=None, help="geodetic bounds of --basemap (default: the whole globe)")
    p.add_argument("--keep-water", action="store_true",
                   help="keep --basemap's open water as it is (a real scene: its sea, sun glint and clouds "
                        "over the sea are real); by default open water is flattened to one colour")
    p.add_argument("--jpeg", action="store_true", help="write .jpg frames instead of .png")
    p.add_argument("--contact-sheet", action="store_true",
                   help="also write OUT/contact_sheet.png: thumbnails with their truth")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"earthfix sim: error: {msg}", file=sys.stderr)
    return 2


def run(args) -> int:
    import json
    from pathlib import Path

    import cv2
    from tqdm import tqdm

    from ..onboard.camera import Camera, CameraError
    from .basemap import Basemap, BasemapError
    from .contact_sheet import make_contact_sheet
    from .effects import EffectsConfig
    from .orbit import Orbit, OrbitError, parse_duration_s
    from .scenario import Scenario

    # ---- inputs: every problem is one line and exit code 2 -------------------------------------------
    try:
        orbit, start = Orbit.with_start(args.preset, args.tle, args.start)
        if parse_duration_s(args.duration) < 0:
            return _fail("duration must not be negative")
        if parse_duration_s(args.interval) <= 0:
            return _fail("interval must be positive")
    except OrbitError as exc:
        return _fail(str(exc))
    try:
        camera = Camera.from_yaml(args.camera) if args.camera else Camera.from_dict(DEFAULT_CAMERA)
    except CameraError as exc:
        return _fail(str(exc))
    try:
        if args.clean and args.effects:
            return _fail("--effects contradicts --clean (geometry only)")
        if args.clean:
            effects = EffectsConfig.clean()
        elif args.effects:
            effects = EffectsConfig.from_yaml(args.effects)
        else:
            effects = EffectsConfig.default()
        if args.cloud_cover is not None:
            if args.clean:
                return _fail("--cloud-cover contradicts --clean (no clouds)")
            effects = EffectsConfig.from_dict({"cloud_cover": args.cloud_cover, "clouds": args.cloud_cover > 0},
                                              base=effects)
    except ValueError as exc:
        return _fail(str(exc))
    cloud_field = None
    if getattr(args, "cloud_field", None):
        from .real_clouds import CloudFieldError, GlobalCloudField
        if args.clean or args.cloud_cover is not None:
            return _fail(f"--cloud-field contradicts {'--clean (no clouds)' if args.clean else '--cloud-cover'}")
        if effects.thin_cloud or effects.cumulus:
            return _fail("--cloud-field has no veil or cumulus layer: leave thin_cloud and cumulus at 0")
        try:
            cloud_field = GlobalCloudField.load(args.cloud_field)
        except CloudFieldError as exc:
            return _fail(str(exc))
        effects = EffectsConfig.from_dict({"clouds": True}, base=effects)    # the field's own cover applies
    yaw = args.yaw
    if yaw not in ("track", "random"):
        try:
            yaw = float(yaw)
        except ValueError:
            return _fail(f"--yaw must be track, random or a number of degrees, got {args.yaw!r}")
    try:
        if args.basemap:
            basemap = Basemap.load(args.basemap, tuple(args.bounds) if args.bounds else (-180.0, 180.0, -90.0, 90.0),
                                   flatten_water=not args.keep_water)
        else:
            if args.bounds or args.keep_water:
                return _fail(f"{'--bounds' if args.bounds else '--keep-water'} needs --basemap")
            basemap = Basemap.default()
    except BasemapError as exc:
        return _fail(str(exc))

    ext = "jpg" if args.jpeg else "png"
    try:
        scen = Scenario(orbit, camera, start, args.duration, args.interval, attitude=args.attitude, yaw_deg=yaw,
                        tilt_deg=args.tilt_deg, effects=effects, seed=args.seed, basemap=basemap, frame_ext=ext,
                        cloud_field=cloud_field)
    except ValueError as exc:           # the scenario's own checks (e.g. --tilt-deg's range): one line
        return _fail(str(exc))
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        camera.to_yaml(out / "camera.yaml")
    except OSError as exc:
        return _fail(f"cannot write to {out}: {exc.strerror}")

    ts = scen.times()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(effects.jpeg_quality or 92)] if args.jpeg else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    sheet_every = max(1, -(-len(ts) // 96))       # at most ~96 thumbnails on the sheet
    thumbs, n_elig = [], 0
    try:
        with open(out / "truth.jsonl", "w") as f:
            for i, t in enumerate(tqdm(ts, desc="sim", unit="frame", file=sys.stderr, dynamic_ncols=True)):
                img, truth = scen.frame(i, t)
                if not cv2.imwrite(str(out / truth["frame"]), img, params):
                    return _fail(f"cannot write {out / truth['frame']}")
                f.write(json.dumps(truth) + "\n")
                f.flush()
                n_elig += truth["eligible"]
                if args.contact_sheet and i % sheet_every == 0:
                    s = 160 / max(img.shape[:2])
                    thumbs.append((cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), truth))
    except OrbitError as exc:
        return _fail(str(exc))
    if args.contact_sheet:
        title = (f"{orbit.name}  {ts[0].isoformat()[:19]}Z +{args.duration} every {args.interval}  "
                 f"{args.attitude}  seed {args.seed}  {n_elig}/{len(ts)} eligible"
                 + (f"  (every {sheet_every}th frame)" if sheet_every > 1 else ""))
        cv2.imwrite(str(out / "contact_sheet.png"), make_contact_sheet(thumbs, title=title))
    print(f"earthfix sim: {len(ts)} frames ({n_elig} eligible) -> {out}", file=sys.stderr)
    return 0
