"""Which errors of the cloud mask cost the cloud-filled look? (not a pytest test; run as a script)

    PYTHONPATH=. python tests/bench/bench_cloud_mask.py [--n 120] [--seed 4242] [--set cloudy ...] [--union]
        [--exact] [--cloud-edge 2.0]

For the eligible frames of eval-like sets (``bench_ceiling.SETS``, ``make_frameset``, never the eval's seed)
the verifier gets the true place (as in ``bench_ceiling.py``) and the frame's cloud-filled look, filled by
four masks: the flight mask (``features.cloud_mask``), the simulator's own cloud opacity > 0.05 (dilated
as the flight mask is), the flight mask without the pixels the simulator left clear (no bright ground taken
for cloud) and the flight mask with every pixel the simulator clouded (no rim missed). The gap between the
columns says where a better cloud detector would gain. Also prints, over the flight mask's pixels, the
quartiles of what a detector could use, for clouded pixels (opacity > 0.3) and for bright ground
(opacity < 0.05). ``--union``: the filled look again with the frame's own keypoints centred on the
cloud-like pixels added (computed on the frame as it is): snow and ice keep their texture. ``--exact``:
three masks more, the simulator's opacity > 0.02 *not* dilated, the same dilated by one pixel, and a
perfect unmixing of thin cloud: the pixels of opacity <= 0.5 replaced by the same frame rendered without
clouds (the sampler returns no cloud, every random draw is unchanged), opacity > 0.5 filled, undilated;
and the flight mask's pixel precision / recall against opacity > 0.02. The opacity is the thick cloud
field's (``sample_with_thickness``): the sets here have no thin veil or cumulus. ``--cloud-edge``: the clouds
with wider translucent margins (``EffectsConfig.cloud_edge``, as the eval's ``stress_translucent`` set has them).

The simulator's opacity is read by wrapping ``CloudField.sample_with_thickness`` for the run (the effects
take their random cloud offset inside ``effects.apply``): this script only, never the flight path.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench_ceiling import SETS, true_place_fixed  # noqa: E402
from earthfix.onboard import features as F  # noqa: E402
from earthfix.onboard.bundle import Bundle  # noqa: E402
from earthfix.onboard.camera import Camera  # noqa: E402
from earthfix.onboard.verify import Verifier, VerifyConfig, cloud_fill_config, wants_fine_store  # noqa: E402
from earthfix.sim import effects as fx  # noqa: E402
from earthfix.sim.basemap import Basemap  # noqa: E402
from earthfix.tools.build_index import default_bundle_dir  # noqa: E402
from earthfix.tools.evaluate import is_eligible  # noqa: E402
from earthfix.tools.framesets import FrameSpec, make_frameset, shifted_basemap  # noqa: E402

MASKS = ("flight", "simulator", "flight without bright ground", "flight with every rim")
EXACT = ("simulator > 0.02, undilated", "simulator > 0.02, dilated 1 px", "perfect unmix")
CLEAR_MAX, CLOUD_MIN = 0.05, 0.3      # simulator opacity: clear below, clouded above
EXACT_MIN, THIN_MAX = 0.02, 0.5       # --exact: any cloud above; thin cloud (unmixed) up to


class _Opacity:
    """The simulator's cloud opacity of the frame being rendered (the array ``effects.apply`` finishes in
    place), and the mask rule ``fill_clouds`` sees while it is set."""

    def __init__(self):
        self.alpha = None
        self.rule = "flight"
        self.zero = False          # the sampler returns no cloud (a cloud-free twin of the frame)
        self._sample, self._mask = fx.CloudField.sample_with_thickness, F.cloud_mask

    def __enter__(self):
        me = self

        def sample(field, *a, **k):
            out = me._sample(field, *a, **k)
            me.alpha = out[0]
            return (np.zeros_like(out[0]), out[1]) if me.zero else out

        def mask(small, cfg=F.FeatureConfig(), work_per_px=0.5, dilate=True):
            m = me._mask(small, cfg, work_per_px, dilate)
            if me.rule == "flight" or me.alpha is None:
                return m
            h, w = small.shape[:2]
            a = cv2.resize(me.alpha, (w, h), interpolation=cv2.INTER_AREA)
            if me.rule in EXACT:
                if me.rule == EXACT[1]:
                    return cv2.dilate((a > EXACT_MIN).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                return a > (EXACT_MIN if me.rule == EXACT[0] else THIN_MAX)
            sim = (a > CLEAR_MAX).astype(np.uint8)
            if dilate:
                k = 2 * max(1, int(round(0.5 / work_per_px))) + 1
                sim = cv2.dilate(sim, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
            sim = sim > 0
            m = np.zeros((h, w), bool) if m is None else m
            return {MASKS[1]: sim, MASKS[2]: m & sim, MASKS[3]: m | sim}[me.rule]

        fx.CloudField.sample_with_thickness, F.cloud_mask = sample, mask
        return self

    def __exit__(self, *exc):
        fx.CloudField.sample_with_thickness, F.cloud_mask = self._sample, self._mask


def _pixel_cues(img: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of the (undilated) flight mask: darkest band DN, 5x5 std of it, saturation; split into
    clouded and clear pixels."""
    m = F.cloud_mask(img, F.FeatureConfig(), 1.0, dilate=False)
    if m is None:
        return np.empty((0, 3)), np.empty((0, 3))
    b, g, r = cv2.split(img)
    lo = cv2.min(cv2.min(b, g), r).astype(np.float32)
    hi = cv2.max(cv2.max(b, g), r).astype(np.float32)
    mu = cv2.blur(lo, (5, 5))
    sd = np.sqrt(np.maximum(cv2.blur(lo * lo, (5, 5)) - mu * mu, 0.0))
    cues = np.stack([lo, sd, (hi - lo) / np.maximum(hi, 1.0)], -1)
    return cues[m & (alpha > CLOUD_MIN)], cues[m & (alpha < CLEAR_MAX)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120, help="frames drawn per set (eligible ones are used)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--set", dest="sets", action="append", choices=list(SETS), help="default: cloudy, land256")
    ap.add_argument("--union", action="store_true", help="also the filled look plus the frame's cloud-pixel keypoints")
    ap.add_argument("--exact", action="store_true", help="also the exact simulator mask (undilated, dilated) and a perfect unmix")
    ap.add_argument("--cloud-edge", type=float, default=0.0,
                    help="the clouds' translucent margin (EffectsConfig.cloud_edge; 0: the simulator's)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    bundle = Bundle.load(default_bundle_dir())
    with _Opacity() as op:
        for name in args.sets or ["cloudy", "land256"]:
            width, fov, shift, cover = SETS[name]
            cam = Camera.from_fov(width, width, fov)
            bm = shifted_basemap(shift) if shift else Basemap.default()
            base = VerifyConfig()
            fine = bundle.keystore_fine is not None and wants_fine_store(base, cam, bundle.keystore.gsd_km)
            ver = Verifier(bundle.keystore_fine if fine else bundle.keystore, base)
            fver = Verifier(ver.store, cloud_fill_config(base, cam, bundle.keystore.gsd_km))
            rules = MASKS + (EXACT if args.exact else ())
            ok = {k: [] for k in rules + ("union",)}
            cloud_px, clear_px = [], []
            twins = iter(())
            px = np.zeros(3, np.int64)      # flight mask against opacity > 0.02: both, mask, opacity
            spec = FrameSpec(cloud_cover=cover, cloud_edge=args.cloud_edge)
            if args.exact:
                op.zero = True
                twins = iter([im for im, _ in make_frameset(args.n, args.seed, cam, bm, spec)])
                op.zero = False
            op.alpha = None
            for img, truth in make_frameset(args.n, args.seed, cam, bm, spec):
                twin = next(twins, None)
                alpha, op.alpha = op.alpha, None
                if not is_eligible(truth) or alpha is None:
                    continue
                op.alpha = alpha
                for rule in rules:
                    op.rule = rule
                    src = img
                    if rule == EXACT[2]:
                        thin = (alpha > 0.0) & (alpha <= THIN_MAX)
                        src = img.copy()
                        src[thin] = twin[thin]
                    filled, mask = F.fill_clouds(src, fver.cfg.feature)
                    if rule == "flight" and args.exact:
                        m = np.zeros(alpha.shape, bool) if mask is None else mask     # at the fill's scale
                        t = cv2.resize(alpha, (m.shape[1], m.shape[0]), interpolation=cv2.INTER_AREA) > EXACT_MIN
                        px += [int((m & t).sum()), int(m.sum()), int(t.sum())]
                    feats = fver.extract(filled, drop=mask)
                    ok[rule].append(true_place_fixed(fver, feats, cam, truth))
                    if rule == "flight" and args.union:
                        if mask is not None and filled is not img:
                            own = fver.extract(img, drop=~mask)
                            feats = F.Features(*(np.concatenate([a, b]) for a, b in zip(feats[:5], own[:5])),
                                               feats.shape)
                            ok["union"].append(true_place_fixed(fver, feats, cam, truth))
                        else:
                            ok["union"].append(ok[rule][-1])
                op.rule, op.alpha = "flight", None
                cl, gr = _pixel_cues(img, alpha)
                cloud_px.append(cl)
                clear_px.append(gr)
            n = len(ok["flight"])
            print(f"{name}: {n} eligible; true place, cloud-filled look fixed with the mask: "
                  + ", ".join(f"{k} {sum(v)}" for k, v in ok.items() if v), flush=True)
            if args.exact:
                print(f"  flight mask against opacity > 0.02, pixels: precision {px[0] / max(px[1], 1):.3f}, "
                      f"recall {px[0] / max(px[2], 1):.3f}")
            cl, gr = np.concatenate(cloud_px), np.concatenate(clear_px)
            print(f"  flight-mask pixels: clouded {len(cl)}, clear (bright ground) {len(gr)}")
            for j, cue in enumerate(("darkest band DN", "5x5 std DN", "saturation")):
                q = (25, 50, 75)
                print(f"  {cue:16s} p25/50/75 clouded {np.round(np.percentile(cl[:, j], q), 3)}  "
                      f"bright ground {np.round(np.percentile(gr[:, j], q), 3)}")


if __name__ == "__main__":
    main()
