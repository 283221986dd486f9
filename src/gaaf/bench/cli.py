"""`gaaf bench ...`: benchmarks. Subcommands: `activations`, `train`, `keras`, `gpu`."""
from __future__ import annotations

import argparse
import sys

import torch

from ..errors import UserError
from ..io import atomic_write_json
from ..train.distributed import resolve_device
from . import activations, gpu
from . import train as train_bench

_DTYPES = ("float32", "float64", "bfloat16", "float16")


def register(subparsers: "argparse._SubParsersAction") -> None:
    bench = subparsers.add_parser("bench", help="benchmarks", description="Benchmarks (timings are medians of "
                                  "alternating rounds; run on an otherwise idle machine).")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])

    p = bench_sub.add_parser(
        "activations",
        help="forward+backward time and saved bytes of each activation",
        description="Forward+backward time of relu/tanh/sigmoid and their GAAF versions (fused op eager and "
        "compiled, and the naive composition), with ratios and the bytes saved for backward.",
    )
    p.add_argument("--sizes", nargs="+", default=[_fmt_size(s) for s in activations.DEFAULT_SIZES], metavar="NxCxHxW",
                   help="tensor sizes, e.g. 128x16x32x32 (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=15, metavar="N", help="alternating timed rounds (default 15)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed warm-up calls each (default 3)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile candidates")
    p.add_argument("--activations", nargs="+", default=list(activations.ACTIVATIONS), metavar="NAME",
                   help="activations to time (default: %(default)s); each base φ is added for the ratios")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="float32", choices=_DTYPES, help="input dtype (default float32)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.set_defaults(func=_activations)
    _register_train(bench_sub)
    _register_keras(bench_sub)
    _register_gpu(bench_sub)


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
    result = activations.bench_activations(
        sizes, repeats=args.repeats, warmup=args.warmup, compile=args.compile, activations=args.activations,
        device=device, dtype=getattr(torch, args.dtype), log=lambda msg: print(f"[bench] {msg}", file=sys.stderr),
    )
    print(activations.format_table(result))
    if args.json:
        atomic_write_json(args.json, result.as_dict())
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- gaaf bench train
def _register_train(bench_sub: "argparse._SubParsersAction") -> None:
    p = bench_sub.add_parser(
        "train",
        help="training/eval throughput of relu vs gaaf_relu models (the engine's real step)",
        description="Training and evaluation throughput (images/s) of each model with relu and with gaaf_relu "
        "(shift -1), in one process, alternating rounds, through the engine's make_train_step/evaluate with the "
        "seed preset on a synthetic device-resident batch; eager and torch.compile; ratio gaaf_relu/relu (of the "
        "medians, and paired: the median of per-round ratios). Under the table, per model, the floor: relu's and "
        "gaaf_relu's activation kernels alone at every GAAF site's size, and the highest train ratio they allow.",
    )
    p.add_argument("--models", default="resnet20_v1", metavar="M1,M2",
                   help="comma-separated model names, e.g. resnet20_v1,resnet56_v2,mlp (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, metavar="B", help="training batch (default 128)")
    p.add_argument("--rounds", type=int, default=None, metavar="N",
                   help="alternating timed rounds (default 5 on CPU, 15 on CUDA)")
    p.add_argument("--steps", type=int, default=None, metavar="S",
                   help="steps per timed sample (default 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=1, metavar="N", help="untimed samples after the first call (default 1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-compile", action="store_true", help="eager only")
    g.add_argument("--compile-only", action="store_true", help="torch.compile only")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip the evaluation throughput")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast, as gaaf train --amp")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on CUDA only, as gaaf train)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch intra-op threads (default: torch's)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="also run torch.profiler over STEPS training steps of each candidate; print its top ops "
                        "and where the time goes (forward/backward/optimizer × convolution/compiled "
                        "kernels/other ops, relu and gaaf_relu side by side; default 0: off)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise UserError("--models is empty; name at least one model, e.g. resnet20_v1")
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    modes = ("eager",) if args.no_compile else ("compiled",) if args.compile_only else ("eager", "compiled")
    with train_bench.torch_threads(args.threads):
        result = train_bench.bench_train(
            models, batch_size=args.batch_size, rounds=_default(args.rounds, 15 if cuda else 5),
            steps=_default(args.steps, 20 if cuda else 3), warmup=args.warmup, modes=modes, device=device, amp=args.amp,
            channels_last=args.channels_last, eval_phase=args.eval, profile_steps=args.profile,
            log=lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True),
        )
    print(train_bench.format_table(result))
    if args.json:
        atomic_write_json(args.json, result.as_dict())
        print(f"wrote {args.json}")
    return 0


def _default(value: "int | None", default: int) -> int:
    return default if value is None else value


# --------------------------------------------------------------------------- gaaf bench keras
def _register_keras(bench_sub: "argparse._SubParsersAction") -> None:
    p = bench_sub.add_parser(
        "keras",
        help="training img/s of the seed's stack (Keras 3 ResNet v1 + gaaf.keras.GAAF) vs gaaf train's defaults",
        description="The Keras CIFAR-10 example's ResNet v1 with the Keras GAAF layer (the seed's stack: Adam 1e-3, "
        "l2 1e-4, batch 128, train_on_batch) against gaaf train's own step with its default settings, in one process, "
        "alternating rounds, on CPU; images/s of both and gaaf/keras. Needs Keras 3 and a backend (KERAS_BACKEND).",
    )
    p.add_argument("--model", default="resnet20_v1", metavar="M", help="resnet<6n+2>_v1 (default %(default)s)")
    p.add_argument("--activations", default="gaaf_relu", metavar="A1,A2",
                   help="gaaf_relu (shift -1) and/or relu, comma-separated (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, metavar="B", help="training batch (default 128)")
    p.add_argument("--rounds", type=int, default=5, metavar="N", help="alternating timed rounds (default 5)")
    p.add_argument("--steps", type=int, default=3, metavar="S", help="steps per timed sample (default 3)")
    p.add_argument("--warmup", type=int, default=1, metavar="N", help="untimed samples after the first call (default 1)")
    p.add_argument("--backend", default=None, help="Keras backend: tensorflow | jax | torch (default: $KERAS_BACKEND, "
                   "else the first of those installed)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch intra-op threads (default: torch's)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.set_defaults(func=_keras)


def _keras(args: argparse.Namespace) -> int:
    from . import keras_seed  # imports Keras only when this command runs

    acts = [a.strip() for a in args.activations.split(",") if a.strip()]
    with train_bench.torch_threads(args.threads):
        result = keras_seed.bench_keras(
            args.model, activations=acts, batch_size=args.batch_size, rounds=args.rounds, steps=args.steps,
            warmup=args.warmup, backend=args.backend, log=lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    print(keras_seed.format_table(result))
    if args.json:
        atomic_write_json(args.json, result.as_dict())
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- gaaf bench gpu
def _register_gpu(bench_sub: "argparse._SubParsersAction") -> None:
    p = bench_sub.add_parser(
        "gpu",
        help="one-shot GPU check: CUDA op tests, seed-recipe epoch timing, concurrency scan",
        description="Everything a short GPU session should measure, in one invocation: the activation tests and "
        "a CUDA correctness check of the fused op, a ResNet20 v1 seed-recipe epoch (relu vs gaaf_relu, "
        "channels_last + bf16 + compile), and total throughput of N concurrent training processes on one GPU. "
        "Results go to OUT as JSON and text, phase by phase.",
    )
    gpu.add_arguments(p)
    p.set_defaults(func=gpu.run_from_args)
