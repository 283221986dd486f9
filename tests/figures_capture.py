"""Capture the matplotlib figures that gaaf writes as PNG files, so tests can check what is drawn.

The report and probe plot functions save their figures and return only the paths. Every file gaaf
writes goes through ``gaaf.io.atomic_open`` (via ``atomic_save``), and a figure is written with
``Figure.savefig``: both are wrapped here (the PNG is still written), so each saved figure is
recorded under the name of the file it became. The figure objects stay inspectable after
``plt.close``. Use the ``saved_figures`` fixture (tests/conftest.py).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import pytest


class SavedFigures:
    """The figures saved during a test, by target file: ``saved["acc_vs_shift.png"]`` (the one figure
    saved under that file name) or ``saved[path]`` (an exact path)."""

    def __init__(self) -> None:
        self.saved: list[tuple[Path, Any]] = []  # (target path, matplotlib Figure), in save order

    def __getitem__(self, key: "str | Path") -> Any:
        if isinstance(key, Path):
            found = [fig for path, fig in self.saved if path == key]
        else:
            found = [fig for path, fig in self.saved if path.name == key]
        assert len(found) == 1, f"expected exactly one figure saved as {key!s}, got {len(found)}: {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return [path.name for path, _ in self.saved]

    def __len__(self) -> int:
        return len(self.saved)


def install(monkeypatch: pytest.MonkeyPatch) -> SavedFigures:
    """Wrap ``gaaf.io.atomic_open`` and ``Figure.savefig`` for the rest of the test."""
    import matplotlib.figure

    import gaaf.io

    capture = SavedFigures()
    targets: list[Path] = []  # the atomic_open calls in progress (innermost last)
    real_open = gaaf.io.atomic_open
    real_savefig = matplotlib.figure.Figure.savefig

    @contextlib.contextmanager
    def tracking_open(path: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        targets.append(Path(path))
        try:
            with real_open(path, *args, **kwargs) as f:
                yield f
        finally:
            targets.pop()

    def recording_savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
        if targets:
            target = targets[-1]
        else:  # a direct fig.savefig(path): only paths can be named
            assert isinstance(fname, (str, Path)), "a figure was saved to a file object outside gaaf.io"
            target = Path(fname)
        capture.saved.append((target, self))
        return real_savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(gaaf.io, "atomic_open", tracking_open)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
    return capture


# --------------------------------------------------------------------------- reading a figure
def data_axes(fig: Any) -> list[Any]:
    """The figure's axes without colorbars (a colorbar's axes has no title, lines or label of its own)."""
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def legend_texts(ax_or_fig: Any) -> list[str]:
    """The entries of an axes' (or a figure's first) legend; [] when it has none."""
    legend = ax_or_fig.get_legend() if hasattr(ax_or_fig, "get_legend") else (ax_or_fig.legends or [None])[0]
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def line(ax: Any, label: str) -> Any:
    """The one Line2D of `ax` labelled `label`."""
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, f"expected one line labelled {label!r}, got {[ln.get_label() for ln in ax.get_lines()]}"
    return found[0]


def hlines(ax: Any) -> list[float]:
    """Heights of the horizontal lines drawn across the axes (axhline: x data (0, 1) in axes units)."""
    return [float(ln.get_ydata()[0]) for ln in ax.get_lines()
            if list(ln.get_xdata()) == [0, 1] and ln.get_ydata()[0] == ln.get_ydata()[1]]  # fmt: skip


def vlines(ax: Any) -> list[float]:
    """Positions of the vertical lines (axvline: y data (0, 1) in axes units)."""
    return [float(ln.get_xdata()[0]) for ln in ax.get_lines()
            if list(ln.get_ydata()) == [0, 1] and ln.get_xdata()[0] == ln.get_xdata()[1]]  # fmt: skip
