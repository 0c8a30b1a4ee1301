"""The flight path for one frame: preprocess -> INT8 encoder -> HNSW top-k -> verification -> Fix.

When no candidate of the encoder verifies with enough confidence and time remains, keypoint voting
(``vote.py``, over the bundle's ``keyindex.hnsw``; config ``vote``) proposes places from the same frame
features and those are verified too; the better verification is kept (``fix.evidence['source']``:
``'encoder'`` or ``'vote'``). ``fix.candidates`` stays the encoder's top-k either way.

    loc = Localizer.load(bundle_dir, config_path)          # once
    fix = loc.locate(frame, camera, attitude=None, time=None)

Everything the Localizer uses is verified before use: the encoder file against its SHA-256 and the
bundle's record of it, every bundle file against the manifest. Latency is measured per stage with
``time.perf_counter``; decoding is the caller's and is excluded. Thread counts come from the config
(1 by default, the setting of every latency figure).
"""
from __future__ import annotations

import time as _time
from pathlib import Path

import cv2
import numpy as np

from . import geodesy
from .bundle import Bundle
from .camera import Camera
from .config import load_config
from .confidence import ConfidenceModel
from .encoder import Encoder, sha256_bytes
from .fix import Candidate, Fix
from .frames import FrameError, check_size, normalise_frame
from .preprocess import preprocess

BLANK_STD = 2.0            # grey-level std below which a frame carries no information


def shipped_models_dir() -> Path:
    import earthfix.models as m
    return Path(list(m.__path__)[0])


