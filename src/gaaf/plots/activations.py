r"""Figures of the GAAF activations, as in Hahn & Choi (arXiv:1806.09783): the sawtooth g(x), the
shape functions s(x), φ_new = φ + g·s against φ, and the gradient of φ_new against φ'.

Everything is drawn on `matplotlib.figure.Figure` objects (never pyplot), so it is headless and
leaves the caller's matplotlib backend alone; every PNG is written atomically.

Two sampling rules make the pictures honest:

- g(x) has period 1/K (1e-4 at the default K), so it is drawn densely inside a few periods; on a
  coarse grid it would alias into noise.
- φ_new' = φ' + g'·s + g·s' is computed by autograd through the PyTorch op on a grid whose points
  sit a quarter period past the jumps of g ((n + 1/4)/K), never on them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..activations import GAAF, get_activation
from ..activations.reference import DEFAULT_FREQUENCY, sawtooth, shape_value
from .figure import save_figure

#: (file stem, registry name, parameters) of every φ_new figure: the paper's ReLU shifts, tanh, sigmoid
ACTIVATION_FIGURES: tuple[tuple[str, str, dict[str, float]], ...] = (
    *((f"gaaf_relu_shift{s:g}", "gaaf_relu", {"shift": float(s)}) for s in (4, 1, 0, -1, -4)),
    ("gaaf_tanh", "gaaf_tanh", {}),
    ("gaaf_sigmoid", "gaaf_sigmoid", {}),
)
RELU_SHIFTS = (4.0, 1.0, 0.0, -1.0, -4.0)
X_RANGE = (-6.0, 6.0)


def offset_grid(lo: float, hi: float, n: int, frequency: float) -> np.ndarray:
    """About `n` points in [lo, hi], each a quarter period past a jump of g: x = (m + 1/4)/K."""
    step = max(1, round((hi - lo) * frequency / n))  # in periods
    m = np.arange(np.ceil(lo * frequency), np.floor(hi * frequency), step, dtype=np.float64)
    return (m + 0.25) / frequency


def _values_and_grad(act: torch.nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """act(x) and d act/dx elementwise, by autograd in float64. x: (n,) → two (n,) arrays."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = act(t)
    (grad,) = torch.autograd.grad(y.sum(), t)  # elementwise op: the sum's gradient is φ'(x) per point
    return y.detach().numpy(), grad.numpy()


def sawtooth_figure(frequency: float = DEFAULT_FREQUENCY, periods: int = 3) -> Figure:
    """g(x) of both variants over `periods` periods of 1/K, sampled densely (x and g in units of 1/K)."""
    k = np.linspace(-0.5, periods - 0.5, 4000 * periods)  # x·K; jumps at the integers
    x = torch.tensor(k / frequency, dtype=torch.float64)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, variant, formula in zip(
        axes, ("floor", "round"), (r"$(xK - \lfloor xK \rfloor - 0.5)/K$", r"$(|xK - \mathrm{round}(xK)| - 0.5)/K$")
    ):
        g = sawtooth(x, frequency, variant).numpy() * frequency
        g[1:][np.abs(np.diff(g)) > 0.5] = np.nan  # break the line at the jumps instead of drawing risers
        ax.plot(k, g, color="C0", lw=1.5, label=f"g(x), variant '{variant}'")
        ax.axhline(0.5, color="0.5", ls=":", lw=1)
        ax.axhline(-0.5, color="0.5", ls=":", lw=1, label="±0.5/K")
        ax.set_title(f"variant '{variant}': g(x) = {formula}", fontsize=10)
        ax.set_xlabel("x · K   (one unit = one period 1/K)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", ncol=2, fontsize=8)
    axes[0].set_ylabel("g(x) · K")
    axes[0].set_ylim(-0.65, 0.9)
    fig.suptitle(f"Sawtooth g(x), K = {frequency:g}: period 1/K = {1 / frequency:g}, |g| ≤ 0.5/K = {0.5 / frequency:g}")
    return fig


