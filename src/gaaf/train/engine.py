"""`train(cfg)`: one training run, read top to bottom (nanoGPT's train.py, as a function).

    from gaaf.train import resolve_config, train
    summary = train(resolve_config(overrides={"model": "resnet8_v1", "epochs": 2, "out": "runs/a"}))

Per epoch: train with metrics summed on the device (one host sync per epoch), evaluate under
no_grad, then write last.pt (+ best.pt), metrics.csv and call the callbacks. The run folder is
described in docs/DEVELOPING.md. Under torchrun (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel, each rank trains on its shard, sums are all-reduced and rank 0 writes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ..data import DeviceLoader, load_dataset, make_augment
from ..errors import UserError
from ..io import atomic_write_bytes
from ..models import build_model, count_parameters
from . import claim, distributed, runfolder
from . import resume as resuming
from .callbacks import TensorBoardCallback, TrainState, call, check_optional_features, make_probe_callback
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, unwrap
from .config import TrainConfig
from .step import build_optimizer, evaluate, lr_at, make_train_step, new_accumulator


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def test_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, info: distributed.DistInfo) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's contiguous, unpadded slice of the test set, in batches (ranks sum exactly to N)."""
    n = len(x)
    lo, hi = n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size
    for i in range(lo, hi, batch_size):
        j = min(i + batch_size, hi)
        yield x[i:j], y[i:j]


def train(
    cfg: TrainConfig,
    *,
    callbacks: Iterable[Any] = (),
    progress: bool = True,
    resume: bool | str = False,
    log: bool = True,
) -> dict[str, Any]:
    """Train `cfg` into `cfg.out` and return the summary (also written to summary.json).

    progress: a tqdm bar per epoch when stderr is a terminal (else one line per epoch).
    resume: True continues from OUT/last.pt (its config must match `cfg` except epochs/out/device/...);
        "auto" does so when OUT/last.pt exists and starts fresh otherwise; a worker restarted by
        `torchrun --max-restarts` resumes its own run as "auto" does (see gaaf.train.resume).
    log: False silences the per-epoch lines and bars (errors still raise).
    """
    cfg.validate()
    mode = resuming.mode_of(resume)
    resuming.check_restartable(cfg)
    info, device = distributed.init_distributed(cfg.device)
    try:
        with contextlib.ExitStack() as claims:  # the run folder's claim (train/claim.py), taken in _train
            return _train(cfg, info, device, list(callbacks), progress, mode, log, claims)
    finally:
        distributed.shutdown(info)


