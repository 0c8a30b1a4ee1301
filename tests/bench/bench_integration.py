"""Integration mistakes: frames and cameras delivered slightly wrong, through locate and the orbit fuser.

    PYTHONPATH=. python tests/bench/bench_integration.py                 # about 3 minutes, one thread

One ISS orbit of frames from the simulator (`earthfix sim --preset iss --duration 95m --interval 10s`: the
preset's start over daylit land, 570 frames), then every frame through the default Localizer as delivered
with a mistake a spacecraft integration can make:
- ``as delivered``: the frame and the camera as simulated (the reference row);
- ``mirrored``: the image flipped left-right (a sensor read out in the other direction);
- ``RGB for BGR``: the colour channels in the other order;
- ``fov_deg F``: the camera file declares another field of view than the lens has (a calibration error).
Per variant: fixes of the eligible frames, false fixes (> 50 km) over all frames, boresight error p50, fix
altitude error p50, and the orbit fused from all fixes (`OrbitFuser`, streamed as replay does): its 3-D
error p50 over the frames it served and at the last frame (docs/RELIABILITY.md, "Integration mistakes").
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from earthfix.onboard.camera import Camera  # noqa: E402
from earthfix.onboard.fusion import OrbitFuser  # noqa: E402
from earthfix.onboard.geodesy import great_circle_km  # noqa: E402
from earthfix.sim.orbit import Orbit, parse_time  # noqa: E402
from earthfix.sim.scenario import Scenario  # noqa: E402
from earthfix.tools.build_index import ensure_default_bundle  # noqa: E402
from earthfix.tools.locate import load_checked  # noqa: E402

CAMERA = {"width": 256, "height": 256, "fov_deg": 80.0}


def variants(fovs):
    yield "as delivered", (lambda img: img), CAMERA["fov_deg"]
    yield "mirrored", (lambda img: np.ascontiguousarray(img[:, ::-1])), CAMERA["fov_deg"]
    yield "RGB for BGR", (lambda img: np.ascontiguousarray(img[:, :, ::-1])), CAMERA["fov_deg"]
    for f in fovs:
        yield f"fov_deg {f:g} (lens {CAMERA['fov_deg']:g})", (lambda img: img), f


def run(frames, loc, name, change, fov_deg) -> dict:
    cam = Camera.from_fov(CAMERA["width"], CAMERA["height"], fov_deg)
    fuser = OrbitFuser()
    fixed = false = 0
    err, alt_err, fused = [], [], []
    eligible = sum(tr["eligible"] for _, tr in frames)
    for img, tr in frames:
        fix = loc.locate(change(img), cam)
        if fix.fix:
            e = great_circle_km(fix.lat, fix.lon, tr["bore_lat"], tr["bore_lon"])
            false += e > 50.0
            fixed += bool(tr["eligible"])
            err.append(e)
            alt_err.append(fix.alt_km - tr["alt_km"])
        t = parse_time(tr["time"])
        fuser.add(t, fix)
        est = fuser.estimate(t)
        if est is not None:
            fused.append(float(np.linalg.norm(est[0] - np.asarray(tr["ecef_km"]))))
    p50 = (lambda v: float(np.median(v)) if len(v) else float("nan"))
    return {"name": name, "eligible": eligible, "fixed": fixed, "false": false, "err_p50": p50(err),
            "alt_err_p50": p50(alt_err), "fused_p50": p50(fused), "fused_last": fused[-1] if fused else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fov", type=float, nargs="*", default=[78.0, 82.0, 70.0, 90.0],
                    help="declared fields of view to try (the lens is 80 deg)")
    ap.add_argument("--duration", default="95m")
    args = ap.parse_args()
    import cv2
    cv2.setNumThreads(1)
    orbit = Orbit.preset("iss")
    scen = Scenario(orbit, Camera.from_fov(CAMERA["width"], CAMERA["height"], CAMERA["fov_deg"]),
                    Orbit.preset_start("iss"), args.duration, "10s", attitude="jitter", seed=0)
    frames = list(scen.frames())
    loc = load_checked(ensure_default_bundle(progress=False), None)
    print(f"{len(frames)} frames of ISS from {Orbit.preset_start('iss').isoformat()}, default Localizer\n")
    print("| delivered | eligible fixed | false fixes | error p50 km | altitude error p50 km | fused error p50 km "
          "| fused error, last frame |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, change, fov in variants(args.fov):
        d = run(frames, loc, name, change, fov)
        print(f"| {d['name']} | {d['fixed']} of {d['eligible']} | {d['false']} | {d['err_p50']:.2f} "
              f"| {d['alt_err_p50']:+.1f} | {d['fused_p50']:.1f} | {d['fused_last']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
