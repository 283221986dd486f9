"""`train(cfg)`: one training run, read top to bottom (nanoGPT's train.py, as a function).

    from gaaf.train import resolve_config, train
    summary = train(resolve_config(overrides={"model": "resnet8_v1", "epochs": 2, "out": "runs/a"}))

Model, optimizer and train step come from `gaaf.train.setup.build_training` (as in the benchmarks).
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
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from ..activations import kernels, precision
from ..data import DeviceLoader, Splits, load_dataset, make_augment
from ..errors import UserError
from ..io import atomic_write_bytes
from ..models import activation_sites, count_parameters
from . import claim, distributed, runfolder, schedule
from . import precise_bn as precise_bn_module
from . import resume as resuming
from .callbacks import TensorBoardCallback, TrainState, call, check_optional_features, make_probe_callback
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, unwrap
from .config import TrainConfig, build_model_for, saved_config
from .setup import Training, build_training
from .step import autocast, evaluate, new_accumulator


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
    finished = False
    try:
        with contextlib.ExitStack() as claims:  # the run folder's claim (train/claim.py), taken in _train
            summary = _train(cfg, info, device, list(callbacks), progress, mode, log, claims)
        finished = True
        return summary
    finally:
        distributed.shutdown(info, finished=finished)


def _train(
    cfg: TrainConfig, info: distributed.DistInfo, device: torch.device, callbacks: list[Any],
    progress: bool, mode: str, log: bool, claims: contextlib.ExitStack,
) -> dict[str, Any]:
    log = log and info.is_main
    check_optional_features(cfg)  # before touching the run folder
    cfg, ckpt = _open_run(cfg, info, mode, claims)
    out = Path(cfg.out)

    # ---- seeds, data (device-resident), model, optimizer, train step; on resume their saved states
    seed_everything(cfg.seed)
    splits, loader = _load_data(cfg, info, device)  # on failure the claim removes a folder it made (still empty)
    run = build_training(cfg, device, splits.in_shape, splits.num_classes, info=info, state=ckpt)
    amp_note = precision.amp_note(m for _, m in activation_sites(run.model)) if cfg.amp else None
    if amp_note and info.is_main:  # bf16 cannot resolve GAAF's sawtooth: said once, even with --quiet
        print(amp_note, file=sys.stderr, flush=True)
    torch.manual_seed(cfg.seed + info.rank)  # dropout streams differ per rank, init did not
    record = _restore(ckpt, info, loader)
    state = _begin(out, run, ckpt, record, splits, info, device, callbacks, log)

    # ---- the loop: epochs, each cut short where max_iterations ends the run (gaaf.train.schedule)
    for epoch in range(record.epoch + 1, cfg.epochs + 1):
        steps = schedule.steps_in_epoch(cfg, record.iterations, len(loader))
        if steps == 0:
            break
        lrs = schedule.epoch_lrs(cfg, epoch, record.iterations, steps)  # one per step
        t0, compile0 = time.perf_counter(), kernels.compile_seconds()
        loss_sum, correct, n = _train_epoch(run, loader, lrs, epoch, info, device, t0, progress and log)
        train_seconds = _steady_seconds(time.perf_counter() - t0, kernels.compile_seconds() - compile0)
        if not math.isfinite(loss_sum):
            _diverged(out, epoch, loss_sum, record.rows, info.is_main, callbacks, state)
        test_loss_sum, test_correct, test_n = _test_epoch(run, splits, info)
        row = {
            "epoch": epoch, "lr": lrs[-1], "train_loss": loss_sum / n, "train_acc": correct / n,
            "test_loss": test_loss_sum / test_n, "test_acc": test_correct / test_n,
            "epoch_seconds": time.perf_counter() - t0, "images_per_second": n / train_seconds,
        }
        is_best = record.add(row, steps)
        _save_epoch(out, run, record, is_best, loader.generator, info)
        state.epoch = epoch
        call(callbacks, "on_epoch_end", state, row)
        if log:
            print(_epoch_line(row, cfg.epochs), file=sys.stderr, flush=True)
    return _finish(out, run, record, info, device, callbacks, state)


@dataclass
class _Record:
    """What the run has done so far (restored from last.pt on resume): what last.pt saves."""

    epoch: int = 0  # the last finished epoch
    iterations: int = 0  # optimizer steps taken in all
    best_acc: float = -1.0
    best_epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv's rows
    total_seconds: float = 0.0

    def add(self, row: dict[str, Any], steps: int) -> bool:
        """Record a finished epoch's row and its `steps`; True when it is the best so far."""
        self.rows.append(row)
        self.epoch = row["epoch"]
        self.iterations += steps
        self.total_seconds += row["epoch_seconds"]
        is_best = row["test_acc"] > self.best_acc
        if is_best:
            self.best_acc, self.best_epoch = row["test_acc"], row["epoch"]
        return is_best


