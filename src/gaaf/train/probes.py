"""Mechanism probes: does GAAF push activation inputs into the saturation area?

    probe = ActivationProbe(model, every=50)       # hooks every activation site
    for epoch in ...:
        for x, y in loader: step(x, y)             # 1 training batch in 50 is sampled
        record = probe.end_epoch(epoch)            # one host sync; probe.write(run / "probes.json")

For each activation site, on the sampled training batches only, the probe accumulates on the device:
a histogram of the site's inputs (fixed bins over `range`, plus underflow and overflow), the fraction
of inputs in the base activation's saturation area (relu-like bases: x < 0; tanh/sigmoid: |x| > 2),
the mean and std of the inputs, and the mean |gradient| of what the activation passes down and of
what reaches it from above (its output's gradient g_out): the paper's gradient-flow table.

What the activation passes down is g_out·φ_new'(x), the gradient of the loss w.r.t. its input
*through the activation only*. It is not the total gradient of the tensor fed to it when that
tensor also feeds something else: in a ResNet v2 block without BatchNorm the first activation
reads the block input x itself, which also feeds the shortcut, so dL/dx = g_out·φ'(x) + (the
shortcut's gradient). The site's input hook therefore hands the activation an alias of x
(``x.view_as(x)``: no copy, the same values) and records the gradient of that alias, which only the
activation consumes, at every site of every model alike. The model's outputs and gradients are
unchanged (the alias's gradient reaches x unchanged, through an identity view).

Cost: two permanent hooks on the top module decide per forward call whether to sample; the per-site
hooks exist only during a sampled forward pass, so other steps pay two Python calls and nothing more.
Only calls with ``model.training`` and grad enabled count as training steps; eval is never sampled.

`gaaf train --probe` adds :class:`gaaf.train.callbacks.ProbeCallback`, which writes OUT/probes.json
after every epoch; :func:`load_probes` reads it back, `gaaf report` draws it (:mod:`gaaf.plots.probes`)
and :mod:`gaaf.bench.probe_overhead` times what the hooks cost.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..activations.registry import PLAIN_ACTIVATIONS
from ..errors import UserError
from ..io import atomic_write_json
from ..models import activation_sites

DEFAULT_EVERY = 50
DEFAULT_BINS = 81
DEFAULT_RANGE = (-8.0, 8.0)
PROBES_FILE = "probes.json"


@dataclass(frozen=True)
class SaturationRule:
    """Which inputs count as saturated: ``x < threshold`` ("below") or ``|x| > threshold`` ("abs_above")."""

    kind: str
    threshold: float

    def __post_init__(self) -> None:
        if self.kind not in ("below", "abs_above"):
            raise UserError(f"saturation kind must be 'below' or 'abs_above', got {self.kind!r}")
        if not math.isfinite(self.threshold):
            raise UserError(f"saturation threshold must be finite, got {self.threshold!r}")

    def count(self, x: torch.Tensor) -> torch.Tensor:
        """Number of saturated elements of `x` (any shape) as a 0-dim int64 tensor on x's device."""
        mask = x < self.threshold if self.kind == "below" else x.abs() > self.threshold
        return mask.sum()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold}


#: Saturation areas of the bases: where φ'(x) vanishes (relu) or is small (the rest).
DEFAULT_SATURATION: dict[str, SaturationRule] = {
    **{b: SaturationRule("below", 0.0) for b in ("relu", "leaky_relu", "elu", "gelu", "silu", "softplus")},
    "tanh": SaturationRule("abs_above", 2.0),
    "sigmoid": SaturationRule("abs_above", 2.0),
}


def resolve_saturation(overrides: "Mapping[str, Any] | None") -> dict[str, SaturationRule]:
    """Defaults updated by `overrides`: base → threshold (keeping the base's kind), (kind, threshold),
    {"kind": ..., "threshold": ...} or a SaturationRule."""
    rules = dict(DEFAULT_SATURATION)
    for base, value in (overrides or {}).items():
        if base not in rules:
            raise UserError(f"unknown base {base!r} in saturation; choose one of: {', '.join(sorted(rules))}")
        try:
            if isinstance(value, SaturationRule):
                rule = value
            elif isinstance(value, Mapping):
                rule = SaturationRule(str(value["kind"]), float(value["threshold"]))
            elif isinstance(value, (tuple, list)):
                rule = SaturationRule(str(value[0]), float(value[1]))
            else:
                rule = SaturationRule(rules[base].kind, float(value))
        except (KeyError, IndexError, TypeError, ValueError):
            raise UserError(f"saturation for {base!r} must be a threshold or (kind, threshold), got {value!r}") from None
        rules[base] = rule
    return rules


