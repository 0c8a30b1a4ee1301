"""Paired A/B of two Localizer configurations on the release frames (not a pytest test; run as a script).

    PYTHONPATH=. python tests/bench/bench_paired.py --b B.yaml [--a A.yaml] [--frames 100] [--seed 0]
        [--bundle DIR] [--a-keyindex FILE] [--with-time] [--basemap WORLD.jpg] [--effects E.yaml] [--out pairs.jsonl]

Why: with the flight deadline, which frames are fixed depends on the machine's speed at that minute, and
two ``earthfix eval`` runs one after the other on a shared 2-core machine differ by 10-25 % in every stage
(the same code fixed 251 and 256 main frames in two runs, session 34). Here every frame of ``earthfix
eval``'s scenario sets (same seeds, same frames) is located by both configurations back to back, in
alternating order, so both see the same minute. A is the shipped defaults unless ``--a`` is given.

Prints, for the main sets (the eval's "overall") and all sets: eligible frames fixed, false fixes
(> 50 km, over all frames), latency p50 / p99 (ms, one thread), the frames past the shipped 60 ms deadline (the
longest), and the frames only one of the two fixed.
``--a-keyindex`` gives A's vote another key index over the same store (another graph, e.g. from ``python -m
earthfix.tools.build_keyindex --store DIR/keystore.npz --out FILE --M 8 --ef-construction 100``).
``--with-time`` gives both each frame's UTC time (the Sun's checks: ``Localizer.locate(time=)``).
``--basemap`` renders the scenarios drawn from the default map from another global image instead (as ``earthfix eval
--basemap``: the season, winter and relief sets keep their own maps).
``--effects`` renders every set under the simulator's effects of that YAML over the defaults (as ``earthfix eval
--effects``; e.g. ``configs/effects/line_defects.yaml``: a sensor with line defects).
``--out`` keeps one JSON line per frame (scenario, index, eligible, and per configuration fix, error km,
latency ms, confidence).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from earthfix.onboard.config import DEFAULTS  # noqa: E402
from earthfix.onboard.localizer import Localizer  # noqa: E402
from earthfix.onboard.vote import KeypointVoter  # noqa: E402
from earthfix.tools.build_index import ensure_default_bundle  # noqa: E402
from earthfix.tools.evaluate import (FALSE_FIX_KM, SCENARIOS, is_eligible, position_error_km,  # noqa: E402
                                     scenario_frames, scenario_seed)


def load_keyindex(path: str, dim: int):
    """An hnswlib key index file (space l2), searched on one thread."""
    import hnswlib
    index = hnswlib.Index(space="l2", dim=int(dim))
    index.load_index(str(path))
    index.set_num_threads(1)
    return index


def one(loc: Localizer, img, cam, truth, with_time: bool = False) -> dict:
    fix = loc.locate(img, cam, time=truth["time"] if with_time else None)
    err = position_error_km(fix.lat, fix.lon, truth) if fix.fix else None
    return {"fix": bool(fix.fix), "err_km": err, "ms": float(fix.latency_ms), "conf": float(fix.confidence)}


def summary(rows: list[dict], deadline_ms: float = DEFAULTS["deadline_ms"]) -> list[str]:
    """The lines printed after a run: per side, eligible frames fixed, false fixes, latency p50 / p99 and the frames
    past the flight's ``deadline_ms`` (the shipped budget, whatever either configuration sets), with the longest."""
    out = []
    for name, sel in (("main", [r for r in rows if not r["stress"]]), ("all", rows)):
        el = [r for r in sel if r["eligible"]]
        for v in ("A", "B"):
            ms = np.array([r[v]["ms"] for r in sel])
            false = sum(1 for r in sel if r[v]["fix"] and r[v]["err_km"] > FALSE_FIX_KM)
            out.append(f"{name:4s} {v}: fixed {sum(r[v]['fix'] for r in el)} of {len(el)} eligible, {false} false, "
                       f"latency p50 / p99 {np.percentile(ms, 50):.1f} / {np.percentile(ms, 99):.1f} ms, "
                       f"{int((ms > deadline_ms).sum())} over {deadline_ms:g} ms (longest {ms.max():.1f})")
        only_a = sum(r["A"]["fix"] and not r["B"]["fix"] for r in el)
        only_b = sum(r["B"]["fix"] and not r["A"]["fix"] for r in el)
        out.append(f"{name:4s} fixed by A only {only_a}, by B only {only_b}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", default=None, help="configuration A (YAML; default: the shipped defaults)")
    ap.add_argument("--b", required=True, help="configuration B (YAML)")
    ap.add_argument("--frames", type=int, default=100, help="frames per scenario (as earthfix eval)")
    ap.add_argument("--seed", type=int, default=0, help="base seed (as earthfix eval)")
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--a-keyindex", default=None, help="another key index (hnswlib file) for A's vote")
    ap.add_argument("--with-time", action="store_true", help="give locate each frame's UTC time")
    ap.add_argument("--basemap", default=None, help="render the default map's scenarios from this global image")
    ap.add_argument("--effects", default=None, help="simulator effects YAML over the defaults (as earthfix eval --effects)")
    ap.add_argument("--out", default=None, help="per-frame JSON lines")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    bundle = args.bundle or str(ensure_default_bundle())
    locs = {"A": Localizer.load(bundle, args.a, {"threads": 1}), "B": Localizer.load(bundle, args.b, {"threads": 1})}
    if args.a_keyindex:
        # a voter of its own: it checks the index against the store and sets A's search breadth on it
        voter = locs["A"].voter
        locs["A"].voter = KeypointVoter(voter.store, load_keyindex(args.a_keyindex, voter.store.dim), voter.cfg)
    basemap = None
    if args.basemap:
        from earthfix.sim.basemap import Basemap
        basemap = Basemap.load(args.basemap)
    effects = None
    if args.effects:
        from earthfix.sim.effects import EffectsConfig
        effects = EffectsConfig.from_yaml(args.effects)
    rows, n = [], 0
    sink = open(args.out, "w") if args.out else None
    for k, sdef in enumerate(SCENARIOS):
        cam, frames = scenario_frames(sdef, args.frames, scenario_seed(args.seed, k), basemap=basemap, effects=effects)
        for i, (img, truth) in enumerate(tqdm(frames, total=args.frames, desc=sdef.name, unit="frame")):
            row = {"scenario": sdef.name, "index": i, "stress": sdef.stress, "eligible": is_eligible(truth)}
            for v in (("A", "B") if n % 2 == 0 else ("B", "A")):     # neither always runs first
                row[v] = one(locs[v], img, cam, truth, args.with_time)
            n += 1
            rows.append(row)
            if sink:
                sink.write(json.dumps(row) + "\n")
    if sink:
        sink.close()
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main()
