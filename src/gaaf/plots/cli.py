"""`gaaf plot ...`: figures. Subcommands: `activations` (more plots register beside it)."""
from __future__ import annotations

import argparse
import math

from ..errors import UserError


def register(subparsers: "argparse._SubParsersAction") -> None:
    plot = subparsers.add_parser("plot", help="draw figures (PNG)", description="Draw figures as PNG files.")
    plot_sub = plot.add_subparsers(dest="plot_command", metavar="FIGURES")
    plot.set_defaults(func=lambda args: _missing_subcommand(plot))

    p = plot_sub.add_parser(
        "activations",
        help="the sawtooth g(x), shapes s(x), φ_new vs φ and gradients",
        description="Draw the GAAF activation figures (sawtooth, shapes, gaaf_relu at shifts 4, 1, 0, −1, −4, "
        "gaaf_tanh, gaaf_sigmoid) as PNG files in --out.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files (created if missing)")
    p.add_argument("--frequency", type=float, default=10_000.0, metavar="K", help="sawtooth frequency K (default 10000)")
    p.add_argument("--dpi", type=int, default=120, help="resolution of the PNG files (default 120)")
    p.set_defaults(func=_activations)


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _activations(args: argparse.Namespace) -> int:
    from .activations import plot_all  # matplotlib is imported only when a plot is drawn

    if not (math.isfinite(args.frequency) and args.frequency > 0):
        raise UserError(f"--frequency must be a finite number > 0, got {args.frequency!r}")
    if not 10 <= args.dpi <= 1000:
        raise UserError(f"--dpi must be between 10 and 1000, got {args.dpi}")
    for path in plot_all(args.out, frequency=args.frequency, dpi=args.dpi):
        print(path)
    return 0
