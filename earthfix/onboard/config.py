"""Onboard configuration: YAML (safe_load) validated key by key with messages that name the key."""
from __future__ import annotations

import difflib
import math
from pathlib import Path

import yaml

from .features import EXPOSURE_BELOW_DN, SHARPEN_BELOW, STRIPING_ABOVE, TONE_LIFT_DN
from .vote import VoteConfig

DEFAULTS = {
    "encoder": None,
    "providers": ["CPUExecutionProvider"],
    "threads": 1,
    "rotations": None,
    "top_k": 10,
    "verify_k": 10,
    "deadline_ms": 60.0,
    "min_confidence": 0.9,
    "vote": True,
    "vote_k": 3,
    "vote_min_votes": VoteConfig.min_votes,   # the voter's own defaults, written once (vote.VoteConfig)
    "vote_ef": VoteConfig.ef,
    "vote_min_bin_share": VoteConfig.min_bin_share,
    "vote_split_max_sigma_km": 5.0,
    "vote_wide_k": VoteConfig.wide_k,
    "vote_wide_min_confidence": 0.99,
    "encoder_places": "listed",
    "cloud_fill": True,
    "plain_first_below": 0.3,
    "defer_votes_below": 3,
    "weak_prior_pose_inliers": 10,
    "lean_looks": True,
    "later_look_check": True,
    "despeckle": True,
    "balance_look": True,
    "repair_striping_above": STRIPING_ABOVE,  # features' own defaults, written once
    "repaired_max_bore_sigma_km": 6.0,
    "exposure_below_dn": EXPOSURE_BELOW_DN,
    "tone_lift_dn": TONE_LIFT_DN,
    "sharpen_below": SHARPEN_BELOW,
    "max_frame_side_px": 1024,
    "shrink_to_work": True,
    "fine_store": True,
    "lowres_store": True,
    "lowres_max_bore_sigma_km": 5.0,
    "min_sun_elev_deg": -6.0,
    "daylight_search": True,
    "warm_up": True,
    "encoder_spacing": 0.5,
    "encoder_views": ["filled", "despeckled"],
    "verify": {},
    "confidence": {},
}


ENCODER_PLACES = ("last", "listed", "lazy", "first")   # when the encoder's places are verified (localizer docstring)
ENCODER_VIEWS = ("filled", "despeckled")     # a frame's cleaned views the encoder may average with it


class ConfigError(ValueError):
    pass


# verify/feature values beyond these make OpenCV fail or hang (measured: sigma 1e6 or 1e6 octave layers
# never return, grid_cells 1e6 allocates terabytes, a zero tile size divides by zero); other numbers
# only need to be finite and >= 0
_RANGES = {
    "verify.ransac_conf": (1e-6, 1.0 - 1e-9),
    "verify.feature.sigma": (0.1, 10.0),
    "verify.feature.n_octave_layers": (1, 10),
    "verify.feature.clahe_tile_px": (1, 4096),
    "verify.feature.grid_cells": (0, 64),
    "verify.feature.max_keypoints": (0, 100000),
}
# cv2.findHomography methods: 0 (least squares), LMEDS, RANSAC, RHO, USAC_*
_CHOICES = {"verify.homography_method": [0, 4, 8, 16, 32, 33, 34, 35, 36, 37, 38]}


def _one_line(s: str, n: int = 40) -> str:
    """``s`` on one line, shortened to ``n`` characters: messages stay one short line."""
    s = s.replace("\n", " ").replace("\r", " ")
    return s if len(s) <= n else s[: n - 3] + "..."


def _r(value) -> str:
    """A value as it appears in messages (its repr)."""
    return _one_line(repr(value))


def _name(key) -> str:
    """A key as it appears in messages."""
    return _one_line(str(key))


def _finite(x) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:           # an int too large for a float
        return False


def _check(key, value, kind, lo=None, hi=None, choices=None):
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"config: '{key}' must be an integer, got {_r(value)}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"config: '{key}' must be a number, got {_r(value)}")
    if kind is float and not _finite(value):
        raise ConfigError(f"config: '{key}' must be a finite number, got {_r(value)}")
    if lo is not None and value < lo or hi is not None and value > hi:
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ConfigError(f"config: '{key}' must be {rng}, got {_r(value)}")
    if choices is not None and value not in choices:
        raise ConfigError(f"config: '{key}' must be one of {choices}, got {_r(value)}")


