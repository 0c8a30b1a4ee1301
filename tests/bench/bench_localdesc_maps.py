"""The local descriptor's patch top-1 on frames of other imagery (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_localdesc_maps.py [--onnx models/localdesc.onnx] [--frames 120]
        [--seed 92] [MAP ...]

``train-localdesc``'s validation figure, map by map: pairs of the validation seed's frames (92: training uses
91) with every frame rendered from the home map and then from each ``MAP`` (a global equirectangular image,
e.g. the winter Blue Marble or another month; the map tile stays the bundle's), 4,000 drawn; top-1 is the share
of frame patches whose nearest tile descriptor among all 4,000 is their own, in the plain and the cloud-filled
look. Patches are sampled at the network's own window (``PatchDescriber.window_per_size``), so networks of
different windows are compared on the same keypoints. Prints one JSON object. models/README.md, "Local
descriptor".
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from earthfix.onboard.localdesc import PatchDescriber
from earthfix.tools.train_localdesc import looks_top1, validation_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("maps", nargs="*", metavar="MAP", help="global equirectangular images of other imagery")
    ap.add_argument("--onnx", default=str(Path(__file__).resolve().parents[2] / "models" / "localdesc.onnx"))
    ap.add_argument("--frames", type=int, default=120, help="validation frames (train-localdesc's --val-frames)")
    ap.add_argument("--seed", type=int, default=92, help="validation seed (train-localdesc's --seed + 1)")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    d = PatchDescriber(Path(a.onnx).read_bytes())
    w = d.window_per_size
    res = {"onnx": a.onnx, "sha256": d.sha256, "window_per_size": w,
           "home": looks_top1(d, validation_pairs(a.frames, a.seed, a.workers, window=w))}
    for m in a.maps:
        res[Path(m).name] = looks_top1(d, validation_pairs(a.frames, a.seed, a.workers, frame_maps=(m,), window=w))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
