"""Figures: `gaaf plot activations` (the sawtooth, shapes, φ_new vs φ and gradients).

Drawn on `matplotlib.figure.Figure` objects (headless; pyplot's global state is never touched) and
written atomically through :mod:`gaaf.io`.
"""
from .activations import activation_figure, plot_all, save_figure

__all__ = ["activation_figure", "plot_all", "save_figure"]
