"""Training: the config, the loop, checkpoints and the `gaaf train` / `gaaf eval` commands.

    from gaaf.train import resolve_config, train
    cfg = resolve_config(overrides={"model": "resnet20_v1", "activation": "gaaf_relu", "shift": -1.0,
                                    "epochs": 200, "out": "runs/gaaf_relu"})
    summary = train(cfg)          # writes runs/gaaf_relu/{config.json, metrics.csv, summary.json, last.pt, best.pt}
"""
from ..errors import require_torch

require_torch(__name__)  # before anything imports torch: one line that names the fix

from .callbacks import TrainState
from .checkpoint import load_checkpoint, save_checkpoint
from .config import (
    PRESETS, TrainConfig, build_model_for, check_config, config_problems, load_config_file, resolve_config,
)
from .engine import TrainingDiverged, evaluate_checkpoint, train
from .setup import Training, build_training
from .schedule import lr_at
from .step import build_optimizer, conv_kernels, evaluate, make_train_step, new_accumulator

__all__ = [
    "PRESETS", "TrainConfig", "TrainState", "Training", "TrainingDiverged", "build_model_for", "build_optimizer",
    "build_training", "check_config", "config_problems", "conv_kernels", "evaluate", "evaluate_checkpoint",
    "load_checkpoint", "load_config_file", "lr_at", "make_train_step", "new_accumulator", "resolve_config",
    "save_checkpoint", "train",
]
