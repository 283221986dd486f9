"""Benchmarks: `gaaf bench activations` (forward+backward time and saved bytes of each activation).

:mod:`gaaf.bench._timing` holds the shared timing discipline (warm-up, alternating rounds, medians)
that every benchmark here uses.
"""
from ._timing import Timing, alternate, format_seconds

__all__ = ["Timing", "alternate", "format_seconds"]
