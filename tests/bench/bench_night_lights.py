"""Night frames with city lights: do lights on a dark Earth ever make a fix? (not a pytest test)

    PYTHONPATH=. python tests/bench/bench_night_lights.py [--seeds 0 1] [--n 100] [--config C.yaml]

The eval's ``night`` frames (the simulator's night side is black but for sensor noise; some frames of the
set are polar twilight and may be fixed rightly) with towns drawn in: 5-40 clusters a frame of 1-30
lights each (discs of 0-2 px, sodium orange or white, slightly blurred), at random places, since no map of
night lights ships here. A real night camera sees such patterns; the reference is a daytime map, so a fix
from them would be chance. Prints frames, fixes and fixes more than 50 km off (false), with the errors.

``--lights-map``: a global equirectangular map of the Earth at night (three-globe's ``earth-night.jpg``, NASA's
city lights: docs/BENCHMARKS.md "More imagery from the package registries" for where it comes from) rendered at
each frame's own pose and added to it instead of the drawn towns: the real pattern of a region's lights, where they
lie, with the map's own faint land. A fix from it may be right (a lit coast); none may be false. ``--lights-only``:
the map's lights alone (its pixels with red above 60 DN: the lights are warm or white, the land's tint blue), as
a camera sees a moonless night.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from earthfix.onboard import geodesy
from earthfix.onboard.localizer import Localizer
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.evaluate import SCENARIOS, scenario_frames, scenario_seed


LIGHT_RED_DN = 60     # --lights-only: a night map's pixels with more red than this are lights


def with_lights(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    for _ in range(rng.integers(5, 40)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        for _ in range(rng.integers(1, 30)):
            x, y = int(cx + rng.normal(0, 4)), int(cy + rng.normal(0, 4))
            if 0 <= x < w and 0 <= y < h:
                colour = (60, 160, 255) if rng.random() < 0.7 else (200, 220, 255)
                cv2.circle(out, (x, y), int(rng.integers(0, 3)), colour, -1)
    return np.clip(cv2.GaussianBlur(out, (0, 0), 0.8), 0, 255).astype(np.uint8)


def with_map_lights(img: np.ndarray, truth: dict, cam, lights) -> np.ndarray:
    """The night map as the frame's camera sees it from the frame's own pose, added to the frame."""
    from earthfix.sim.render import render
    view = render(lights, cam, truth["ecef_km"], geodesy.matrix_from_quat(truth["q_cam2ecef_wxyz"]))
    return cv2.add(img, view.image)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="eval seeds of the night set")
    ap.add_argument("--n", type=int, default=100, help="frames per seed")
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--config", default=None, help="Localizer config YAML (default: the shipped defaults)")
    ap.add_argument("--lights-map", default=None, metavar="EARTH_NIGHT.jpg",
                    help="real night lights: a global night map rendered at each frame's pose (module docstring)")
    ap.add_argument("--lights-only", action="store_true", help="with --lights-map: its lights without its land")
    a = ap.parse_args()
    lights = None
    if a.lights_map:
        from earthfix.sim.basemap import Basemap
        lights = Basemap.load(a.lights_map, flatten_water=False)
        if a.lights_only:
            lights.image[lights.image[..., 2] <= LIGHT_RED_DN] = 0
    loc = Localizer.load(a.bundle or ensure_default_bundle(), a.config)
    rng = np.random.default_rng(11)
    k = next(i for i, s in enumerate(SCENARIOS) if s.name == "night")
    n = fixes = false = 0
    errs = []
    for seed in a.seeds:
        cam, frames = scenario_frames(SCENARIOS[k], a.n, scenario_seed(seed, k))
        for img, truth in frames:
            f = loc.locate(with_lights(img, rng) if lights is None else with_map_lights(img, truth, cam, lights), cam)
            n += 1
            if f.fix:
                fixes += 1
                e = float(geodesy.great_circle_km(f.lat, f.lon, truth["bore_lat"], truth["bore_lon"]))
                errs.append(round(e, 1))
                if e > 50.0:
                    false += 1
                    print(f"false fix: seed {seed} truth {truth['bore_lat']:.3f} {truth['bore_lon']:.3f} fix {f.lat:.3f} "
                          f"{f.lon:.3f} ({e:.1f} km), sun {truth['sun_elev_deg']:.1f} deg, {f.inliers} inliers, "
                          f"sigma {f.evidence.get('bore_sigma_km')}, p {f.confidence:.4f}", flush=True)
    print(f"night frames with city lights: {n}, fixes {fixes} (errors km: {errs}), false fixes {false}")


if __name__ == "__main__":
    main()