def _train(
    cfg: TrainConfig, info: distributed.DistInfo, device: torch.device, callbacks: list[Any],
    progress: bool, mode: str, log: bool, claims: contextlib.ExitStack,
) -> dict[str, Any]:
    main = info.is_main
    log = log and main
    check_optional_features(cfg)  # before touching the run folder
    # ---- run folder: refuse to overwrite, or load the checkpoint to resume from. Rank 0 decides and
    # reads last.pt; every rank gets that very checkpoint (or None: start fresh), or rank 0's error.
    out = Path(cfg.out) if cfg.out else distributed.broadcast_object(runfolder.default_out(cfg), info)
    cfg = dataclasses.replace(cfg, out=str(out))  # config.json records where the run went
    distributed.run_on_main(lambda: claims.enter_context(claim.take(out)) and None, info)  # one process per run folder
    ckpt = distributed.run_on_main(lambda: resuming.open_run(out, cfg, mode), info)
    if cfg.batch_size % info.world_size:
        raise UserError(f"batch_size {cfg.batch_size} must be a multiple of the number of processes ({info.world_size})")

    # ---- seeds, data (device-resident), model, optimizer
    seed_everything(cfg.seed)

    def load(download: bool, device: torch.device = device, limit: int | None = None) -> Any:
        return load_dataset(cfg.dataset, cfg.data_dir, download=download, normalize=cfg.normalize, device=device,
                            limit_train=limit or cfg.limit_train, limit_test=limit or cfg.limit_test)

    if info.enabled and cfg.download:  # rank 0 fetches missing files once, then every rank reads them
        distributed.run_on_main(lambda: load(True, torch.device("cpu"), limit=1) and None, info)
    splits = load(cfg.download and not info.enabled)  # on failure the claim removes a folder it made (still empty)
    loader_gen = torch.Generator().manual_seed(cfg.seed)  # CPU: drives shuffling and augmentation
    train_loader = DeviceLoader(
        splits.x_train, splits.y_train, cfg.batch_size // info.world_size, shuffle=True, drop_last=False,
        augment=make_augment(cfg.augment), generator=loader_gen, rank=info.rank, world_size=info.world_size,
    )
    model = build_model(
        cfg.model, splits.num_classes, splits.in_shape, cfg.activation, cfg.act_params(),
        stem_activation=cfg.stem_activation, batch_norm=cfg.batch_norm, hidden=cfg.hidden, dropout=cfg.dropout,
    ).to(device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    torch.manual_seed(cfg.seed + info.rank)  # dropout streams differ per rank, init did not

    start_epoch, best_acc, best_epoch, rows, total_seconds = 1, -1.0, 0, [], 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch = ckpt["epoch"] + 1
        best_acc, best_epoch = ckpt["best_acc"], ckpt["best_epoch"]
        rows, total_seconds = list(ckpt["metrics"]), float(ckpt["total_seconds"])
        states = ckpt["rng"]
        set_rng_state(states[info.rank % len(states)], loader_gen)

    net: nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    eval_net: nn.Module = model
    if cfg.compile:
        net = torch.compile(net)
        eval_net = torch.compile(model) if info.enabled else net
    step = make_train_step(net, optimizer, cfg, channels_last=channels_last)
    eval_bs = max(cfg.batch_size, 256)  # eval has no activations to keep: bigger batches, same result

    # ---- config.json, callbacks
    if main:
        created = resuming.reconcile(out, ckpt) if ckpt is not None else None  # metrics.csv, best.pt as last.pt says
        runfolder.write_config(out, cfg, runfolder.run_meta(device, info.world_size, created))
    state = TrainState(model=model, cfg=cfg, out_dir=out, device=device, optimizer=optimizer,
                       epoch=start_epoch - 1, rank=info.rank, world_size=info.world_size, splits=splits)
    if cfg.tensorboard:
        callbacks.append(TensorBoardCallback())
    if cfg.probe:
        callbacks.append(make_probe_callback(state))
    call(callbacks, "on_train_start", state)
    if main and start_epoch > cfg.epochs:  # --resume auto on a finished run: said even with --quiet
        print(f"{out} already finished epoch {cfg.epochs} of {cfg.epochs}; nothing to train", file=sys.stderr)
    elif log and ckpt is not None:
        print(f"resuming {out} after epoch {start_epoch - 1}", file=sys.stderr)

    # ---- the loop
    for epoch in range(start_epoch, cfg.epochs + 1):
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        net.train()
        t0 = time.perf_counter()
        acc = new_accumulator(device)  # [Σ loss·n, Σ correct, Σ n], summed on the device
        for x, y in _progress(train_loader, epoch, cfg.epochs, acc, t0, progress and log):
            step(x, y, acc)
        distributed.all_reduce_sum(acc, info)
        loss_sum, correct, n = acc.tolist()  # the epoch's one host sync
        train_seconds = time.perf_counter() - t0
        if not math.isfinite(loss_sum):
            _diverged(out, epoch, loss_sum, rows, main, callbacks, state)

        distributed.sync_buffers(model, info)
        test = distributed.all_reduce_sum(
            evaluate(eval_net, test_batches(splits.x_test, splits.y_test, eval_bs, info), amp=cfg.amp,
                     channels_last=channels_last), info)
        test_loss_sum, test_correct, test_n = test.tolist()
        epoch_seconds = time.perf_counter() - t0
        total_seconds += epoch_seconds
        row = {
            "epoch": epoch, "lr": lr, "train_loss": loss_sum / n, "train_acc": correct / n,
            "test_loss": test_loss_sum / test_n, "test_acc": test_correct / test_n,
            "epoch_seconds": epoch_seconds, "images_per_second": n / train_seconds,
        }
        rows.append(row)
        is_best = row["test_acc"] > best_acc
        if is_best:
            best_acc, best_epoch = row["test_acc"], epoch
        rng = distributed.gather_objects(rng_state(loader_gen), info)  # every rank's RNG, for an exact resume
        if main:
            ckpt_args = dict(model=model, optimizer=optimizer, cfg=cfg, epoch=epoch, lr=lr, best_acc=best_acc,
                             best_epoch=best_epoch, metrics=rows, total_seconds=total_seconds, rng=rng)
            save_checkpoint(out / "last.pt", **ckpt_args)
            if is_best:  # the same checkpoint: copy the bytes rather than serialise it twice
                atomic_write_bytes(out / "best.pt", (out / "last.pt").read_bytes())
            runfolder.write_metrics(out, rows)
        state.epoch = epoch
        call(callbacks, "on_epoch_end", state, row)
        if log:
            print(_epoch_line(row, cfg.epochs), file=sys.stderr, flush=True)

    # ---- summary
    last = rows[-1]
    summary = {
        "status": "finished",
        "final_test_acc": last["test_acc"], "final_test_loss": last["test_loss"],
        "best_test_acc": best_acc, "best_epoch": best_epoch, "epochs": last["epoch"],
        "total_seconds": total_seconds, "parameters": count_parameters(model),
        "final_train_loss": last["train_loss"], "final_train_acc": last["train_acc"],
        "images_per_second": _mean([r["images_per_second"] for r in rows[-5:]]),
        "world_size": info.world_size, "device": device.type,
    }
    if main:
        runfolder.write_summary(out, summary)
    call(callbacks, "on_train_end", state, summary)
    return summary


def _diverged(out: Path, epoch: int, loss_sum: float, rows: list, main: bool, callbacks: list, state: TrainState) -> None:
    """Stop on a non-finite loss: last.pt stays the previous epoch's, summary.json says why."""
    what = "nan" if math.isnan(loss_sum) else "inf"
    kept = f"epoch {rows[-1]['epoch']}" if rows else "none: it diverged in the first epoch"
    msg = f"training diverged: train loss is {what} in epoch {epoch}; kept the last good checkpoint ({kept}) in {out}; try a lower --lr"
    summary = {"status": "diverged", "message": msg, "epochs": rows[-1]["epoch"] if rows else 0}
    if main:
        runfolder.write_summary(out, summary)
    call(callbacks, "on_train_end", state, summary)
    raise TrainingDiverged(msg)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.2e}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}  "
            f"{row['epoch_seconds']:.1f}s  {row['images_per_second']:.0f} img/s")


