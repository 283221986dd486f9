r"""Forward+backward microbenchmark of the activations: plain φ, the fused GAAF op, and the naive
composition, eager and under ``torch.compile``; plus the bytes each keeps alive for backward.

One *step* is ``y = f(x); torch.autograd.grad(y, x, dy)`` on a fixed input x of the given size
(standard normal, ``requires_grad``) and a fixed upstream gradient dy. Candidates per activation:

* ``eager``    — the registry module (``gaaf.get_activation(name)``) called from eager code;
* ``compiled`` — ``torch.compile`` of a function calling that module (forward and backward compiled);
* ``naive``    — GAAF rows only: :func:`gaaf.activations.reference.gaaf_reference`, eager.

Reported per candidate: the median over alternating rounds (see :mod:`._timing`); ``vs base`` =
median / (best of the base φ's eager and compiled medians); ``naive ×`` = naive median / median
(the speed-up over the naive composition); and ``saved`` = the distinct storages that autograd keeps
for backward, recorded with ``torch.autograd.graph.saved_tensors_hooks`` (eager and naive only — a
compiled graph saves what its partitioner chooses), in bytes and as a multiple of x's size.
"""
from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from .. import __version__, get_activation
from ..activations import GAAF
from ..activations.reference import BASES, gaaf_reference
from ._timing import Timing, alternate, format_seconds

ACTIVATIONS: tuple[str, ...] = ("relu", "gaaf_relu", "tanh", "gaaf_tanh", "sigmoid", "gaaf_sigmoid")
DEFAULT_SIZES: tuple[tuple[int, ...], ...] = ((128, 16, 32, 32), (128, 64, 32, 32))
MODES = ("eager", "compiled", "naive")


@dataclass(frozen=True)
class Row:
    """One candidate at one size."""

    size: tuple[int, ...]
    activation: str
    mode: str  # eager | compiled | naive
    timing: Timing
    base_best: float  # seconds: best of the base φ's eager/compiled medians at this size
    naive: float  # seconds: the naive composition's median (nan for plain activations)
    saved_bytes: "int | None"  # None where not measured (compiled)
    input_bytes: int

    @property
    def vs_base(self) -> float:
        return self.timing.median / self.base_best

    @property
    def naive_speedup(self) -> float:
        return self.naive / self.timing.median

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size), "activation": self.activation, "mode": self.mode, **self.timing.as_dict(),
            "vs_base_best": self.vs_base, "naive_speedup": self.naive_speedup,
            "saved_bytes": self.saved_bytes, "input_bytes": self.input_bytes,
        }


@dataclass
class BenchResult:
    rows: list[Row] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "settings": self.settings, "rows": [r.as_dict() for r in self.rows]}


def environment(device: torch.device) -> dict[str, Any]:
    """Machine, versions and thread count, for the table's header and the JSON."""
    env = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": cpu_flags(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "gaaf_version": __version__,
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def machine_line(env: dict[str, Any]) -> str:
    """The one-line hardware/software header every benchmark prints above its figures."""
    flags = ",".join(env.get("cpu_flags") or []) or "none"
    return (f"machine: {env['platform']} | cpu: {env['cpu']} | {env['cpu_count']} cores | capability "
            f"{env.get('cpu_capability', '?')} (flags: {flags}) | torch {env['torch_version']}"
            f" | threads {env['torch_threads']} | python {env['python_version']} | gaaf {env['gaaf_version']}")