def site_base(module: nn.Module) -> "str | None":
    """The base activation of a site: GAAF's ``spec.base`` or the plain module's registry name."""
    spec = getattr(module, "spec", None)
    if spec is not None and isinstance(getattr(spec, "base", None), str):
        return spec.base
    for name, cls in PLAIN_ACTIVATIONS.items():
        if type(module) is cls:
            return name
    return None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model under DistributedDataParallel-style wrappers (``.module``) and torch.compile."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _eager_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` as a hook that always runs eagerly. Traced by torch.compile, the Python step counter would
    become a guard and force a recompile per step; run eagerly it is one graph break at the model's
    entry and exit. The is_compiling() test keeps eager calls as cheap as a plain hook (the disable
    wrapper alone costs ~20 µs a call)."""
    disabled = torch.compiler.disable(fn)

    @functools.wraps(fn)
    def hook(*args: Any) -> Any:
        if torch.compiler.is_compiling():
            return disabled(*args)
        return fn(*args)

    return hook


class ActivationProbe:
    """Forward/gradient statistics of every activation site on 1 training batch in `every`.

    Args:
        model: the model, or a DDP-style wrapper (``.module``) of it.
        every: sample training calls number 0, every, 2·every, ... of each epoch (so ≥ 1 per epoch).
        bins, range: the input histogram: `bins` equal bins over [lo, hi) plus under/overflow.
        saturation: per-base overrides of :data:`DEFAULT_SATURATION` (see :func:`resolve_saturation`).
        sites: ``[(name, module)]`` to watch; default ``gaaf.models.activation_sites(model)``.
    """

    # columns after the histogram in each site's accumulator row
    _COLS = ("count", "sum", "sumsq", "saturated", "gin_abs", "gin_n", "gout_abs", "gout_n")

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int = DEFAULT_EVERY,
        bins: int = DEFAULT_BINS,
        range: Sequence[float] = DEFAULT_RANGE,  # noqa: A002 - the numpy/torch.histc name
        saturation: "Mapping[str, Any] | None" = None,
        sites: "Sequence[tuple[str, nn.Module]] | None" = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"probe every must be an integer >= 1 (sample 1 batch in N), got {every!r}")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise UserError(f"probe bins must be an integer >= 1, got {bins!r}")
        try:
            lo, hi = (float(v) for v in range)
        except (TypeError, ValueError):
            raise UserError(f"probe range must be two numbers lo < hi, got {range!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UserError(f"probe range must be two finite numbers lo < hi, got {range!r}")
        self.model = unwrap_model(model)
        self.sites = list(sites) if sites is not None else activation_sites(self.model)
        if not self.sites:
            raise UserError(f"the model {type(self.model).__name__} has no activation sites to probe")
        self.every, self.bins, self.range = every, bins, (lo, hi)
        rules = resolve_saturation(saturation)
        self.bases = {name: site_base(m) for name, m in self.sites}
        self.rules = {name: rules.get(b) if b else None for name, b in self.bases.items()}
        self.edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)  # (bins+1,)
        self._edges: dict[tuple, torch.Tensor] = {}
        self._acc: "torch.Tensor | None" = None  # (sites, bins+2 + len(_COLS)) float64, on the device
        self.epochs: list[dict[str, Any]] = []
        self.step_in_epoch = 0      # training calls seen this epoch
        self.samples = 0            # of which sampled
        self._site_handles: list[Any] = []
        self._handles = [
            self.model.register_forward_pre_hook(_eager_only(self._on_model_call)),
            self.model.register_forward_hook(_eager_only(self._after_model_call)),
        ]

    # ------------------------------------------------------------------ hooks
    def _on_model_call(self, module: nn.Module, args: Any) -> None:
        self._remove_site_hooks()  # left over only if a sampled forward raised
        if not (module.training and torch.is_grad_enabled()):
            return
        sampled = self.step_in_epoch % self.every == 0
        self.step_in_epoch += 1
        if sampled:
            self.samples += 1
            for i, (_, site) in enumerate(self.sites):
                self._site_handles.append(site.register_forward_pre_hook(_eager_only(self._site_input_hook(i))))
                self._site_handles.append(site.register_forward_hook(_eager_only(self._site_output_hook(i))))

    def _after_model_call(self, module: nn.Module, args: Any, output: Any) -> None:
        self._remove_site_hooks()  # tensor hooks on this pass's tensors stay, for the backward

    def _remove_site_hooks(self) -> None:
        for h in self._site_handles:
            h.remove()
        self._site_handles.clear()

    def _row(self, i: int, device: torch.device) -> torch.Tensor:
        if self._acc is None or self._acc.device != device:
            acc = torch.zeros(len(self.sites), self.bins + 2 + len(self._COLS), dtype=torch.float64, device=device)
            if self._acc is not None:  # the model moved mid-epoch: keep what was gathered
                acc += self._acc.to(device)
            self._acc = acc
        return self._acc[i]

    def _site_input_hook(self, i: int):
        k = self.bins + 2
        rule = self.rules[self.sites[i][0]]

        def hook(module: nn.Module, args: Any) -> Any:
            if not args or not isinstance(args[0], torch.Tensor):
                return None
            x = args[0]
            with torch.no_grad():
                xf = x.detach()
                if xf.dtype not in (torch.float32, torch.float64):
                    xf = xf.float()  # bf16/fp16 under autocast: bin on float32 edges
                row = self._row(i, xf.device)
                key = (xf.device, xf.dtype)
                if key not in self._edges:
                    self._edges[key] = self.edges.to(device=xf.device, dtype=xf.dtype)
                # bucket 0 = x < lo, 1..bins = [edge_j, edge_j+1), bins+1 = x >= hi (and NaN)
                idx = torch.bucketize(xf, self._edges[key], right=True).reshape(-1)
                row[:k] += torch.bincount(idx, minlength=k)
                sat = rule.count(xf) if rule is not None else torch.zeros((), device=xf.device)
                row[k + 1:k + 4] += torch.stack([
                    xf.sum(dtype=torch.float64), xf.square().sum(dtype=torch.float64), sat.to(torch.float64)])
                row[k] += xf.numel()  # a host int: a kernel launch, no sync
            if not x.requires_grad:
                return None
            # the activation reads an alias only it consumes: its gradient is what the activation
            # passes down, not x's total gradient (x may also feed a shortcut)
            alias = x.view_as(x)
            alias.register_hook(self._grad_hook(row, k + 4))
            return (alias, *args[1:])

        return hook

    def _site_output_hook(self, i: int):
        k = self.bins + 2

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.requires_grad:
                output.register_hook(self._grad_hook(self._row(i, output.device), k + 6))

        return hook

    @staticmethod
    def _grad_hook(row: torch.Tensor, col: int):
        def hook(grad: torch.Tensor) -> None:
            with torch.no_grad():
                row[col] += grad.abs().sum(dtype=torch.float64)
                row[col + 1] += grad.numel()

        return hook

    # ------------------------------------------------------------------ per epoch
    def end_epoch(self, epoch: int, *, reduce: bool = True) -> dict[str, Any]:
        """Close epoch `epoch`: sync the device sums once (all-reduced over ranks when torch.distributed
        is initialised and `reduce`), append and return the epoch record, and reset the sums."""
        k = self.bins + 2
        acc = self._acc if self._acc is not None else torch.zeros(len(self.sites), k + len(self._COLS), dtype=torch.float64)
        if reduce and torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            acc = acc.clone()
            torch.distributed.all_reduce(acc)
        table = acc.tolist()  # the epoch's one host sync
        per_site = {}
        for (name, _), row in zip(self.sites, table):
            stats = dict(zip(self._COLS, row[k:]))
            n = stats["count"]
            mean = stats["sum"] / n if n else None
            per_site[name] = {
                "hist": [int(c) for c in row[1:k - 1]],
                "underflow": int(row[0]),
                "overflow": int(row[k - 1]),
                "count": int(n),
                "saturation": stats["saturated"] / n if n and self.rules[name] is not None else None,
                "mean_abs_grad": stats["gin_abs"] / stats["gin_n"] if stats["gin_n"] else None,
                "mean_abs_grad_out": stats["gout_abs"] / stats["gout_n"] if stats["gout_n"] else None,
                "mean": mean,
                "std": math.sqrt(max(stats["sumsq"] / n - mean * mean, 0.0)) if n else None,
            }
        record = {"epoch": int(epoch), "samples": self.samples, "steps": self.step_in_epoch, "per_site": per_site}
        self.epochs = [e for e in self.epochs if e["epoch"] != record["epoch"]] + [record]
        if self._acc is not None:
            self._acc.zero_()
        self.step_in_epoch = self.samples = 0
        return record

    def to_json(self) -> dict[str, Any]:
        names = [n for n, _ in self.sites]
        return {
            "sites": names,
            "base": dict(self.bases),
            "saturation_rule": {n: r.to_dict() if r else None for n, r in self.rules.items()},
            "bins": self.edges.tolist(),
            "every": self.every,
            "epochs": self.epochs,
        }

    def write(self, path: "str | Path") -> Path:
        path = Path(path)
        atomic_write_json(path, self.to_json())
        return path

    def load_previous(self, path: "str | Path", up_to_epoch: int) -> int:
        """On resume: keep the epochs ≤ `up_to_epoch` of an earlier probes.json with the same sites and
        bins; return how many were kept (0 when the file is missing or describes other sites)."""
        path = Path(path)
        if not path.exists():
            return 0
        try:
            old = load_probes(path)
        except UserError:
            return 0
        if old["sites"] != [n for n, _ in self.sites] or len(old["bins"]) != self.bins + 1:
            return 0
        self.epochs = [e for e in old["epochs"] if e["epoch"] <= up_to_epoch]
        return len(self.epochs)

    def close(self) -> None:
        """Remove every hook; the model runs exactly as without the probe."""
        self._remove_site_hooks()
        for h in self._handles:
            h.remove()
        self._handles.clear()


def load_probes(path: "str | Path") -> dict[str, Any]:
    """Read a probes.json (or the one in run folder `path`); UserError when missing or malformed."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":  # a run folder (existing or not)
        path = path / PROBES_FILE
    if not path.exists():
        raise UserError(f"no {path.name} in {path.parent}; train the run with --probe")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not {"sites", "bins", "epochs"} <= set(data):
        raise UserError(f"{path} is not a probes.json (needs sites, bins, epochs)")
    return data
