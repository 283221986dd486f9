"""The sweep folder layout, and reading the state of one run folder.

    OUT/
      study.json                  the resolved study: what `gaaf sweep` was asked to run
      configs/<run>/seed<k>.json  the resolved train config passed to `gaaf train --config`
      runs/<run>/seed<k>/         one `gaaf train --out` folder per run × seed (docs/DEVELOPING.md)
        config.json, metrics.csv, summary.json, last.pt, best.pt
        error.txt                 written by the sweep when the run failed (its stderr tail)
      report/                     `gaaf report` output (report.md, report.csv, *.png)

A run folder is in exactly one state: finished (summary.json says so), failed (error.txt and
not finished), interrupted (last.pt, so it can resume), or missing (nothing usable yet). The report
adds damaged: config.json, summary.json or metrics.csv is there but cannot be read (truncated,
overwritten with something else); such a run is listed with what is wrong and left out of the
statistics, and the rest of the report is produced as usual. And running: not finished and
claimed by a live process (claim.json), so the report says it is being trained, not missing.

A sweep also leaves claim.lock / claim.json in a run folder while it trains it (gaaf.train.claim).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..train import claim

FINISHED, FAILED, INTERRUPTED, MISSING = "finished", "failed", "interrupted", "missing"
#: a sweep's word for a finished run that a larger --epochs asks to continue (it resumes, like INTERRUPTED)
TO_EXTEND = "to extend"
DAMAGED = "damaged"  # gaaf report only: a config.json, summary.json or metrics.csv that cannot be read
RUNNING = "running"  # gaaf report only: not finished, and claim.json names a live holder
STUDY_FILE = "study.json"


def run_dir(root: Path, name: str, seed: int) -> Path:
    return Path(root) / "runs" / name / f"seed{seed}"


def config_path(root: Path, name: str, seed: int) -> Path:
    return Path(root) / "configs" / name / f"seed{seed}.json"


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is absent or unreadable (a report never fails on one file)."""
    return load_json(path)[0]