class Localizer:
    def __init__(self, bundle: Bundle, encoder: Encoder, config: dict, confidence: ConfidenceModel):
        from .verify import Verifier, VerifyConfig
        self.bundle = bundle
        self.encoder = encoder
        self.cfg = config
        self.confidence = confidence
        vcfg = VerifyConfig(**{k: v for k, v in config.get("verify", {}).items()})
        self.verifier = Verifier(bundle.keystore, vcfg) if bundle.keystore is not None else None
        self.voter = None
        if config.get("vote", True) and self.verifier is not None and getattr(bundle, "keyindex", None) is not None:
            from .vote import KeypointVoter
            self.voter = KeypointVoter(bundle.keystore, bundle.keyindex)
        cv2.setNumThreads(int(config["threads"]))

    @classmethod
    def load(cls, bundle_dir, config_path=None, config: dict | None = None) -> "Localizer":
        cfg = load_config(config_path, config)
        enc_path = Path(cfg["encoder"]) if cfg["encoder"] else shipped_models_dir() / "encoder_int8.onnx"
        if not enc_path.is_file():
            raise FileNotFoundError(f"encoder not found: {enc_path}")
        enc_bytes = enc_path.read_bytes()
        # the bundle's record of its encoder is checked before onnxruntime parses a single byte
        bundle = Bundle.load(bundle_dir, encoder_sha256=sha256_bytes(enc_bytes), threads=cfg["threads"])
        encoder = Encoder(enc_bytes, threads=cfg["threads"], providers=cfg["providers"],
                          rotations=cfg["rotations"], name=str(enc_path))
        conf_path = cfg["confidence"].get("path") or shipped_models_dir() / "confidence.json"
        return cls(bundle, encoder, cfg, ConfidenceModel.load(conf_path))

    # ---- one frame -----------------------------------------------------------------------------
    SAME_PLACE_KM = 100.0      # two hypotheses closer than this are one place (not competing evidence)

    def _better(self, v_enc, conf_enc: float, v_vote):
        """The better of the encoder's and the vote's verifications: (verification, confidence, source).

        Each one's best inlier count is the other's competing evidence unless both found the same place
        (``second_inliers``/``inlier_margin`` enter the confidence): voting must not make a place look more
        unique than the two searches together showed it to be."""
        def merged(a, b):
            if not a.ok:
                return a
            same = (b.lat is not None and a.lat is not None
                    and float(geodesy.great_circle_km(a.lat, a.lon, b.lat, b.lon)) < self.SAME_PLACE_KM)
            if not same and b.inliers > a.second_inliers:
                a.second_inliers = int(b.inliers)
                a.evidence = dict(a.evidence, second_inliers=a.second_inliers,
                                  inlier_margin=int(a.inliers) - a.second_inliers)
            return a
        conf_vote = self.confidence(v_vote.evidence) if v_vote.ok else 0.0
        if (v_vote.ok, conf_vote, v_vote.inliers) > (v_enc.ok, conf_enc, v_enc.inliers):
            best, other, source = v_vote, v_enc, "vote"
        else:
            best, other, source = v_enc, v_vote, "encoder"
        best = merged(best, other)
        return best, (self.confidence(best.evidence) if best.ok else 0.0), source

    def candidates(self, desc: np.ndarray, k: int) -> list[Candidate]:
        idx, sim = self.bundle.search(desc, k)
        return [Candidate(float(self.bundle.lat[i]), float(self.bundle.lon[i]), float(s), int(i),
                          int(self.bundle.scale[i])) for i, s in zip(idx, sim)]

    def locate(self, frame, camera: Camera, attitude=None, time=None) -> Fix:
        """Localize one frame (uint8 BGR or grey, or any array ``frames.normalise_frame`` accepts)."""
        t0 = _time.perf_counter()
        stages = {}
        try:
            img = normalise_frame(frame)
            check_size(img, camera.width, camera.height)
        except FrameError as exc:
            return Fix.failed(str(exc))
        grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        t = _time.perf_counter()
        x = preprocess(img, self.encoder.input_px)
        stages["preprocess_ms"] = (_time.perf_counter() - t) * 1e3
        t = _time.perf_counter()
        desc = self.encoder.encode_input(x)
        stages["encode_ms"] = (_time.perf_counter() - t) * 1e3
        t = _time.perf_counter()
        cands = self.candidates(desc, self.cfg["top_k"])
        stages["search_ms"] = (_time.perf_counter() - t) * 1e3
        fix = Fix(candidates=cands)
        if float(grey.std()) < BLANK_STD:
            fix.reason = "blank frame"
        elif self.verifier is not None and self.cfg["verify_k"] > 0:
            deadline = t0 + self.cfg["deadline_ms"] / 1e3
            t = _time.perf_counter()
            feats = self.verifier.extract(img)
            stages["features_ms"] = (_time.perf_counter() - t) * 1e3
            t = _time.perf_counter()
            scales = self.bundle.scales_km
            rf = self.verifier.cfg.radius_factor
            vc = [(c.lat, c.lon, rf * scales[c.scale]) for c in cands[: self.cfg["verify_k"]]]
            # order of work, by measured yield per millisecond: the encoder's first places, then the
            # keypoint vote (~9 ms, finds the place 3-5x as often as the encoder's tail), then the tail
            first = self.cfg["verify_first"] if self.voter is not None else len(vc)
            v = self.verifier.verify(feats, camera, vc[:first], attitude=attitude, deadline=deadline)
            stages["verify_ms"] = (_time.perf_counter() - t) * 1e3
            conf = self.confidence(v.evidence) if v.ok else 0.0
            source = "encoder"
            n_vote = 0
            accepted = lambda: v.ok and conf >= self.cfg["min_confidence"]  # noqa: E731
            if self.voter is not None and not accepted() and _time.perf_counter() < deadline:
                # the encoder's places failed: the keypoints vote for places of their own (same features)
                t = _time.perf_counter()
                vcands = self.voter.candidates(feats, camera)
                stages["vote_ms"] = (_time.perf_counter() - t) * 1e3
                n_vote = len(vcands)
                if vcands:
                    t = _time.perf_counter()
                    v2 = self.verifier.verify(feats, camera, vcands, attitude=attitude, deadline=deadline)
                    stages["verify2_ms"] = (_time.perf_counter() - t) * 1e3
                    v, conf, source = self._better(v, conf, v2)
            if not accepted() and len(vc) > first and _time.perf_counter() < deadline:
                t = _time.perf_counter()
                v3 = self.verifier.verify(feats, camera, vc[first:], attitude=attitude, deadline=deadline)
                stages["verify3_ms"] = (_time.perf_counter() - t) * 1e3
                if source == "vote":
                    v, conf, source = self._better(v3, self.confidence(v3.evidence) if v3.ok else 0.0, v)
                else:
                    v_enc = v3 if (v3.ok, v3.inliers) > (v.ok, v.inliers) else v
                    v, conf = v_enc, self.confidence(v_enc.evidence) if v_enc.ok else 0.0
            fix.inliers = int(v.inliers)
            fix.confidence = conf
            fix.reason = v.reason
            fix.evidence = dict(v.evidence, hyp_lat=v.lat, hyp_lon=v.lon, hyp_alt_km=v.alt_km,
                                hyp_yaw_deg=v.yaw_deg, hyp_sub_lat=v.sub_lat, hyp_sub_lon=v.sub_lon,
                                source=source, vote_candidates=n_vote)
            if v.ok:
                fix.lat, fix.lon, fix.sub_lat, fix.sub_lon = v.lat, v.lon, v.sub_lat, v.sub_lon
                fix.alt_km, fix.yaw_deg = v.alt_km, v.yaw_deg
                fix.ecef_km = None if v.ecef_km is None else [float(a) for a in v.ecef_km]
            fix.fix = bool(v.ok and fix.confidence >= self.cfg["min_confidence"])
            if not fix.fix:   # the contract: position fields only with a trusted fix
                fix.lat = fix.lon = fix.sub_lat = fix.sub_lon = fix.alt_km = fix.yaw_deg = None
                fix.ecef_km = None
        fix.latency_ms = (_time.perf_counter() - t0) * 1e3
        stages["total_ms"] = fix.latency_ms
        fix.stages_ms = {k: round(v, 3) for k, v in stages.items()}
        return fix
