"""Plots of probes.json files: does GAAF move the activation inputs out of saturation?

    plot_probes({"relu": Path("runs/relu"), "gaaf_relu shift=-1": Path("runs/gaaf")}, Path("report"))
    # -> [report/probe_saturation.png, report/probe_grad.png, report/probe_hist.png]

- probe_saturation.png: fraction of inputs in the saturation area per layer over epochs, one panel per
  run (shared y), one line per layer coloured by depth; the colour bar names the layers ("3 stage1.1.act1").
- probe_grad.png: mean |gradient the activation passes down| (dL/d input through the activation only)
  per layer over epochs (log y), same layout.
- probe_hist.png: input histograms of a few layers (first, middle, last) at each run's last epoch,
  the runs overlaid, with the saturation threshold marked; panels titled "layer 3: stage1.1.act1".

Layers are numbered in forward order from 0 in all three figures. The run labels are the panel
titles and the legend entries: `gaaf report` passes "relu, seed 0", saying which seed is shown.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from matplotlib import cm, colormaps, colors, ticker
from matplotlib.lines import Line2D

from ..errors import UserError
from ..train.probes import load_probes
from .figure import new_figure, save_figure

_RUN_COLORS = ["tab:gray", "tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]
_MAX_NAMED_LAYERS = 24  # a colour bar names every layer up to this many, else an even spread of them


def plot_probes(runs: "Mapping[str, Path | str]", out_dir: "Path | str", *, layers: int = 4,
                colors: "Mapping[str, Any] | None" = None) -> list[Path]:
    """Write the probe PNGs for `runs` (label → run folder or probes.json) into `out_dir`; return their paths.

    `layers`: how many layers the histogram figure shows (spread from first to last); `colors`: label →
    the run's colour in the histograms (``gaaf report`` passes each arm's, :mod:`.arm_colors`; default a
    fixed list in the order of `runs`).
    """
    if not runs:
        raise UserError("plot_probes needs at least one run (label -> run folder with probes.json)")
    data = {label: load_probes(path) for label, path in runs.items()}
    for label, d in data.items():
        if not d["epochs"]:
            raise UserError(f"run {label!r} has no probed epochs in its probes.json")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [save_figure(fig, out_dir / name, dpi=110) for name, fig in probe_figures(data, layers, colors).items()]


def probe_figures(data: "dict[str, dict[str, Any]]", layers: int = 4,
                  colors: "Mapping[str, Any] | None" = None) -> dict[str, Any]:
    """{file name: Figure} of the three probe figures for `data` (label → loaded probes.json)."""
    runs = "\n" + " vs ".join(data)  # a line of its own: labels can be long
    return {
        "probe_saturation.png": _per_layer_figure(
            data, "saturation", "fraction of inputs in the saturation area", log=False,
            title=f"Fraction of activation inputs in the saturation area, per layer{runs}"),
        "probe_grad.png": _per_layer_figure(
            data, "mean_abs_grad", "mean |dL/d input| through the activation", log=True,
            title=f"Mean |gradient| reaching each activation, per layer{runs}"),
        "probe_hist.png": _histogram_figure(data, layers, title=f"Activation input histograms, last probed epoch{runs}",
                                            colors=colors),
    }  # fmt: skip


def _series(d: dict[str, Any], site: str, key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one site's statistic, skipping epochs where it is undefined (None)."""
    xs, ys = [], []
    for e in d["epochs"]:
        v = e["per_site"].get(site, {}).get(key)
        if v is not None and math.isfinite(v):
            xs.append(e["epoch"])
            ys.append(v)
    return xs, ys


