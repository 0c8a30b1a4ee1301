"""Train the learned local descriptor (``earthfix.onboard.localdesc``) and export it to ONNX.

    earthfix train-localdesc --out runs/localdesc [--frames 2600 --val-frames 120 --seed 91 --steps 10000]
        [--workers 2 --threads 1] [--models models] [--widths 24 48]

Pairs come from the simulator (torch only for the training itself, the ``train`` extra):
1. a frame drawn like the eval's (``framesets.make_frameset``: 256 px at 80 deg or 512 px at 60 deg, the
   default or season-shifted basemap, cloud cover 0-0.8, sometimes a thin veil or cumulus, the simulator's
   sensor effects), and the keypoint store's nadir map tile around its boresight (6 km/px, or 4 km/px as
   the fine store for the 512 px camera), rendered from the default basemap;
2. SIFT keypoints of the tile exactly as ``build_keystore`` finds them; those whose ground is in the frame,
   on land and not under cloud there (the flight's cloud mask) are kept, up to ``per_frame``;
3. the tile patch at each keypoint (``localdesc.patch_grid``), and the frame patch covering the same
   ground in the frame's two flight looks (plain, and cloud-filled: ``verify.cloud_fill_config``),
   through the true camera pose, with the keypoint turned, scaled and moved a little (SIFT's own
   orientation, scale and position noise on a frame: 10 deg, 10 %, 4 % of the window, 1 sigma).

Training: the network of :class:`LocalNet` on the tile patch against one of the two looks (chosen at
random), HardNet's loss (Mishchuk et al. 2017: triplet margin 1 against the hardest negative of the batch
in either direction), Adam with a cosine schedule over ``steps`` (or ``minutes`` of wall time), the frame side jittered in gamma and
noise, both sides turned by the same multiple of 90 deg. The validation figure is top-1 among 4,000
held-out pairs (frames of another seed), and the same for RootSIFT on the same patches.

Export: ``localdesc.onnx`` (FP32; input N x 1 x 32 x 32 grey 0..255, output N x 128 unit vectors) and
``localdesc.json`` (training record, SHA-256) into ``--models``.

    earthfix quantize-localdesc [--models models] [--frames 48 --seed 94] [--val-frames 120]

Static INT8 (QDQ, onnxruntime's ``quantize_static``, the encoder's recipe) of ``localdesc.onnx`` into
``localdesc_int8.onnx``, calibrated on the tile, plain and filled patches of frames of a seed neither
training (91) nor validation (92) uses; the INT8 validation top-1 goes into ``localdesc.json`` beside the
FP32 one. Bundles are built with ``localdesc_int8.onnx`` when the package ships it (``build_keystore.
shipped_local_descriptor``): both stores and the flight side then describe with the same INT8 network.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

POS_JITTER = (10.0, 0.10, 0.04)     # frame-side orientation (deg), log-scale and position (window share) 1-sigma
WIDTHS = (24, 48)                   # channels of the network's first two convolutions (the shipped network)


# ---- pairs -------------------------------------------------------------------------------------------

def frame_pairs(seed: int, i: int, per_frame: int = 200, cloud_edge_max: float = 0.0,
                frame_maps: tuple = (), frame_map_share: float = 0.0, snow_pairs: bool = False,
                window: float | None = None):
    """The patch pairs of frame ``i`` of ``seed``: dict of uint8 arrays ``tile``, ``plain``, ``filled``
    (K x 32 x 32), or None when the frame is not eligible or holds fewer than 5 usable keypoints.
    ``cloud_edge_max`` > 0: half the frames get clouds with translucent margins (``EffectsConfig.cloud_edge``
    drawn in 0.8..max from a stream of their own, so the frames are otherwise those of the shipped recipe).
    ``frame_maps`` (global equirectangular images, e.g. other months of the Blue Marble without its relief
    shading) and ``frame_map_share`` > 0: that share of the frames is rendered from one of them, drawn from a
    stream of its own (the map tile stays the default basemap's, as the bundle's).
    ``snow_pairs``: on such a frame the keypoints are kept where the same frame rendered from the default
    basemap (the same pose, clouds and effects) has no cloud-like pixel, rather than where the frame itself has
    none: snow, which the flight's cloud mask takes for cloud, is ground to the plain look, so its pairs are
    kept; the filled look's patch of a keypoint under the frame's own mask (filled over) is its plain patch.
    ``window``: the patch side per keypoint size (``localdesc.WINDOW_PER_SIZE`` when None)."""
    import cv2
    from ..onboard import geodesy
    from ..onboard.camera import Camera
    from ..onboard.features import cloud_mask, extract_features, fill_clouds, preprocess
    from ..onboard.localdesc import WINDOW_PER_SIZE, patch_grid, sample_patches
    from ..onboard.verify import VerifyConfig, cloud_fill_config
    from ..sim import render as render_mod
    from ..sim.effects import CLOUD_EDGE
    from .build_keystore import BuildConfig, _bilinear, render_tile, store_feature_config
    from .evaluate import is_eligible
    from .framesets import FrameSpec, make_frameset
    cv2.setNumThreads(1)
    window = WINDOW_PER_SIZE if window is None else float(window)
    rng = np.random.default_rng([seed, i])
    wide = rng.uniform() < 0.7
    cam = Camera.from_fov(256, 256, 80.0) if wide else Camera.from_fov(512, 512, 60.0)
    basemap = _basemap("season" if rng.uniform() < 0.4 else "default")
    other_map = False
    if frame_maps and frame_map_share > 0:
        mr = np.random.default_rng([seed, i, 0xBA5E])
        if mr.uniform() < frame_map_share:
            basemap = _basemap(str(frame_maps[int(mr.integers(len(frame_maps)))]))
            other_map = True
    spec = FrameSpec(cloud_cover=float(rng.uniform(0.0, 0.8)),
                     thin_cloud=float(rng.uniform(0.05, 0.35)) if rng.uniform() < 0.35 else 0.0,
                     cumulus=0.3 if rng.uniform() < 0.15 else 0.0)
    if cloud_edge_max > CLOUD_EDGE:
        er = np.random.default_rng([seed, i, 0xED6E])
        if er.uniform() < 0.5:
            spec.cloud_edge = float(er.uniform(CLOUD_EDGE, cloud_edge_max))
    img, truth = next(iter(make_frameset(1, seed * 100_000 + i, cam, basemap, spec)))
    if not is_eligible(truth):
        return None
    pos = np.asarray(truth["ecef_km"], dtype=np.float64)
    rot = geodesy.matrix_from_quat(truth["q_cam2ecef_wxyz"])
    gsd = 6.0 if wide or rng.uniform() < 0.3 else 4.0
    tview = render_tile(_basemap("default"), BuildConfig(gsd_km=gsd), truth["bore_lat"], truth["bore_lon"])
    sfc = store_feature_config()
    f = extract_features(tview.image, sfc, valid=tview.hit)
    if len(f) < 5:
        return None
    tx, ty = f.xy[:, 0].astype(np.float64), f.xy[:, 1].astype(np.float64)
    land = _bilinear(tview.land, tx, ty)
    pts = np.where(tview.hit[..., None], tview.points, 0.0)
    u, v = render_mod.project_ground(cam, pos, rot, _bilinear(pts, tx, ty))
    keep = np.isfinite(u) & (u > 6) & (v > 6) & (u < cam.width - 7) & (v < cam.height - 7) & (land > 0.5)
    vcfg = VerifyConfig()
    mask = cloud_mask(img, vcfg.feature, 1.0, dilate=False)
    keep_mask = mask
    if snow_pairs and other_map:
        ref, _ = next(iter(make_frameset(1, seed * 100_000 + i, cam, _basemap("default"), spec)))
        keep_mask = cloud_mask(ref, vcfg.feature, 1.0, dilate=False)
    ui = np.clip(np.round(np.nan_to_num(u)).astype(int), 0, cam.width - 1)
    vi = np.clip(np.round(np.nan_to_num(v)).astype(int), 0, cam.height - 1)
    if keep_mask is not None:
        keep &= ~keep_mask[vi, ui]
    idx = np.flatnonzero(keep)
    if len(idx) < 5:
        return None
    idx = rng.permutation(idx)[:per_frame]
    k = len(idx)
    grey_tile = preprocess(tview.image, sfc)[0]
    xy, size, ang = f.xy[idx].astype(np.float64), f.size[idx].astype(np.float64), f.angle[idx].astype(np.float64)
    out = {"tile": sample_patches(grey_tile, *patch_grid(xy, size, ang, window))}
    d_ang, d_scale, d_pos = POS_JITTER
    jxy = xy + rng.normal(0.0, d_pos, (k, 2)) * (window * size)[:, None]
    qx, qy = patch_grid(jxy, size * np.exp(rng.normal(0.0, d_scale, k)), ang + rng.normal(0.0, d_ang, k), window)
    fu, fv = render_mod.project_ground(cam, pos, rot, _bilinear(pts, qx.ravel(), qy.ravel()))
    fu = np.nan_to_num(fu, nan=-100.0).reshape(qx.shape)
    fv = np.nan_to_num(fv, nan=-100.0).reshape(qx.shape)
    fill_cfg = cloud_fill_config(vcfg, cam, gsd).feature
    for name, image, fcfg in (("plain", img, vcfg.feature), ("filled", fill_clouds(img, fill_cfg)[0], fill_cfg)):
        g, sc, _ = preprocess(image, fcfg)
        out[name] = sample_patches(g, (fu + 0.5) * sc - 0.5, (fv + 0.5) * sc - 0.5)
    if mask is not None and keep_mask is not mask:
        filled_over = mask[vi[idx], ui[idx]]
        out["filled"][filled_over] = out["plain"][filled_over]
    return out


_BASEMAPS: dict = {}


def _basemap(kind: str):
    if kind not in _BASEMAPS:
        from ..sim.basemap import Basemap
        from .framesets import shifted_basemap
        if kind == "default":
            _BASEMAPS[kind] = Basemap.default()
        elif kind in ("season", "winter"):
            _BASEMAPS[kind] = shifted_basemap(kind)
        else:                                   # a path: a global equirectangular image
            _BASEMAPS[kind] = Basemap.load(kind)
    return _BASEMAPS[kind]


def _pairs_of(args) -> list:
    seed, frames, per_frame, cloud_edge_max, frame_maps, share, snow_pairs, window = args
    return [frame_pairs(seed, i, per_frame, cloud_edge_max, frame_maps, share, snow_pairs, window) for i in frames]


def make_pairs(n_frames: int, seed: int, workers: int = 2, per_frame: int = 200, progress: bool = True,
               cloud_edge_max: float = 0.0, frame_maps: tuple = (), frame_map_share: float = 0.0,
               snow_pairs: bool = False, window: float | None = None) -> dict:
    """Pairs of ``n_frames`` frames of ``seed`` (deterministic whatever ``workers``): dict of uint8 arrays."""
    from multiprocessing import get_context
    chunks = [(seed, list(range(s, min(s + 25, n_frames))), per_frame, cloud_edge_max, tuple(frame_maps),
               frame_map_share, snow_pairs, window)
              for s in range(0, n_frames, 25)]
    parts = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n_frames, desc=f"pairs (seed {seed})", unit="frame")
    with get_context("spawn").Pool(max(1, workers)) as pool:
        for res in pool.imap(_pairs_of, chunks):     # in order: the result does not depend on workers
            parts.extend(r for r in res if r is not None)
            if bar is not None:
                bar.update(len(res))
    if bar is not None:
        bar.close()
    return {k: np.concatenate([p[k] for p in parts]) for k in ("tile", "plain", "filled")}


def validation_pairs(n_frames: int, seed: int, workers: int = 2, per_frame: int = 200, n_pairs: int = 4000,
                     frame_maps: tuple = (), snow_pairs: bool = False, window: float | None = None) -> dict:
    """The validation figure's pairs: ``n_pairs`` drawn (seeded) from the pairs of ``n_frames`` frames of ``seed``
    (every frame rendered from one of ``frame_maps`` when given)."""
    val = make_pairs(n_frames, seed, workers, per_frame, frame_maps=frame_maps,
                     frame_map_share=1.0 if frame_maps else 0.0, snow_pairs=snow_pairs, window=window)
    vi = np.random.default_rng(1).permutation(len(val["tile"]))[:n_pairs]
    return {k: np.ascontiguousarray(v[vi]) for k, v in val.items()}


# ---- network -----------------------------------------------------------------------------------------

def build_net(dim: int = 128, c1: int = WIDTHS[0], c2: int = WIDTHS[1]):
    """LocalNet: 32 x 32 grey (0..255) -> 2 x 2 mean -> per-patch standardisation -> conv 4x4/2 (c1) ->
    conv 3x3/2 (c2) -> conv 4x4 (dim) -> unit vector. ~0.29 MMAC a patch at the defaults."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class LocalNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool2d(2)
            self.f = nn.Sequential(
                nn.Conv2d(1, c1, 4, 2, 1, bias=False), nn.BatchNorm2d(c1, affine=False), nn.ReLU(),
                nn.Conv2d(c1, c2, 3, 2, 1, bias=False), nn.BatchNorm2d(c2, affine=False), nn.ReLU(),
                nn.Dropout(0.1),
                nn.Conv2d(c2, dim, 4, 1, 0, bias=False), nn.BatchNorm2d(dim, affine=False))

        def forward(self, x):
            x = self.pool(x)
            m = x.mean((2, 3), keepdim=True)
            s = torch.sqrt(((x - m) ** 2).mean((2, 3), keepdim=True)) + 1.0   # +1 DN: flat patches stay finite
            return F.normalize(self.f((x - m) / s).flatten(1), dim=1)

    return LocalNet()


