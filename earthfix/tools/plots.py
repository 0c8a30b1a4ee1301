"""Replay figure (track.png): where the satellite went, where the fixes put it, and how wrong each was.

Top: a plate carree world map (the Blue Marble of the default basemap, dimmed, or the land mask when the
imagery is not available) with the true ground track, every fix at its estimated boresight point coloured
by its error (green < 5 km, orange < 50 km, red = false fix, joined to where it should have been), frames
without a fix as grey ticks on the track, and the fused ground track.
Bottom: error against time on a log scale (fix boresight errors as dots, fused 3-D position error as a
line, its predicted 1-sigma dotted) over bands that say why frames could not fix (night, day without
clear land).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

GOOD_KM, FALSE_KM = 5.0, 50.0
C_GOOD, C_MID, C_FALSE = "#2ecc40", "#ff9f1a", "#ff2d2d"
C_TRUE, C_FUSED, C_NOFIX = "#ffffff", "#00e5ff", "#9a9a9a"
C_NIGHT, C_DAY_NO, C_ELIG = "#3b3b4f", "#cfe3f5", "#f3f7df"


def _background(width_px: int = 1440):
    """Dimmed RGB world image (rows north->south, lon -180..180), or None."""
    try:
        import cv2

        from ..sim.basemap import Basemap, global_land_fraction
    except Exception:
        return None
    try:
        bm = Basemap.default()
        raw = bm.raw if bm.raw is not None else bm.image
        if (bm.lon_min, bm.lon_max, bm.lat_min, bm.lat_max) != (-180.0, 180.0, -90.0, 90.0):
            raise ValueError("not global")
        img = cv2.resize(raw, (width_px, width_px // 2), interpolation=cv2.INTER_AREA)[..., ::-1]
        # dim and desaturate so that the coloured marks carry the story
        grey = img.mean(axis=2, keepdims=True)
        img = (0.55 * (0.6 * img + 0.4 * grey)).astype(np.uint8)
        return img
    except Exception:
        pass
    try:
        land = global_land_fraction("10min")
        land = cv2.resize(land, (width_px, width_px // 2), interpolation=cv2.INTER_AREA)
        sea, ground = np.array([22, 34, 52]), np.array([92, 96, 84])
        return (sea + land[..., None] * (ground - sea)).astype(np.uint8)
    except Exception:
        return None


def _split(lon, lat):
    """Break a track where it wraps the antimeridian (NaN between the pieces)."""
    lon = np.asarray(lon, float)
    lat = np.asarray(lat, float)
    if len(lon) < 2:
        return lon, lat
    cut = np.nonzero(np.abs(np.diff(lon)) > 180.0)[0] + 1
    return np.insert(lon, cut, np.nan), np.insert(lat, cut, np.nan)


def _runs(mask):
    """(start, stop) index pairs of runs of True."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(int))
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]))


def _map_figure(plt):
    """(figure, gridspec, map axes): a world map over two thirds of the figure, room for a time plot below."""
    fig = plt.figure(figsize=(13, 9.2), dpi=110)
    gs = fig.add_gridspec(2, 1, height_ratios=[2.0, 1.0], hspace=0.2, left=0.055, right=0.985, top=0.95,
                          bottom=0.1)
    ax = fig.add_subplot(gs[0])
    bg = _background()
    if bg is not None:
        ax.imshow(bg, extent=(-180, 180, -90, 90), origin="upper", interpolation="bilinear", zorder=0)
    else:
        ax.set_facecolor("#16222f")
    return fig, gs, ax


