"""The ``earthfix`` console command: one subcommand per job, each defined in the module of its stage.

Every command module exposes ``register(subparsers)``, which adds its parser and sets ``func``; modules
import their heavy dependencies inside the function that runs, so ``earthfix --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# subcommand -> module, in pipeline order
COMMAND_MODULES = [
    "earthfix.sim.command",            # sim
    "earthfix.tools.train_encoder",    # train
    "earthfix.tools.export_encoder",   # export
    "earthfix.tools.train_localdesc",  # train-localdesc
    "earthfix.tools.season_map",       # fit-snow
    "earthfix.tools.build_index",      # build-index, info
    "earthfix.tools.locate",           # locate
    "earthfix.tools.replay",           # replay, demo
    "earthfix.tools.fuse",             # fuse
    "earthfix.tools.calibrate",        # calibrate
    "earthfix.tools.index_bench",      # index-bench
    "earthfix.tools.soak",             # soak
    "earthfix.tools.evaluate",         # eval
]

# the project's own errors: a bad input, file, bundle or model, not a bug. A command that lets one through
# ends with its one-line reason and exit 2 (as locate's run-level errors do), not a traceback.
INPUT_ERRORS = [
    ("earthfix.onboard.bundle", "BundleError"), ("earthfix.onboard.camera", "CameraError"),
    ("earthfix.onboard.config", "ConfigError"), ("earthfix.onboard.frames", "FrameError"),
    ("earthfix.onboard.keystore", "KeystoreError"), ("earthfix.onboard.localdesc", "LocalDescError"),
    ("earthfix.sim.basemap", "BasemapError"), ("earthfix.sim.orbit", "OrbitError"), ("earthfix.tools.oem", "OEMError"),
]


def _is_input_error(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    for module, name in INPUT_ERRORS:
        mod = sys.modules.get(module)    # an error of a module never imported cannot have been raised
        if mod is not None and isinstance(exc, getattr(mod, name)):
            return True
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earthfix",
        description="Lost-in-space localization of a satellite from Earth images.",
        epilog="Conventions (frames, units, contracts): docs/CONVENTIONS.md. Run 'earthfix CMD --help'.")
    parser.add_argument("--version", action="version", version=f"earthfix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("earthfix"):
                continue  # stage not present in this build
            raise
        mod.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("earthfix: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if not _is_input_error(exc):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"earthfix {args.command}: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
