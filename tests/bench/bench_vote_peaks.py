"""The vote's peak finding alone: its cost a call and a digest of its answers (a script, not a test).

    PYTHONPATH=. python tests/bench/bench_vote_peaks.py [--frames 100] [--seed 0] [--repeats 5] [--bundle DIR]

Records the input of every ``KeypointVoter._peaks`` call (both voters: the key index's and the low-resolution
store's) while the Localizer locates the eval's six main sets (``earthfix eval``'s frames and seeds), with the
deadline out of the way so that the calls recorded do not depend on the machine's speed; then runs ``_peaks``
over them ``--repeats`` times, one thread, and prints the best time a call and a SHA-256 digest of every call's
places (latitude, longitude, radius, votes, yaw, altitude, split flag) and peak scores. Run it at two revisions
(e.g. in a ``git worktree``) to compare a change of ``_peaks``: the same digest is the same answers; the times
are comparable within one machine and hour. Session 83 (git 222fc14 in a worktree on the path, then its own
change): 1,318 calls, 1.676 → 1.009 ms a call, the same digest (docs/VERIFICATION.md, "The vote's peaks without full
sorts").
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from earthfix.onboard.localizer import Localizer  # noqa: E402
from earthfix.tools.build_index import ensure_default_bundle  # noqa: E402
from earthfix.tools.evaluate import SCENARIOS, scenario_frames, scenario_seed  # noqa: E402


def record_peaks(loc: Localizer, frames: int, seed: int) -> list[tuple]:
    """(voter, camera, qi, lat, lon, yaw, log_alt, g, max_candidates) of every ``_peaks`` call made while
    ``loc`` locates ``frames`` frames of each main set (copies: later calls cannot change them)."""
    calls = []
    voters = [v for v in (loc.voter, getattr(loc, "lowres_voter", None)) if v is not None]
    for voter in voters:
        def rec(camera, qi, blat, blon, yaw, log_alt, g, max_candidates, stats, voter=voter):
            calls.append((voter, camera) + tuple(a.copy() for a in (qi, blat, blon, yaw, log_alt, g)) + (max_candidates,))
            return type(voter)._peaks(voter, camera, qi, blat, blon, yaw, log_alt, g, max_candidates, stats)
        voter._peaks = rec          # an instance attribute: the class's method stays as it is
    try:
        for k, sdef in enumerate(SCENARIOS):
            if sdef.stress:
                continue
            cam, it = scenario_frames(sdef, frames, scenario_seed(seed, k))
            for img, _ in tqdm(it, total=frames, desc=sdef.name, unit="frame"):
                loc.locate(img, cam)
    finally:
        for voter in voters:
            del voter._peaks
    return calls


def run_peaks(calls: list[tuple]) -> tuple[float, str]:
    """(seconds for all calls, SHA-256 of their answers)."""
    digest = hashlib.sha256()
    t = time.perf_counter()
    answers = []
    for voter, cam, qi, blat, blon, yaw, log_alt, g, mc in calls:
        stats = {"peaks": []}
        answers.append((voter._peaks(cam, qi, blat, blon, yaw, log_alt, g, mc, stats), stats["peaks"]))
    seconds = time.perf_counter() - t
    for places, scores in answers:
        digest.update(repr(([dataclasses.astuple(p) for p in places], scores)).encode())
    return seconds, digest.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100, help="frames per main set (as earthfix eval)")
    ap.add_argument("--seed", type=int, default=0, help="base seed (as earthfix eval)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bundle", default=None)
    a = ap.parse_args()
    cv2.setNumThreads(1)
    loc = Localizer.load(a.bundle or str(ensure_default_bundle()), None, {"threads": 1, "deadline_ms": 10000.0})
    calls = record_peaks(loc, a.frames, a.seed)
    best, digest = min(run_peaks(calls) for _ in range(max(1, a.repeats)))
    print(f"{len(calls)} _peaks calls of {a.frames} frames a main set, seed {a.seed}: "
          f"{best / max(1, len(calls)) * 1e3:.3f} ms a call (best of {a.repeats}); answers sha256 {digest}")


if __name__ == "__main__":
    main()