def plot_replay(path, recs, report: dict | None = None, title: str | None = None) -> Path:
    """Draw the replay figure from per-frame records (earthfix.tools.replay) into ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from ..onboard import geodesy

    path = Path(path)
    n = len(recs)
    t_min = np.array([r["t_s"] for r in recs]) / 60.0
    sub_lat = np.array([r["sub_lat"] for r in recs])
    sub_lon = np.array([r["sub_lon"] for r in recs])
    fix = np.array([r["fix"] for r in recs], bool)
    err = np.array([(r["err_km"] if r["err_km"] is not None else np.nan) for r in recs], float)
    cls = np.where(~fix, 0, np.where(err < GOOD_KM, 1, np.where(err <= FALSE_KM, 2, 3)))
    fx_lat = np.array([(r["lat"] if r["lat"] is not None else np.nan) for r in recs], float)
    fx_lon = np.array([(r["lon"] if r["lon"] is not None else np.nan) for r in recs], float)
    has_fused = np.array([r["fused_ecef"] is not None for r in recs], bool)
    f_err = np.array([(r["fused_err_km"] if r["fused_err_km"] is not None else np.nan) for r in recs])
    f_sig = np.array([(r["fused_sigma_km"] if r["fused_sigma_km"] is not None else np.nan) for r in recs])
    sun = np.array([(r["sun_elev_deg"] if r["sun_elev_deg"] is not None else -90.0) for r in recs], float)
    elig = np.array([r["eligible"] for r in recs], bool)

    fig, gs, ax = _map_figure(plt)
    ax.set_xticks(range(-180, 181, 30))
    ax.set_yticks(range(-90, 91, 30))
    ax.tick_params(labelsize=8)
    ax.grid(color="white", alpha=0.12, lw=0.5)

    # true track, and the frames that gave no fix as grey ticks on it
    lo, la = _split(sub_lon, sub_lat)
    ax.plot(lo, la, color=C_TRUE, lw=1.0, alpha=0.75, zorder=2)
    ax.scatter(sub_lon[~fix], sub_lat[~fix], s=22, marker="|", color=C_NOFIX, alpha=0.9, lw=0.9, zorder=3)
    ax.plot(sub_lon[:1], sub_lat[:1], marker=">", ms=10, color=C_TRUE, mec="black", zorder=7)
    if n:
        ax.annotate("start", (sub_lon[0], sub_lat[0]), xytext=(6, 6), textcoords="offset points",
                    color="white", fontsize=9, zorder=7)
    # fused track
    if has_fused.any():
        fp = np.array([r["fused_ecef"] for r in recs if r["fused_ecef"] is not None])
        f_lat, f_lon, _ = geodesy.ecef_to_geodetic(fp)
        lo, la = _split(f_lon, f_lat)
        ax.plot(lo, la, color=C_FUSED, lw=1.6, ls=(0, (4, 2)), zorder=4)
    # false fixes: a red line to where the satellite really looked
    for i in np.nonzero(cls == 3)[0]:
        if np.isfinite(fx_lat[i]) and abs(fx_lon[i] - sub_lon[i]) < 180:
            ax.plot([fx_lon[i], sub_lon[i]], [fx_lat[i], sub_lat[i]], color=C_FALSE, lw=0.8, alpha=0.8, zorder=5)
    for c, col, mk, size in ((2, C_MID, "o", 30), (1, C_GOOD, "o", 26), (3, C_FALSE, "X", 70)):
        m = (cls == c) & np.isfinite(fx_lat)
        ax.scatter(fx_lon[m], fx_lat[m], s=size, marker=mk, color=col, edgecolors="black", linewidths=0.6,
                   zorder=6)
    counts = [int((cls == c).sum()) for c in range(4)]
    handles = [
        Line2D([], [], color=C_TRUE, lw=1.5, label="true ground track"),
        Line2D([], [], color=C_FUSED, lw=1.6, ls=(0, (4, 2)), label="fused orbit (real time)"),
        Line2D([], [], marker="o", ls="", color=C_GOOD, mec="black", label=f"fix < {GOOD_KM:g} km ({counts[1]})"),
        Line2D([], [], marker="o", ls="", color=C_MID, mec="black",
               label=f"fix {GOOD_KM:g}-{FALSE_KM:g} km ({counts[2]})"),
        Line2D([], [], marker="X", ls="", color=C_FALSE, mec="black", ms=8,
               label=f"false fix > {FALSE_KM:g} km ({counts[3]})"),
        Line2D([], [], marker="|", ls="", color=C_NOFIX, ms=8, label=f"no fix ({counts[0]} frames)"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.045), fontsize=8.5, ncol=6,
              facecolor="#1b1f27", edgecolor="none", framealpha=1.0, labelcolor="white")
    # limits last: the scatter calls above would otherwise widen them
    lat_span = max(np.abs(sub_lat).max() if n else 60.0, 30.0)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-min(90, lat_span + 12), min(90, lat_span + 12))
    ax.set_aspect("equal")

    # ---- errors over time ----
    bx = fig.add_subplot(gs[1])
    dt = float(np.median(np.diff(t_min))) if n > 1 else 1.0
    for mask, col in ((sun <= 0.0, C_NIGHT), ((sun > 0.0) & ~elig, C_DAY_NO), (elig, C_ELIG)):
        for a, b in _runs(mask):
            bx.axvspan(t_min[a] - dt / 2, t_min[b - 1] + dt / 2, color=col, alpha=0.45 if col == C_NIGHT else 1.0,
                       lw=0, zorder=0)
    finite = np.isfinite(err) & fix
    top = 1e4
    shown = np.clip(np.where(finite, err, top), 0.1, top)
    for c, col, mk, size in ((1, C_GOOD, "o", 16), (2, C_MID, "o", 18), (3, C_FALSE, "X", 40)):
        m = cls == c
        bx.scatter(t_min[m], shown[m], s=size, marker=mk, color=col, edgecolors="black", linewidths=0.4, zorder=4)
    if has_fused.any():
        bx.plot(t_min, np.where(has_fused, np.maximum(f_err, 0.01), np.nan), color="black", lw=1.5, zorder=3)
        bx.plot(t_min, np.where(has_fused, np.maximum(f_sig, 0.01), np.nan), color="#444", lw=1.0, ls=":", zorder=3)
    bx.axhline(GOOD_KM, color=C_GOOD, lw=0.9, ls="--", zorder=1)
    bx.axhline(FALSE_KM, color=C_FALSE, lw=0.9, ls="--", zorder=1)
    bx.set_yscale("log")
    ymin = 0.1
    if has_fused.any() and np.nanmin(f_err) < 0.1:
        ymin = 0.01
    bx.set_ylim(ymin, 2e4)
    bx.set_xlim(t_min[0] - dt / 2 if n else 0, t_min[-1] + dt / 2 if n else 1)
    bx.set_xlabel("minutes since start", fontsize=9, labelpad=1)
    bx.set_ylabel("error, km (log)", fontsize=9)
    bx.tick_params(labelsize=8)
    bx.grid(axis="y", which="major", alpha=0.3)
    h2 = [
        Line2D([], [], marker="o", ls="", color=C_GOOD, mec="black", label="fix: boresight error"),
        Line2D([], [], color="black", lw=1.5, label="fused position error (3-D)"),
        Line2D([], [], color="#444", lw=1.0, ls=":", label="fused 1-sigma (predicted)"),
        Line2D([], [], color=C_FALSE, lw=0.9, ls="--", label=f"{FALSE_KM:g} km: false-fix line"),
        Patch(color=C_ELIG, label="eligible (day, clear land)"),
        Patch(color=C_DAY_NO, label="day: sea / cloud"),
        Patch(color=C_NIGHT, alpha=0.45, label="night"),
    ]
    bx.legend(handles=h2, loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, ncol=7, frameon=False)

    if title is None:
        title = _title(report) if report else "EarthFix replay"
    fig.suptitle(title, fontsize=11.5, y=0.985)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _title(report: dict) -> str:
    s, f = report.get("scenario", {}), report.get("fused", {})
    parts = [str(s.get("object") or "replay")]
    if s.get("start"):
        parts.append(str(s["start"])[:16].replace("T", " ") + " UTC")
    if report.get("fix_rate") is not None:
        parts.append(f"fix rate {100 * report['fix_rate']:.0f} % of {report['eligible']} eligible")
    be = report.get("boresight_error_km", {})
    if be.get("p50") is not None:
        parts.append(f"median fix error {be['p50']:.1f} km")
    parts.append(f"{report.get('false_fixes', 0)} false")
    fe = f.get("final_error_km")
    if fe is not None and math.isfinite(fe):
        parts.append(f"fused error at end {fe:.1f} km")
    return "  |  ".join(parts)


C_USED, C_REJECTED, C_OTHER = "#2ecc40", "#ff2d2d", "#ffd23f"


def plot_fused(path, recs, title: str = "EarthFix fused orbit") -> Path:
    """The ``earthfix fuse`` figure (orbit.png) from its per-frame records (``fused.jsonl`` lines, with a
    ``t_min`` and, for fixes, the fix's own sub-satellite point ``fix_sub_lat`` / ``fix_sub_lon``).

    Top: the fused ground track (real time) over the world map, each fix's sub-satellite point coloured by
    what the final fit made of it (used, rejected, other). Bottom: each fix's residual against the final
    orbit and the fused 1-sigma against time (log scale), and the fused error when a truth came with it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    def col(key):
        return np.array([(r.get(key) if r.get(key) is not None else np.nan) for r in recs], float)

    path = Path(path)
    t = col("t_min")
    f_lat, f_lon, sig, res, ferr = col("fused_sub_lat"), col("fused_sub_lon"), col("fused_sigma_km"), \
        col("residual_km"), col("fused_err_km")
    x_lat, x_lon = col("fix_sub_lat"), col("fix_sub_lon")
    status = np.array([r.get("fusion") or "" for r in recs])
    fig, gs, ax = _map_figure(plt)
    ax.grid(color="white", alpha=0.12, lw=0.5)
    ax.tick_params(labelsize=8)
    ok = np.isfinite(f_lat)
    lo, la = _split(f_lon[ok], f_lat[ok])
    ax.plot(lo, la, color=C_FUSED, lw=1.6, ls=(0, (4, 2)), zorder=4)
    groups = (("used", C_USED, "o", 24), ("rejected", C_REJECTED, "X", 60))
    for name, colour, mk, size in groups:
        m = (status == name) & np.isfinite(x_lat)
        ax.scatter(x_lon[m], x_lat[m], s=size, marker=mk, color=colour, edgecolors="black", linewidths=0.6, zorder=6)
    other = (status != "") & (status != "used") & (status != "rejected") & np.isfinite(x_lat)
    ax.scatter(x_lon[other], x_lat[other], s=24, marker="o", color=C_OTHER, edgecolors="black", linewidths=0.6,
               zorder=5)
    handles = [Line2D([], [], color=C_FUSED, lw=1.6, ls=(0, (4, 2)), label="fused ground track (real time)")]
    handles += [Line2D([], [], marker=mk, ls="", color=c, mec="black", label=f"fix {n} ({int((status == n).sum())})")
                for n, c, mk, _ in groups]
    handles.append(Line2D([], [], marker="o", ls="", color=C_OTHER, mec="black",
                          label=f"fix pending / outside the window ({int(other.sum())})"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.045), fontsize=8.5, ncol=4,
              facecolor="#1b1f27", edgecolor="none", framealpha=1.0, labelcolor="white")
    lat_span = max(np.nanmax(np.abs(np.concatenate([f_lat[ok], x_lat[np.isfinite(x_lat)], [30.0]]))), 30.0)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-min(90, lat_span + 12), min(90, lat_span + 12))
    ax.set_aspect("equal")

    bx = fig.add_subplot(gs[1])
    for name, colour, mk, size in groups:
        m = (status == name) & np.isfinite(res)
        bx.scatter(t[m], np.clip(res[m], 0.01, 2e4), s=size * 0.7, marker=mk, color=colour, edgecolors="black",
                   linewidths=0.4, zorder=4)
    bx.plot(t, np.maximum(sig, 0.01), color="#444", lw=1.0, ls=":", zorder=3)
    h2 = [Line2D([], [], marker="o", ls="", color=C_USED, mec="black", label="fix residual vs the final orbit"),
          Line2D([], [], color="#444", lw=1.0, ls=":", label="fused 1-sigma (real time)")]
    if np.isfinite(ferr).any():
        bx.plot(t, np.maximum(ferr, 0.01), color="black", lw=1.5, zorder=3)
        h2.append(Line2D([], [], color="black", lw=1.5, label="fused error vs truth (3-D)"))
    bx.set_yscale("log")
    bx.set_ylim(0.05, 2e4)
    bx.set_xlabel("minutes since the first frame", fontsize=9, labelpad=1)
    bx.set_ylabel("km (log)", fontsize=9)
    bx.tick_params(labelsize=8)
    bx.grid(axis="y", which="major", alpha=0.3)
    bx.legend(handles=h2, loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, ncol=3, frameon=False)
    fig.suptitle(title, fontsize=11.5, y=0.985)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
