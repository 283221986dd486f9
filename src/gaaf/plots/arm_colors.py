"""One colour per arm of a study, the same in every figure of its report.

* the baseline: black;
* GAAF arms with a sigmoid shift: their series' colour (one per activation/variant, as in
  acc_vs_shift.png, :data:`SERIES_COLORS` in sorted order of the series labels), from light to dark in
  order of the shift when a series has several arms;
* GAAF arms without a shift (no s(x), another shape): red, shaded the same way when there are several;
* any other arm (a second baseline-like run): the next of :data:`OTHER_COLORS`.

    colors = arm_colors(rows, study.baseline)   # {arm name: RGB}
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Optional, Sequence

from matplotlib.colors import to_rgb

from ..activations import describe_activation
from ..activations.registry import is_gaaf_activation
from ..experiments.report import RunRow

#: one colour per series (activation/variant) of acc_vs_shift, in sorted order of the series labels
SERIES_COLORS = ["tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
BASELINE_COLOR = "black"
FLAT_COLOR = "tab:red"  # GAAF arms without a shift
OTHER_COLORS = ["tab:green", "tab:cyan", "tab:gray"]


def shift_of(row: RunRow) -> "tuple[str, float] | None":
    """(series label, shift) for a GAAF run with the sigmoid shape; None for anything else."""
    label, shift = describe_activation(row.config)
    try:
        return label, float(shift)
    except ValueError:
        return None


def series_colors(labels: Iterable[str]) -> "dict[str, str]":
    """{series label: colour}: :data:`SERIES_COLORS` over the sorted labels (cycling past six)."""
    return {label: SERIES_COLORS[i % len(SERIES_COLORS)] for i, label in enumerate(sorted(set(labels)))}


def shades(color: str, n: int) -> "list[tuple[float, float, float]]":
    """`n` shades of `color` from light to dark: the colour itself for one, else mixed with white
    (lightest: 55% white) through the colour to 35% black."""
    rgb = to_rgb(color)
    if n == 1:
        return [rgb]
    out = []
    for i in range(n):
        t = -0.55 + 0.9 * i / (n - 1)  # < 0: towards white, > 0: towards black
        out.append(tuple(c + (1.0 - c) * -t if t < 0 else c * (1.0 - t) for c in rgb))
    return out  # type: ignore[return-value]


def arm_colors(rows: Sequence[RunRow], baseline: Optional[str]) -> "dict[str, tuple[float, float, float]]":
    """{arm name: RGB} for every row (module doc)."""
    colors: dict[str, tuple[float, float, float]] = {}
    series: dict[str, list[tuple[float, str]]] = defaultdict(list)
    flat: list[str] = []
    other: list[str] = []
    for row in rows:
        found = shift_of(row)
        if row.name == baseline:
            colors[row.name] = to_rgb(BASELINE_COLOR)
        elif found is not None:
            series[found[0]].append((found[1], row.name))
        elif is_gaaf_activation(str(row.config.get("activation", ""))):
            flat.append(row.name)
        else:
            other.append(row.name)
    for label, color in series_colors(series).items():
        arms = sorted(series[label])
        colors.update((name, shade) for (_, name), shade in zip(arms, shades(color, len(arms))))
    flat.sort()  # by name: an arm's colour does not depend on the order of the rows
    colors.update(zip(flat, shades(FLAT_COLOR, len(flat))))
    colors.update((name, to_rgb(OTHER_COLORS[i % len(OTHER_COLORS)])) for i, name in enumerate(sorted(other)))
    return colors


__all__ = ["SERIES_COLORS", "BASELINE_COLOR", "FLAT_COLOR", "OTHER_COLORS", "shift_of", "series_colors", "shades",
           "arm_colors"]
