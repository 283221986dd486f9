"""Plots of probes.json files: does GAAF move the activation inputs out of saturation?

    plot_probes({"relu": Path("runs/relu"), "gaaf_relu shift=-1": Path("runs/gaaf")}, Path("report"))
    # -> [report/probe_saturation.png, report/probe_grad.png, report/probe_hist.png]

- probe_saturation.png: fraction of inputs in the saturation area per layer over epochs, one panel per
  run (shared y), one line per layer coloured by depth.
- probe_grad.png: mean |dL/d input| per layer over epochs (log y), same layout.
- probe_hist.png: input histograms of a few layers (first, middle, last) at each run's last epoch,
  the runs overlaid, with the saturation threshold marked.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from matplotlib import cm, colormaps, colors, ticker

from ..errors import UserError
from ..train.probes import load_probes
from .figure import new_figure, save_figure

_RUN_COLORS = ["tab:gray", "tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]


def plot_probes(runs: "Mapping[str, Path | str]", out_dir: "Path | str", *, layers: int = 4) -> list[Path]:
    """Write the probe PNGs for `runs` (label → run folder or probes.json) into `out_dir`; return their paths.

    `layers`: how many layers the histogram figure shows (spread from first to last).
    """
    if not runs:
        raise UserError("plot_probes needs at least one run (label -> run folder with probes.json)")
    data = {label: load_probes(path) for label, path in runs.items()}
    for label, d in data.items():
        if not d["epochs"]:
            raise UserError(f"run {label!r} has no probed epochs in its probes.json")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        save_figure(_per_layer_figure(data, "saturation", "fraction of inputs in the saturation area", log=False),
                    out_dir / "probe_saturation.png", dpi=110, tight=False),
        save_figure(_per_layer_figure(data, "mean_abs_grad", "mean |dL/d input| at the activation", log=True),
                    out_dir / "probe_grad.png", dpi=110, tight=False),
        save_figure(_histogram_figure(data, layers), out_dir / "probe_hist.png", dpi=110, tight=False),
    ]
    return paths


def _series(d: dict[str, Any], site: str, key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one site's statistic, skipping epochs where it is undefined (None)."""
    xs, ys = [], []
    for e in d["epochs"]:
        v = e["per_site"].get(site, {}).get(key)
        if v is not None and math.isfinite(v):
            xs.append(e["epoch"])
            ys.append(v)
    return xs, ys


def _per_layer_figure(data: dict[str, dict[str, Any]], key: str, ylabel: str, *, log: bool) -> Any:
    n = len(data)
    fig = new_figure(4.2 * n + 1.2, 3.8)
    axes = fig.subplots(1, n, sharey=True, squeeze=False)
    most = max(len(d["sites"]) for d in data.values())
    cmap = colormaps["viridis"]
    norm = colors.Normalize(vmin=0, vmax=max(most - 1, 1))
    for ax, (label, d) in zip(axes[0], data.items()):
        few = len(d["epochs"]) < 8  # single points would be invisible without markers
        plotted = False
        for i, site in enumerate(d["sites"]):
            xs, ys = _series(d, site, key)
            if log:
                xs, ys = [x for x, y in zip(xs, ys) if y > 0], [y for y in ys if y > 0]
            if xs:
                ax.plot(xs, ys, color=cmap(norm(i)), lw=1.2, marker="o" if few else None, ms=3)
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
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    cax = fig.add_axes((0.915, 0.18, 0.015, 0.7))
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    bar.locator = ticker.MaxNLocator(integer=True)  # layers are whole numbers, not 0.25 steps
    bar.update_ticks()
    bar.set_label("layer (forward order, 0 = first)")
    return fig


def _pick_layers(sites: list[str], k: int) -> list[str]:
    if len(sites) <= k:
        return list(sites)
    idx = sorted({round(j * (len(sites) - 1) / (k - 1)) for j in range(k)}) if k > 1 else [0]
    return [sites[j] for j in idx]


def _histogram_figure(data: dict[str, dict[str, Any]], layers: int) -> Any:
    # layers present in every run (same architecture); else each run's own first-to-last picks
    common = [s for s in next(iter(data.values()))["sites"] if all(s in d["sites"] for d in data.values())]
    chosen = _pick_layers(common, layers) if common else []
    if not chosen:
        raise UserError("the runs share no activation site; probe histograms need the same model")
    fig = new_figure(3.6 * len(chosen), 3.4)
    axes = fig.subplots(1, len(chosen), squeeze=False)
    for ax, site in zip(axes[0], chosen):
        for j, (label, d) in enumerate(data.items()):
            last = d["epochs"][-1]
            stats = last["per_site"].get(site)
            if not stats or not stats.get("count"):
                continue
            edges = d["bins"]
            frac = [c / stats["count"] for c in stats["hist"]]
            color = _RUN_COLORS[j % len(_RUN_COLORS)]
            ax.stairs(frac, edges, color=color, lw=1.4,
                      label=f"{label} (ep {last['epoch']}, out of range {(stats['underflow'] + stats['overflow']) / stats['count']:.1%})")
            rule = d.get("saturation_rule", {}).get(site)
            if rule:
                t = rule["threshold"]
                for x in ([t] if rule["kind"] == "below" else [-t, t]):
                    ax.axvline(x, color="black", ls="--", lw=0.8, alpha=0.6)
        ax.set_title(site, fontsize=10)
        ax.set_xlabel("activation input x")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of inputs per bin")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3) or 1, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
