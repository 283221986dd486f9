"""User-facing errors, and `plural` for the counts that messages print.

`UserError` (and `ValueError` raised while validating user input) is what the CLI turns into a
single line ``gaaf: error: <message>`` with exit status 2 and no traceback. Raise it with a
message that says what was wrong *and* what is allowed.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: wrong flag value, missing file, incompatible checkpoint, ..."""


def plural(n: int, word: str) -> str:
    """`1 epoch`, `2 epochs`, `0 run folders`: a count and its noun (regular plurals only)."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def choices_error(kind: str, value: object, valid: "list[str] | tuple[str, ...]") -> UserError:
    """`unknown activation 'foo'; choose one of: a, b, c` — the standard 'not one of' message."""
    return UserError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(valid))}")