def saved_bytes(step: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward while computing ``step(x)``."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()  # views of one storage (x and x.view(-1)) count once
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = step(x)
    del y
    return sum(storages.values())


def bench_activations(
    sizes: Sequence[Sequence[int]] = DEFAULT_SIZES,
    repeats: int = 15,
    warmup: int = 3,
    compile: bool = True,
    activations: Sequence[str] = ACTIVATIONS,
    device: "str | torch.device" = "cpu",
    dtype: torch.dtype = torch.float32,
    log: "Callable[[str], None] | None" = None,
) -> BenchResult:
    """Time every activation (and its base φ, which the ratios need) at every size."""
    device = torch.device(device)
    log = log or (lambda msg: None)
    names = _with_bases(activations)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    result = BenchResult(
        environment=environment(device),
        settings={"repeats": repeats, "warmup": warmup, "compile": compile, "dtype": str(dtype).removeprefix("torch."),
                  "activations": list(names), "sizes": [list(s) for s in sizes]},
    )
    gen = torch.Generator(device="cpu").manual_seed(0)
    with compile_cache_room(len(sizes) * len(names) + 8) if compile else contextlib.nullcontext():
        for size in sizes:
            _bench_size(tuple(int(n) for n in size), names, device, dtype, compile, repeats, warmup, sync, gen,
                        log, result.rows)
    return result


def _bench_size(
    size: tuple[int, ...], names: Sequence[str], device: torch.device, dtype: torch.dtype, compile: bool,
    repeats: int, warmup: int, sync: "Callable[[], None] | None", gen: torch.Generator,
    log: Callable[[str], None], rows: list[Row],
) -> None:
    """Time all candidates at one size (alternating rounds) and append their rows."""
    x = torch.randn(size, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    dy = torch.randn(size, generator=gen, dtype=dtype).to(device)
    fns = _candidates(names, device, compile)
    steps = {key: _step(fn, x, dy) for key, fn in fns.items()}
    log(f"size {size}: {len(steps)} candidates, first calls" + (" (compiling)" if compile else "") + " ...")
    timings = alternate(
        {f"{a}/{m}": s for (a, m), s in steps.items()}, repeats, warmup, sync,
        min_sample_s=0.005, progress=lambda r, n: log(f"size {size}: round {r}/{n}") if r in (1, n) else None,
    )
    saved = {key: saved_bytes(fn, x) for key, fn in fns.items() if key[1] != "compiled"}
    medians = {key: timings[f"{key[0]}/{key[1]}"].median for key in fns}
    for (act, mode), fn in fns.items():
        base = _base_of(act)
        base_best = min(v for (a, _), v in medians.items() if a == base)
        rows.append(Row(
            size, act, mode, timings[f"{act}/{mode}"], base_best, medians.get((act, "naive"), float("nan")),
            saved.get((act, mode)), x.numel() * x.element_size(),
        ))


def format_table(result: BenchResult) -> str:
    """The readable report: environment header, then one block per size."""
    env, st = result.environment, result.settings
    lines = [
        f"gaaf bench activations — forward+backward, {st['dtype']}, {env['device']}"
        + (f" ({env['gpu']})" if "gpu" in env else ""),
        machine_line(env),
        f"timing: median of {st['repeats']} alternating rounds after {st['warmup']} warm-up calls"
        f"{'' if st['compile'] else ' | compile off'}",
        "vs base = median / best of the base φ's eager and compiled medians;"
        " naive × = naive composition's median / median; saved = tensors kept for backward",
    ]
    header = f"{'activation':<14}{'mode':<10}{'median':>10}{'IQR':>10}{'1st call':>10}{'vs base':>9}{'naive ×':>9}   saved"
    for size in dict.fromkeys(r.size for r in result.rows):
        rows = [r for r in result.rows if r.size == size]
        lines += ["", f"size {size}  (input {_fmt_bytes(rows[0].input_bytes)})", header, "-" * len(header)]
        for r in rows:
            t = r.timing
            naive = f"{r.naive_speedup:.2f}×" if r.naive == r.naive else "—"
            saved = "n/a" if r.saved_bytes is None else \
                f"{_fmt_bytes(r.saved_bytes)} ({r.saved_bytes / r.input_bytes:.2g}× input)"
            lines.append(
                f"{r.activation:<14}{r.mode:<10}{format_seconds(t.median):>10}{format_seconds(t.iqr):>10}"
                f"{format_seconds(t.first_call):>10}{r.vs_base:>8.2f}×{naive:>9}   {saved}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers
def _base_of(name: str) -> str:
    """gaaf_relu → relu; a plain name is its own base."""
    return name[len("gaaf_"):] if name.startswith("gaaf_") else name


def _with_bases(activations: Sequence[str]) -> list[str]:
    """The requested names plus any base φ they need, in a stable order (base before its GAAF)."""
    out: list[str] = []
    for name in activations:
        base = _base_of(name)
        if base not in BASES:
            raise ValueError(f"cannot benchmark {name!r}; choose plain bases or gaaf_<base> for a base in: "
                             f"{', '.join(sorted(BASES))}")
        for n in (base, name):
            if n not in out:
                out.append(n)
    return out


def _candidates(names: Sequence[str], device: torch.device, compile: bool) -> dict[tuple[str, str], Callable]:
    """{(activation, mode): x → y} for every activation and mode, in table order."""
    fns: dict[tuple[str, str], Callable] = {}
    for name in names:
        module = get_activation(name).to(device)
        fns[(name, "eager")] = module
        if compile:
            fns[(name, "compiled")] = torch.compile(_caller(module), dynamic=False)
        if isinstance(module, GAAF):
            fns[(name, "naive")] = _naive(module)
    return fns


def _caller(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def call(t: torch.Tensor) -> torch.Tensor:
        return module(t)

    return call


def _naive(module: GAAF) -> Callable[[torch.Tensor], torch.Tensor]:
    spec = module.spec

    def naive(t: torch.Tensor) -> torch.Tensor:
        return gaaf_reference(t, spec.base, spec.shape, spec.frequency, spec.variant, **spec.shape_params)

    return naive


def _step(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, dy: torch.Tensor) -> Callable[[], Any]:
    """One forward+backward; autograd.grad (not .backward) so nothing accumulates into x.grad."""

    def step() -> Any:
        return torch.autograd.grad(fn(x), x, dy)

    return step


@contextlib.contextmanager
def compile_cache_room(entries: int) -> Iterator[None]:
    """All compiled candidates share one code object (`_caller.call`); make sure dynamo keeps one
    compiled entry per candidate instead of silently falling back to eager after its limit."""
    import torch._dynamo

    config = torch._dynamo.config
    key = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    if getattr(config, key) >= entries:
        yield
        return
    with config.patch(**{key: entries}):
        yield


#: CPU features the benchmarks' figures depend on: SIMD width, native bf16 (autocast), AMX
_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of :data:`_FLAGS_OF_INTEREST` /proc/cpuinfo lists ([] where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in _FLAGS_OF_INTEREST if flag in have]
    except OSError:
        pass
    return []


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _fmt_bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


__all__ = ["ACTIVATIONS", "DEFAULT_SIZES", "BenchResult", "Row", "bench_activations", "environment",
           "format_table", "saved_bytes"]
