"""`gaaf report DIR` and `gaaf plot ...`: the commands that draw figures.

    gaaf report runs/demo                    # report.md, report.csv, runs.csv and the plots
                                             # (exit 1, one line, nothing written: no run finished yet)
    gaaf plot activations --out figs/        # the activation figures (more plots register beside it)

`report` lives here, not beside `sweep` in gaaf.experiments.cli: its tables come from
gaaf.experiments.report, its figures from gaaf.plots, and only this layer may import both.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import UserError
from ..experiments.report import NothingToReport
from .activations import plot_all
from .report import build_report


def register(subparsers: "argparse._SubParsersAction") -> None:
    _register_report(subparsers)
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


def _register_report(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "report", help="tables, statistics and plots for a sweep folder",
        description="Read OUT/runs/*/seed*/ (and OUT/study.json) and write report.md, report.csv, "
                    "runs.csv and PNG plots; print the Markdown table. Unfinished runs are listed, not fatal. "
                    "Exit status: 0 report written; 1 nothing to report yet (no run has finished; nothing "
                    "written); 2 bad input (no sweep folder).",
    )  # fmt: skip
    p.add_argument("dir", help="sweep folder written by gaaf sweep")
    p.add_argument("--out", help="report folder (default DIR/report)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="tables only")
    p.add_argument("--mde", type=float, metavar="DELTA",
                   help="a difference in accuracy (e.g. 0.005): add the seeds per arm that would detect it with "
                        "80%% power (two-sided, alpha 0.05) at each run's observed spread")  # fmt: skip
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        raise UserError(f"sweep folder {str(root)!r} not found; pass the --out folder of gaaf sweep")
    try:
        report = build_report(root, Path(args.out) if args.out else None, plots=args.plots, mde=args.mde)
    except NothingToReport as e:  # not bad input: the sweep has not got that far yet
        print(f"gaaf report: {e}", file=sys.stderr)
        return 1
    if report.settings_markdown:
        print(report.settings_markdown)
        print()
    print(report.table_markdown)
    if report.problems_markdown:
        print()
        print(report.problems_markdown)
    print()
    print(f"wrote {', '.join(str(p) for p in report.files)}")
    return 0


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _activations(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.frequency) and args.frequency > 0):
        raise UserError(f"--frequency must be a finite number > 0, got {args.frequency!r}")
    if not 10 <= args.dpi <= 1000:
        raise UserError(f"--dpi must be between 10 and 1000, got {args.dpi}")
    for path in plot_all(args.out, frequency=args.frequency, dpi=args.dpi):
        print(path)
    return 0
