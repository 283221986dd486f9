"""The `gaaf` command line. Each subcommand lives beside the code it drives and exposes
``register(subparsers)``, which adds its parser and sets ``func=handler(args) -> int``.

Bad input (UserError, ValueError, missing files, and argparse's own usage errors) ends with one
line ``gaaf ...: error: ...`` and exit status 2, no traceback and no usage block; set GAAF_DEBUG=1
to see the traceback. ``gaaf --version`` answers before any subcommand (and so PyTorch) is imported;
every subcommand needs PyTorch, and without it the command says in one line how to install it
(``gaaf: error: gaaf train needs PyTorch: pip install 'gaaf[torch]'``, exit status 2).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Sequence

from . import __version__
from .errors import UserError, is_torch_missing, torch_missing

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
    # Imported here, not at module top, so that `gaaf --version` answers without loading torch.
    from .bench import cli as bench_cli
    from .experiments import cli as experiments_cli
    from .plots import cli as plots_cli
    from .train import cli as train_cli

    for module in (train_cli, experiments_cli, plots_cli, bench_cli):  # the order --help lists them
        module.register(subparsers)  # train, eval, export | sweep | report, plot | bench
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:  # without building the parser, which imports every subcommand
        print(f"gaaf {__version__}")
        return 0
    try:
        parser = build_parser()
    except ModuleNotFoundError as e:
        if not is_torch_missing(e) or os.environ.get("GAAF_DEBUG"):
            raise
        command = f"gaaf {argv[0]}" if argv and argv[0].isidentifier() else "gaaf"  # gaaf train; gaaf --help
        print(f"gaaf: error: {torch_missing(command)}", file=sys.stderr)
        return 2
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
        print(f"gaaf: interrupted{resume_hint(args)}", file=sys.stderr)
        return 130


def resume_hint(args: argparse.Namespace) -> str:
    """How to pick up where Ctrl-C left off: the last finished epoch's checkpoint, or the sweep's state."""
    if args.command == "train":
        out = getattr(args, "out", None)
        if out:
            return f"; continue from the last finished epoch with: gaaf train --out {out} --resume"
        return "; the run folder's last.pt holds the last finished epoch: continue with gaaf train --out RUN --resume"
    if args.command == "sweep":
        return f"; run the same command again to continue (finished runs are kept, interrupted ones resume): gaaf sweep {args.study} --out {args.out}"
    return ""
