"""Study files: a TOML description of a set of training runs, validated before anything runs.

    title = "relu vs GAAF"
    description = "..."
    seeds = [0, 1, 2]               # every run is trained once per seed
    baseline = "relu"               # the run every other run is compared against
                                    # (a [[runs]] entry may set its own `baseline = "..."`)

    [base]                          # train options shared by every run (any `gaaf train` option)
    model = "resnet20_v1"
    epochs = 200

    [[runs]]                        # explicit variants: a name, overrides, optional published result
    name = "relu"
    activation = "relu"
    published = 0.8084
    published_source = "seed"       # "seed" (the first public GAAF code) or "paper"

    [grid]                          # and/or a cartesian product over base
    activation = ["gaaf_relu"]
    shift = [-1.0, 0.0]             # → runs "gaaf_relu-shift=-1" and "gaaf_relu-shift=0"

Explicit runs come first, then the grid's runs (each grid point applied to [base]). `load_study`
collects every problem — unknown keys, bad values (checked by TrainConfig), duplicate names,
a baseline that names no run — and raises one `StudyError` listing all of them, each with its
key path and TOML line.
"""
from __future__ import annotations

import difflib
import itertools
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import trainopts
from .toml_lines import TomlLineIndex

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TOP_KEYS = ("title", "description", "seeds", "baseline", "base", "runs", "grid")
RUN_META_KEYS = ("name", "published", "published_source", "baseline", "note")
PUBLISHED_SOURCES = ("seed", "paper")
#: run names become folder names: no slashes, spaces or leading dots
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+,\-]{0,99}$")


