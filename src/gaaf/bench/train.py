r"""Training throughput of whole models with relu vs gaaf_relu: what GAAF costs a real training step.

For each model, relu and gaaf_relu (shift −1, the seed sweep's best) are built from the same seed
and trained IN THE SAME PROCESS, their steps alternating round by round (see :mod:`._timing`):

* ``train``: the engine's own hot path — model, optimizer and train step built by
  :func:`gaaf.train.setup.build_training`, exactly as ``gaaf train`` builds them, with the ``seed``
  preset (Adam, l2 1e-4 on conv kernels), on one synthetic, device-resident batch of the data set's
  shape (CIFAR (3, 32, 32) for ResNets, MNIST (1, 28, 28) for the MLP);
* ``eval``: :func:`gaaf.train.step.evaluate` (no_grad, eval mode) at the engine's eval batch size
  (:func:`gaaf.train.setup.eval_batch_size`: max(batch, 256)).

Modes: ``eager`` (the engine's default; GAAF runs its fused op with eager-compiled kernels) and
``compiled`` (``torch.compile(model)`` as ``--compile`` does). One timed sample is `steps` calls;
the first call (compilation, allocator warm-up) and `warmup` more are not timed. Reported: the
median images/s over the rounds and the ratio gaaf_relu / relu (1.0 = GAAF is free).

Under the table: the floor (:mod:`.kernel_ceiling`: the activation kernels alone and the highest
train ratio they allow), the target that ceiling sets and whether the paired ratio meets it, and
the peak memory of one train step per candidate (:mod:`.step_memory`).

``profile_steps`` > 0 also runs ``torch.profiler`` over that many training steps of each candidate
and keeps the top ops by self time (grouped by op name) with their share of the total, and the
split of the step's self time by phase (forward, backward, optimizer) and kind (convolution,
compiled kernels, other ops), printed for relu and gaaf_relu side by side (:mod:`.step_split`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from ..activations import kernels as gaaf_kernels
from ..data import dataset_info
from ..errors import UserError, plural
from ..train.allocator import keep_freed_memory
from ..train.config import TrainConfig, resolve_config
from ..train.setup import Training, build_training, eval_batch_size
from ..train.step import evaluate, new_accumulator
from ._timing import Timing, alternate, quartiles
from .activations import compile_cache_room, environment, machine_line
from .kernel_ceiling import Floor, activation_floor, gaaf_sites
from .step_memory import peak_step_bytes, ratio_target
from .step_split import op_totals, profile_alternating, run_profiler, split_lines, top_ops

#: the two activations compared, with the TrainConfig overrides that select them
ACTIVATIONS: dict[str, dict[str, Any]] = {"relu": {}, "gaaf_relu": {"shift": -1.0}}
MODES = ("eager", "compiled")
#: the data set whose shape each model family trains on
_DATASET = {"mlp": "mnist"}
_DEFAULT_DATASET = "cifar10"


@dataclass(frozen=True)
class Row:
    """One (model, mode, phase, activation) candidate."""

    model: str
    mode: str  # eager | compiled
    phase: str  # train | eval
    activation: str
    timing: Timing  # seconds per sample of `steps` calls
    images_per_sample: int

    @property
    def images_per_second(self) -> float:
        return self.images_per_sample / self.timing.median

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "mode": self.mode, "phase": self.phase, "activation": self.activation,
                "images_per_second": self.images_per_second, "images_per_sample": self.images_per_sample,
                **self.timing.as_dict()}


@dataclass
class TrainBenchResult:
    rows: list[Row] = field(default_factory=list)
    profiles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    splits: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> "phase/kind" -> ms per step
    floors: dict[str, Floor] = field(default_factory=dict)  # per model: the activation kernels alone
    memory: dict[str, int] = field(default_factory=dict)  # "model/mode/activation" -> peak bytes of one train step
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def _row(self, model: str, mode: str, phase: str, activation: str) -> "Row | None":
        return next((r for r in self.rows if (r.model, r.mode, r.phase, r.activation) == (model, mode, phase, activation)),
                    None)

    def _pair(self, model: str, mode: str, phase: str) -> "tuple[Row, Row] | None":
        relu, gaaf = self._row(model, mode, phase, "relu"), self._row(model, mode, phase, "gaaf_relu")
        return (relu, gaaf) if relu is not None and gaaf is not None else None

    def ratio(self, model: str, mode: str, phase: str) -> float:
        """images/s of gaaf_relu ÷ images/s of relu, from the two medians (nan where either is missing)."""
        pair = self._pair(model, mode, phase)
        return pair[1].images_per_second / pair[0].images_per_second if pair else float("nan")

    def paired_ratio(self, model: str, mode: str, phase: str) -> "tuple[float, float, float]":
        """(median, q1, q3) of the per-round ratios relu seconds ÷ gaaf_relu seconds.

        Both ran in the same round, next to each other, so a drift of the machine's speed (other
        jobs, clocks) that moves both cancels in each round's ratio; the median over rounds then
        drops the rounds a burst hit one side of. nan where either side is missing.
        """
        pair = self._pair(model, mode, phase)
        if pair is None:
            return (math.nan,) * 3
        per_round = [a / b for a, b in zip(pair[0].timing.samples, pair[1].timing.samples)]
        q1, q3 = quartiles(per_round)
        return statistics.median(per_round), q1, q3

    def as_dict(self) -> dict[str, Any]:
        keys = dict.fromkeys((r.model, r.mode, r.phase) for r in self.rows)
        ratios = [{"model": m, "mode": mo, "phase": p, "gaaf_relu_over_relu": self.ratio(m, mo, p),
                   **dict(zip(("paired_median", "paired_q1", "paired_q3"), self.paired_ratio(m, mo, p)))}
                  for m, mo, p in keys]
        floors = {m: {**f.as_dict(), "ceilings": {mode: self.ceiling(m, mode) for mode in MODES}}
                  for m, f in self.floors.items()}
        targets = {f"{m}/{mode}": {"case": t.case, "paired_ratio_target": t.value, "met": self.paired_ratio(m, mode, "train")[0] >= t.value}
                   for m in self.floors for mode in MODES if (t := ratio_target(self.ceiling(m, mode))) is not None}
        return {"environment": self.environment, "settings": self.settings, "rows": [r.as_dict() for r in self.rows],
                "ratios": ratios, "floors": floors, "targets": targets, "peak_step_bytes": self.memory,
                "profiles": self.profiles, "step_splits": self.splits}

    def ceiling(self, model: str, mode: str) -> float:
        """The highest train ratio the model's relu step allows given gaaf_relu's activation-kernel
        floor (see :mod:`.kernel_ceiling`); nan without a floor or a relu train row."""
        relu = self._row(model, mode, "train", "relu")
        floor = self.floors.get(model)
        if relu is None or floor is None:
            return math.nan
        return floor.ceiling(relu.timing.median / self.settings.get("steps_per_sample", 1))


# --------------------------------------------------------------------------- building one candidate
def dataset_for(model: str) -> str:
    return _DATASET.get(model.strip().lower(), _DEFAULT_DATASET)


def bench_config(model: str, activation: str, *, batch_size: int, amp: bool, device: str) -> TrainConfig:
    """The seed preset's TrainConfig for `model` with `activation` (validated like `gaaf train`)."""
    overrides = {"model": model, "activation": activation, "dataset": dataset_for(model), "batch_size": batch_size,
                 "amp": amp, "device": device, "download": False, **ACTIVATIONS[activation]}
    return resolve_config(overrides=overrides)


