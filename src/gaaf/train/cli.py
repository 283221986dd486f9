"""`gaaf train` and `gaaf eval`.

Every flag defaults to None, so only flags given on the command line override the config file
(`--config`), which overrides the preset (`--preset`), which overrides TrainConfig's defaults.
List flags (--hidden, --augment, --adam-betas, --lr-schedule) pass their text on as it is: the config's
own coercion (gaaf.train.validate) parses it, so a flag and a config/study file string such as
``hidden = "512,512"`` take exactly the same values and fail with the same message.

    gaaf train --model resnet20_v1 --activation gaaf_relu --shift -1 --out runs/g1
    gaaf train --config runs/g1/config.json --out runs/g1-again       # reproduce a run
    gaaf train --out runs/g1 --resume --epochs 250                    # continue (and extend) a run
    gaaf train --out runs/g1 --resume auto ...                        # continue if there is a last.pt, else start
    gaaf eval runs/g1/best.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from .checkpoint import load_checkpoint
from .config import DEVICES, OPTIMIZERS, PRESETS, TrainConfig, load_config_file, resolve_config
from .engine import evaluate_checkpoint, train


def _auto(text: str) -> str:
    if text != "auto":
        raise argparse.ArgumentTypeError(f"takes no value or 'auto', got {text!r}")
    return text


def register(subparsers: Any) -> None:
    _register_train(subparsers)
    _register_eval(subparsers)


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
    g.add_argument("--model", help="resnet{6n+2}_v1, resnet{9n+2}_v2 or mlp (default resnet20_v1)")
    g.add_argument("--no-batch-norm", dest="batch_norm", action="store_const", const=False, help="ResNets without BatchNorm")
    g.add_argument("--hidden", metavar="N,N", help="MLP hidden sizes, e.g. 512,512")
    g.add_argument("--dropout", type=float, help="MLP dropout probability")


def _activation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("activation")
    g.add_argument("--activation", help="registry name: relu, gaaf_relu, gaaf_tanh, ... (default relu)")
    g.add_argument("--shape", help="GAAF shape s(x): sigmoid | gaussian | none")
    g.add_argument("--shift", type=float, help="sigmoid shape: s(x) = sigmoid(slope*(x + shift))")
    g.add_argument("--slope", type=float, help="sigmoid shape slope")
    g.add_argument("--center", type=float, help="gaussian shape: s(x) = exp(-(x - center)^2 / width)")
    g.add_argument("--width", type=float, help="gaussian shape width")
    g.add_argument("--frequency", type=float, help="K, the sawtooth's inverse period (default 10000)")
    g.add_argument("--variant", help="floor (paper) | round (seed's ex13)")
    g.add_argument("--stem-activation", dest="stem_activation", help="activation after the stem conv (default: --activation)")


def _data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="cifar10 | cifar100 | svhn | mnist (default cifar10)")
    g.add_argument("--data-dir", dest="data_dir", help="data folder (default $GAAF_DATA_DIR or ~/.cache/gaaf)")
    g.add_argument("--no-download", dest="download", action="store_const", const=False, help="fail if the data are missing")
    g.add_argument("--normalize", help="pixel_mean | channel | none")
    g.add_argument("--augment", metavar="LIST", help="e.g. shift,flip or crop,flip; '' or none for none")
    g.add_argument("--no-augment", dest="augment", action="store_const", const=[], help="no augmentation")
    g.add_argument("--limit-train", dest="limit_train", type=int, metavar="N", help="use the first N training images")
    g.add_argument("--limit-test", dest="limit_test", type=int, metavar="N", help="use the first N test images")


def _optimization_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument("--preset", help=f"recipe: {' | '.join(PRESETS)} (default seed)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", dest="batch_size", type=int, help="images per step over all processes")
    g.add_argument("--optimizer", help=" | ".join(OPTIMIZERS))
    g.add_argument("--lr", type=float, help="base learning rate")
    g.add_argument("--momentum", type=float, help="SGD momentum")
    g.add_argument("--adam-betas", dest="adam_betas", metavar="B1,B2", help="Adam (beta1, beta2) (seed: 0.9,0.999)")
    g.add_argument("--adam-eps", dest="adam_eps", type=float, help="Adam epsilon (seed: 1e-7)")
    g.add_argument("--weight-decay", dest="weight_decay", type=float, help="optimizer weight decay")
    g.add_argument("--l2", type=float, help="Keras-style l2*sum(w^2) on conv kernels (applied as its gradient 2*l2*w)")
    g.add_argument("--lr-schedule", dest="lr_schedule", metavar="E:F,...",
                   help="after E finished epochs use lr*F, e.g. 100:0.1,150:0.01; 'none' for constant")


def _run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE", help="JSON/TOML config file (or a run folder's config.json)")
    g.add_argument("--out", help="run folder (default runs/<model>-<activation>-s<seed>-<time>)")
    g.add_argument("--resume", nargs="?", const=True, default=False, type=_auto, metavar="auto",
                   help="continue the run in --out from its last.pt; '--resume auto': if there is one, "
                        "else start fresh (what a torchrun --max-restarts restart does)")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help=" | ".join(DEVICES))
    g.add_argument("--compile", dest="compile", action="store_const", const=True, help="torch.compile the model")
    g.add_argument("--amp", dest="amp", action="store_const", const=True, help="bf16 autocast")
    g.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction,
                   help="channels_last memory format (default: on CUDA)")
    g.add_argument("--tensorboard", dest="tensorboard", action="store_const", const=True, help="log to OUT/tensorboard")
    g.add_argument("--probe", dest="probe", action="store_const", const=True, help="record activation probes")
    g.add_argument("--probe-every", dest="probe_every", type=int, metavar="N",
                   help="with --probe: sample one training batch in N (default 50)")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")


def _register_eval(subparsers: Any) -> None:
    p = subparsers.add_parser("eval", help="test loss and accuracy of a checkpoint",
                              description="Evaluate a checkpoint (or a run folder's last.pt) on its data set's test split.")
    p.add_argument("checkpoint", help="a .pt checkpoint or a run folder")
    p.add_argument("--data-dir", dest="data_dir", help="data folder (default: the one the run used)")
    p.add_argument("--limit-test", dest="limit_test", type=int, metavar="N", help="use the first N test images")
    p.add_argument("--device", default="auto", help=" | ".join(DEVICES))
    p.add_argument("--batch-size", dest="batch_size", type=int, default=500)
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
                file_dict = dict(ckpt["config"])  # continue with the run's own settings; flags may change some
        overrides.setdefault("out", str(out))
    return resolve_config(file_dict, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    summary = train(cfg, resume=args.resume, progress=not args.quiet, log=not args.quiet)
    if _rank() == 0:  # under torchrun only rank 0 reports
        print(f"final test acc {summary['final_test_acc']:.4f} (best {summary['best_test_acc']:.4f} "
              f"at epoch {summary['best_epoch']}), {summary['epochs']} epochs in {summary['total_seconds']:.1f}s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.limit_test is not None and args.limit_test < 1:
        raise UserError(f"--limit-test must be >= 1, got {args.limit_test}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.device not in DEVICES:
        raise UserError(f"unknown device {args.device!r}; choose one of: {', '.join(DEVICES)}")
    r = evaluate_checkpoint(args.checkpoint, data_dir=args.data_dir, limit_test=args.limit_test,
                            device=args.device, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"test_loss {r['test_loss']:.4f}  test_acc {r['test_acc']:.4f}  "
              f"({r['n']} images, epoch {r['epoch']}, {r['checkpoint']})")
    return 0


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))
