"""Where an eval's misses are: its eligible frames by kind of ground and cloud (not a pytest test).

    PYTHONPATH=. python tests/bench/bench_misses.py EVAL_DIR/frames.jsonl [MORE.jsonl ...] [--stress]

Reads the per-frame records ``earthfix eval`` writes (no frame is rendered again) and sorts the eligible frames
of the overall sets (``--stress``: of the stress sets instead) into kinds of ground and sky, first match wins
(``earthfix.tools.evaluate.ground_kind``, which the eval report's "Where the misses are" uses too: ice sheet,
equatorial forest, sun < 5 deg, cloud > 50 %, other).

The boxes are coarse on purpose: they name where the misses are, they do not decide anything in flight. For
each kind: eligible frames, fixed, retrieval misses at 10 (no candidate of the first 10 within the recall
radius, CONVENTIONS), and the fix rate by cloud fraction.
"""
from __future__ import annotations

import argparse
import json

from earthfix.tools.evaluate import GROUND_KINDS, ground_kind, right_place_within

CLOUD_BINS = ((0.0, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 1.01))


def table(records: list[dict]) -> list[str]:
    bins = " | ".join(f"cloud {lo:.1f}–{min(hi, 1.0):.1f}" for lo, hi in CLOUD_BINS)
    out = [f"| kind | eligible | fixed | R@10 misses | {bins} |",
           "| --- | ---: | ---: | ---: |" + " ---: |" * len(CLOUD_BINS)]
    for k in GROUND_KINDS + ("all",):
        sel = records if k == "all" else [r for r in records if ground_kind(r) == k]
        if not sel:
            continue
        cells = []
        for lo, hi in CLOUD_BINS:
            b = [r for r in sel if lo <= r["cloud_frac"] < hi]
            cells.append(f"{sum(r['fix'] for r in b)} / {len(b)}" if b else "–")
        n, nf, nm = len(sel), sum(r["fix"] for r in sel), sum(not right_place_within(r) for r in sel)
        out.append(f"| {k} | {n} | {nf} ({100.0 * nf / n:.1f} %) | {nm} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frames", nargs="+", help="frames.jsonl of one or more `earthfix eval` runs")
    ap.add_argument("--stress", action="store_true", help="the stress sets' eligible frames instead")
    a = ap.parse_args()
    for path in a.frames:
        with open(path, encoding="utf-8") as f:
            recs = [json.loads(line) for line in f if line.strip()]
        recs = [r for r in recs if r.get("eligible") and bool(r.get("stress")) == a.stress and not r.get("error")]
        print(f"{path}: {len(recs)} eligible frames of the {'stress' if a.stress else 'overall'} sets "
              "(cloud cells: fixed / eligible)")
        print("\n".join(table(recs)))
        print()


if __name__ == "__main__":
    main()
