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
    "earthfix.tools.build_index",      # build-index, info
    "earthfix.tools.locate",           # locate
    "earthfix.tools.replay",           # replay, demo
    "earthfix.tools.calibrate",        # calibrate
    "earthfix.tools.index_bench",      # index-bench
    "earthfix.tools.soak",             # soak
    "earthfix.tools.evaluate",         # eval
]


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
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