def _open_run(cfg: TrainConfig, info: distributed.DistInfo, mode: str,
              claims: contextlib.ExitStack) -> tuple[TrainConfig, dict[str, Any] | None]:
    """Claim the run folder, then refuse to overwrite it or load the checkpoint to resume from.

    Rank 0 decides and reads last.pt; every rank gets that very checkpoint (or None: start fresh),
    or rank 0's error. Returns `cfg` with `out` set (config.json records where the run went)."""
    out = Path(cfg.out) if cfg.out else distributed.broadcast_object(runfolder.default_out(cfg), info)
    cfg = dataclasses.replace(cfg, out=str(out))
    distributed.run_on_main(lambda: claims.enter_context(claim.take(out)) and None, info)  # one process per run folder
    ckpt = distributed.run_on_main(lambda: resuming.open_run(out, cfg, mode), info)
    if cfg.batch_size % info.world_size:
        raise UserError(f"batch_size {cfg.batch_size} must be a multiple of the number of processes ({info.world_size})")
    return cfg, ckpt


def _load_data(cfg: TrainConfig, info: distributed.DistInfo, device: torch.device) -> tuple[Splits, DeviceLoader]:
    """The data set on `device` and this rank's shuffling, augmenting training loader."""
    def load(download: bool, device: torch.device = device, limit: int | None = None) -> Splits:
        return load_dataset(cfg.dataset, cfg.data_dir, download=download, normalize=cfg.normalize, device=device,
                            limit_train=limit or cfg.limit_train, limit_test=limit or cfg.limit_test)

    if info.enabled and cfg.download:  # rank 0 fetches missing files once, then every rank reads them
        distributed.run_on_main(lambda: load(True, torch.device("cpu"), limit=1) and None, info)
    splits = load(cfg.download and not info.enabled)
    gen = torch.Generator().manual_seed(cfg.seed)  # CPU: drives shuffling and augmentation
    loader = DeviceLoader(
        splits.x_train, splits.y_train, cfg.batch_size // info.world_size, shuffle=True, drop_last=False,
        augment=make_augment(cfg.augment), generator=gen, rank=info.rank, world_size=info.world_size,
    )
    return splits, loader


def _restore(ckpt: dict[str, Any] | None, info: distributed.DistInfo, loader: DeviceLoader) -> _Record:
    """The record to continue (empty for a fresh run); on resume also this rank's RNG streams.
    A checkpoint from before iterations were saved ran whole epochs of `len(loader)` steps."""
    if ckpt is None:
        return _Record()
    states = ckpt["rng"]
    set_rng_state(states[info.rank % len(states)], loader.generator)
    iterations = int(ckpt.get("iterations", ckpt["epoch"] * len(loader)))
    return _Record(epoch=ckpt["epoch"], iterations=iterations, best_acc=ckpt["best_acc"], best_epoch=ckpt["best_epoch"],
                   rows=list(ckpt["metrics"]), total_seconds=float(ckpt["total_seconds"]))