def hardnet_loss(a, b, margin: float = 1.0):
    """Triplet margin loss against the hardest in-batch negative in either direction; also batch top-1."""
    import torch
    import torch.nn.functional as F
    d = torch.cdist(a, b)
    pos = d.diag()
    off = d + torch.eye(len(a)) * 10.0
    neg = torch.minimum(off.min(1).values, off.min(0).values)
    return F.relu(margin + pos - neg).mean(), (d.argmin(1) == torch.arange(len(a))).float().mean()


def top1(net, tile: np.ndarray, frame: np.ndarray) -> float:
    """Share of frame patches whose nearest tile descriptor (among all given) is their own."""
    import torch
    net.eval()
    with torch.no_grad():
        a = net(torch.from_numpy(tile).float()[:, None])
        b = net(torch.from_numpy(frame).float()[:, None])
    return float((torch.cdist(b, a).argmin(1) == torch.arange(len(a))).float().mean())


def rootsift_top1(tile: np.ndarray, frame: np.ndarray, window: float | None = None) -> float:
    """The same figure for RootSIFT computed on the patches: one keypoint at the centre, as large as the
    patches' keypoint (patches sampled at ``window`` x its size), so SIFT describes its own window (6 x)."""
    import cv2
    from ..onboard.features import root_sift
    from ..onboard.localdesc import PATCH_PX, WINDOW_PER_SIZE
    sift = cv2.SIFT_create()
    c = (PATCH_PX - 1) / 2.0

    def desc(ps):
        kp = [cv2.KeyPoint(c, c, PATCH_PX / (window or WINDOW_PER_SIZE), 0.0)]
        return root_sift(np.concatenate([sift.compute(np.ascontiguousarray(p), kp)[1] for p in ps]))
    return pair_top1(desc(tile), desc(frame))


