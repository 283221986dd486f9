"""The `gaaf` command line. Each subcommand lives beside the code it drives and exposes
``register(subparsers)``, which adds its parser and sets ``func=handler(args) -> int``.

Bad input (UserError, ValueError, missing files, and argparse's own usage errors) ends with one
line ``gaaf ...: error: ...`` and exit status 2, no traceback and no usage block; set GAAF_DEBUG=1
to see the traceback. ``gaaf --version`` answers before any subcommand (and so PyTorch) is imported.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from typing import NoReturn, Sequence

from . import __version__
from .errors import UserError

#: modules that define subcommands, in the order the help lists them
_SUBCOMMAND_MODULES = (
    "gaaf.train.cli",          # gaaf train, gaaf eval
    "gaaf.experiments.cli",    # gaaf sweep, gaaf report
    "gaaf.plots.cli",          # gaaf plot ...
    "gaaf.bench.cli",          # gaaf bench ...
)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line plus where to look, not the whole usage block.

    Subparsers are created with the parent's class, so every ``gaaf ...`` subcommand gets it."""

    def error(self, message: str) -> "NoReturn":
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="gaaf",
        description="Gradient Acceleration in Activation Functions: activations, training, studies, reports.",
    )
    parser.add_argument("--version", action="version", version=f"gaaf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        if not _module_exists(name):  # a subcommand package not built yet
            continue
        importlib.import_module(name).register(subparsers)
    return parser


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:  # without building the parser, which imports every subcommand
        print(f"gaaf {__version__}")
        return 0
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
