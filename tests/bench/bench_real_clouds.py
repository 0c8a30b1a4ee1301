"""The flight pipeline under a real cloud field laid over the Blue Marble (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_real_clouds.py --scene SCENE.jpg --bounds LONMIN LONMAX LATMIN LATMAX \\
        [--n 200] [--seed 4343] [--camera 256x256@80 ...] [--config C.yaml] [--v-ramp 120 210] [--s-ramp 70 30]
        [--in-place] [--basemap WORLD.jpg] [--effects EFFECTS.yaml] [--clouds real|simulated|none|both ...]
        [--ceiling] [--with-time] [--out FRAMES.jsonl]

The simulator's clouds are fractal noise; acceptance has real cloud fields. This bench takes the cloud field of a
real satellite scene (opacity from its bright, grey pixels: HSV value ramped over 120..210 DN, saturation over
70..30) and lays it over the eval's kind of land frame (the default basemap and the simulator's effects, as
``earthfix eval``'s land256 / land512 sets draw them: place, time, altitude, yaw, tilt), moved so that a random
point of the scene lies under the boresight, turned by a random angle, at the scene's own ground scale (km per
pixel; beyond the scene's edges the field is mirrored). Everything else (illumination, haze, cloud shading and
shadows, sensor) is the simulator's: the difference from the simulator's own clouds is the clouds' shape. Each
pose is rendered twice, under the real field and under the simulator's field (its default cover), and both are
located; the table bins eligible frames by their cloud fraction (CONVENTIONS eligibility: at least 20 % of the
pixels clear land).

A scene with an alpha channel (a cloud layer) gives its opacity as that channel. ``--in-place``: the field is a
global one (bounds -180 180 -90 90) and each frame takes the clouds that lie over its own ground, not a random
turned piece of them: a real day's weather where it was. ``--basemap``: the frames rendered from another global
equirectangular image (another product, season or month) instead of the default basemap: the nearest stand-in
here for acceptance's frames (other imagery, real clouds, several cameras); ``--effects`` adds another sensor (a YAML
of ``EffectsConfig`` keys over the simulator's defaults, as ``earthfix eval --effects``: e.g.
``configs/effects/other_sensor.yaml``) to all three kinds of frame. ``--clouds real`` locates the real
field's frames only; ``--clouds real none`` also the same poses with the simulator's clouds off (what the cloud
costs, frame by frame); after the table, one line a kind over all cameras: the fixes' error p50 / p90, the frames'
latency p50 / p99 and those past the config's deadline. ``--ceiling`` adds, for eligible frames, whether the
Localizer's verifiers given the true place fix it (the plain look, then the cloud-filled one: bench_cameras.py's
ceiling). Every false fix (> 50 km) is written to
stderr with its place, error and evidence; "near-wrong poses" counts the frames without a fix whose closest pose was
wrong but pinned within 1.5 precision gates (``evaluate.near_wrong``: the false-fix margin).

A real scene at hand offline: cartopy's MODIS Aqua scene of Hurricane Miriam (bench_real_scene.py's docstring):

    PYTHONPATH=. python tests/bench/bench_real_clouds.py --scene /tmp/Miriam.A2012270.2050.2km.jpg \\
        --bounds -120.6766 -106.32104523 13.2301484511 30.7669

A global real cloud field at hand (no network beyond the package registries): three-globe's npm package ships
``example/clouds/clouds.png``, 4096 x 2048 (9.8 km/px at the equator), the clouds in its alpha channel:

    npm pack three-globe@2.45.2 && tar xzf three-globe-2.45.2.tgz
    PYTHONPATH=. python tests/bench/bench_real_clouds.py --scene package/example/clouds/clouds.png \
        --bounds -180 180 -90 90 --in-place
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from dataclasses import replace

import cv2
import numpy as np

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera
from earthfix.onboard.localizer import Localizer
from earthfix.sim.basemap import Basemap, read_image
from earthfix.sim.effects import EffectsConfig
from earthfix.sim.real_clouds import GlobalCloudField, image_opacity, sample_opacity
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.evaluate import FALSE_FIX_KM, over_deadline, percentiles
from earthfix.tools.framesets import make_frameset

from bench_cameras import Tally, either_look_fixed, frame_record, near_wrong_poses, parse_cameras

KM_PER_DEG = math.pi * geodesy.A_KM / 180.0
BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 1.01)


class SceneClouds:
    """A scene's cloud opacity laid over any place: the scene pixel (``cx``, ``cy``) under (``lat0``, ``lon0``),
    turned by ``turn_deg``, at ``km_per_px``. Duck-types ``CloudField.sample_with_thickness`` (cover ignored:
    the field has its own)."""

    def __init__(self, opacity: np.ndarray, km_per_px: float, cx: float, cy: float, turn_deg: float,
                 lat0: float, lon0: float):
        self.opacity, self.km_per_px, self.cx, self.cy = opacity, km_per_px, cx, cy
        self.c, self.s = math.cos(math.radians(turn_deg)), math.sin(math.radians(turn_deg))
        self.lat0, self.lon0 = lat0, lon0

    def sample_with_thickness(self, lat_deg, lon_deg, cover=None, lon_offset_deg=0.0, flip_lat=False):
        lat = np.asarray(lat_deg, np.float64)
        dlon = (np.asarray(lon_deg, np.float64) - self.lon0 + 180.0) % 360.0 - 180.0
        east = dlon * KM_PER_DEG * math.cos(math.radians(self.lat0))
        north = (lat - self.lat0) * KM_PER_DEG
        x = (self.c * east - self.s * north) / self.km_per_px + self.cx
        y = -(self.s * east + self.c * north) / self.km_per_px + self.cy
        # beyond the scene's edges its field is mirrored (a footprint can be larger than the scene): no
        # straight cloud edge where the scene ends
        a = sample_opacity(self.opacity, x, y, cv2.BORDER_REFLECT_101)
        return a, a.copy()


def read_opacity(path: str, bounds, v_ramp, s_ramp) -> tuple[np.ndarray, float]:
    """(opacity 0..1, km per px) of a scene within ``bounds``: ``real_clouds.image_opacity`` (its alpha channel when
    it has one, else its bright grey pixels)."""
    img = read_image(path, cv2.IMREAD_UNCHANGED)          # read once, its alpha channel too
    if img is None or img.ndim not in (2, 3):
        raise SystemExit(f"bench_real_clouds: {path}: not an image that can be read")
    return image_opacity(img, v_ramp, s_ramp), (bounds[3] - bounds[2]) / img.shape[0] * KM_PER_DEG


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", required=True)
    ap.add_argument("--bounds", type=float, nargs=4, required=True, metavar=("LONMIN", "LONMAX", "LATMIN", "LATMAX"))
    ap.add_argument("--n", type=int, default=200, help="poses per camera")
    ap.add_argument("--seed", type=int, default=4343)
    ap.add_argument("--camera", action="append", default=None, metavar="WxH@FOV",
                    help="a camera (repeatable); default 256x256@80 and 512x512@60, the eval's two")
    ap.add_argument("--config", default=None, help="Localizer config YAML (default: the shipped defaults)")
    ap.add_argument("--with-time", action="store_true", help="give locate each frame's UTC time (the Sun's checks)")
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    ap.add_argument("--v-ramp", type=float, nargs=2, default=(120.0, 210.0), metavar=("LO", "HI"),
                    help="opacity ramps up over this HSV value (DN)")
    ap.add_argument("--s-ramp", type=float, nargs=2, default=(70.0, 30.0), metavar=("HI", "LO"),
                    help="and down over this HSV saturation (DN)")
    ap.add_argument("--in-place", action="store_true",
                    help="a global field: each frame takes the clouds over its own ground (no random piece, no turn)")
    ap.add_argument("--basemap", default=None, metavar="WORLD.jpg",
                    help="render the frames from this global equirectangular image (default: the default basemap)")
    ap.add_argument("--effects", default=None, metavar="EFFECTS.yaml",
                    help="simulator effects YAML over the defaults (another sensor; as eval --effects)")
    ap.add_argument("--out", default=None, metavar="FRAMES.jsonl",
                    help="one JSON line per located frame (bench_cameras.py's, with the cloud field's name)")
    ap.add_argument("--clouds", choices=("real", "simulated", "none", "both"), nargs="+", default=["both"],
                    help="which cloud fields to locate the poses under: real, simulated, none (the simulator's "
                         "clouds off), both (real and simulated; the default), paired frame by frame")
    ap.add_argument("--ceiling", action="store_true",
                    help="also verify the true place of each eligible frame (plain or cloud-filled look)")
    a = ap.parse_args()
    if a.in_place and (a.bounds[1] - a.bounds[0] < 359.0 or a.bounds[3] - a.bounds[2] < 179.0):
        ap.error("--in-place needs a global field (--bounds -180 180 -90 90)")
    with open(a.out, "w") if a.out else contextlib.nullcontext() as out:
        run(a, out)


def run(a, out) -> None:
    """The bench's table on stdout, and one JSON line a located frame into ``out`` (a text file, or None)."""
    cameras = parse_cameras(a.camera) if a.camera else ((256, 256, 80.0), (512, 512, 60.0))
    opacity, km_per_px = read_opacity(a.scene, a.bounds, a.v_ramp, a.s_ramp)
    field = GlobalCloudField(opacity, a.scene) if a.in_place else None
    basemap = Basemap.load(a.basemap) if a.basemap else Basemap.default()
    loc = Localizer.load(a.bundle or ensure_default_bundle(), a.config)
    print(f"scene {a.scene}: {opacity.shape[1]}x{opacity.shape[0]} px, {km_per_px:.2f} km/px, "
          f"{(opacity > 0.5).mean():.0%} of it cloud by the opacity test")
    wanted = {"real", "simulated"} if "both" in a.clouds else set(a.clouds)
    effects = EffectsConfig.from_yaml(a.effects) if a.effects else EffectsConfig.default()
    clear = replace(effects, clouds=False, cloud_cover=0.0)   # "none": the same poses, cloud-free
    head = ("| camera | clouds | eligible | fix rate |" + (" ceiling |" if a.ceiling else "")
            + " false fixes (all frames) | near-wrong poses | ") + " | ".join(
        f"cloud {BINS[i]:.1f}-{min(BINS[i + 1], 1.0):.1f}" for i in range(len(BINS) - 1)) + " |"
    print(head)
    print("| --- | --- | ---: | ---: | ---: | ---: |" + " ---: |" * (len(BINS) - 1 + a.ceiling))
    every = {kind: [] for kind in ("real", "simulated", "none")}
    for w, h, fov in cameras:
        cam = Camera.from_fov(w, h, fov)
        rng = np.random.default_rng([a.seed, w])

        def real(lat, lon):   # the scene's field, a random point of it under the boresight, a random turn
            if a.in_place:
                return field
            return SceneClouds(opacity, km_per_px, rng.uniform(0, opacity.shape[1]),
                               rng.uniform(0, opacity.shape[0]), rng.uniform(0, 360), lat, lon)
        # the same seed gives both sets the same poses (framesets.make_frameset): paired frame by frame
        sets = {"real": lambda: make_frameset(a.n, a.seed + w, cam, basemap, effects=effects, clouds=real),
                "simulated": lambda: make_frameset(a.n, a.seed + w, cam, basemap, effects=effects),
                "none": lambda: make_frameset(a.n, a.seed + w, cam, basemap, effects=clear)}
        for kind, frames in sets.items():
            if kind not in wanted:
                continue
            total, bins, recs = Tally(), [Tally() for _ in BINS[1:]], []
            for i, (img, truth) in enumerate(frames()):
                f = loc.locate(img, cam, time=truth["time"] if a.with_time else None)
                err = total.add(f, truth, (lambda: either_look_fixed(loc, img, cam, truth)) if a.ceiling else None)
                recs.append(dict(frame_record(cam, i, f, err, truth), clouds=kind))
                every[kind].append(recs[-1])
                if out is not None:
                    out.write(json.dumps(recs[-1]) + "\n")
                if err is not None and err > FALSE_FIX_KM:
                    print(f"false fix: {w}x{h}@{fov:g} {kind} frame {i} at {truth['bore_lat']:.2f}, "
                          f"{truth['bore_lon']:.2f}: {err:.0f} km off, confidence {f.confidence:.3f}, "
                          f"{f.inliers} inliers, {f.evidence.get('source')} place, {f.evidence.get('look')} look",
                          file=sys.stderr, flush=True)
                bins[int(np.searchsorted(BINS, truth["cloud_frac"], side="right")) - 1].add(f, truth)
            cells = " | ".join(f"{b.fixes} of {b.eligible}" for b in bins)
            rate = f"{100.0 * total.fixes / total.eligible:.1f} %" if total.eligible else "–"
            ceil = f" {total.ceiling} |" if a.ceiling else ""
            print(f"| {w}×{h}, {fov:g}° | {kind} | {total.eligible} of {a.n} | {rate} |{ceil} {total.false} | "
                  f"{near_wrong_poses(loc, recs)} | {cells} |", flush=True)
    for kind, recs in every.items():
        if recs:
            print(summary_line(kind, recs, float(loc.cfg["deadline_ms"])))


def summary_line(kind: str, recs: list[dict], deadline_ms: float) -> str:
    """One line over every camera's frames of a kind: the fixes' boresight error p50 / p90, the frames' latency
    p50 / p99 and how many ran past the deadline (as the docs' tables quote them; the eval's metric functions)."""
    err = percentiles([r["err_km"] for r in recs if r["fix"]], (50, 90))
    lat = percentiles([r["latency_ms"] for r in recs], (50, 99))
    late = over_deadline(recs, deadline_ms)
    e = "–" if err["p50"] is None else f"{err['p50']:.1f} / {err['p90']:.1f} km"
    return (f"{kind}, all cameras: {len(recs)} frames, {sum(bool(r['fix']) for r in recs)} fixes, error p50 / p90 {e}, "
            f"latency p50 / p99 {lat['p50']:.1f} / {lat['p99']:.1f} ms, {late['frames']} over {deadline_ms:g} ms "
            f"(longest {late['max_ms']:.1f})")


if __name__ == "__main__":
    main()
