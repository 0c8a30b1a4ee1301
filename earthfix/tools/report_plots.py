"""Figures of the evaluation report (PNG, matplotlib Agg): recall@k curves, boresight error CDFs per
scenario, latency histogram with the per-stage breakdown.

    paths = make_all(report, records, out_dir)

``report`` is the dict ``earthfix eval`` writes to report.json; ``records`` its per-frame records
(frames.jsonl). Each function draws one figure from plain numbers and returns the file it wrote.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import STAGES

STAGE_ORDER = tuple(k for k in STAGES if k != "total_ms")    # every stage the Localizer times, in order


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_recall_curves(curves: dict, path: Path, title: str = "Retrieval recall@k (eligible frames)") -> Path:
    """``curves``: label -> [recall@1, recall@2, ...] (fractions; None entries are skipped)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
    for i, (label, ys) in enumerate(curves.items()):
        ks = [k + 1 for k, y in enumerate(ys) if y is not None]
        vals = [100.0 * y for y in ys if y is not None]
        if ks:   # overlapping curves stay visible: distinct line styles and markers
            ls, mk = styles[i % len(styles)]
            ax.plot(ks, vals, ls=ls, marker=mk, ms=4, lw=1.6, label=label)
    ax.set_xlabel("k (candidates)")
    ax.set_ylabel("recall@k (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(range(1, 1 + max((len(v) for v in curves.values()), default=1)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_error_cdfs(errors_km: dict, path: Path, threshold_km: float = 50.0) -> Path:
    """``errors_km``: scenario -> boresight errors (km) of its fixes; one empirical CDF per scenario."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    drawn = False
    for name, errs in errors_km.items():
        e = np.sort(np.asarray([x for x in errs if x is not None and np.isfinite(x)], dtype=float))
        if len(e) == 0:
            continue
        e = np.maximum(e, 0.1)
        ax.step(e, np.arange(1, len(e) + 1) / len(e) * 100.0, where="post", label=f"{name} (n={len(e)})")
        drawn = True
    ax.axvline(threshold_km, color="k", ls="--", lw=0.8, label=f"{threshold_km:g} km (false fix beyond)")
    ax.set_xscale("log")
    ax.set_xlabel("boresight error of fixes (km)")
    ax.set_ylabel("fixes with error <= x (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("Boresight error CDF per scenario" + ("" if drawn else " (no fixes)"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_latency(totals_ms, stages_by_group: dict, path: Path) -> Path:
    """Left: histogram of the per-frame total latency. Right: mean time per stage, stacked, per group
    (``stages_by_group``: group -> list of per-frame stage dicts)."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    t = np.asarray([x for x in totals_ms if x is not None], dtype=float)
    if len(t):
        a1.hist(t, bins=min(40, max(5, len(t) // 5)), color="#4c72b0", alpha=0.85)
        for q, ls in ((50, "-"), (99, "--")):
            v = float(np.percentile(t, q))
            a1.axvline(v, color="k", ls=ls, lw=0.8, label=f"p{q} {v:.1f} ms")
        a1.legend(fontsize=8)
    a1.set_xlabel("latency per frame (ms, one thread, decoding excluded)")
    a1.set_ylabel("frames")
    a1.set_title("End-to-end latency", fontsize=10)
    groups = list(stages_by_group)
    left = np.zeros(len(groups))
    colours = plt.get_cmap("tab10")(np.arange(len(STAGE_ORDER)) % 10)
    for stage, colour in zip(STAGE_ORDER, colours):
        vals = np.array([np.mean([d.get(stage, 0.0) for d in stages_by_group[g]]) if stages_by_group[g] else 0.0
                         for g in groups])
        a2.barh(groups, vals, left=left, color=colour, label=stage[:-3])
        left += vals
    a2.invert_yaxis()
    a2.set_xlabel("mean time per stage (ms)")
    a2.set_title("Per-stage breakdown", fontsize=10)
    a2.legend(fontsize=8, loc="lower right")
    a2.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def make_all(report: dict, records: list, out_dir) -> list[str]:
    """Every figure of the report into ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    paths = []
    main = [r for r in records if not r.get("stress")]
    retr = report.get("retrieval") or {}
    labels = {"int8_hnsw": "ours: INT8 + HNSW", "int8_exact": "INT8 + exact", "fp32_exact": "FP32 + exact",
              "handcrafted_exact": "hand-crafted + exact"}
    order = ("int8_hnsw", "fp32_exact", "int8_exact", "handcrafted_exact")
    curves = {labels[k]: retr[k]["recall_curve"] for k in order if k in retr}
    if not curves:   # pipeline only: the HNSW curve from the records
        from .evaluate import recall_curve
        curves = {labels["int8_hnsw"]: recall_curve([r["rank_hnsw"] for r in main], [r["eligible"] for r in main])}
    paths.append(plot_recall_curves(curves, out_dir / "recall_at_k.png"))
    scen = list(dict.fromkeys(r["scenario"] for r in records))
    errs = {s: [r["err_km"] for r in records if r["scenario"] == s and r["fix"]] for s in scen}
    paths.append(plot_error_cdfs(errs, out_dir / "error_cdf.png"))
    totals = [(r.get("stages_ms") or {}).get("total_ms") for r in records]
    stages = {s: [r["stages_ms"] for r in records if r["scenario"] == s and r.get("stages_ms")] for s in scen}
    paths.append(plot_latency(totals, stages, out_dir / "latency.png"))
    return [str(p) for p in paths]
