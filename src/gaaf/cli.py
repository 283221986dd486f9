"""The `gaaf` command line. Each subcommand lives beside the code it drives and exposes
``register(subparsers)``, which adds its parser and sets ``func=handler(args) -> int``.

Bad input (UserError, ValueError, missing files) ends with one line ``gaaf: error: ...`` and exit
status 2, no traceback; set GAAF_DEBUG=1 to see the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import __version__
from .bench import cli as bench_cli
from .errors import UserError
from .experiments import cli as experiments_cli
from .plots import cli as plots_cli
from .train import cli as train_cli

#: modules that define subcommands, in the order the help lists them
_SUBCOMMAND_MODULES = (
    train_cli,          # gaaf train, gaaf eval
    experiments_cli,    # gaaf sweep
    plots_cli,          # gaaf report, gaaf plot ...
    bench_cli,          # gaaf bench ...
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaaf",
        description="Gradient Acceleration in Activation Functions: activations, training, studies, reports.",
    )
    parser.add_argument("--version", action="version", version=f"gaaf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _SUBCOMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        if os.environ.get("GAAF_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"gaaf: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gaaf: interrupted", file=sys.stderr)
        return 130
