"""What a multi-threaded OpenBLAS costs the flight path (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_threads.py [--n 100] [--seed 0] [--sets land256 cloudy] [--blas-threads N]

A host that imports cv2 or numpy before earthfix gets their OpenBLAS copies at the machine's core count; the
Localizer now brings them to its config ``threads`` (``earthfix/onboard/threads.py``). ``--blas-threads N`` puts
them back to N after the Localizer is loaded, as they were left before that change, so the two runs (with and
without it, one after the other) measure what it saves: eligible frames fixed and the latency p50 / p90 / p99
over the eval's frames of ``--sets`` at ``--seed`` (``earthfix eval``'s, ``--n`` a set), one thread otherwise.
"""
from __future__ import annotations

import argparse

import numpy as np

from earthfix.onboard.localizer import Localizer
from earthfix.onboard.threads import blas_threads, set_blas_threads
from earthfix.tools import evaluate as ev
from earthfix.tools.build_index import ensure_default_bundle


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="frames a set (the eval's --frames)")
    ap.add_argument("--seed", type=int, default=0, help="the eval's --seed")
    ap.add_argument("--sets", nargs="+", default=["land256", "cloudy"], help="eval scenarios")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OpenBLAS threads put back after the Localizer is loaded (default: as it leaves them)")
    a = ap.parse_args(argv)
    names = [s.name for s in ev.SCENARIOS]
    unknown = [s for s in a.sets if s not in names]
    if unknown:
        raise SystemExit(f"bench_threads: no scenario {', '.join(unknown)} (one of {', '.join(names)})")
    loc = Localizer.load(ensure_default_bundle())
    blas = set_blas_threads(a.blas_threads) if a.blas_threads else blas_threads()
    lat, fixed, eligible = [], 0, 0
    for name in a.sets:
        cam, frames = ev.scenario_frames(ev.SCENARIOS[names.index(name)], a.n, ev.scenario_seed(a.seed, names.index(name)))
        for img, truth in frames:
            f = loc.locate(img, cam)
            lat.append(f.latency_ms)
            if ev.is_eligible(truth):
                eligible += 1
                fixed += f.fix
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    print(f"OpenBLAS threads {sorted(set(blas.values())) or 'n/a'}: {fixed} of {eligible} eligible frames fixed, "
          f"latency p50 / p90 / p99 {p50:.1f} / {p90:.1f} / {p99:.1f} ms, mean {np.mean(lat):.2f} ms "
          f"({len(lat)} frames of {', '.join(a.sets)}, seed {a.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
