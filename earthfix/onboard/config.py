"""Onboard configuration: YAML (safe_load) validated key by key with messages that name the key."""
from __future__ import annotations

from pathlib import Path

import yaml

DEFAULTS = {
    "encoder": None,
    "providers": ["CPUExecutionProvider"],
    "threads": 1,
    "rotations": 4,
    "top_k": 10,
    "verify_k": 10,
    "deadline_ms": 60.0,
    "min_confidence": 0.9,
    "verify": {},
    "confidence": {},
}


class ConfigError(ValueError):
    pass


def _check(key, value, kind, lo=None, hi=None, choices=None):
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"config: '{key}' must be an integer, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"config: '{key}' must be a number, got {value!r}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"config: '{key}' must be in [{lo}, {hi}], got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"config: '{key}' must be one of {choices}, got {value!r}")


def validate(cfg: dict) -> dict:
    if not isinstance(cfg, dict):
        raise ConfigError("config: expected a mapping at the top level")
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"config: unknown key '{sorted(unknown)[0]}' (known: {', '.join(DEFAULTS)})")
    out = dict(DEFAULTS, **cfg)
    if out["encoder"] is not None and not isinstance(out["encoder"], str):
        raise ConfigError("config: 'encoder' must be a path or null")
    if not isinstance(out["providers"], list) or not all(isinstance(p, str) for p in out["providers"]):
        raise ConfigError("config: 'providers' must be a list of onnxruntime provider names")
    _check("threads", out["threads"], int, 1, 64)
    _check("rotations", out["rotations"], int, choices=[1, 2, 4])
    _check("top_k", out["top_k"], int, 1, 100)
    _check("verify_k", out["verify_k"], int, 0, 100)
    _check("deadline_ms", out["deadline_ms"], float, 1, 60000)
    _check("min_confidence", out["min_confidence"], float, 0.0, 1.0)
    for k in ("verify", "confidence"):
        if not isinstance(out[k], dict):
            raise ConfigError(f"config: '{k}' must be a mapping")
    return out


def load_config(path=None, overrides: dict | None = None) -> dict:
    cfg = {}
    if path is not None:
        p = Path(path)
        try:
            cfg = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if overrides:
        cfg = dict(cfg, **overrides)
    return validate(cfg)
