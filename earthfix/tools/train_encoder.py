"""Train the global image encoder (torch, CPU) on pairs rendered on the fly from the default basemap.

A pair is (reference view, query frame) of the same ground: the reference is a clean nadir north-up
render at one of the bundle's footprint scales (``grid.SCALES_KM``), exactly as ``build-index`` renders
it; the query is what a camera might see there: any yaw, 400-800 km, 50-90 deg FOV, 0-5 deg off nadir,
offset up to half a lattice spacing, with strong appearance changes (water colour, season/colour
shifts, channel mixing, snow, haze, gamma/contrast, illumination gradients, clouds, blur, noise, JPEG,
panchromatic). Loss: symmetric InfoNCE over the batch, where views that overlap the anchor's footprint
are masked out (neither positive nor negative). Batches are drawn in geographic clusters so the other
places of a batch are regional look-alikes: cheap hard negatives.

Run:  earthfix train --minutes 45 --out runs/encoder      (needs the [train] extra: torch)
      earthfix train --bf16 --workers 2 ...      (AMX / AVX-512 BF16 CPUs: bf16 step, two renderers)
      earthfix train --minutes 0 --steps 9000 --out runs/enc  (a step budget: the same run on any machine)

Seeds: torch and the pair generator (one generator per rendering worker, ``[seed, worker]``), so a run
with a step budget and the same worker count is repeatable; a wall-clock budget ends where the machine
got to.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ..onboard import geodesy
from ..onboard.camera import Camera, nadir_attitude, tilt_rotation
from ..onboard.preprocess import INPUT_PX, preprocess, standardise
from ..sim.effects import appearance_shift
from . import grid

QUERY_RENDER_PX = 128   # queries are rendered finer, degraded, then area-resized to the input side


def checkpoint_input_px(state: dict) -> int:
    """The input side a checkpoint was trained at (checkpoints from before ``--input-px``: 96 px)."""
    return int(state.get("input_px", INPUT_PX))


def query_render_px(input_px: int) -> int:
    """Render side of a training query: 4/3 of the encoder's input side (128 px for the 96 px input)."""
    return max(QUERY_RENDER_PX, int(round(input_px * 4 / 3)))


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
POOLS = ("gem", "rings")
RING_EDGES = (0.34, 0.74, 1.07)   # outer radius of each ring, in half feature-map sides (corners beyond 1.07 left out)


def ring_weights(side: int) -> np.ndarray:
    """(side * side, rings) float32: each feature-map cell's share of its ring's mean (rows of cells outside
    every ring are 0). Rings are concentric about the map centre, so a turn of the frame about its boresight
    moves a cell's content within its ring: pooling per ring stays as rotation-robust as one global pool
    while keeping what lies near the boresight apart from what lies at the edge."""
    c = (np.arange(side) + 0.5) - side / 2.0
    r = np.hypot(*np.meshgrid(c, c, indexing="ij")).ravel() / (side / 2.0)
    ring = np.searchsorted(np.asarray(RING_EDGES), r, side="right")
    w = np.zeros((side * side, len(RING_EDGES)), np.float32)
    for k in range(len(RING_EDGES)):
        sel = ring == k
        if not sel.any():
            raise ValueError(f"a {side} x {side} feature map leaves ring {k} empty")
        w[sel, k] = 1.0 / sel.sum()
    return w


