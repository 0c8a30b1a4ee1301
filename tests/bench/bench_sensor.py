"""Another sensor taken apart: what each of an eval set's sensor effects costs (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_sensor.py [--set stress_sensor] [--seed 0] [--n 100] [--config C.yaml]

An eval set with sensor effects (``evaluate.ScenarioDef.sensor``; ``stress_sensor``: tone curve 1.8, PSF 1.6 px,
4 DN read noise, a 0.1 colour cast, JPEG 85) is rendered again at the eval's own seed for that set
(``evaluate.scenario_seed``) with all its effects, none of them, each left out and each alone: the same poses,
clouds and eligible frames in every variant (the sensor's effects move no pixel). Each variant's frames go through one shipped ``Localizer`` (one thread; ``--config`` e.g.
``{deadline_ms: 10000}`` takes the deadline out of the way). Prints per variant the eligible frames, those fixed
within 50 km and the false fixes (over all frames). docs/VERIFICATION.md, "Another sensor taken apart".
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import cv2

from earthfix.onboard.localizer import Localizer
from earthfix.tools import evaluate as ev
from earthfix.tools.build_index import ensure_default_bundle


def variants(sensor: tuple) -> list[tuple[str, tuple]]:
    """(name, effects) for all, none, each left out and each alone."""
    out = [("all", sensor), ("none", ())]
    out += [(f"without {k}", tuple(e for e in sensor if e[0] != k)) for k, _ in sensor]
    out += [(f"{k} alone", ((k, v),)) for k, v in sensor]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="stress_sensor", help="an eval set with sensor effects")
    ap.add_argument("--seed", type=int, default=0, help="the eval's seed (the set's frames of `earthfix eval --seed`)")
    ap.add_argument("--n", type=int, default=100, help="frames")
    ap.add_argument("--bundle", default=None, help="bundle directory (default: the default bundle)")
    ap.add_argument("--config", default=None, help="Localizer config YAML (default: the shipped defaults)")
    args = ap.parse_args()
    names = [s.name for s in ev.SCENARIOS]
    if args.set not in names or not ev.SCENARIOS[names.index(args.set)].sensor:
        ap.error(f"--set: one of {', '.join(s.name for s in ev.SCENARIOS if s.sensor)}")
    k = names.index(args.set)
    sdef = ev.SCENARIOS[k]
    cv2.setNumThreads(1)
    loc = Localizer.load(args.bundle or ensure_default_bundle(), args.config)
    print(f"| {args.set} effects, seed {args.seed} | eligible | fixed | false fixes |\n| --- | ---: | ---: | ---: |")
    for name, sensor in variants(sdef.sensor):
        cam, frames = ev.scenario_frames(replace(sdef, sensor=sensor or None), args.n, ev.scenario_seed(args.seed, k))
        eligible = fixed = false = 0
        for img, truth in frames:
            f = loc.locate(img, cam)
            right = f.fix and ev.position_error_km(f.lat, f.lon, truth) <= ev.FALSE_FIX_KM
            false += bool(f.fix and not right)
            if ev.is_eligible(truth):
                eligible += 1
                fixed += bool(right)
        print(f"| {name} | {eligible} | {fixed} | {false} |", flush=True)


if __name__ == "__main__":
    main()
