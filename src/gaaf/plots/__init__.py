"""Figures: `gaaf plot activations` (the sawtooth, shapes, φ_new vs φ and gradients) and the
figures of `gaaf report` (report.py: accuracy vs shift, learning curves; probes.py: probe plots).

Drawn on `matplotlib.figure.Figure` objects (headless; pyplot's global state is never touched) and
written atomically through :mod:`gaaf.io` (figure.py: new_figure, save_figure).
"""
from ..errors import require_torch

require_torch(__name__)  # before anything imports torch: one line that names the fix

from .activations import activation_figure, plot_all
from .figure import save_figure

__all__ = ["activation_figure", "plot_all", "save_figure"]
