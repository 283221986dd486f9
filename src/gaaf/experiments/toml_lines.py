"""Where keys are in a TOML text, so that a study's problems can name their line."""
from __future__ import annotations

import re


class TomlLineIndex:
    """Where keys are in the TOML text: tomllib gives no positions, so we scan the lines for
    table headers and `key =` at their start (good enough to point a person at the right line)."""

    _array = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_\-]+)\s*\]\]")
    _table = re.compile(r"^\s*\[\s*([A-Za-z0-9_\-]+)\s*\]")
    _key = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")

    def __init__(self, text: str):
        self.lines: dict[tuple[str, str], int] = {}
        table, counts, in_string = "", {}, False
        for lineno, line in enumerate(text.splitlines(), start=1):
            if in_string:  # inside a multi-line string: nothing here is a key
                in_string = (line.count('"""') + line.count("'''")) % 2 == 0
                continue
            if m := self._array.match(line):
                i = counts.get(m.group(1), 0)
                counts[m.group(1)] = i + 1
                table = f"{m.group(1)}[{i}]"
                self.lines[(table, "")] = lineno
            elif m := self._table.match(line):
                table = m.group(1)
                self.lines[(table, "")] = lineno
            elif m := self._key.match(line):
                self.lines.setdefault((table, m.group(1).strip("\"'")), lineno)
            in_string = in_string or (line.count('"""') + line.count("'''")) % 2 == 1

    def find(self, table: str, key: str = "") -> int | None:
        return self.lines.get((table, key)) or self.lines.get((table, ""))