def _begin(out: Path, run: Training, ckpt: dict[str, Any] | None, record: _Record, splits: Splits,
           info: distributed.DistInfo, device: torch.device, callbacks: list[Any], log: bool) -> TrainState:
    """config.json (after a resume: metrics.csv and best.pt as last.pt says), then the callbacks."""
    cfg = run.cfg
    if info.is_main:
        created = resuming.reconcile(out, ckpt) if ckpt is not None else None
        runfolder.write_config(out, cfg, runfolder.run_meta(device, info.world_size, created))
    state = TrainState(model=run.model, cfg=cfg, out_dir=out, device=device, optimizer=run.optimizer,
                       epoch=record.epoch, rank=info.rank, world_size=info.world_size, splits=splits)
    if cfg.tensorboard:
        callbacks.append(TensorBoardCallback())
    if cfg.probe:
        callbacks.append(make_probe_callback(state))
    call(callbacks, "on_train_start", state)
    conversion = getattr(run.model, "gaaf_conversion", None)  # a factory's model: what gaaf.convert did
    if log and info.is_main and conversion is not None:
        print(f"model {cfg.model}: {len(conversion.converted)} activation sites converted to {cfg.activation} "
              "(gaaf.convert)", file=sys.stderr)
    if info.is_main and schedule.finished(cfg, record.epoch, record.iterations):  # --resume auto on a finished run
        print(f"{out} already finished {_done(record.epoch, record.iterations, cfg)}; nothing to train", file=sys.stderr)
    elif log and ckpt is not None:
        print(f"resuming {out} after epoch {record.epoch}", file=sys.stderr)
    return state


def _steady_seconds(train_seconds: float, compile_seconds: float) -> float:
    """The epoch's training seconds less the one-off kernel compile (or cache load) spent in it:
    what ``images_per_second`` divides by, so the first epoch's throughput is comparable with the
    rest (``epoch_seconds`` stays the wall time)."""
    return max(train_seconds - compile_seconds, 1e-9)


def _train_epoch(run: Training, loader: DeviceLoader, lrs: list[float], epoch: int, info: distributed.DistInfo,
                 device: torch.device, t0: float, show: bool) -> list[float]:
    """One pass over this rank's shard, or its first len(lrs) batches, step i at learning rate lrs[i]:
    [Σ loss·n, Σ correct, Σ n] summed on the device over all ranks, read back once (the epoch's one
    host sync). The rate is written into the optimizer only when it changes (a Python float)."""
    run.net.train()
    acc = new_accumulator(device)
    current = None
    for lr, (x, y) in zip(lrs, _progress(loader, epoch, run.cfg.epochs, acc, t0, show, len(lrs))):  # lrs first:
        if lr != current:  # a cut-short epoch draws no batch (nor augmentation) past its last step
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            current = lr
        run.step(x, y, acc)
    distributed.all_reduce_sum(acc, info)
    return acc.tolist()


def _test_epoch(run: Training, splits: Splits, info: distributed.DistInfo) -> list[float]:
    """[Σ loss·n, Σ correct, Σ n] over the whole test set (each rank evaluates its slice), with
    BatchNorm statistics recomputed first from `cfg.precise_bn` training images (train/precise_bn.py;
    every rank computes the same ones)."""
    cfg = run.cfg
    precise_bn_module.recalibrate(unwrap(run.model), splits.x_train, cfg.precise_bn, batch_size=cfg.batch_size,
                           channels_last=run.channels_last, autocast=autocast(splits.x_train.device, cfg.amp))
    distributed.sync_buffers(run.model, info)
    batches = test_batches(splits.x_test, splits.y_test, run.eval_batch_size, info)
    sums = evaluate(run.eval_net, batches, amp=run.cfg.amp, channels_last=run.channels_last)
    return distributed.all_reduce_sum(sums, info).tolist()


def _save_epoch(out: Path, run: Training, record: _Record, is_best: bool, loader_gen: torch.Generator,
                info: distributed.DistInfo) -> None:
    """last.pt (+ best.pt), then metrics.csv, each atomic, on rank 0; every rank's RNG goes into last.pt."""
    rng = distributed.gather_objects(rng_state(loader_gen), info)  # every rank's RNG, for an exact resume
    if not info.is_main:
        return
    save_checkpoint(out / "last.pt", model=run.model, optimizer=run.optimizer, cfg=run.cfg, epoch=record.epoch,
                    iterations=record.iterations, lr=record.rows[-1]["lr"], best_acc=record.best_acc, best_epoch=record.best_epoch,
                    metrics=record.rows, total_seconds=record.total_seconds, rng=rng)
    if is_best:  # the same checkpoint: copy the bytes rather than serialise it twice
        atomic_write_bytes(out / "best.pt", (out / "last.pt").read_bytes())
    runfolder.write_metrics(out, record.rows)


