"""`gaaf bench ...`: benchmarks. Subcommands: `activations` (more benchmarks register beside it)."""
from __future__ import annotations

import argparse
import sys

from ..errors import UserError

_DTYPES = ("float32", "float64", "bfloat16", "float16")


def register(subparsers: "argparse._SubParsersAction") -> None:
    bench = subparsers.add_parser("bench", help="benchmarks", description="Benchmarks (timings are medians of "
                                  "alternating rounds; run on an otherwise idle machine).")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])

    from .activations import ACTIVATIONS, DEFAULT_SIZES

    p = bench_sub.add_parser(
        "activations",
        help="forward+backward time and saved bytes of each activation",
        description="Forward+backward time of relu/tanh/sigmoid and their GAAF versions (fused op eager and "
        "compiled, and the naive composition), with ratios and the bytes saved for backward.",
    )
    p.add_argument("--sizes", nargs="+", default=[_fmt_size(s) for s in DEFAULT_SIZES], metavar="NxCxHxW",
                   help="tensor sizes, e.g. 128x16x32x32 (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=15, metavar="N", help="alternating timed rounds (default 15)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed warm-up calls each (default 3)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile candidates")
    p.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), metavar="NAME",
                   help="activations to time (default: %(default)s); each base φ is added for the ratios")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="float32", choices=_DTYPES, help="input dtype (default float32)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.set_defaults(func=_activations)


def _fmt_size(size: "tuple[int, ...]") -> str:
    return "x".join(str(n) for n in size)


def parse_size(text: str) -> tuple[int, ...]:
    """`128x16x32x32` → (128, 16, 32, 32); every dimension a positive integer."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"bad size {text!r}; write positive integers joined by x, e.g. 128x16x32x32") from None
    if not size or any(n <= 0 for n in size):
        raise UserError(f"bad size {text!r}; write positive integers joined by x, e.g. 128x16x32x32")
    return size


def _activations(args: argparse.Namespace) -> int:
    import torch

    from ..io import atomic_write_json
    from .activations import bench_activations, format_table

    sizes = [parse_size(s) for s in args.sizes]
    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    if args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UserError(f"bad --device {args.device!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"bad --device {args.device!r}; use cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but CUDA is not available; use --device cpu")
    result = bench_activations(
        sizes, repeats=args.repeats, warmup=args.warmup, compile=args.compile, activations=args.activations,
        device=device, dtype=getattr(torch, args.dtype), log=lambda msg: print(f"[bench] {msg}", file=sys.stderr),
    )
    print(format_table(result))
    if args.json:
        atomic_write_json(args.json, result.as_dict())
        print(f"wrote {args.json}")
    return 0