def build_model(dim: int = 128, pool: str = "gem", input_px: int = INPUT_PX):
    """Compact CNN: 4 stride-2 stages, GeM pooling, linear projection, L2 norm (~55 MMAC at 96 px).
    ``pool="rings"``: GeM over each of three rings about the boresight (``ring_weights``), concatenated
    before the projection (the same MACs but for the projection's 3x inputs)."""
    import torch
    from torch import nn
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")

    def cbr(cin, cout, stride=1, k=3):
        return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    class GeM(nn.Module):
        def __init__(self, p=3.0):
            super().__init__()
            self.p = nn.Parameter(torch.tensor(float(p)))

        def forward(self, x):
            if x.dtype != torch.float32:   # bf16 training: pool in float32 (a no-op in the exported graph)
                x = x.float()
            p = self.p.clamp(1.0, 6.0)
            return x.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)

    class RingGeM(GeM):
        def __init__(self, side: int, p=3.0):
            super().__init__(p)
            self.register_buffer("w", torch.from_numpy(ring_weights(side)))

        def forward(self, x):
            with torch.autocast("cpu", enabled=False):
                x = x.float()
                p = self.p.clamp(1.0, 6.0)
                m = x.clamp(min=1e-6).pow(p).flatten(2) @ self.w      # N x C x rings
                return m.clamp(min=1e-12).pow(1.0 / p).flatten(1)

    class EncoderNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers = cbr(3, 32, 2)
            for cin, cout in ((32, 48), (48, 96), (96, 160)):
                layers += cbr(cin, cout, 2) + cbr(cout, cout)
            layers += cbr(160, 256, 1, 1)
            self.features = nn.Sequential(*layers)
            self.pool = GeM() if pool == "gem" else RingGeM(-(-input_px // 16))
            self.proj = nn.Linear(256 * (1 if pool == "gem" else len(RING_EDGES)), dim)

        def forward(self, x):
            y = self.proj(self.pool(self.features(x)))
            return nn.functional.normalize(y, dim=1)

    return EncoderNet()


# ------------------------------------------------------------------------------------------------
# pairs
# ------------------------------------------------------------------------------------------------
def random_land_point(rng, near=None, radius_km=1200.0, min_land=0.15, hw_km=400.0):
    for _ in range(500):
        if near is None:
            lat = math.degrees(math.asin(rng.uniform(-0.99, 0.99)))
            lon = rng.uniform(-180, 180)
        else:
            d = radius_km * math.sqrt(rng.uniform(0, 1))
            lat, lon = geodesy.destination(near[0], near[1], rng.uniform(0, 360), d)
            lat, lon = float(lat), float(lon)
        if abs(lat) < 82 and grid.land_fraction_near(lat, lon, hw_km) >= min_land:
            return lat, lon
    return None


def smooth_noise(rng, size: int, octaves=(4, 8, 16, 32), persistence: float = 0.55) -> np.ndarray:
    out = np.zeros((size, size), np.float32)
    amp, tot = 1.0, 0.0
    for o in octaves:
        g = rng.standard_normal((o, o)).astype(np.float32)
        out += amp * cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)
        tot += amp
        amp *= persistence
    return out / tot


def augment(img: np.ndarray, land: np.ndarray, rng) -> np.ndarray:
    """Strong appearance change of a rendered query (uint8 BGR), written for training robustness."""
    x = img.astype(np.float32) / 255.0
    s = x.shape[0]
    earth = (img.max(axis=2) > 0).astype(np.float32)[..., None]
    water = (1.0 - np.clip(land, 0, 1))[..., None] * earth
    # open water as real sensors see it: dark, nearly uniform, any tint, sometimes glint
    wcol = np.array([rng.uniform(0.08, 0.4), rng.uniform(0.05, 0.3), rng.uniform(0.02, 0.2)], np.float32)
    wfield = wcol * (1.0 + 0.15 * smooth_noise(rng, s, (2, 4))[..., None])
    if rng.random() < 0.2:
        wfield += rng.uniform(0.1, 0.5) * np.clip(smooth_noise(rng, s, (2,)), 0, 1)[..., None]
    x = x * (1 - water) + wfield * water
    # season / sensor colour
    m = np.eye(3, dtype=np.float32) + rng.normal(0, 0.12, (3, 3)).astype(np.float32)
    x = x @ m.T
    x *= rng.uniform(0.75, 1.25, 3).astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + rng.uniform(0.3, 1.6) * (x - grey)
    if rng.random() < 0.2:   # snow / ice cover on part of the land
        snow = np.clip((smooth_noise(rng, s) - rng.uniform(-0.2, 0.6)) * 3, 0, 1)[..., None]
        x = x * (1 - snow * (1 - water)) + rng.uniform(0.75, 1.0) * snow * (1 - water)
    # illumination gradient and exposure
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    x *= (rng.uniform(0.5, 1.4) * (1 + rng.uniform(0, 0.6) * (np.cos(ang) * xx + np.sin(ang) * yy)))[..., None]
    # haze
    h = rng.uniform(0, 0.35)
    x = x * (1 - h) + h * np.array([rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.85), rng.uniform(0.5, 0.8)], np.float32)
    # clouds (with soft edges and varying thickness)
    if rng.random() < 0.7:
        cover = rng.uniform(0.0, 0.55)
        n = smooth_noise(rng, s, (4, 8, 16, 32, 64))
        thr = np.quantile(n, 1 - cover) if cover > 0 else n.max() + 1
        a = np.clip((n - thr) * rng.uniform(4, 12), 0, 1) * rng.uniform(0.6, 1.0)
        x = x * (1 - a[..., None]) + rng.uniform(0.75, 1.0) * a[..., None]
    x = np.clip(x, 0, 1) ** rng.uniform(0.6, 1.6)
    c = rng.uniform(0.6, 1.4)
    x = np.clip((x - 0.5) * c + 0.5, 0, 1) * earth
    out = (x * 255.0).astype(np.uint8)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.3))
    sigma = rng.uniform(0, 7)
    out = np.clip(out.astype(np.float32) + rng.normal(0, sigma, out.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(35, 95))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if rng.random() < 0.7:   # hue/season/sensor shift in HSV (greens to browns, hue and saturation curves)
        out = appearance_shift(out, rng, strength=float(rng.uniform(0.3, 1.6)))
    if rng.random() < 0.3:   # independent per-channel tone curves: another sensor's radiometry
        lut = np.stack([255.0 * (np.arange(256) / 255.0) ** g for g in rng.uniform(0.6, 1.6, 3)], axis=-1)
        out = cv2.LUT(out, lut.astype(np.uint8).reshape(256, 1, 3))
    if rng.random() < 0.15:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return out


def render_reference(basemap, lat, lon, scale_idx, size=INPUT_PX):
    """The bundle's reference view: nadir, north-up, footprint half-width SCALES_KM[scale_idx]."""
    from ..sim.render import render
    hw = grid.SCALES_KM[scale_idx]
    alt = grid.ref_alt_km(hw)
    cam = Camera.from_fov(size, size, grid.REF_FOV_DEG)
    pos = geodesy.geodetic_to_ecef(lat, lon, alt)
    return render(basemap, cam, pos, nadir_attitude(lat, lon, 0.0))


def render_query(basemap, rng, lat, lon, px=QUERY_RENDER_PX, max_yaw_deg=180.0):
    """A random camera above (lat, lon), its image up within ``max_yaw_deg`` of north: returns (view,
    boresight lat, lon, half-width km)."""
    from ..sim.render import render
    alt = rng.uniform(400, 800)
    fov = rng.uniform(50, 90)
    cam = Camera.from_fov(px, px, fov)
    yaw = rng.uniform(-max_yaw_deg, max_yaw_deg)
    r = nadir_attitude(lat, lon, yaw) @ tilt_rotation(rng.uniform(0, 5), rng.uniform(0, 360))
    view = render(basemap, cam, geodesy.geodetic_to_ecef(lat, lon, alt), r)
    c = px // 2
    blat, blon = float(view.lat[c, c]), float(view.lon[c, c])
    return view, blat, blon, alt * math.tan(math.radians(fov) / 2)


def nearest_scale(hw_km, rng):
    logs = np.log(np.array(grid.SCALES_KM))
    d = np.abs(logs - math.log(hw_km))
    order = np.argsort(d)
    # mostly the nearest scale, sometimes the second nearest (a query between two scales must match both)
    return int(order[0] if rng.random() < 0.75 else order[1])


def make_batch(basemap, rng, clusters=8, per_cluster=8, max_yaw_deg=180.0, input_px=INPUT_PX):
    qs, rs, meta = [], [], []
    while len(qs) < clusters * per_cluster:
        centre = random_land_point(rng)
        if centre is None:
            continue
        for _ in range(per_cluster):
            p = random_land_point(rng, near=centre, radius_km=1500.0)
            if p is None:
                continue
            view, blat, blon, hw = render_query(basemap, rng, *p, px=query_render_px(input_px),
                                                max_yaw_deg=max_yaw_deg)
            if not np.isfinite(blat):
                continue
            k = nearest_scale(hw, rng)
            spacing = grid.SPACING_FRAC * 2 * grid.SCALES_KM[k]
            rlat, rlon = geodesy.destination(blat, blon, rng.uniform(0, 360), rng.uniform(0, 0.5) * spacing)
            ref = render_reference(basemap, float(rlat), float(rlon), k, size=input_px)
            qs.append(preprocess(augment(view.image, view.land, rng), input_px)[0])
            rs.append(standardise(ref.image))
            meta.append((blat, blon, hw, float(rlat), float(rlon), grid.SCALES_KM[k]))
    return np.stack(qs), np.stack(rs), np.array(meta[: len(qs)])


def footprints_overlap(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(n, m) True where query footprint i and reference footprint j, each a row (lat, lon deg, half-width
    km), show overlapping ground: centres closer than the smaller half-width. Such a pair is no negative."""
    d = geodesy.great_circle_km(queries[:, 0][:, None], queries[:, 1][:, None], refs[:, 0][None], refs[:, 1][None])
    return d < np.minimum(queries[:, 2][:, None], refs[:, 2][None])


def overlap_mask(meta: np.ndarray) -> np.ndarray:
    """True where query i and reference j (i != j) of a batch overlap: excluded from negatives."""
    m = footprints_overlap(meta[:, 0:3], meta[:, 3:6])
    np.fill_diagonal(m, False)
    return m


def batch_stream(seed: int, workers: int, max_yaw_deg: float = 180.0, input_px: int = INPUT_PX):
    """Endless (queries, references, meta) batches. With ``workers`` > 0 they are rendered in that many
    worker processes while the model trains (on 2 cores, rendering and the optimiser step take about the
    same time, so overlapping them is worth ~1.5x); each worker has its own seeded generator."""
    from ..sim.basemap import Basemap

    if workers <= 0:
        basemap, rng = Basemap.default(), np.random.default_rng(seed)
        while True:
            yield make_batch(basemap, rng, max_yaw_deg=max_yaw_deg, input_px=input_px)
    import torch

    class _Pairs(torch.utils.data.IterableDataset):
        def __iter__(self):
            wid = torch.utils.data.get_worker_info().id
            cv2.setNumThreads(1)
            basemap, rng = Basemap.default(), np.random.default_rng([seed, wid])
            while True:
                yield make_batch(basemap, rng, max_yaw_deg=max_yaw_deg, input_px=input_px)

    loader = torch.utils.data.DataLoader(_Pairs(), batch_size=None, num_workers=workers, prefetch_factor=4)
    for q, r, meta in loader:
        yield q.numpy(), r.numpy(), meta.numpy()


# ------------------------------------------------------------------------------------------------
# training loop
# ------------------------------------------------------------------------------------------------
class ReferenceMemory:
    """A cross-batch memory (XBM, Wang et al. 2020) of recent reference embeddings and where they lie.

    In-batch InfoNCE sees 63 negatives, all from 8 regions; the flight search ranks ~26,000 references
    from the whole globe. The memory adds the last ``size`` references (detached: no extra forward pass)
    as negatives of each query, except those that overlap the query's footprint, which are true matches
    of other views. Embeddings drift as the model trains, so the memory fills only after warm-up."""

    def __init__(self, size: int, dim: int):
        self.size = size
        self.z = np.zeros((0, dim), np.float32)
        self.where = np.zeros((0, 3), np.float64)     # lat, lon deg, footprint half-width km

    def negatives_mask(self, meta: np.ndarray) -> np.ndarray:
        """True where memory entry j overlaps query i's ground (not a negative)."""
        return footprints_overlap(meta[:, 0:3], self.where)

    def push(self, zr: np.ndarray, meta: np.ndarray) -> None:
        self.z = np.concatenate([zr.astype(np.float32), self.z])[: self.size]
        self.where = np.concatenate([meta[:, 3:6], self.where])[: self.size]


class PlaceProxies:
    """One learned unit vector per reference view of the bundle's grid: place classification beside the
    in-batch loss (normalised softmax over proxies, as CosPlace / proxy-NCA train place recognition).

    In-batch InfoNCE ranks a query against 63 references; the flight search ranks it against all ~26,000
    views. A proxy per view puts every view of the grid in every query's softmax without a stale memory
    (the proxies are trained with the network). A sample's class is the grid view of its reference scale
    nearest to its ground; views whose centre lies within ``right_frac`` of the sample's half-width (what
    CONVENTIONS' recall counts as right, at any scale) are neither positive nor negative."""

    def __init__(self, right_frac: float = 0.5):
        lat, lon, sidx = grid.reference_grid()
        self.xyz = self._unit(lat, lon)
        self.scale_km = np.asarray(grid.SCALES_KM)[sidx]
        self.right_frac = right_frac

    def __len__(self) -> int:
        return len(self.xyz)

    @staticmethod
    def _unit(lat, lon) -> np.ndarray:
        la, lo = np.radians(np.asarray(lat, np.float64)), np.radians(np.asarray(lon, np.float64))
        return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)

    def targets(self, lat, lon, hw_km, scale_km) -> tuple[np.ndarray, np.ndarray]:
        """(class per sample, (n, views) mask of right-but-not-target views) for samples centred at
        (lat, lon) deg with footprint half-width ``hw_km``, classed at reference scale ``scale_km``."""
        cos = self._unit(lat, lon) @ self.xyz.T
        same = self.scale_km[None, :] == np.asarray(scale_km)[:, None]
        cls = np.where(same, cos, -2.0).argmax(axis=1)
        near = cos > np.cos(self.right_frac * np.asarray(hw_km)[:, None] / geodesy.R_MEAN_KM)
        near[np.arange(len(cls)), cls] = False
        return cls, near


def train(out_dir: Path, minutes: float, steps: int, seed: int, lr: float, dim: int, threads: int,
          resume: bool = False, workers: int = 1, max_yaw_deg: float = 180.0, bf16: bool = False,
          memory: int = 0, memory_from_step: int = 1000, memory_weight: float = 0.5,
          input_px: int = INPUT_PX, pool: str = "gem", proxy_weight: float = 0.0, proxy_lr_mult: float = 1.0,
          log=print):
    """``bf16``: convolutions and the projection in bfloat16 autocast, channels-last (weights, optimiser
    and loss stay float32). On a CPU with AMX or AVX-512 BF16 the optimiser step is ~2.6x faster (0.25 vs
    0.65 s per 128-image batch at one thread, measured here), which lets a second worker render pairs.
    ``memory``: size of the cross-batch reference memory (`ReferenceMemory`; 0: in-batch negatives only),
    filled from step ``memory_from_step``, its term weighted ``memory_weight`` beside the in-batch loss.
    ``proxy_weight``: weight of the place-classification term (`PlaceProxies`: queries and references
    against one learned proxy per grid view; 0: off), the proxies at ``proxy_lr_mult`` x the learning rate.
    Measured: the memory's negatives in the same softmax as the in-batch ones (one joint term) cut the
    in-batch top-1 from 0.36 to 0.15 within 1,600 steps of switching on, so the term is kept apart; a
    16,000-step run with it (memory 4096, weight 0.5) still retrieved far worse than v4 (mean R@1 / R@10
    9.1 / 23.3 % against 24.1 / 39.2 %, models/README.md), hence off by default."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    batches = batch_stream(seed, workers, max_yaw_deg, input_px)
    model = build_model(dim, pool, input_px)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    groups = [{"params": list(model.parameters()), "weight_decay": 1e-4, "lr_mult": 1.0}]
    places = PlaceProxies() if proxy_weight > 0 else None
    if places is not None:
        proxies = torch.nn.Parameter(torch.nn.functional.normalize(torch.randn(len(places), dim), dim=1))
        groups.append({"params": [proxies], "weight_decay": 0.0, "lr_mult": proxy_lr_mult})
    opt = torch.optim.AdamW(groups, lr=lr)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "encoder.pt"
    step0 = 0
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        if checkpoint_input_px(state) != input_px:
            raise ValueError(f"{ckpt} was trained at {checkpoint_input_px(state)} px, not --input-px {input_px}")
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); step0 = int(state["step"])
        if places is not None:
            proxies.data.copy_(state["proxies"])

    def save_checkpoint(at_step: int) -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": at_step, "dim": dim,
                 "input_px": input_px, "pool": pool}
        if places is not None:
            state["proxies"] = proxies.detach()
        torch.save(state, ckpt)

    tau = 0.05
    bank = ReferenceMemory(memory, dim)
    t0 = time.time()
    hist = []
    step = step0
    total = steps
    by_steps = minutes <= 0          # a step budget: the same schedule on any machine (reproducible)
    while step < total and (by_steps or (time.time() - t0) < minutes * 60):
        frac = (step - step0) / max(1, total - step0) if by_steps else min(1.0, (time.time() - t0) / (minutes * 60))
        for g in opt.param_groups:   # warm-up, then cosine decay over the budget (time or steps)
            g["lr"] = g["lr_mult"] * lr * min(1.0, (step - step0 + 1) / 100) * 0.5 * (1 + math.cos(math.pi * frac))
        q, r, meta = next(batches)
        mask = torch.from_numpy(overlap_mask(meta))
        model.train()
        x = torch.from_numpy(np.concatenate([q, r]))
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = model(x)
        if bf16:   # the similarities in float32 (a float32 model's output is already unit length)
            z = torch.nn.functional.normalize(z.float(), dim=1)
        zq, zr = z[: len(q)], z[len(q):]
        logits = zq @ zr.T / tau
        logits = logits.masked_fill(mask, -1e4)
        target = torch.arange(len(q))
        loss = 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                      + torch.nn.functional.cross_entropy(logits.T, target))
        if len(bank.z):   # a separate term: each query's positive against the remembered references only
            mem = (zq @ torch.from_numpy(bank.z).T / tau).masked_fill(
                torch.from_numpy(bank.negatives_mask(meta)), -1e4)
            pos = (zq * zr).sum(1, keepdim=True) / tau
            loss = loss + memory_weight * torch.nn.functional.cross_entropy(
                torch.cat([pos, mem], 1), torch.zeros(len(q), dtype=torch.long))
        if places is not None:   # both sides of each pair against every grid view's proxy
            w = torch.nn.functional.normalize(proxies, dim=1)
            cq, nq = places.targets(meta[:, 0], meta[:, 1], meta[:, 2], meta[:, 5])
            cr, nr = places.targets(meta[:, 3], meta[:, 4], meta[:, 5], meta[:, 5])
            pl = torch.cat([zq, zr]) @ w.T / tau
            pl = pl.masked_fill(torch.from_numpy(np.concatenate([nq, nr])), -1e4)
            ploss = torch.nn.functional.cross_entropy(pl, torch.from_numpy(np.concatenate([cq, cr])))
            loss = loss + proxy_weight * ploss
        opt.zero_grad(); loss.backward(); opt.step()
        if memory and step >= memory_from_step:
            bank.push(zr.detach().float().numpy(), meta)
        acc = (logits.argmax(1) == target).float().mean().item()
        hist.append((step, loss.item(), acc) + ((ploss.item(),) if places is not None else ()))
        step += 1
        if step % 20 == 0:
            l = np.mean([h[1] for h in hist[-20:]]); a = np.mean([h[2] for h in hist[-20:]])
            pl_txt = f" place loss {np.mean([h[3] for h in hist[-20:]]):.3f}" if places is not None else ""
            log(f"step {step} loss {l:.3f} in-batch top1 {a:.3f}{pl_txt} lr {opt.param_groups[0]['lr']:.2e} "
                f"elapsed {(time.time() - t0) / 60:.1f} min")
        if step % 100 == 0:
            save_checkpoint(step)
    save_checkpoint(step)
    (out_dir / "train_log.json").write_text(json.dumps({"seed": seed, "steps": step, "minutes": minutes,
                                                        "lr": lr, "dim": dim, "input_px": input_px, "pool": pool, "workers": workers,
                                                        "max_yaw_deg": max_yaw_deg, "bf16": bf16,
                                                        "memory": memory, "memory_from_step": memory_from_step,
                                                        "memory_weight": memory_weight,
                                                        "proxy_weight": proxy_weight, "proxy_lr_mult": proxy_lr_mult,
                                                        "resumed_from_step": step0, "history": hist}))
    return ckpt


def register(sub):
    p = sub.add_parser("train", help="train the image encoder (needs the [train] extra: torch)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/encoder", help="output directory (checkpoint, log)")
    p.add_argument("--minutes", type=float, default=45.0,
                   help="wall-clock budget; 0: no time limit, the schedule runs over --steps (reproducible)")
    p.add_argument("--steps", type=int, default=100000, help="maximum optimisation steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dim", type=int, default=128, help="descriptor dimension")
    p.add_argument("--input-px", type=int, default=INPUT_PX,
                   help="encoder input side in pixels (references rendered at it, queries area-resized to it)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the optimiser step")
    p.add_argument("--workers", type=int, default=1, help="processes rendering training pairs (0: inline)")
    p.add_argument("--max-yaw-deg", type=float, default=180.0,
                   help="query yaw drawn within +-this of the reference's north-up: 180 trains for any yaw "
                        "(queries averaged over 4 turns); 45 for a bundle that stores each reference at the "
                        "4 quarter turns, so some stored turn is always within 45 deg of the frame")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the convolutions (CPUs with AMX / AVX-512 BF16: ~2.6x faster step)")
    p.add_argument("--memory", type=int, default=0,
                   help="cross-batch memory of this many recent references as extra negatives (0: off)")
    p.add_argument("--memory-from-step", type=int, default=1000,
                   help="step from which the memory fills (the embeddings settle first)")
    p.add_argument("--memory-weight", type=float, default=0.5,
                   help="weight of the memory term (query positive vs remembered references) in the loss")
    p.add_argument("--pool", choices=POOLS, default="gem",
                   help="gem: one GeM over the feature map; rings: GeM over 3 rings about the boresight")
    p.add_argument("--proxies", type=float, default=0.0,
                   help="weight of a place-classification term: one learned proxy per grid view (0: off)")
    p.add_argument("--proxy-lr-mult", type=float, default=1.0, help="the proxies' learning rate / --lr")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("earthfix train: torch is not installed; pip install 'earthfix[train]'", file=sys.stderr)
        return 2
    ckpt = train(Path(args.out), args.minutes, args.steps, args.seed, args.lr, args.dim, args.threads,
                 args.resume, args.workers, args.max_yaw_deg, args.bf16,
                 args.memory, args.memory_from_step, args.memory_weight, args.input_px, args.pool,
                 args.proxies, args.proxy_lr_mult, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(ckpt)
    return 0