def validate(cfg: dict) -> dict:
    if not isinstance(cfg, dict):
        raise ConfigError("config: expected a mapping at the top level")
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        key = sorted(map(_name, unknown))[0]
        close = difflib.get_close_matches(key, list(DEFAULTS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "the keys are configs/default.yaml's"
        raise ConfigError(f"config: unknown key '{key}' ({hint})")
    out = dict(DEFAULTS, **cfg)
    if out["encoder"] is not None and not isinstance(out["encoder"], str):
        raise ConfigError("config: 'encoder' must be a path or null")
    if not isinstance(out["providers"], list) or not all(isinstance(p, str) for p in out["providers"]):
        raise ConfigError("config: 'providers' must be a list of onnxruntime provider names")
    _check("threads", out["threads"], int, 1, 64)
    if out["rotations"] is not None:
        _check("rotations", out["rotations"], int, choices=[1, 2, 4])
    _check("top_k", out["top_k"], int, 1, 100)
    _check("verify_k", out["verify_k"], int, 0, 100)
    _check("deadline_ms", out["deadline_ms"], float, 1, 60000)
    _check("min_confidence", out["min_confidence"], float, 0.0, 1.0)
    _check("vote_k", out["vote_k"], int, 1, 10)
    _check("vote_min_votes", out["vote_min_votes"], int, 1, 100)
    _check("vote_ef", out["vote_ef"], int, 2, 1024)
    _check("vote_min_bin_share", out["vote_min_bin_share"], float, 0.0, 10.0)
    _check("vote_split_max_sigma_km", out["vote_split_max_sigma_km"], float, 0.0, 1000.0)
    _check("vote_wide_k", out["vote_wide_k"], int, 0, 32)
    _check("vote_wide_min_confidence", out["vote_wide_min_confidence"], float, 0.0, 1.0)
    _check("lowres_max_bore_sigma_km", out["lowres_max_bore_sigma_km"], float, 0.1, 100.0)
    _check("min_sun_elev_deg", out["min_sun_elev_deg"], float, -90.0, 90.0)
    _check("max_frame_side_px", out["max_frame_side_px"], int, 64, 16384)
    _check("encoder_spacing", out["encoder_spacing"], float, 0.0, 10.0)
    _check("exposure_below_dn", out["exposure_below_dn"], float, 0.0, 255.0)
    _check("tone_lift_dn", out["tone_lift_dn"], float, 0.0, 128.0)
    _check("sharpen_below", out["sharpen_below"], float, 0.0, 2.0)
    _check("repair_striping_above", out["repair_striping_above"], float, 0.0, 1.0)
    _check("repaired_max_bore_sigma_km", out["repaired_max_bore_sigma_km"], float, 0.1, 1000.0)
    _check("plain_first_below", out["plain_first_below"], float, 0.0, 1.0)
    _check("defer_votes_below", out["defer_votes_below"], int, 0, 1000)
    _check("weak_prior_pose_inliers", out["weak_prior_pose_inliers"], int, 0, 1000)
    views = out["encoder_views"]
    if not isinstance(views, list) or any(v not in ENCODER_VIEWS for v in views):
        raise ConfigError(f"config: 'encoder_views' must be a list of {', '.join(ENCODER_VIEWS)} (or []), "
                          f"got {_r(views)}")
    if out["encoder_places"] not in ENCODER_PLACES:
        raise ConfigError(f"config: 'encoder_places' must be one of {', '.join(ENCODER_PLACES)}, "
                          f"got {_r(out['encoder_places'])}")
    for k in ("vote", "cloud_fill", "despeckle", "balance_look", "fine_store", "warm_up", "shrink_to_work",
              "lean_looks", "later_look_check", "lowres_store", "daylight_search"):
        if not isinstance(out[k], bool):
            raise ConfigError(f"config: '{k}' must be true or false, got {_r(out[k])}")
    for k in ("verify", "confidence"):
        if not isinstance(out[k], dict):
            raise ConfigError(f"config: '{k}' must be a mapping")
    bad = sorted(map(_name, set(out["confidence"]) - {"path"}))
    if bad:
        raise ConfigError(f"config: unknown key 'confidence.{bad[0]}' (known: path)")
    if out["confidence"].get("path") is not None and not isinstance(out["confidence"]["path"], str):
        raise ConfigError("config: 'confidence.path' must be a path or null")
    _check_verify(out["verify"])
    return out


def _check_fields(prefix: str, cls, d: dict) -> None:
    """Keys of ``d`` against the dataclass ``cls``: known names, and values of the defaults' types
    (numbers finite and >= 0, tuples of numbers of the same length, nested mappings recursively)."""
    import dataclasses
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in d.items():
        name = f"{prefix}.{_name(key)}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean '{prefix}.{close[0]}'?" if close else f"see {cls.__name__} for the keys"
            raise ConfigError(f"config: unknown key '{name}' ({hint})")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if value is None and "None" in str(f.type):
            continue
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"config: '{name}' must be a mapping")
            _check_fields(name, type(default), value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"config: '{name}' must be true or false, got {_r(value)}")
        elif isinstance(default, (int, float)):
            kind = int if isinstance(default, int) and "float" not in str(f.type) else float
            lo, hi = _RANGES.get(name, (0, None))
            _check(name, value, kind, lo, hi, _CHOICES.get(name))
        elif isinstance(default, tuple):
            if (not isinstance(value, (list, tuple)) or len(value) != len(default)
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)
                               for v in value)):
                raise ConfigError(f"config: '{name}' must be a list of {len(default)} finite numbers, got {_r(value)}")
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"config: '{name}' must be a string, got {_r(value)}")


def _check_verify(d: dict) -> None:
    from .verify import VerifyConfig
    _check_fields("verify", VerifyConfig, d)
    try:
        VerifyConfig(**d)
    except (TypeError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config: {msg}" if msg.startswith("verify:") else f"config: 'verify': {msg}") from None


def load_config(path=None, overrides: dict | None = None) -> dict:
    cfg = {}
    if path is not None:
        p = Path(path)
        try:
            cfg = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {p} cannot be read: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
        cfg = {} if cfg is None else cfg
        if not isinstance(cfg, dict):
            raise ConfigError(f"config file {p}: expected a mapping at the top level")
    if overrides:
        if not isinstance(overrides, dict):
            raise ConfigError("config: overrides must be a mapping")
        cfg = dict(cfg, **{str(k) if not isinstance(k, str) else k: v for k, v in overrides.items()})
    return validate(cfg)