def shapes_figure() -> Figure:
    """s(x): sigmoid(x + shift) at the ReLU shifts, and the Gaussians of gaaf_tanh and gaaf_sigmoid."""
    x = torch.linspace(*X_RANGE, 1201, dtype=torch.float64)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    for i, shift in enumerate(RELU_SHIFTS):
        ax1.plot(x, shape_value(x, "sigmoid", shift=shift), color=f"C{i}", label=f"shift = {shift:g}")
    ax1.set_title("sigmoid shape: s(x) = sigmoid(x + shift)  (gaaf_relu)", fontsize=10)
    for i, (width, who) in enumerate(((3.0, "gaaf_tanh"), (12.0, "gaaf_sigmoid"))):
        ax2.plot(x, shape_value(x, "gaussian", width=width), color=f"C{i}", label=f"width = {width:g}  ({who})")
    ax2.set_title("gaussian shape: s(x) = exp(−x² / width)", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("s(x)")
    fig.suptitle("Shape functions s(x): where the gradient is accelerated (φ_new' = φ' + s(x) almost everywhere)")
    return fig


def activation_figure(name: str, frequency: float = DEFAULT_FREQUENCY, **params: float) -> Figure:
    """Four panels for one GAAF activation: φ_new vs φ; φ_new − φ over the range; the same zoomed
    into three periods of 1/K; φ_new' (autograd) vs φ'."""
    act = get_activation(name, frequency=frequency, **params)
    if not isinstance(act, GAAF):
        raise ValueError(f"{name!r} is not a GAAF activation; choose a gaaf_* name")
    spec = act.spec
    base = get_activation(spec.base)
    label = _describe(spec)

    x = offset_grid(*X_RANGE, 1200, frequency)  # (n,) float64, a quarter period past each jump
    y_new, d_new = _values_and_grad(act, x)
    y_base, d_base = _values_and_grad(base, x)
    s = shape_value(torch.from_numpy(x), spec.shape, **spec.shape_params).numpy()

    fig = Figure(figsize=(11, 8), layout="constrained")
    (ax_v, ax_d), (ax_z, ax_g) = fig.subplots(2, 2)

    ax_v.plot(x, y_base, color="0.3", lw=3, alpha=0.5, label=f"φ = {spec.base}")
    ax_v.plot(x, y_new, color="C3", lw=1, ls="--", label="φ_new = φ + g·s")
    ax_v.set_title("φ_new vs φ (they coincide at this scale)", fontsize=10)
    ax_v.set_ylabel("activation")

    # φ_new − φ = g·s: a 1/K-period sawtooth under the envelope ±0.5·s/K. Sampled a quarter period
    # past each jump, g is the same at every point, so show the envelope and the sampled values.
    scale = frequency
    ax_d.fill_between(x, -0.5 * s, 0.5 * s, color="C0", alpha=0.2, label="range of g·s: ±0.5·s(x)/K")
    ax_d.plot(x, (y_new - y_base) * scale, color="C0", lw=1, label="φ_new − φ at x = (n + ¼)/K")
    ax_d.axhline(0.5, color="0.5", ls=":", lw=1, label="bound ±0.5/K")
    ax_d.axhline(-0.5, color="0.5", ls=":", lw=1)
    ax_d.set_ylim(-0.6, 0.6)
    ax_d.set_title("difference φ_new − φ = g(x)·s(x), |·| ≤ 0.5/K", fontsize=10)
    ax_d.set_ylabel("(φ_new − φ) · K")

    _draw_zoom(ax_z, act, base, spec, frequency, scale)

    ax_g.plot(x, d_base, color="0.3", lw=3, alpha=0.5, label=f"φ' ({spec.base})")
    ax_g.plot(x, d_new, color="C3", lw=1.5, label="φ_new' (autograd through gaaf)")
    ax_g.set_title("gradient: φ_new' = φ' + g'·s + g·s'  (g' = 1 between the jumps)", fontsize=10)
    ax_g.set_ylabel("derivative")

    for ax in (ax_v, ax_d, ax_g):
        ax.set_xlabel("x")
    for ax in (ax_v, ax_d, ax_z, ax_g):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{name}: {label}")
    return fig


def _draw_zoom(ax: Any, act: torch.nn.Module, base: torch.nn.Module, spec: Any, frequency: float, scale: float) -> None:
    """φ_new − φ over three periods 1/K just right of x0, where s(x0) is sizeable."""
    x0 = _zoom_center(spec)
    k = np.linspace(0.0, 3.0, 3000)
    xz = (np.floor(x0 * frequency) + k) / frequency
    yz_new, _ = _values_and_grad(act, xz)
    yz_base, _ = _values_and_grad(base, xz)
    dz = (yz_new - yz_base) * scale
    dz[1:][np.abs(np.diff(dz)) > 0.25] = np.nan  # break the line at the jumps
    ax.plot(k, dz, color="C0", lw=1.5, label="φ_new − φ")
    ax.axhline(0.5, color="0.5", ls=":", lw=1, label="bound ±0.5/K")
    ax.axhline(-0.5, color="0.5", ls=":", lw=1)
    ax.set_ylim(-0.6, 0.6)
    ax.set_title(f"zoom: three periods 1/K from x ≈ {x0:g}", fontsize=10)
    start = float(np.floor(x0 * frequency) / frequency)
    ax.set_xlabel(f"(x {'−' if start >= 0 else '+'} {abs(start):g}) · K")
    ax.set_ylabel("(φ_new − φ) · K")


def relu_gradients_figure(frequency: float = DEFAULT_FREQUENCY, shifts: Sequence[float] = RELU_SHIFTS) -> Figure:
    """φ_new' of gaaf_relu at each shift, over relu'."""
    x = offset_grid(*X_RANGE, 1200, frequency)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    _, d_relu = _values_and_grad(get_activation("relu"), x)
    ax.plot(x, d_relu, color="0.3", lw=3, alpha=0.5, label="relu'")
    for i, shift in enumerate(shifts):
        _, d = _values_and_grad(get_activation("gaaf_relu", shift=shift, frequency=frequency), x)
        ax.plot(x, d, color=f"C{i}", lw=1.2, label=f"gaaf_relu', shift = {shift:g}")
    ax.set_xlabel("x")
    ax.set_ylabel("derivative")
    ax.set_title(f"gaaf_relu gradient ≈ relu' + sigmoid(x + shift)  (autograd, K = {frequency:g})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_all(out_dir: str | os.PathLike, frequency: float = DEFAULT_FREQUENCY, dpi: int = 120) -> list[Path]:
    """Write every activation figure into `out_dir`; return the paths written, in order."""
    out = Path(out_dir)
    figures: list[tuple[str, Callable[[], Figure]]] = [
        ("sawtooth", lambda: sawtooth_figure(frequency)),
        ("shapes", shapes_figure),
        *((stem, _bind(name, frequency, params)) for stem, name, params in ACTIVATION_FIGURES),
        ("gaaf_relu_gradients", lambda: relu_gradients_figure(frequency)),
    ]
    return [save_figure(make(), out / f"{stem}.png", dpi=dpi) for stem, make in figures]


def _bind(name: str, frequency: float, params: dict[str, float]) -> Callable[[], Figure]:
    return lambda: activation_figure(name, frequency, **params)


def _zoom_center(spec: Any) -> float:
    """An x where s(x) is large, so the zoomed sawtooth is visible: the sigmoid's upper half, the
    Gaussian's centre, or 1 for other shapes."""
    if spec.shape == "sigmoid":
        return round(2.0 - spec.shape_params["shift"], 1)  # sigmoid(2·slope) ≈ 0.88 for slope 1
    if spec.shape == "gaussian":
        return spec.shape_params["center"] + 0.5
    return 1.0


def _describe(spec: Any) -> str:
    if spec.shape == "sigmoid":
        p = spec.shape_params
        s = f"s(x) = sigmoid({p['slope']:g}·(x {'+' if p['shift'] >= 0 else '−'} {abs(p['shift']):g}))"
    elif spec.shape == "gaussian":
        p = spec.shape_params
        centered = "x" if p["center"] == 0 else f"(x − {p['center']:g})"
        s = f"s(x) = exp(−{centered}² / {p['width']:g})"
    elif spec.shape == "none":
        s = "s(x) = 1"
    else:
        s = f"s = {getattr(spec.shape, '__name__', 'callable')}"
    return f"φ = {spec.base}, {s}, K = {spec.frequency:g}, variant '{spec.variant}'"


__all__ = [
    "ACTIVATION_FIGURES", "RELU_SHIFTS", "activation_figure", "offset_grid", "plot_all",
    "relu_gradients_figure", "save_figure", "sawtooth_figure", "shapes_figure",
]
