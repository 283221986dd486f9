"""User-facing errors.

`UserError` (and `ValueError` raised while validating user input) is what the CLI turns into a
single line ``gaaf: error: <message>`` with exit status 2 and no traceback. Raise it with a
message that says what was wrong *and* what is allowed.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: wrong flag value, missing file, incompatible checkpoint, ..."""


def choices_error(kind: str, value: object, valid: "list[str] | tuple[str, ...]") -> UserError:
    """`unknown activation 'foo'; choose one of: a, b, c` — the standard 'not one of' message."""
    return UserError(f"unknown {kind} {value!r}; choose one of: {', '.join(sorted(valid))}")
