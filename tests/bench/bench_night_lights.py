"""Night frames with city lights: do lights on a dark Earth ever make a fix? (not a pytest test)

    PYTHONPATH=. python tests/bench/bench_night_lights.py [--seeds 0 1] [--n 100] [--config C.yaml]

The eval's ``night`` frames (the simulator's night side is black but for sensor noise; some frames of the
set are polar twilight and may be fixed rightly) with towns drawn in: 5-40 clusters a frame of 1-30
lights each (discs of 0-2 px, sodium orange or white, slightly blurred), at random places, since no map of
night lights ships here. A real night camera sees such patterns; the reference is a daytime map, so a fix
from them would be chance. Prints frames, fixes and fixes more than 50 km off (false), with the errors.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from earthfix.onboard import geodesy
from earthfix.onboard.localizer import Localizer
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.evaluate import SCENARIOS, scenario_frames, scenario_seed


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="eval seeds of the night set")
    ap.add_argument("--n", type=int, default=100, help="frames per seed")
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--config", default=None, help="Localizer config YAML (default: the shipped defaults)")
    a = ap.parse_args()
    loc = Localizer.load(a.bundle or ensure_default_bundle(), a.config)
    rng = np.random.default_rng(11)
    k = next(i for i, s in enumerate(SCENARIOS) if s.name == "night")
    n = fixes = false = 0
    errs = []
    for seed in a.seeds:
        cam, frames = scenario_frames(SCENARIOS[k], a.n, scenario_seed(seed, k))
        for img, truth in frames:
            f = loc.locate(with_lights(img, rng), cam)
            n += 1
            if f.fix:
                fixes += 1
                e = float(geodesy.great_circle_km(f.lat, f.lon, truth["bore_lat"], truth["bore_lon"]))
                errs.append(round(e, 1))
                false += e > 50.0
    print(f"night frames with city lights: {n}, fixes {fixes} (errors km: {errs}), false fixes {false}")


if __name__ == "__main__":
    main()
