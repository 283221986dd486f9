"""docs/REPRODUCTION.md's study is committed as its sweep folder's small files (issue J): `gaaf report` on
them must regenerate the committed report exactly, and the document must quote that report, not a copy
typed by hand."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from gaaf.cli import main

ROOT = Path(__file__).resolve().parents[1]
SWEEP = Path("docs") / "replication" / "cpu"  # relative: report.md names the folder as given
DOC = ROOT / "docs" / "REPRODUCTION.md"
EXACT_FILES = ("report.md", "report.csv")  # runs.csv: the statistics at full precision, compared to 1e-9
#: what a committed run folder holds: no checkpoints, no claims
RUN_FILES = {"config.json", "metrics.csv", "summary.json", "probes.json"}
#: the report is written with `--mde 0.0061`: the paper's CIFAR-10 gain (89.55% -> 90.16%)
REPORT_ARGS = ["--mde", "0.0061"]


def _quoted(name: str) -> str:
    """The block of docs/REPRODUCTION.md between `<!-- report:NAME -->` and `<!-- /report:NAME -->`."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- report:{name} -->\n(.*?)\n<!-- /report:{name} -->", text, re.S)
    assert m, f"docs/REPRODUCTION.md has no report:{name} block"
    return m.group(1).strip()


def _table(report_md: str, header_start: str) -> str:
    """The Markdown table of report.md whose header row starts with `header_start`."""
    lines = report_md.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    j = next((k for k in range(i, len(lines)) if not lines[k].startswith("|")), len(lines))
    return "\n".join(lines[i:j])


def test_the_committed_sweep_holds_only_the_small_files():
    runs = sorted((ROOT / SWEEP / "runs").glob("*/seed*"))
    study = json.loads((ROOT / SWEEP / "study.json").read_text())
    assert len(runs) == len(study["runs"]) == 5 * len(study["seeds"]) >= 15  # study.json lists every run folder
    for run in runs:
        assert {p.name for p in run.iterdir()} == RUN_FILES, run
        assert json.loads((run / "summary.json").read_text())["status"] == "finished", run


def test_gaaf_report_regenerates_the_committed_report_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["report", str(SWEEP), "--out", str(tmp_path), *REPORT_ARGS]) == 0
    for name in EXACT_FILES:
        committed = (ROOT / SWEEP / "report" / name).read_text(encoding="utf-8")
        assert (tmp_path / name).read_text(encoding="utf-8") == committed, name
    ours, committed = (list(csv.reader((d / "runs.csv").open(encoding="utf-8"))) for d in (tmp_path, ROOT / SWEEP / "report"))
    assert len(ours) == len(committed) and ours[0] == committed[0]
    for row, want in zip(ours[1:], committed[1:]):
        for column, a, b in zip(ours[0], row, want):  # a p-value's last digits may differ with SciPy's build
            assert a == b or float(a) == pytest.approx(float(b), rel=1e-9, abs=1e-12), (row[0], column, a, b)
    for png in (ROOT / SWEEP / "report").glob("*.png"):  # every committed figure is one the report draws
        assert (tmp_path / png.name).is_file(), png.name


def test_reproduction_md_quotes_the_report():
    report_md = (ROOT / SWEEP / "report" / "report.md").read_text(encoding="utf-8")
    assert _quoted("table") == _table(report_md, "| run | dataset")
    assert _quoted("target") == _table(report_md, "| run | target")
    for png in re.findall(r"\]\((replication/cpu/report/[^)]+\.png)\)", DOC.read_text(encoding="utf-8")):
        assert (ROOT / "docs" / png).is_file(), png