def pair_top1(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows of ``b`` whose nearest row of ``a`` (L2) is the one of the same index."""
    d = (b * b).sum(1)[:, None] - 2 * b @ a.T + (a * a).sum(1)[None]
    return float((d.argmin(1) == np.arange(len(a))).mean())


def photometric_shift(x, rng, strength: float = 1.0):
    """Another sensor's or product's rendering of the same ground, on frame patches (B x 1 x H x W, 0..255):
    on a random half each, a monotone tone curve (4 linear pieces, slopes drawn around 1), a brightness ramp
    across the patch (up to +-0.3 x ``strength`` gain at its edges) and a Gaussian blur (sigma 0.3-1.2 px of
    the 32 px patch: a softer optic). Monotone: what is brighter stays brighter, so structure is kept; the
    per-patch standardisation of ``LocalNet`` already removes gain and offset. ``strength`` 0: unchanged."""
    import torch
    import torch.nn.functional as F
    if strength <= 0.0:
        return x
    b, _, h, w = x.shape
    u = (x / 255.0).clamp(0, 1)
    # tone curve: knots at 0, .25, .5, .75, 1; increments ~ Dirichlet (alpha falls with strength)
    alpha = 2.0 / max(strength, 1e-3)
    inc = rng.dirichlet(np.full(4, alpha * 4.0), b)
    knots = torch.from_numpy(np.concatenate([np.zeros((b, 1)), np.cumsum(inc, 1)], 1)).float()
    tone = torch.from_numpy(rng.uniform(size=b) < 0.5)
    seg = (u * 4.0).clamp(0, 3.999)
    i = seg.floor().long()
    kv = knots.view(b, 1, 1, 1, 5).expand(b, 1, h, w, 5)
    y0 = torch.gather(kv, 4, i.unsqueeze(-1)).squeeze(-1)
    y1 = torch.gather(kv, 4, (i + 1).unsqueeze(-1)).squeeze(-1)
    curved = y0 + (seg - i) * (y1 - y0)
    u = torch.where(tone.view(b, 1, 1, 1), curved, u)
    # brightness ramp
    th = rng.uniform(0, 2 * np.pi, b)
    amp = rng.uniform(-0.3, 0.3, b) * strength * (rng.uniform(size=b) < 0.5)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    ramp = (torch.from_numpy(np.cos(th)).float().view(b, 1, 1, 1) * xx
            + torch.from_numpy(np.sin(th)).float().view(b, 1, 1, 1) * yy)
    u = u * (1.0 + torch.from_numpy(amp).float().view(b, 1, 1, 1) * ramp)
    # blur: one sigma a batch, on a random half
    sig = float(rng.uniform(0.3, 1.2))
    t = torch.arange(-3, 4, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (t / sig) ** 2)
    k1 = k1 / k1.sum()
    blurred = F.conv2d(F.pad(u, (3, 3, 3, 3), mode="replicate"), (k1[:, None] * k1[None, :])[None, None])
    sel = torch.from_numpy(rng.uniform(size=b) < 0.5 * min(1.0, strength)).view(b, 1, 1, 1)
    u = torch.where(sel, blurred, u)
    return 255.0 * u.clamp(0, 1)


def train(pairs: dict, val: dict, minutes: float, seed: int = 0, batch: int = 1024, lr: float = 2e-3,
          threads: int = 1, log=print, steps: int | None = None, photometric: float = 0.0,
          widths: tuple = WIDTHS, invert_share: float = 0.0):
    """Train LocalNet for ``steps`` (the cosine schedule over steps: reproducible), or, without, for
    ``minutes`` of wall time (the schedule over time); returns (net, record). ``photometric`` > 0: frame
    patches also shifted by ``photometric_shift`` of that strength (0: the shipped recipe). ``widths``: the
    channels of the first two convolutions (``build_net``'s c1, c2). ``invert_share`` > 0: that share of the
    frame patches has its grey inverted (255 - x): a season or another product can reverse a boundary's
    contrast (dry bright ground greening dark), which the tile side never shows (0: the shipped recipe)."""
    import torch
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    net = build_net(c1=int(widths[0]), c2=int(widths[1]))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-5)
    n = len(pairs["tile"])
    t0, step, hist = time.time(), 0, []
    total = minutes * 60.0
    while (step < steps) if steps else (time.time() - t0 < total):
        frac = step / steps if steps else (time.time() - t0) / total
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))
        i = np.sort(rng.choice(n, batch, replace=False))
        plain = rng.uniform(size=batch) < 0.5
        frame = np.where(plain[:, None, None], pairs["plain"][i], pairs["filled"][i])
        xs = torch.from_numpy(pairs["tile"][i]).float()[:, None]
        xf = torch.from_numpy(frame).float()[:, None]
        k = int(rng.integers(0, 4))
        if k:
            xs, xf = torch.rot90(xs, k, (2, 3)), torch.rot90(xf, k, (2, 3))
        gamma = torch.from_numpy(np.exp(rng.normal(0.0, 0.2, (batch, 1, 1, 1)))).float()
        xf = 255.0 * (xf / 255.0).clamp(0, 1) ** gamma
        if photometric > 0.0:
            xf = photometric_shift(xf, rng, photometric)
        if invert_share > 0.0:
            flip = torch.from_numpy(rng.uniform(size=batch) < invert_share).view(batch, 1, 1, 1)
            xf = torch.where(flip, 255.0 - xf, xf)
        xf = xf + torch.randn_like(xf) * float(rng.uniform(0, 4))
        net.train()
        loss, acc = hardnet_loss(net(xs), net(xf))
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((loss.item(), acc.item()))
        step += 1
        if step % 500 == 0:
            h = np.array(hist[-500:])
            log(f"train-localdesc: step {step} ({time.time() - t0:.0f} s) loss {h[:, 0].mean():.3f} "
                f"batch top-1 {h[:, 1].mean():.3f} val top-1 plain {top1(net, val['tile'], val['plain']):.3f} "
                f"filled {top1(net, val['tile'], val['filled']):.3f}")
    net.eval()
    h = np.array(hist[-500:]) if hist else np.zeros((1, 2))
    rec = {"widths": [int(w) for w in widths], "steps": step, "minutes": round((time.time() - t0) / 60.0, 1),
           "batch": batch, "lr": lr,
           "last_500_loss": round(float(h[:, 0].mean()), 4), "last_500_batch_top1": round(float(h[:, 1].mean()), 4),
           "val_top1": {look: round(top1(net, val["tile"], val[look]), 4) for look in ("plain", "filled")}}
    return net, rec


def export(net, path: Path, window: float | None = None) -> str:
    """ONNX FP32 (opset 17, dynamic batch), the patch window it was trained at in its metadata when it is not
    ``WINDOW_PER_SIZE``; returns its SHA-256."""
    import torch
    from ..onboard.localdesc import PATCH_PX
    net.eval()
    torch.onnx.export(net, torch.zeros(2, 1, PATCH_PX, PATCH_PX), str(path), input_names=["patches"],
                      output_names=["desc"], dynamic_axes={"patches": {0: "n"}, "desc": {0: "n"}},
                      opset_version=17, dynamo=False)
    set_window(path, window)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_window(path: Path, window: float | None) -> None:
    """Record ``window`` (patch side per keypoint size) in the ONNX metadata of ``path``, where every user of
    the network reads it (``localdesc.network_window``), replacing a window recorded before and keeping any other
    metadata; None or ``WINDOW_PER_SIZE``: nothing written, so the network is byte for byte what a network of the
    default window always was."""
    import onnx
    from ..onboard.localdesc import WINDOW_KEY, WINDOW_PER_SIZE
    if window is None or float(window) == WINDOW_PER_SIZE:
        return
    model = onnx.load(str(path))
    kept = [(e.key, e.value) for e in model.metadata_props if e.key != WINDOW_KEY]
    del model.metadata_props[:]
    for key, value in kept + [(WINDOW_KEY, repr(float(window)))]:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def run(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("earthfix train-localdesc: torch is not installed (pip install -e '.[train]')", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda s: print(s, file=sys.stderr, flush=True))
    t0 = time.time()
    pairs = make_pairs(args.frames, args.seed, args.workers, args.per_frame, cloud_edge_max=args.cloud_edge,
                       frame_maps=tuple(args.frame_basemaps or ()), frame_map_share=args.frame_basemap_share,
                       snow_pairs=args.snow_pairs, window=args.window)
    val = validation_pairs(args.val_frames, args.seed + 1, args.workers, args.per_frame, window=args.window)
    val_maps = validation_pairs(args.val_frames, args.seed + 1, args.workers, args.per_frame,
                                frame_maps=tuple(args.val_basemaps), snow_pairs=args.snow_pairs, window=args.window
                                ) if args.val_basemaps else None
    log(f"train-localdesc: {len(pairs['tile'])} training pairs, {len(val['tile'])} validation pairs "
        f"({time.time() - t0:.0f} s)")
    net, rec = train(pairs, val, args.minutes, seed=args.seed, threads=args.threads, log=log, steps=args.steps,
                     photometric=args.photometric, widths=tuple(args.widths), invert_share=args.invert_share)
    rec["photometric"] = args.photometric
    rec["cloud_edge"] = args.cloud_edge
    rec["invert_share"] = args.invert_share
    rec["frame_basemaps"] = [Path(m).name for m in args.frame_basemaps or ()]
    rec["frame_basemap_share"] = args.frame_basemap_share
    rec["snow_pairs"] = args.snow_pairs
    from ..onboard.localdesc import WINDOW_PER_SIZE
    rec["window_per_size"] = float(args.window or WINDOW_PER_SIZE)
    if val_maps is not None:
        rec["val_basemaps"] = [Path(m).name for m in args.val_basemaps]
        rec["val_top1_other_maps"] = {look: round(top1(net, val_maps["tile"], val_maps[look]), 4)
                                      for look in ("plain", "filled")}
        rec["val_top1_other_maps_rootsift"] = {
            look: round(rootsift_top1(val_maps["tile"], val_maps[look], args.window), 4) for look in ("plain", "filled")}
    rec["val_top1_rootsift"] = {look: round(rootsift_top1(val["tile"], val[look], args.window), 4)
                                for look in ("plain", "filled")}
    models = Path(args.models) if args.models else out
    models.mkdir(parents=True, exist_ok=True)
    sha = export(net, models / "localdesc.onnx", args.window)
    rec.update(file="localdesc.onnx", sha256=sha, bytes=(models / "localdesc.onnx").stat().st_size,
               pairs=int(len(pairs["tile"])), frames=args.frames, val_frames=args.val_frames, seed=args.seed,
               command="earthfix train-localdesc " + " ".join(sys.argv[2:]),
               input="N x 1 x 32 x 32 grey 0..255 (localdesc.patch_grid)", output="N x 128 unit vectors")
    (models / "localdesc.json").write_text(json.dumps(rec, indent=1) + "\n")
    log(f"train-localdesc: wrote {models / 'localdesc.onnx'} (sha256 {sha[:12]}...) in {(time.time() - t0) / 60:.1f} min; "
        f"val top-1 {rec['val_top1']} against RootSIFT {rec['val_top1_rootsift']}")
    return 0


INT8_FILE = "localdesc_int8.onnx"


def looks_top1(describer, val: dict) -> dict:
    """:func:`top1` of each frame look of ``val`` for a flight ``PatchDescriber`` (no torch), the tile
    patches described once."""
    tile = describer.describe_patches(val["tile"])
    return {k: round(pair_top1(tile, describer.describe_patches(val[k])), 4) for k in ("plain", "filled")}


def quantize(models: Path, frames: int = 48, seed: int = 94, val_frames: int = 120, workers: int = 2,
             max_calib: int = 6144, log=print) -> dict:
    """``models/localdesc.onnx`` -> ``models/localdesc_int8.onnx``; returns the record added to
    ``localdesc.json`` (``int8``: file, SHA-256, calibration, FP32 and INT8 validation top-1)."""
    from ..onboard.localdesc import PatchDescriber
    from .export_encoder import quantize_int8
    fp32 = models / "localdesc.onnx"
    if not fp32.is_file():
        raise FileNotFoundError(f"{fp32}: no FP32 local descriptor to quantize (earthfix train-localdesc)")
    d32 = PatchDescriber(fp32.read_bytes())
    window = d32.window_per_size                        # the INT8 copy samples as the network was trained
    cal = make_pairs(frames, seed, workers, window=window)
    x = np.concatenate([cal["tile"], cal["plain"], cal["filled"]])
    x = x[np.random.default_rng(seed).permutation(len(x))[:max_calib]].astype(np.float32)[:, None]
    out = models / INT8_FILE
    quantize_int8(fp32, out, x, input_name=d32.input_name, batch=256)
    set_window(out, window)
    val = validation_pairs(val_frames, 92, workers, window=window)   # train-localdesc's (seed 91 + 1)
    rec = {"file": INT8_FILE, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "bytes": out.stat().st_size,
           "calib_patches": int(len(x)), "calib_frames": frames, "calib_seed": seed,
           "val_top1_fp32": looks_top1(d32, val), "val_top1": looks_top1(PatchDescriber(out.read_bytes()), val),
           "command": "earthfix quantize-localdesc " + " ".join(sys.argv[2:])}
    meta = models / "localdesc.json"
    full = json.loads(meta.read_text()) if meta.is_file() else {}
    full["int8"] = rec
    meta.write_text(json.dumps(full, indent=1) + "\n")
    log(f"quantize-localdesc: wrote {out} (sha256 {rec['sha256'][:12]}...); val top-1 INT8 {rec['val_top1']} "
        f"against FP32 {rec['val_top1_fp32']}")
    return rec


def run_quantize(args) -> int:
    try:
        quantize(Path(args.models), args.frames, args.seed, args.val_frames, args.workers,
                 log=lambda s: print(s, file=sys.stderr, flush=True))
    except FileNotFoundError as exc:
        print(f"earthfix quantize-localdesc: {exc}", file=sys.stderr)
        return 2
    return 0


def register(sub) -> None:
    p = sub.add_parser("train-localdesc", help="train the learned local descriptor (torch, the train extra)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/localdesc", help="run directory")
    p.add_argument("--models", default=None, help="where localdesc.onnx / .json go (default: --out)")
    p.add_argument("--frames", type=int, default=2600, help="training frames drawn (eligible ones give pairs)")
    p.add_argument("--val-frames", type=int, default=120, help="validation frames (seed + 1)")
    p.add_argument("--per-frame", type=int, default=200, help="pairs kept per frame at most")
    p.add_argument("--seed", type=int, default=91)
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (reproducible; the shipped model: 10000), instead of --minutes")
    p.add_argument("--minutes", type=float, default=25.0, help="training wall time when --steps is not given")
    p.add_argument("--workers", type=int, default=2, help="processes rendering pairs")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--photometric", type=float, default=0.0,
                   help="strength of the frame patches' tone-curve / ramp / blur shifts (photometric_shift; "
                        "0: the shipped recipe)")
    p.add_argument("--cloud-edge", type=float, default=0.0, metavar="MAX",
                   help="half the training frames under clouds with translucent margins, cloud_edge drawn in "
                        "0.8..MAX (0: the shipped recipe; validation frames stay the shipped recipe's)")
    p.add_argument("--frame-basemaps", nargs="+", default=None, metavar="WORLD.jpg",
                   help="global equirectangular images some training frames are rendered from (other months or "
                        "products: docs/VERIFICATION.md, 'Other months of the Blue Marble')")
    p.add_argument("--frame-basemap-share", type=float, default=0.0, metavar="S",
                   help="share of the training frames rendered from --frame-basemaps (0: the shipped recipe)")
    p.add_argument("--val-basemaps", nargs="+", default=None, metavar="WORLD.jpg",
                   help="also report validation top-1 on frames rendered from these images (held out from training)")
    p.add_argument("--snow-pairs", action="store_true",
                   help="on frames of --frame-basemaps / --val-basemaps keep the keypoints under snow the cloud mask "
                        "takes for cloud (the mask of the same frame from the default basemap decides; default off)")
    p.add_argument("--invert-share", type=float, default=0.0, metavar="S",
                   help="share of the frame patches with their grey inverted in training (0: the shipped recipe)")
    p.add_argument("--window", type=float, default=None, metavar="W",
                   help="patch side per keypoint size (default: localdesc.WINDOW_PER_SIZE, SIFT's 6; the network "
                        "records any other in its ONNX metadata, which the stores and the flight read)")
    p.add_argument("--widths", type=int, nargs=2, default=list(WIDTHS), metavar=("C1", "C2"),
                   help="channels of the network's first two convolutions (default: the shipped network's, %(default)s)")
    p.set_defaults(func=run)
    q = sub.add_parser("quantize-localdesc", help="quantize the learned local descriptor to static INT8 (QDQ)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--models", default="models", help="where localdesc.onnx is and localdesc_int8.onnx goes")
    q.add_argument("--frames", type=int, default=48, help="calibration frames")
    q.add_argument("--seed", type=int, default=94, help="calibration seed (training uses 91, validation 92)")
    q.add_argument("--val-frames", type=int, default=120, help="validation frames of seed 92 (as training's)")
    q.add_argument("--workers", type=int, default=2, help="processes rendering pairs")
    q.set_defaults(func=run_quantize)