def load_json(path: Path) -> tuple[Any | None, str]:
    """(parsed file, "") — or (None, "") when it is absent, (None, what is wrong) when it is there
    but cannot be read or is not JSON (a truncated or overwritten file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, ""
    except UnicodeDecodeError as e:
        return None, f"{path.name} is not UTF-8 text (bad byte at offset {e.start})"
    except OSError as e:
        return None, f"{path.name} cannot be read ({e.strerror or e})"
    if not text.strip():
        return None, f"{path.name} is empty"
    try:
        return json.loads(text), ""
    except ValueError as e:
        return None, f"{path.name} is not valid JSON ({e})"


def is_finished(folder: Path) -> bool:
    summary = read_json(Path(folder) / "summary.json")
    return isinstance(summary, dict) and summary.get("status") == FINISHED


def state(folder: Path) -> str:
    """finished | failed | interrupted | missing (see the module docstring)."""
    folder = Path(folder)
    if is_finished(folder):
        return FINISHED
    if (folder / "error.txt").is_file():
        return FAILED
    if (folder / "last.pt").is_file():
        return INTERRUPTED
    return MISSING


@dataclass
class RunResult:
    """What one run folder holds, for the report."""

    folder: Path
    state: str
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, float]]
    error: str = ""
    damage: list[str] = field(default_factory=list)  # one line per damaged file (state DAMAGED)
    running: str = ""  # state RUNNING: who trains it (claim.json: host, pid, since)

    @property
    def final_acc(self) -> float | None:
        v = self.summary.get("final_test_acc") if self.state == FINISHED else None
        return float(v) if isinstance(v, (int, float)) else None


def read_run(folder: Path) -> RunResult:
    """Everything `gaaf report` needs from a run folder; missing files read as empty. A folder with a
    damaged config.json, summary.json or metrics.csv is DAMAGED, each problem named in `damage`."""
    folder = Path(folder)
    raw, config_problem = load_json(folder / "config.json")
    config = raw.get("config", raw) if isinstance(raw, dict) else None
    if raw is not None and not isinstance(config, dict):
        config_problem = "config.json holds no config object"
    summary, summary_problem = load_json(folder / "summary.json")
    summary_problem = summary_problem or _summary_problem(summary)
    metrics, metrics_problem = read_metrics_checked(folder)
    error = ""
    try:
        error = (folder / "error.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        pass
    damage = [p for p in (config_problem, summary_problem, metrics_problem) if p]
    now = DAMAGED if damage else state(folder)
    running = claim.claimed_by(folder) if now != FINISHED else ""
    return RunResult(folder, RUNNING if running and not damage else now, config if isinstance(config, dict) else {},
                     summary if isinstance(summary, dict) else {}, metrics, error, damage, running)  # fmt: skip


def _summary_problem(summary: Any) -> str:
    if summary is None:
        return ""
    if not isinstance(summary, dict):
        return "summary.json is not a JSON object"
    acc = summary.get("final_test_acc")
    if summary.get("status") == FINISHED and not (isinstance(acc, (int, float)) and math.isfinite(acc)):
        return f"summary.json says finished but its final_test_acc is {acc!r}, not a number"
    return ""


def read_metrics(folder: Path) -> list[dict[str, float]]:
    """metrics.csv as a list of {column: float}; rows that do not parse are skipped."""
    return read_metrics_checked(folder)[0]


def read_metrics_checked(folder: Path) -> tuple[list[dict[str, float]], str]:
    """(the rows of metrics.csv that parse, "" or the first thing wrong with the file): every row
    has the header's number of fields, every field is a number, epoch a whole number >= 1."""
    path = Path(folder) / "metrics.csv"
    rows: list[dict[str, float]] = []
    problems: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                return [], "metrics.csv is empty"
            if "epoch" not in header:
                return [], f"metrics.csv has no epoch column (first line {_short(','.join(header))})"
            for cells in reader:
                if cells:
                    row, problem = _metrics_row(header, cells, reader.line_num)
                    rows += [row] if row is not None else []
                    problems += [problem] if problem else []
    except FileNotFoundError:
        return [], ""
    except (OSError, ValueError, csv.Error) as e:  # ValueError: UnicodeDecodeError
        return rows, f"metrics.csv cannot be read ({e})"
    return rows, problems[0] if problems else ""


def _metrics_row(header: list[str], cells: list[str], line: int) -> tuple[dict[str, float] | None, str]:
    if len(cells) != len(header):
        return None, f"metrics.csv line {line} has {len(cells)} fields, its header {len(header)} (cut short?)"
    try:
        row = {k: float(v) for k, v in zip(header, cells) if v != ""}
    except ValueError:
        bad = next(f"{_short(v)} in column {k[:40]}" for k, v in zip(header, cells) if v and not _is_float(v))
        return None, f"metrics.csv line {line}: {bad} is not a number"
    epoch = row.get("epoch", float("nan"))
    if not (math.isfinite(epoch) and epoch >= 1 and epoch.is_integer()):
        return None, f"metrics.csv line {line}: epoch {cells[header.index('epoch')]!r} is not a whole number >= 1"
    return row, ""


def _short(text: str, n: int = 40) -> str:
    """repr(text), cut to about n characters (a line of garbage stays a readable message)."""
    r = repr(text)
    return r if len(r) <= n else r[: n - 4] + "...'"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def reached_max_iterations(folder: Path, config: dict[str, Any]) -> bool:
    """A finished run that took `config`'s max_iterations (summary.json's iterations): complete,
    though its last epoch may be short of `epochs` (gaaf.train.schedule)."""
    summary = read_json(Path(folder) / "summary.json")
    limit = config.get("max_iterations")
    done = summary.get("iterations") if isinstance(summary, dict) else None
    return bool(limit) and isinstance(done, int) and is_finished(folder) and done >= limit


def epochs_done(folder: Path) -> int:
    """Finished epochs according to metrics.csv (0 when there is none)."""
    rows = read_metrics(folder)
    return int(max((r.get("epoch", 0) for r in rows), default=0))
