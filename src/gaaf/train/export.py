"""`gaaf export`: a trained run's model as an ONNX file, checked in onnxruntime.

    gaaf export runs/g1/best.pt --onnx g1.onnx            # GAAF kept in the graph
    gaaf export runs/g1/best.pt --onnx g1-plain.onnx --strip   # the base activations back (gaaf.strip)

The model is rebuilt from the checkpoint's own config (what config.json records), the weights
loaded, and exported for inputs of the data set's shape (N, C, H, W) with N free, from an input of
two random images (read no data). A user's factory model (``--model pkg.module:factory``) must be
importable, as for ``gaaf eval``. See :mod:`gaaf.models.onnx_export` for what the check compares.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..data import dataset_info
from ..errors import UserError
from ..models.onnx_export import export_onnx, require_exporter
from .checkpoint import load_checkpoint
from .config import build_model_for, saved_config

#: images in the example batch the exporter traces with (not 1: torch.export fixes a dimension of size 1)
EXAMPLE_BATCH = 2


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="write a checkpoint's model as an ONNX file",
        description="Rebuild a checkpoint's model from its config, load the weights and export it to ONNX "
                    "(torch.onnx.export with dynamo=True; needs pip install 'gaaf[export]'), then run the file "
                    "in onnxruntime and print the largest difference from torch.",
    )
    p.add_argument("checkpoint", help="a .pt checkpoint (RUN/best.pt, RUN/last.pt) or a run folder (its last.pt)")
    p.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write (atomically)")
    p.add_argument("--strip", action="store_true",
                   help="put the base activation back in place of every GAAF module first (gaaf.strip)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.onnx)
    if out.is_dir():
        raise UserError(f"--onnx {args.onnx!r} is a folder; give the file to write, e.g. {out / 'model.onnx'}")
    require_exporter()  # before loading anything: the one-line hint comes first
    ckpt = load_checkpoint(args.checkpoint)
    cfg = saved_config(ckpt["config"])
    info = dataset_info(cfg.dataset)
    model = build_model_for(cfg, info.in_shape, info.num_classes)
    model.load_state_dict(ckpt["model"])
    example = torch.randn((EXAMPLE_BATCH, *info.in_shape), generator=torch.Generator().manual_seed(0))
    report = export_onnx(model, example, out, strip=args.strip)
    print(f"{report} ({cfg.model}, {cfg.activation}, epoch {int(ckpt['epoch'])} of {args.checkpoint})")
    return 0


__all__ = ["EXAMPLE_BATCH", "cmd_export", "register"]