def synthetic_batch(cfg: Any, batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): a standard-normal batch of the data set's (C, H, W) and random labels, on `device`."""
    data = dataset_info(cfg.dataset)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *data.in_shape), generator=gen)
    y = torch.randint(0, data.num_classes, (batch,), generator=gen)
    return x.to(device), y.to(device)


def build_candidate(cfg: TrainConfig, device: torch.device, *, compile: bool, channels_last: bool,
                    seed: int = 0) -> Training:
    """`cfg` with `compile` and `channels_last` set, built by :func:`gaaf.train.setup.build_training` —
    the engine's own builder — on the data set's shape, its weights initialised from `seed`."""
    data = dataset_info(cfg.dataset)
    torch.manual_seed(seed)
    cfg = dataclasses.replace(cfg, compile=compile, channels_last=channels_last)
    return build_training(cfg, device, data.in_shape, data.num_classes)


def train_fn(c: Training, x: torch.Tensor, y: torch.Tensor, steps: int) -> Callable[[], None]:
    """`steps` training steps on (x, y); the metrics stay on the device, as in the engine."""
    acc = new_accumulator(x.device)

    def run() -> None:
        c.net.train()
        for _ in range(steps):
            c.step(x, y, acc)

    return run


def eval_fn(c: Training, x: torch.Tensor, y: torch.Tensor, steps: int) -> Callable[[], None]:
    """`steps` evaluation batches through the engine's `evaluate` (no_grad, eval mode)."""
    batches = [(x, y)] * steps

    def run() -> None:
        evaluate(c.eval_net, batches, amp=c.cfg.amp, channels_last=c.channels_last)

    return run