def _progress(loader: Any, epoch: int, epochs: int, acc: torch.Tensor, t0: float, enabled: bool) -> Iterable:
    """The loader itself, or a tqdm bar over it on a terminal. The bar reads the device sums every
    25 steps only (a host sync), so the hot path stays sync-free when nobody is watching."""
    if not (enabled and runfolder.is_tty(sys.stderr)):
        return loader
    from tqdm import tqdm

    def gen() -> Iterator:
        with tqdm(total=len(loader), desc=f"epoch {epoch}/{epochs}", leave=False, file=sys.stderr,
                  dynamic_ncols=True) as bar:
            for i, batch in enumerate(loader):
                yield batch
                bar.update(1)
                if i % 25 == 24:
                    loss_sum, correct, n = acc.tolist()
                    bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{correct / n:.3f}",
                                    img_s=f"{n / (time.perf_counter() - t0):.0f}")

    return gen()


def evaluate_checkpoint(
    path: str | Path,
    *,
    data_dir: str | None = None,
    limit_test: int | None = None,
    device: str = "auto",
    batch_size: int = 500,
) -> dict[str, Any]:
    """Test loss and accuracy of a checkpoint (a file, or a run folder meaning its last.pt).

    The data set is loaded exactly as in training (same normalisation statistics: same
    `limit_train`), only the test split may be cut with `limit_test`."""
    ckpt = load_checkpoint(path)
    cfg = TrainConfig(**{k: v for k, v in ckpt["config"].items() if k in TrainConfig.field_names()})
    dev = distributed.resolve_device(device)
    splits = load_dataset(
        cfg.dataset, data_dir if data_dir is not None else cfg.data_dir, download=cfg.download,
        normalize=cfg.normalize, device=dev, limit_train=cfg.limit_train,
        limit_test=limit_test if limit_test is not None else cfg.limit_test,
    )
    model = build_model(
        cfg.model, splits.num_classes, splits.in_shape, cfg.activation, cfg.act_params(),
        stem_activation=cfg.stem_activation, batch_norm=cfg.batch_norm, hidden=cfg.hidden, dropout=cfg.dropout,
    ).to(dev)
    model.load_state_dict(ckpt["model"])
    sums = evaluate(model, test_batches(splits.x_test, splits.y_test, batch_size, distributed.DistInfo()), amp=cfg.amp)
    loss_sum, correct, n = sums.tolist()
    return {"test_loss": loss_sum / n, "test_acc": correct / n, "n": int(n), "epoch": int(ckpt["epoch"]),
            "checkpoint": str(path)}
