"""The first frame a process locates pays for nothing but itself.

numpy imports ``numpy.ma`` on the first ``np.unique`` (the vote) and ``numpy.random`` on first use (verification's
pair sampling): 20-25 ms of the first frame, inside its deadline, until the flight modules imported them. The
Localizer's load also runs one synthetic frame (config ``warm_up``) for the libraries' own first calls; that frame
must change no answer. Run in a fresh process: the test session has long imported everything.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import pytest
from support import localizer_config, under_cloud

HOST = textwrap.dedent("""
    import json, sys
    import cv2
    from earthfix.onboard.camera import Camera
    from earthfix.onboard.localizer import Localizer
    bundle, cfg, frames = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
    loc = Localizer.load(bundle, config=cfg)
    images = [cv2.imread(p) for p in frames]
    cam = Camera.from_fov(256, 256, 80.0)
    out = []
    for img in images:
        before = set(sys.modules)
        f = loc.locate(img, cam)
        out.append({"fix": f.fix, "lat": f.lat, "lon": f.lon, "confidence": f.confidence,
                    "imported": sorted(set(sys.modules) - before)})
    print(json.dumps({"warm_up_ms": loc.warm_up_ms, "frames": out}))
""")


@pytest.fixture(scope="module")
def frames(tmp_path_factory, basemap, cam256):
    from earthfix.sim.scenario import single_frame
    d = tmp_path_factory.mktemp("first_frame")
    clear, _ = single_frame(basemap, cam256, 35.0, -110.0, 500.0, 30.0)
    other, _ = single_frame(basemap, cam256, 33.0, -105.0, 650.0, 250.0)
    paths = []
    for name, img in (("clear.png", clear), ("cloudy.png", under_cloud(other, 0.45)), ("again.png", clear)):
        cv2.imwrite(str(d / name), img)
        paths.append(str(d / name))
    return paths


def _run(bundle, frames, **cfg) -> dict:
    config = json.dumps(dict(localizer_config(), deadline_ms=10000, **cfg))
    r = subprocess.run([sys.executable, "-c", HOST, str(bundle), config, *frames], capture_output=True, text=True,
                       timeout=180, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_locating_imports_nothing_and_the_warm_up_changes_no_answer(tiny_bundle, frames):
    cold = _run(tiny_bundle, frames, warm_up=False)
    assert cold["warm_up_ms"] == 0.0
    assert [f["imported"] for f in cold["frames"]] == [[], [], []]     # the first frame imports no module
    assert cold["frames"][0]["fix"] is True                              # a frame that reaches every stage
    warm = _run(tiny_bundle, frames)                                     # warm_up: true, the default
    assert warm["warm_up_ms"] > 0.0
    strip = [{k: v for k, v in f.items() if k != "imported"} for f in cold["frames"]]
    assert [{k: v for k, v in f.items() if k != "imported"} for f in warm["frames"]] == strip
