"""How every gaaf figure is made and saved: a bare `matplotlib.figure.Figure` on an Agg canvas
(pyplot's global state and backend are never touched, so drawing is headless and safe inside a
notebook), written as a PNG atomically through :mod:`gaaf.io`."""
from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import atomic_save


def new_figure(width: float, height: float, *, dpi: float = 100, layout: "str | None" = None) -> Figure:
    """A `width` × `height` inch figure with its own Agg canvas (so tight_layout and savefig work)."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: "str | os.PathLike", dpi: float = 120, *, tight: bool = True) -> Path:
    """Write `fig` as a PNG atomically and return the path. `tight`: crop to what is drawn
    (``bbox_inches="tight"``); else the figure's own size."""
    path = Path(path)
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight" if tight else None))
    return path
