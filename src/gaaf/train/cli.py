"""`gaaf train` and `gaaf eval`.

Every flag defaults to None, so only flags given on the command line override the config file
(`--config`), which overrides the preset (`--preset`), which overrides TrainConfig's defaults; the
help text shows what a run gets without the flag (`_default`: TrainConfig and PRESETS).
List flags (--hidden, --augment, --adam-betas, --lr-schedule) pass their text on as it is: the config's
own coercion (gaaf.train.validate) parses it, so a flag and a config/study file string such as
``hidden = "512,512"`` take exactly the same values and fail with the same message.

    gaaf train --model resnet20_v1 --activation gaaf_relu --shift -1 --out runs/g1
    gaaf train --config runs/g1/config.json --out runs/g1-again       # reproduce a run
    gaaf train --out runs/g1 --resume --epochs 250                    # continue (and extend) a run
    gaaf train --out runs/g1 --resume auto ...                        # continue if there is a last.pt, else start
    gaaf eval runs/g1/best.pt
    gaaf export runs/g1/best.pt --onnx g1.onnx [--strip]                # gaaf.train.export
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..activations.catalog import DEFAULT_FREQUENCY
from ..errors import UserError, plural
from .allocator import keep_freed_memory
from .compile_rule import COMPILE_AUTO_MIN_STEPS
from .checkpoint import load_checkpoint
from .config import (
    DEVICES, OPTIMIZERS, PRESETS, TrainConfig, load_config_file, resolve_config, with_legacy_defaults,
)
from . import export
from .engine import evaluate_checkpoint, train


def _auto(text: str) -> str:
    if text != "auto":
        raise argparse.ArgumentTypeError(f"takes no value or 'auto', got {text!r}")
    return text


#: What a run gets for the fields whose TrainConfig default is None (the help text says so)
_NONE_MEANS = {
    **dict.fromkeys(("shape", "shift", "slope", "center", "width", "variant"), "the activation's own, see README"),
    "frequency": f"{DEFAULT_FREQUENCY:g}", "stem_activation": "--activation", "hidden": "the model's own",
    "data_dir": "$GAAF_DATA_DIR or ~/.cache/gaaf", "limit_train": "all", "limit_test": "all",
    "out": "runs/<model>-<activation>-s<seed>-<time>",
}


def _default(name: str) -> str:
    """`(default: 200, the seed preset)`: the value a run gets without the flag, which argparse cannot
    show (every flag defaults to None so that presets and config files can fill it). A field a preset
    sets is shown under the default preset, then under each preset that sets it differently."""
    base = TrainConfig().to_dict()
    if not any(name in values for values in PRESETS.values()):
        return f"(default: {_NONE_MEANS[name] if base[name] is None else _show(base[name])})".replace("%", "%%")
    first = TrainConfig.preset
    under = {preset: _NONE_MEANS[name] if v is None else _show(v)
             for preset, v in ((preset, {**base, **values}[name]) for preset, values in PRESETS.items())}
    others = "".join(f"; {preset}: {v}" for preset, v in under.items() if preset != first and v != under[first])
    return f"(default: {under[first]}, the {first} preset{others})".replace("%", "%%")


def _show(value: Any) -> str:
    """A default as the flag would be written: 0.001, crop,flip, 81:0.1,121:0.01, none."""
    if isinstance(value, list):
        if not value:
            return "none"
        return ",".join(":".join(_show(v) for v in item) if isinstance(item, list) else _show(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def register(subparsers: Any) -> None:
    _register_train(subparsers)
    _register_eval(subparsers)
    export.register(subparsers)  # gaaf export: the ONNX file of a checkpoint


def _register_train(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="train one model (writes a run folder)",
        description="Train one model. Order of precedence: flags > --config file > --preset > defaults. "
                    "Writes OUT/config.json, metrics.csv, summary.json, last.pt, best.pt.",
    )
    for add_group in (_model_flags, _activation_flags, _data_flags, _optimization_flags, _run_flags):
        add_group(p)
    p.set_defaults(func=cmd_train)


def _model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="resnet{6n+2}_v1, resnet{9n+2}_v2, mlp, or pkg.module:factory (your model: "
                   "factory(num_classes=..., in_shape=(C, H, W)), its activations replaced by --activation) "
                   f"{_default('model')}")
    g.add_argument("--no-batch-norm", dest="batch_norm", action="store_const", const=False, help="ResNets without BatchNorm")
    g.add_argument("--keras2-batch-norm", dest="keras2_batch_norm", action=argparse.BooleanOptionalAction,
                   help="BatchNorm with Keras 2.2/TF 1.x zero-debiased moving statistics, as the seed ran "
                        f"(--no-keras2-batch-norm: PyTorch's) {_default('keras2_batch_norm')}")
    g.add_argument("--precise-bn", dest="precise_bn", type=int, metavar="N",
                   help="evaluate with BatchNorm statistics recomputed from N training images with the current "
                        f"weights; 0: the moving statistics {_default('precise_bn')}")
    g.add_argument("--seed-v2-bug", dest="seed_v2_bug", action=argparse.BooleanOptionalAction,
                   help="ResNet v2 as the seed ran it: no activation before the first 1x1 conv of every block "
                        f"after the first, linear head {_default('seed_v2_bug')}")
    g.add_argument("--shortcut", metavar="A|B",
                   help="resnet v1 shortcut where the shape changes: A zero-pads the new channels (He et al.), "
                        f"B projects with a 1x1 conv (Keras example, seed) {_default('shortcut')}")
    g.add_argument("--hidden", metavar="N,N", help=f"MLP hidden sizes, e.g. 512,512 {_default('hidden')}")
    g.add_argument("--dropout", type=float, help=f"MLP dropout probability {_default('dropout')}")


def _activation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("activation")
    g.add_argument("--activation", help=f"registry name: relu, gaaf_relu, gaaf_tanh, ... {_default('activation')}")
    g.add_argument("--shape", help=f"GAAF shape s(x): sigmoid | gaussian | none {_default('shape')}")
    g.add_argument("--shift", type=float, help=f"sigmoid shape: s(x) = sigmoid(slope*(x + shift)) {_default('shift')}")
    g.add_argument("--slope", type=float, help=f"sigmoid shape slope {_default('slope')}")
    g.add_argument("--center", type=float, help=f"gaussian shape: s(x) = exp(-(x - center)^2 / width) {_default('center')}")
    g.add_argument("--width", type=float, help=f"gaussian shape width {_default('width')}")
    g.add_argument("--frequency", type=float, help=f"K, the sawtooth's inverse period {_default('frequency')}")
    g.add_argument("--variant", help=f"floor (paper) | round (seed's ex13) | surrogate (K -> inf: forward phi(x), "
                   f"gradient phi'(x) + s(x)) {_default('variant')}")
    g.add_argument("--stem-activation", dest="stem_activation",
                   help=f"activation after the stem conv {_default('stem_activation')}")


def _data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help=f"cifar10 | cifar100 | svhn | mnist {_default('dataset')}")
    g.add_argument("--data-dir", dest="data_dir", help=f"data folder {_default('data_dir')}")
    g.add_argument("--no-download", dest="download", action="store_const", const=False, help="fail if the data are missing")
    g.add_argument("--normalize", help=f"pixel_mean | channel | none {_default('normalize')}")
    g.add_argument("--augment", metavar="LIST", help=f"e.g. shift,flip or crop,flip; '' or none for none {_default('augment')}")
    g.add_argument("--no-augment", dest="augment", action="store_const", const=[], help="no augmentation")
    g.add_argument("--limit-train", dest="limit_train", type=int, metavar="N",
                   help=f"use the first N training images {_default('limit_train')}")
    g.add_argument("--limit-test", dest="limit_test", type=int, metavar="N",
                   help=f"use the first N test images {_default('limit_test')}")


def _optimization_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument("--preset", help=f"recipe: {' | '.join(PRESETS)} {_default('preset')}")
    g.add_argument("--epochs", type=int, help=f"passes over the training set {_default('epochs')}")
    g.add_argument("--max-iterations", dest="max_iterations", type=int, metavar="N",
                   help=f"stop after N iterations (optimizer steps) if --epochs have not ended the run first; "
                        f"0: no limit {_default('max_iterations')}")
    g.add_argument("--batch-size", dest="batch_size", type=int,
                   help=f"images per step over all processes {_default('batch_size')}")
    g.add_argument("--optimizer", help=f"{' | '.join(OPTIMIZERS)} {_default('optimizer')}")
    g.add_argument("--lr", type=float, help=f"base learning rate {_default('lr')}")
    g.add_argument("--momentum", type=float, help=f"SGD momentum {_default('momentum')}")
    g.add_argument("--adam-betas", dest="adam_betas", metavar="B1,B2", help=f"Adam (beta1, beta2) {_default('adam_betas')}")
    g.add_argument("--adam-eps", dest="adam_eps", type=float, help=f"Adam epsilon {_default('adam_eps')}")
    g.add_argument("--weight-decay", dest="weight_decay", type=float,
                   help=f"optimizer weight decay {_default('weight_decay')}")
    g.add_argument("--l2", type=float,
                   help=f"Keras-style l2*sum(w^2) on conv kernels (applied as its gradient 2*l2*w) {_default('l2')}")
    g.add_argument("--clip-grad-norm", dest="clip_grad_norm", type=float, metavar="C",
                   help=f"scale the gradient down to global L2 norm C before each step when it is larger; 0: off "
                        f"{_default('clip_grad_norm')}")
    g.add_argument("--lr-schedule", dest="lr_schedule", metavar="E:F,...",
                   help="after E finished epochs (or iterations, see --lr-schedule-unit) use lr*F, e.g. "
                        f"100:0.1,150:0.01; 'none' for constant {_default('lr_schedule')}")
    g.add_argument("--lr-schedule-unit", dest="lr_schedule_unit", metavar="epoch|iteration",
                   help=f"what --lr-schedule's E counts {_default('lr_schedule_unit')}")
    g.add_argument("--warmup-iterations", dest="warmup_iterations", type=int, metavar="N",
                   help=f"raise the lr linearly over the first N iterations, iteration i at lr*i/N; 0: none "
                        f"{_default('warmup_iterations')}")


def _run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE", help="JSON/TOML config file (or a run folder's config.json)")
    g.add_argument("--out", help=f"run folder {_default('out')}")
    g.add_argument("--resume", nargs="?", const=True, default=False, type=_auto, metavar="auto",
                   help="continue the run in --out from its last.pt; '--resume auto': if there is one, "
                        "else start fresh (what a torchrun --max-restarts restart does)")
    g.add_argument("--seed", type=int, help=f"seeds torch, numpy, random and the data order {_default('seed')}")
    g.add_argument("--device", help=f"{' | '.join(DEVICES)} {_default('device')}")
    g.add_argument("--compile", dest="compile", action=argparse.BooleanOptionalAction,
                   help="torch.compile the model; --no-compile: eager (default: auto, compiled when the run has "
                        f">= {COMPILE_AUTO_MIN_STEPS} training steps; config.json records which)")
    g.add_argument("--amp", dest="amp", action="store_const", const=True, help="bf16 autocast")
    g.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction,
                   help="channels_last memory format (default: on CUDA)")
    g.add_argument("--tensorboard", dest="tensorboard", action="store_const", const=True, help="log to OUT/tensorboard")
    g.add_argument("--probe", dest="probe", action="store_const", const=True, help="record activation probes")
    g.add_argument("--probe-every", dest="probe_every", type=int, metavar="N",
                   help=f"with --probe: sample one training batch in N {_default('probe_every')}")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")


def _register_eval(subparsers: Any) -> None:
    p = subparsers.add_parser("eval", help="test loss and accuracy of a checkpoint",
                              description="Evaluate a checkpoint (or a run folder's last.pt) on its data set's test split.")
    p.add_argument("checkpoint", help="a .pt checkpoint or a run folder")
    p.add_argument("--data-dir", dest="data_dir", help="data folder (default: the one the run used)")
    p.add_argument("--limit-test", dest="limit_test", type=int, metavar="N",
                   help="use the first N test images (default: all)")
    p.add_argument("--device", default="auto", help=f"{' | '.join(DEVICES)} (default auto)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=500, help="images per batch (default 500)")
    p.add_argument("--precise-bn", dest="precise_bn", type=int, metavar="N",
                   help="first recompute the BatchNorm statistics from N training images "
                        "(default: the checkpoint's own statistics)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a line")
    p.set_defaults(func=cmd_eval)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Resolve flags (+ --config, + on --resume the checkpoint's own config) into a TrainConfig.

    --resume auto takes the checkpoint's config only when OUT/last.pt exists; a torchrun restart
    (plain command line) needs no such help: its flags resolve to the config they gave the first time."""
    overrides = {k: getattr(args, k) for k in TrainConfig.field_names() if getattr(args, k, None) is not None}
    file_dict = load_config_file(args.config) if args.config else None
    if args.resume:
        if "out" not in overrides and not (file_dict or {}).get("out"):
            raise UserError(f"--resume{' auto' if args.resume == 'auto' else ''} needs --out DIR: the run folder to continue")
        out = Path(overrides.get("out") or file_dict["out"])  # type: ignore[index]
        if args.resume is True or (out / "last.pt").exists():
            ckpt = load_checkpoint(out / "last.pt", resume=True)  # UserError if there is none
            if file_dict is None:
                # continue with the run's own settings (fields it predates: the values it ran with); flags may change some
                file_dict = with_legacy_defaults(ckpt["config"])
        overrides.setdefault("out", str(out))
    return resolve_config(file_dict, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    keep_freed_memory()  # no page faults from malloc returning each step's memory (gaaf.train.allocator)
    summary = train(cfg, resume=args.resume, progress=not args.quiet, log=not args.quiet)
    if _rank() == 0:  # under torchrun only rank 0 reports
        print(f"final test acc {summary['final_test_acc']:.4f} (best {summary['best_test_acc']:.4f} at epoch "
              f"{summary['best_epoch']}), {plural(summary['epochs'], 'epoch')} in {summary['total_seconds']:.1f}s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.limit_test is not None and args.limit_test < 1:
        raise UserError(f"--limit-test must be >= 1, got {args.limit_test}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.precise_bn is not None and args.precise_bn < 1:
        raise UserError(f"--precise-bn must be >= 1 (training images), got {args.precise_bn}")
    if args.device not in DEVICES:
        raise UserError(f"unknown device {args.device!r}; choose one of: {', '.join(DEVICES)}")
    r = evaluate_checkpoint(args.checkpoint, data_dir=args.data_dir, limit_test=args.limit_test,
                            device=args.device, batch_size=args.batch_size, precise_bn=args.precise_bn)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"test_loss {r['test_loss']:.4f}  test_acc {r['test_acc']:.4f}  "
              f"({plural(r['n'], 'image')}, epoch {r['epoch']}, {r['checkpoint']})")
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))
