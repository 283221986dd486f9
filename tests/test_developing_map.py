"""docs/DEVELOPING.md maps every module of src/gaaf (a new module must be added to the map)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mapped_modules(text: str) -> set[str]:
    """File paths the layout block names: `      pkg/` opens a package, its modules are indented
    by 8 (several may share a line: `cifar.py, svhn.py  ...`), root modules by 6."""
    block = text[text.index("    src/gaaf/\n"):text.index("Imports only point down")]
    found, package = set(), ""
    for line in block.splitlines()[1:]:
        if m := re.fullmatch(r" {6}(\w+)/\s*", line):
            package = m.group(1) + "/"
        elif m := re.match(r" {6}(\w+\.py)\b", line):
            found.add(m.group(1))
            package = ""
        elif m := re.match(r" {8}((?:\w+\.py(?:, )?)+)", line):
            found.update(package + name for name in m.group(1).split(", "))
    return found


def test_every_module_is_in_the_map():
    listed = mapped_modules((ROOT / "docs" / "DEVELOPING.md").read_text(encoding="utf-8"))
    src = ROOT / "src" / "gaaf"
    modules = {p.relative_to(src).as_posix() for p in src.rglob("*.py") if "__pycache__" not in p.parts}
    undocumented_inits = {m for m in modules if m.endswith("/__init__.py") and m not in listed}
    missing = sorted(modules - listed - undocumented_inits)  # a package's __init__ may go unlisted
    assert not missing, f"modules missing from docs/DEVELOPING.md's map: {missing}"
    stale = sorted(listed - modules)
    assert not stale, f"docs/DEVELOPING.md maps modules that do not exist: {stale}"
