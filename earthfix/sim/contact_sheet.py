"""A contact sheet: one PNG of thumbnails with their truth, for a person to look at a run at a glance.

Each tile shows the frame with a north arrow (from the truth yaw) and, below it, the index and time,
the boresight lat/lon, altitude, yaw, sun elevation, clear-land share, and E (eligible) or -. Eligible
frames get a green border.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img, s, x, y, scale=0.34, colour=(230, 230, 230)):
    cv2.putText(img, s, (x, y), FONT, scale, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(img, s, (x, y), FONT, scale, colour, 1, cv2.LINE_AA)


def tile(image: np.ndarray, truth: dict, size: int = 160) -> np.ndarray:
    """One annotated thumbnail (BGR uint8)."""
    img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    s = size / max(h, w)
    th = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    cap = 50
    out = np.full((size + cap, size, 3), 24, np.uint8)
    out[:th.shape[0], :th.shape[1]] = th
    yaw = truth.get("yaw_deg")
    if yaw is not None:   # north in the image: up rotated by -yaw (yaw = azimuth of up, clockwise)
        c = np.array([size - 18, 18])
        d = np.array([-math.sin(math.radians(yaw)), -math.cos(math.radians(yaw))])
        cv2.arrowedLine(out, tuple(int(v) for v in c - 11 * d), tuple(int(v) for v in c + 11 * d),
                        (255, 255, 255), 1, cv2.LINE_AA, tipLength=0.35)
        _text(out, "N", int(c[0] + 14 * d[0]) - 4, int(c[1] + 14 * d[1]) + 4, 0.3)
    elig = bool(truth.get("eligible"))
    name = str(truth.get("frame") or "")
    idx = "".join(ch for ch in name if ch.isdigit())[-5:] or "-"
    t = str(truth.get("time", ""))[11:19]
    lat, lon = truth.get("bore_lat"), truth.get("bore_lon")
    pos = "off-Earth" if lat is None else f"{lat:+.2f} {lon:+.2f}"
    sun = truth.get("sun_elev_deg")
    _text(out, f"#{idx} {t} {'E' if elig else '-'}", 3, size + 13, colour=(120, 255, 120) if elig else (200, 200, 200))
    _text(out, pos, 3, size + 27)
    _text(out, f"h{truth.get('alt_km', 0):.0f} y{yaw if yaw is not None else 0:.0f} "
               f"s{sun if sun is not None else float('nan'):.0f} c{truth.get('land_clear_frac', 0):.2f}", 3, size + 41)
    cv2.rectangle(out, (0, 0), (size - 1, size + cap - 1), (60, 200, 60) if elig else (70, 70, 70), 1)
    return out


def make_contact_sheet(items, cols: int = 8, size: int = 160, title: str = "") -> np.ndarray:
    """Grid of annotated thumbnails from ``[(image, truth), ...]`` (BGR uint8)."""
    tiles = [tile(im, tr, size) for im, tr in items]
    if not tiles:
        return np.zeros((32, 32, 3), np.uint8)
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    th, tw = tiles[0].shape[:2]
    top = 24 if title else 0
    sheet = np.full((top + rows * (th + 4) + 4, cols * (tw + 4) + 4, 3), 12, np.uint8)
    if title:
        _text(sheet, title, 6, 17, 0.45)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = top + 4 + r * (th + 4), 4 + c * (tw + 4)
        sheet[y:y + th, x:x + tw] = t
    return sheet