def _per_layer_figure(data: dict[str, dict[str, Any]], key: str, ylabel: str, *, log: bool, title: str) -> Any:
    n = len(data)
    fig = new_figure(4.2 * n + 2.0, 4.2, layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)
    names = max((d["sites"] for d in data.values()), key=len)  # the layer names of the deepest run
    cmap = colormaps["viridis"].resampled(len(names))  # one colour block per layer, ticks at their centres
    norm = colors.BoundaryNorm([i - 0.5 for i in range(len(names) + 1)], len(names))
    for ax, (label, d) in zip(axes[0], data.items()):
        few = len(d["epochs"]) < 8  # single points would be invisible without markers
        plotted = False
        for i, site in enumerate(d["sites"]):
            xs, ys = _series(d, site, key)
            if log:
                xs, ys = [x for x, y in zip(xs, ys) if y > 0], [y for y in ys if y > 0]
            if xs:
                ax.plot(xs, ys, color=cmap(norm(i)), lw=1.2, marker="o" if few else None, ms=3, label=f"{i} {site}")
                plotted = True
        if not plotted:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if log and plotted:
            ax.set_yscale("log")
    axes[0][0].set_ylabel(ylabel)
    if key == "saturation":
        axes[0][0].set_ylim(0, 1)
    fig.suptitle(title, fontsize=10)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), fraction=0.04, pad=0.02)
    ticks = _layer_ticks(len(names))
    bar.set_ticks(ticks, labels=[f"{i} {names[i]}" for i in ticks])
    bar.ax.tick_params(labelsize=6)
    bar.set_label("layer (forward order, 0 = first)")
    return fig


def _layer_ticks(n: int) -> list[int]:
    """Every layer index when there are few, else an even spread from the first to the last."""
    if n <= _MAX_NAMED_LAYERS:
        return list(range(n))
    return sorted({round(j * (n - 1) / (_MAX_NAMED_LAYERS - 1)) for j in range(_MAX_NAMED_LAYERS)})


def _pick_layers(sites: list[str], k: int) -> list[str]:
    if len(sites) <= k:
        return list(sites)
    idx = sorted({round(j * (len(sites) - 1) / (k - 1)) for j in range(k)}) if k > 1 else [0]
    return [sites[j] for j in idx]


def _histogram_figure(data: dict[str, dict[str, Any]], layers: int, *, title: str,
                      colors: "Mapping[str, Any] | None" = None) -> Any:
    # layers present in every run (same architecture); else each run's own first-to-last picks
    first = next(iter(data.values()))["sites"]
    common = [s for s in first if all(s in d["sites"] for d in data.values())]
    chosen = _pick_layers(common, layers) if common else []
    if not chosen:
        raise UserError("the runs share no activation site; probe histograms need the same model")
    width = 3.6 * len(chosen) + 0.6
    fig = new_figure(width, 3.9, layout="constrained")
    axes = fig.subplots(1, len(chosen), squeeze=False)
    legend: dict[str, Any] = {}  # label → handle, over all panels (a run may lack a layer's data)
    threshold = None  # the saturation threshold's legend entry, when a run has a rule
    for ax, site in zip(axes[0], chosen):
        outside = []
        for j, (label, d) in enumerate(data.items()):
            last = d["epochs"][-1]
            stats = last["per_site"].get(site)
            if not stats or not stats.get("count"):
                continue
            frac = [c / stats["count"] for c in stats["hist"]]
            color = colors[label] if colors and label in colors else _RUN_COLORS[j % len(_RUN_COLORS)]
            entry = f"{label} (epoch {last['epoch']})"
            legend.setdefault(entry, ax.stairs(frac, d["bins"], color=color, lw=1.4, label=entry))
            share = (stats["underflow"] + stats["overflow"]) / stats["count"]
            outside.append((f"outside [{d['bins'][0]:g}, {d['bins'][-1]:g}): {share:.1%}", color))
            rule = d.get("saturation_rule", {}).get(site)
            if rule:
                t = rule["threshold"]
                for x in [t] if rule["kind"] == "below" else [-t, t]:
                    ax.axvline(x, color="black", ls="--", lw=0.8, alpha=0.6)
                threshold = Line2D([], [], color="black", ls="--", lw=0.8, alpha=0.6)
        for k, (text, color) in enumerate(outside):  # each run's share of inputs beyond the bins
            ax.text(0.02, 0.97 - 0.07 * k, text, transform=ax.transAxes, fontsize=7,
                    color=color, va="top")  # fmt: skip
        ax.set_title(f"layer {first.index(site)}: {site}", fontsize=10)
        ax.set_xlabel("activation input x")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of inputs per bin")
    fig.suptitle(title, fontsize=10)
    if threshold is not None:
        legend["saturation threshold"] = threshold
    ncol = max(1, min(len(legend), int(width // 3.4)))  # ~3.4 inches per entry: labels are long
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
    return fig