def _finish(out: Path, run: Training, record: _Record, info: distributed.DistInfo, device: torch.device,
            callbacks: list[Any], state: TrainState) -> dict[str, Any]:
    """summary.json (rank 0) and the callbacks' on_train_end; returns the summary."""
    last = record.rows[-1]
    summary = {
        "status": "finished",
        "final_test_acc": last["test_acc"], "final_test_loss": last["test_loss"],
        "best_test_acc": record.best_acc, "best_epoch": record.best_epoch, "epochs": last["epoch"],
        "iterations": record.iterations,
        "total_seconds": record.total_seconds, "parameters": count_parameters(run.model),
        "final_train_loss": last["train_loss"], "final_train_acc": last["train_acc"],
        "images_per_second": _mean([r["images_per_second"] for r in record.rows[-5:]]),
        "world_size": info.world_size, "device": device.type,
        **loaded_images(state.splits),
    }
    if info.is_main:
        runfolder.write_summary(out, summary)
    call(callbacks, "on_train_end", state, summary)
    return summary


def loaded_images(splits: Splits | None) -> dict[str, int]:
    """{"train_images", "test_images"}: the images this run loaded of each split (after its limits,
    from whatever files it read), which `gaaf report` prefers over the data set's official sizes."""
    if splits is None:
        return {}
    return {"train_images": int(splits.x_train.shape[0]), "test_images": int(splits.x_test.shape[0])}


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


def _done(epoch: int, iterations: int, cfg: TrainConfig) -> str:
    """`epoch 3 of 3` or `64000 of 64000 iterations`: what ended a run."""
    if cfg.max_iterations and iterations >= cfg.max_iterations:
        return f"{iterations} of {cfg.max_iterations} iterations"
    return f"epoch {epoch} of {cfg.epochs}"


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.2e}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}  test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}  "
            f"{row['epoch_seconds']:.1f}s  {row['images_per_second']:.0f} img/s")


def _progress(loader: Any, epoch: int, epochs: int, acc: torch.Tensor, t0: float, enabled: bool, steps: int) -> Iterable:
    """The loader itself, or a tqdm bar over it (`steps` long) on a terminal. The bar reads the device
    sums every 25 steps only (a host sync), so the hot path stays sync-free when nobody is watching."""
    if not (enabled and runfolder.is_tty(sys.stderr)):
        return loader
    from tqdm import tqdm

    def gen() -> Iterator:
        with tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False, file=sys.stderr,
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
    precise_bn: int | None = None,
) -> dict[str, Any]:
    """Test loss and accuracy of a checkpoint (a file, or a run folder meaning its last.pt).

    The data set is loaded exactly as in training (same normalisation statistics: same
    `limit_train`), only the test split may be cut with `limit_test`. `precise_bn=N` first
    recomputes the BatchNorm statistics from N training images (train/precise_bn.py) in batches of
    the run's batch size; None evaluates with the checkpoint's own statistics."""
    ckpt = load_checkpoint(path)
    cfg = saved_config(ckpt["config"])  # a checkpoint older than a field ran with its old value
    dev = distributed.resolve_device(device)
    splits = load_dataset(
        cfg.dataset, data_dir if data_dir is not None else cfg.data_dir, download=cfg.download,
        normalize=cfg.normalize, device=dev, limit_train=cfg.limit_train,
        limit_test=limit_test if limit_test is not None else cfg.limit_test,
    )
    model = build_model_for(cfg, splits.in_shape, splits.num_classes).to(dev)
    model.load_state_dict(ckpt["model"])
    if precise_bn is not None:
        precise_bn_module.recalibrate(model, splits.x_train, precise_bn, batch_size=cfg.batch_size,
                                      autocast=autocast(dev, cfg.amp))
    sums = evaluate(model, test_batches(splits.x_test, splits.y_test, batch_size, distributed.DistInfo()), amp=cfg.amp)
    loss_sum, correct, n = sums.tolist()
    return {"test_loss": loss_sum / n, "test_acc": correct / n, "n": int(n), "epoch": int(ckpt["epoch"]),
            "checkpoint": str(path)}
