"""What the orbit fuser costs per frame and what it serves, on synthetic fix streams (docs/RELIABILITY.md).

    PYTHONPATH=. python tests/bench/bench_fusion.py                      # the three regimes below, 10,000 frames
    PYTHONPATH=. python tests/bench/bench_fusion.py --regime random --frames 3000

An ISS orbit (sgp4 preset) sampled every ``--interval`` s; a frame has a fix with probability ``--p-fix``:
- ``consistent``: the true spacecraft position + 3 km noise per axis, 5 % of them gross outliers (500 km);
- ``mixed``: 90 % of the fixes at random places on a 6,790 km sphere, 10 % true (+ 3 km noise);
- ``random``: every fix at a random place: nothing to fit, so no orbit may ever be served.
Per frame: ``OrbitFuser.add`` + ``estimate`` timed (the replay's loop, one thread), the fused error against
the truth when an estimate is served. Prints p50 / p99 / max per-frame time, the number of refits, the
served share and the fused error; "kept" is the fixes the fuser still holds at the end (older ones than any
fit window can reach are pruned).
"""
from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from earthfix.onboard.fusion import OrbitFuser  # noqa: E402
from earthfix.sim.orbit import Orbit  # noqa: E402

SPHERE_KM = 6790.0


def stream(regime: str, frames: int, interval_s: float, p_fix: float, seed: int):
    """(t, true r_ecef_km, fix ECEF km or None) per frame."""
    rng = np.random.default_rng(seed)
    orbit = Orbit.preset("iss")
    for i in range(frames):
        t = orbit.epoch + timedelta(seconds=i * interval_s)
        r = np.asarray(orbit.state(t)[0], float)
        fix = None
        if rng.random() < p_fix:
            wrong = {"consistent": 0.0, "mixed": 0.9, "random": 1.0}[regime]
            if rng.random() < wrong:
                u = rng.normal(size=3)
                fix = u / np.linalg.norm(u) * SPHERE_KM
            else:
                fix = r + rng.normal(0.0, 3.0, 3)
                if regime == "consistent" and rng.random() < 0.05:
                    fix = r + rng.normal(0.0, 500.0, 3)
        yield t, r, fix


def run(regime: str, frames: int, interval_s: float, p_fix: float, seed: int) -> dict:
    fuser = OrbitFuser(seed=seed)
    ms, err = [], []
    for t, r, fix in stream(regime, frames, interval_s, p_fix, seed):
        t0 = time.perf_counter()
        if fix is not None:
            fuser.add(t, fix)
        est = fuser.estimate(t)
        ms.append((time.perf_counter() - t0) * 1e3)
        if est is not None:
            err.append(float(np.linalg.norm(est[0] - r)))
    ms, err = np.asarray(ms), np.asarray(err)
    return {"regime": regime, "frames": frames, "fixes": fuser.n_fixes, "kept": len(fuser._t), "refits": fuser.n_fits,
            "total_s": ms.sum() / 1e3, "p50_ms": np.median(ms), "p99_ms": np.percentile(ms, 99), "max_ms": ms.max(),
            "served": len(err) / frames, "err_p50_km": np.median(err) if len(err) else None,
            "err_max_last_half_km": err[len(err) // 2:].max() if len(err) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regime", action="append", choices=["consistent", "mixed", "random"],
                    help="repeatable (default: all three)")
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--interval", type=float, default=10.0, help="s between frames")
    ap.add_argument("--p-fix", type=float, default=None,
                    help="share of frames with a fix (default 0.25; 0.77 for random: the worst case)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| regime | frames | fixes (kept) | refits | total s | p50 ms | p99 ms | max ms | served | fused err p50 km "
          "| max, later half |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for regime in args.regime or ["consistent", "mixed", "random"]:
        p_fix = args.p_fix if args.p_fix is not None else (0.77 if regime == "random" else 0.25)
        d = run(regime, args.frames, args.interval, p_fix, args.seed)
        fmt = (lambda v: "–" if v is None else f"{v:.2f}")
        print(f"| {regime} | {d['frames']} | {d['fixes']} ({d['kept']}) | {d['refits']} | {d['total_s']:.1f} | {d['p50_ms']:.2f} "
              f"| {d['p99_ms']:.1f} | {d['max_ms']:.0f} | {100 * d['served']:.1f} % | {fmt(d['err_p50_km'])} "
              f"| {fmt(d['err_max_last_half_km'])} |", flush=True)


if __name__ == "__main__":
    main()
