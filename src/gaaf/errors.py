"""User-facing errors, and `plural` for the counts that messages print.

`UserError` (and `ValueError` raised while validating user input) is what the CLI turns into a
single line ``gaaf: error: <message>`` with exit status 2 and no traceback. Raise it with a
message that says what was wrong *and* what is allowed.

PyTorch is an extra (``gaaf[torch]``) so that ``gaaf[keras]`` does not pull it: everything but
:mod:`gaaf.keras` and the pure-Python tables needs it, and :func:`require_torch` turns its absence
into one line that names the fix.
"""
from __future__ import annotations

import importlib.util

#: what to install for the PyTorch side of gaaf (the CPU build first where CUDA is not wanted)
TORCH_INSTALL = "pip install 'gaaf[torch]'"


class UserError(Exception):
    """Bad input from the user: wrong flag value, missing file, incompatible checkpoint, ..."""


def plural(n: int, word: str) -> str:
    """`1 epoch`, `2 epochs`, `0 run folders`: a count and its noun (regular plurals only)."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def choices_error(kind: str, value: object, valid: "list[str] | tuple[str, ...]") -> UserError:
    """`unknown activation 'foo'; choose one of: a, b, c` — the standard 'not one of' message."""
    return UserError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(valid))}")


class MissingDependency(ModuleNotFoundError):
    """An optional package a feature needs is not installed (``e.name`` is that package)."""


def torch_missing(feature: str) -> MissingDependency:
    """`gaaf.train needs PyTorch: pip install 'gaaf[torch]'`, as an exception with ``name="torch"``."""
    return MissingDependency(f"{feature} needs PyTorch: {TORCH_INSTALL}", name="torch")


def require_torch(feature: str) -> None:
    """Raise :func:`torch_missing` unless PyTorch can be imported (looked up, not imported)."""
    if importlib.util.find_spec("torch") is None:
        raise torch_missing(feature)


def is_torch_missing(e: BaseException) -> bool:
    """True for the ModuleNotFoundError that a missing PyTorch raises (``No module named 'torch'``,
    or :class:`MissingDependency` for torch)."""
    return isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "torch"