# --------------------------------------------------------------------------- the benchmark
def bench_train(
    models: Sequence[str] = ("resnet20_v1",),
    *,
    batch_size: int = 128,
    rounds: int = 5,
    steps: int = 3,
    warmup: int = 1,
    modes: Sequence[str] = MODES,
    device: "str | torch.device" = "cpu",
    amp: bool = False,
    channels_last: "bool | None" = None,
    eval_phase: bool = True,
    profile_steps: int = 0,
    log: "Callable[[str], None] | None" = None,
) -> TrainBenchResult:
    """Time relu vs gaaf_relu training (and evaluation) of each model; see the module docstring."""
    device = torch.device(device)
    log = log or (lambda msg: None)
    keep_freed_memory()  # as gaaf train does (gaaf.train.allocator)
    for name, v, low in (("batch_size", batch_size, 1), ("rounds", rounds, 1), ("steps", steps, 1),
                         ("warmup", warmup, 0), ("profile_steps", profile_steps, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise UserError(f"{name} must be a whole number >= {low}, got {v!r}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"unknown mode {bad[0] if bad else '(none)'!r}; choose from: {', '.join(MODES)}")
    cl = channels_last if channels_last is not None else device.type == "cuda"  # the engine's default
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    eval_bs = eval_batch_size(batch_size)  # as the engine
    result = TrainBenchResult(environment=environment(device), settings={
        "models": list(models), "batch_size": batch_size, "eval_batch_size": eval_bs, "rounds": rounds,
        "steps_per_sample": steps, "warmup": warmup, "modes": list(modes), "amp": amp, "channels_last": cl,
        "preset": "seed", "gaaf_eager_kernels": gaaf_kernels.eager_compile_enabled(),
        "activations": {k: v or {} for k, v in ACTIVATIONS.items()}, "eval": eval_phase,
        "profile_steps": profile_steps,
    })
    with compile_cache_room(64):
        for model in models:
            _bench_model(model, result, device, batch_size, eval_bs, rounds, steps, warmup, modes, amp, cl,
                         eval_phase, profile_steps, sync, log)
            if "compiled" in modes:
                torch._dynamo.reset()  # free this model's graphs before the next one
    return result


def _bench_model(model: str, result: TrainBenchResult, device: torch.device, batch_size: int, eval_bs: int,
                 rounds: int, steps: int, warmup: int, modes: Sequence[str], amp: bool, cl: bool, eval_phase: bool,
                 profile_steps: int, sync: Any, log: Callable[[str], None]) -> None:
    cands: dict[tuple[str, str, str], Callable[[], None]] = {}
    train_steps: dict[str, Callable[[], None]] = {}
    probe: "tuple[torch.nn.Module, torch.Tensor] | None" = None  # a gaaf_relu model and its batch
    for mode in modes:
        for act in ACTIVATIONS:
            cfg = bench_config(model, act, batch_size=batch_size, amp=amp, device=device.type)
            c = build_candidate(cfg, device, compile=mode == "compiled", channels_last=cl)
            x, y = synthetic_batch(cfg, batch_size, device)
            cands[(mode, "train", act)] = train_fn(c, x, y, steps)
            if act == "gaaf_relu" and probe is None:
                probe = (c.model, x)
            train_steps[f"{model}/{mode}/{act}"] = train_fn(c, x, y, 1)
            if eval_phase:
                xe, ye = synthetic_batch(cfg, eval_bs, device, seed=1)
                cands[(mode, "eval", act)] = eval_fn(c, xe, ye, steps)
    log(f"{model}: {len(cands)} candidates; first calls" + (" (compiling)" if "compiled" in modes else "") + " ...")
    timings = alternate({"/".join(k): f for k, f in cands.items()}, rounds, warmup, sync,
                        progress=lambda r, n: log(f"{model}: round {r}/{n}"))
    for (mode, phase, act) in cands:
        images = steps * (batch_size if phase == "train" else eval_bs)
        result.rows.append(Row(model, mode, phase, act, timings[f"{mode}/{phase}/{act}"], images))
    spec, sizes = gaaf_sites(*probe) if probe is not None else (None, [])
    if spec is not None and sizes:
        log(f"{model}: activation kernels alone ({len(sizes)} GAAF sites)")
        result.floors[model] = activation_floor(spec, sizes, device, rounds=max(rounds, 5), sync=sync)
    for key, fn in train_steps.items():
        result.memory[key] = peak_step_bytes(fn, device)
    if profile_steps:
        log(f"{model}: profiling {plural(profile_steps, 'step')} of each candidate, in turn")
        tops, splits = profile_alternating(train_steps, profile_steps, device)
        result.profiles.update(tops)
        result.splits.update(splits)


def profile_ops(step: Callable[[], None], n: int, device: torch.device, top: "int | None" = 12) -> list[dict[str, Any]]:
    """torch.profiler over `n` calls of `step` (already warm): the `top` ops (None: all) by self time, grouped by
    op name, each with its call count, self milliseconds per step and share of all self time."""
    return top_ops(op_totals(run_profiler(step, n, device), device), n, top)


# --------------------------------------------------------------------------- the report
def format_table(result: TrainBenchResult) -> str:
    env, st = result.environment, result.settings
    lines = [
        f"gaaf bench train — relu vs gaaf_relu (shift -1), seed preset (Adam, l2 1e-4), {env['device']}"
        + (f" ({env['gpu']})" if "gpu" in env else ""),
        machine_line(env),
        f"settings: batch {st['batch_size']} (eval {st['eval_batch_size']}) | {st['steps_per_sample']} steps per "
        f"sample | median of {st['rounds']} alternating rounds after {st['warmup']} warm-up | amp "
        f"{'bf16' if st['amp'] else 'off'} | channels_last {'on' if st['channels_last'] else 'off'} | "
        f"GAAF eager kernels {'on' if st['gaaf_eager_kernels'] else 'off'}",
        "", f"{'model':<14}{'mode':<10}{'phase':<7}{'relu img/s':>12}{'gaaf img/s':>12}{'ratio':>8}"
        f"{'paired [q1, q3]':>23}{'IQR relu':>10}{'IQR gaaf':>10}{'1st call':>10}",
    ]
    lines.append("-" * len(lines[-1]))
    by_key: dict[tuple[str, str, str], dict[str, Row]] = {}
    for r in result.rows:
        by_key.setdefault((r.model, r.mode, r.phase), {})[r.activation] = r
    for (model, mode, phase), rows in by_key.items():
        relu, gaaf = rows.get("relu"), rows.get("gaaf_relu")
        iqr = [f"{100 * r.timing.iqr / r.timing.median:.0f}%" if r else "—" for r in (relu, gaaf)]
        first = max((r.timing.first_call for r in rows.values()), default=float("nan"))
        med, q1, q3 = result.paired_ratio(model, mode, phase)
        lines.append(
            f"{model:<14}{mode:<10}{phase:<7}{_ips(relu):>12}{_ips(gaaf):>12}"
            f"{result.ratio(model, mode, phase):>8.3f}{f'{med:.3f} [{q1:.3f}, {q3:.3f}]':>23}"
            f"{iqr[0]:>10}{iqr[1]:>10}{first:>9.1f}s")
    lines.append("ratio = gaaf_relu img/s ÷ relu img/s (1.000 = no cost), from the medians; paired = median [quartiles]"
                 " of the per-round ratios (each round times both side by side); IQR as % of the median sample")
    for model, floor in result.floors.items():
        by_mode = {mode: result.ceiling(model, mode) for mode in MODES}
        ceilings = ", ".join(f"{mode} {c:.3f}" for mode, c in by_mode.items() if math.isfinite(c))
        lines.append(
            f"floor {model}: the activation kernels alone (fwd+bwd, {len(floor.sites)} GAAF sites, "
            f"{sum(floor.sites) / 1e6:.1f}M elements) take {1e3 * floor.relu_s:.1f} ms per step for relu, "
            f"{1e3 * floor.gaaf_s:.1f} ms for gaaf_relu: +{1e3 * floor.extra_s:.1f} ms; highest reachable train ratio: "
            f"{ceilings or 'n/a'}")
        for mode in MODES:
            target = ratio_target(result.ceiling(model, mode))
            if target is not None:
                paired = result.paired_ratio(model, mode, "train")[0]
                lines.append(f"target {model} {mode}: paired train ratio >= {target.value:.3f} ({target.case}: ceiling "
                             f"{result.ceiling(model, mode):.3f}); measured {paired:.3f}: "
                             f"{'met' if paired >= target.value else 'NOT met'}")
    lines += _memory_lines(result)
    for key, ops in result.profiles.items():
        lines += ["", f"profile {key}: top ops by self time (ms per step, share)"]
        lines += [f"  {o['ms_per_step']:9.2f} ms {100 * o['share']:5.1f}%  {o['calls_per_step']:6.1f}×  {o['op']}"
                  for o in ops]
    lines += split_lines(result.splits, result.settings.get("profile_steps", 0))
    return "\n".join(lines)


def _memory_lines(result: TrainBenchResult) -> list[str]:
    """One line per model and mode: each activation's peak memory in one train step, and gaaf's excess."""
    lines = []
    pairs: dict[str, dict[str, int]] = {}
    for key, nbytes in result.memory.items():
        model_mode, act = key.rsplit("/", 1)
        pairs.setdefault(model_mode, {})[act] = nbytes
    for model_mode, acts in pairs.items():
        relu, gaaf = acts.get("relu"), acts.get("gaaf_relu")
        excess = f" ({100 * (gaaf / relu - 1):+.1f}%)" if relu and gaaf is not None else ""
        lines.append(f"peak memory of one train step {model_mode} (above its start): "
                     + ", ".join(f"{a} {b / 2**20:.1f} MiB" for a, b in acts.items()) + excess)
    return lines


def _ips(row: "Row | None") -> str:
    return f"{row.images_per_second:.1f}" if row is not None else "—"


@contextlib.contextmanager
def torch_threads(n: "int | None") -> Iterator[None]:
    """Run with `n` intra-op threads (None: leave as is), restoring the old count after."""
    if n is None:
        yield
        return
    if n < 1:
        raise UserError(f"--threads must be >= 1, got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


__all__ = ["ACTIVATIONS", "MODES", "Row", "TrainBenchResult", "bench_train", "bench_config", "build_candidate",
           "dataset_for", "eval_fn", "format_table", "profile_ops", "synthetic_batch", "torch_threads", "train_fn"]