class StudyError(UserError):
    """Every problem found in a study file; str() is a headline plus one line per problem."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        n = len(problems)
        head = f"{path}: {n} problem{'s' if n != 1 else ''} in the study file"
        super().__init__(head + "\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class RunSpec:
    """One variant of the study: its name, the options it sets over [base], its published result."""

    name: str
    overrides: dict[str, Any]
    published: float | None = None
    published_source: str | None = None
    note: str | None = None
    baseline: str | None = None  # compare against this run instead of the study's baseline


@dataclass(frozen=True)
class Study:
    title: str
    description: str
    base: dict[str, Any]
    runs: tuple[RunSpec, ...]
    seeds: tuple[int, ...] = (0,)
    baseline: str | None = None
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def run(self, name: str) -> RunSpec:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)

    def baseline_of(self, run: RunSpec) -> str | None:
        """The run `run` is compared against: its own `baseline`, else the study's."""
        return run.baseline or self.baseline

    def options(self, run: RunSpec, seed: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The train options of one run folder: [base] ⊕ run ⊕ command-line overrides ⊕ seed."""
        return {**self.base, **run.overrides, **(overrides or {}), "seed": seed}

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "path": self.path,
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "base": dict(self.base),
            "runs": [
                {"name": r.name, "overrides": dict(r.overrides), "published": r.published,
                 "published_source": r.published_source, "note": r.note, "baseline": r.baseline}
                for r in self.runs
            ],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Study":
        """Inverse of `to_dict` (reads study.json; no validation: it was validated when written)."""
        runs = tuple(
            RunSpec(r["name"], dict(r.get("overrides", {})), r.get("published"),
                    r.get("published_source"), r.get("note"), r.get("baseline"))
            for r in d.get("runs", [])
        )  # fmt: skip
        return cls(
            title=d.get("title", ""), description=d.get("description", ""), base=dict(d.get("base", {})),
            runs=runs, seeds=tuple(d.get("seeds", (0,))), baseline=d.get("baseline"), path=d.get("path"),
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# loading and validation


def load_study(path: str | Path, *, check_values: bool = True) -> Study:
    """Read and validate a study file. Raises StudyError listing every problem found."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"study file {str(path)!r} not found; pass a .toml study file (see experiments/)")
    text = path.read_text(encoding="utf-8")
    return parse_study(text, str(path), check_values=check_values)


def parse_study(text: str, path: str = "<study>", *, check_values: bool = True) -> Study:
    """Parse and validate study TOML `text` (`path` only labels the messages)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise StudyError(path, [f"not valid TOML: {e}"]) from None
    return _Validator(data, TomlLineIndex(text), path).run(check_values)


class _Validator:
    def __init__(self, data: dict[str, Any], lines: TomlLineIndex, path: str):
        self.data, self.lines, self.path = data, lines, path
        self.problems: list[tuple[int, str]] = []
        self.fields = trainopts.study_fields()

    def error(self, table: str, key: str, message: str) -> None:
        where = f"{table}.{key}" if table and key else (table or key or "(top level)")
        line = self.lines.find(table, key)
        self.problems.append((line or 0, f"line {line}: {where}: {message}" if line else f"{where}: {message}"))

    def run(self, check_values: bool) -> Study:
        d = self.data
        for key in d:
            if key not in TOP_KEYS:
                self.error("", key, self._unknown(key, TOP_KEYS))
        title = self._string("", "title", "")
        description = self._string("", "description", "")
        seeds = self._seeds()
        base = self._options("base", d.get("base", {}))
        runs = self._runs()
        runs += self._grid(base)
        if not runs and not self.problems:
            self.error("", "", "no runs: add [[runs]] entries (name = ...) and/or a [grid] table")
        self._duplicates(runs)
        baseline = self._string("", "baseline", None)
        if baseline is not None and runs and baseline not in {r.name for r, _ in runs}:
            names = ", ".join(dict.fromkeys(r.name for r, _ in runs))
            self.error("", "baseline", f"{baseline!r} names no run; choose one of: {names}")
        for spec, table in runs:
            if spec.baseline is not None and spec.baseline not in {r.name for r, _ in runs}:
                self.error(table, "baseline", f"{spec.baseline!r} names no run; choose one of: "
                                              + ", ".join(dict.fromkeys(r.name for r, _ in runs)))  # fmt: skip
        if check_values:  # unknown keys were left out of base/overrides, so values can still be checked
            self._values(base, runs, seeds)
        if self.problems:
            # by line, so the list reads top to bottom like the file
            self.problems.sort(key=lambda p: p[0])
            raise StudyError(self.path, [msg for _, msg in self.problems])
        return Study(title, description, base, tuple(r for r, _ in runs), tuple(seeds), baseline, self.path)

    # -- pieces ---------------------------------------------------------------------------------

    def _unknown(self, key: str, allowed: "tuple[str, ...] | list[str]", extra: str = "") -> str:
        if key in trainopts.SWEEP_OWNED:
            return f"not allowed in a study: {trainopts.SWEEP_OWNED[key]}"
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key{hint}; allowed: {', '.join(allowed)}{extra}"

    def _string(self, table: str, key: str, default: Any) -> Any:
        value = self.data.get(key, default)
        if value is not default and not isinstance(value, str):
            self.error(table, key, f"must be a string, got {value!r}")
            return default
        return value

    def _seeds(self) -> list[int]:
        seeds = self.data.get("seeds", [0])
        ok = isinstance(seeds, list) and seeds and all(type(s) is int and s >= 0 for s in seeds)
        if not ok:
            self.error("", "seeds", f"must be a non-empty list of integers >= 0, e.g. [0, 1, 2]; got {seeds!r}")
            return [0]
        if len(set(seeds)) != len(seeds):
            self.error("", "seeds", f"has duplicates: {seeds!r}")
        return list(seeds)

    def _options(self, table: str, options: Any, meta: tuple[str, ...] = ()) -> dict[str, Any]:
        """Check that `options` is a table whose keys are train options (or `meta` keys)."""
        if not isinstance(options, dict):
            self.error(table, "", f"must be a table of train options, got {options!r}")
            return {}
        good = {}
        for key, value in options.items():
            if key in meta:
                continue
            if key not in self.fields:
                self.error(table, key, self._unknown(key, list(meta) + list(self.fields)))
            elif isinstance(value, dict):
                self.error(table, key, f"must be a value, not a table: {value!r}")
            else:
                good[key] = value
        return good

    def _runs(self) -> list[tuple[RunSpec, str]]:
        runs = self.data.get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            self.error("", "runs", "must be an array of tables: write each run as a [[runs]] section")
            return []
        out = []
        for i, entry in enumerate(runs):
            table = f"runs[{i}]"
            overrides = self._options(table, entry, RUN_META_KEYS)
            name = entry.get("name")
            if name is None:
                self.error(table, "", "missing `name = \"...\"` (each run needs a unique name)")
                name = f"<runs[{i}]>"
            elif not isinstance(name, str) or not _NAME_RE.match(name):
                self.error(table, "name", f"{name!r} is not a usable run name; use letters, digits and _ . = + , - "
                                          "(it becomes a folder name)")  # fmt: skip
                name = f"<runs[{i}]>"
            published = entry.get("published")
            if published is not None and not (
                isinstance(published, (int, float)) and not isinstance(published, bool)
                and math.isfinite(published) and 0.0 <= published <= 1.0
            ):  # fmt: skip
                hint = f" (write {published / 100:g})" if isinstance(published, (int, float)) and 1 < published <= 100 else ""
                self.error(table, "published", f"must be an accuracy fraction in [0, 1]; got {published!r}{hint}")
                published = None
            source = entry.get("published_source")
            if source is not None and source not in PUBLISHED_SOURCES:
                self.error(table, "published_source", f"must be one of: {', '.join(PUBLISHED_SOURCES)}; got {source!r}")
            note = entry.get("note")
            if note is not None and not isinstance(note, str):
                self.error(table, "note", f"must be a string, got {note!r}")
                note = None
            baseline = entry.get("baseline")
            if baseline is not None and not isinstance(baseline, str):
                self.error(table, "baseline", f"must be a run name (a string), got {baseline!r}")
                baseline = None
            spec = RunSpec(name, overrides, None if published is None else float(published), source, note, baseline)
            out.append((spec, table))
        return out

    def _grid(self, base: dict[str, Any]) -> list[tuple[RunSpec, str]]:
        grid = self.data.get("grid")
        if grid is None:
            return []
        grid = self._options("grid", grid)
        axes = []
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                self.error("grid", key, f"must be a non-empty list of values, got {values!r}")
            elif len({_token(v) for v in values}) != len(values):
                self.error("grid", key, f"has duplicate values: {values!r}")
            else:
                axes.append((key, values))
        out = []
        for combo in itertools.product(*(values for _, values in axes)):
            overrides = {key: value for (key, _), value in zip(axes, combo)}
            name = grid_name(overrides, base)
            if not _NAME_RE.match(name):
                self.error("grid", "", f"generated run name {name!r} is not usable as a folder name; "
                                       "use [[runs]] with explicit names for these values")  # fmt: skip
                continue
            out.append((RunSpec(name, overrides), "grid"))
        return out

    def _duplicates(self, runs: list[tuple[RunSpec, str]]) -> None:
        first: dict[str, str] = {}
        for spec, table in runs:
            if spec.name.startswith("<"):
                continue
            if spec.name in first:
                where = first[spec.name]
                line = self.lines.find(where, "name" if where != "grid" else "")
                at = f"{where}" + (f", line {line}" if line else "")
                self.error(table, "name" if table != "grid" else "", f"duplicate run name {spec.name!r} (first at {at})")
            else:
                first[spec.name] = table

    def _values(self, base: dict[str, Any], runs: list[tuple[RunSpec, str]], seeds: list[int]) -> None:
        """Resolve every run through TrainConfig; attribute each failure to the key it names."""
        seen = set()
        for spec, table in runs:
            options = {**base, **spec.overrides, "seed": seeds[0]}
            # TrainConfig stops at type errors before checking names, so drop each blamed key
            # and check again until clean: every bad value gets reported, not just the first
            for _ in range(len(options) + 1):
                found = trainopts.problems(options)
                blamed = set()
                for msg in found:
                    msg = msg.removeprefix("invalid training config: ")
                    key, where = _blame(msg, spec.overrides, base, table)
                    blamed.add(key)
                    if (where, key, msg) not in seen:  # a bad [base] value fails every run: say it once
                        seen.add((where, key, msg))
                        self.error(where, key, msg if where != "grid" else f"{msg} (run {spec.name!r})")
                blamed.discard("")
                blamed.discard("seed")
                if not found or not blamed:
                    break
                options = {k: v for k, v in options.items() if k not in blamed}


def _blame(message: str, overrides: dict[str, Any], base: dict[str, Any], table: str) -> tuple[str, str]:
    """The (key, table) a TrainConfig error message is about: the option it mentions last
    ("activation 'relu' takes no parameters, got width" is about width), looked up in the run's
    own overrides first, then in [base]."""
    positions = {}
    for key in {**base, **overrides}:
        found = list(re.finditer(rf"(?<![A-Za-z0-9_]){re.escape(key)}(?![A-Za-z0-9_])", message))
        if found:
            positions[key] = found[-1].start()
    for key in sorted(positions, key=positions.get, reverse=True):
        if key in overrides:
            return key, table
        if key in base:
            return key, "base"
    return "", table


def _token(value: Any) -> str:
    """A run-name fragment for one option value: -1.0 → "-1", 0.5 → "0.5", ["crop","flip"] → "crop+flip"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (list, tuple)):
        return "+".join(_token(v) for v in value) or "none"
    return str(value)


def grid_name(overrides: dict[str, Any], base: dict[str, Any]) -> str:
    """`gaaf_relu-shift=-1`: the activation, then `key=value` for every other grid option."""
    activation = overrides.get("activation", base.get("activation", "run"))
    parts = [_token(activation)]
    parts += [f"{k}={_token(v)}" for k, v in overrides.items() if k != "activation"]
    return "-".join(parts)
