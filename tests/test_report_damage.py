"""`gaaf report` on a sweep folder whose run files are damaged (truncated, garbage, wrong content):
each damaged run is listed with the file and what is wrong, never a traceback, and the rest of the
report is produced from the intact runs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from gaaf.cli import main
from gaaf.experiments import folders, stats
from gaaf.plots.report import build_report
from test_report import FINALS, sweep_dir, write_run  # noqa: F401 - sweep_dir is a fixture

HEADER = "epoch,lr,train_loss,train_acc,test_loss,test_acc,epoch_seconds,images_per_second"


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_damaged_files_are_listed_and_the_rest_is_reported(sweep_dir: Path, capsys):  # noqa: F811
    run = lambda name, seed: folders.run_dir(sweep_dir, name, seed)  # noqa: E731
    _cut(run("relu", 0) / "summary.json")
    (run("relu", 1) / "metrics.csv").write_bytes(b"\x00\x01garbage\x00" * 20)
    (run("gaaf_relu-shift=-1", 0) / "config.json").write_bytes(b"\xff\xfe\x00 not text")
    metrics = run("gaaf_relu-shift=2", 0) / "metrics.csv"
    metrics.write_text(metrics.read_text().rstrip("\n")[:-12])  # the last row cut short
    summary = run("gaaf_relu-shift=2", 1) / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "final_test_acc": "high"}))
    (run("gaaf_relu-shift=2", 2) / "config.json").write_text("[1, 2, 3]\n")

    assert main(["report", str(sweep_dir)]) == 0
    printed = capsys.readouterr().out
    assert "Traceback" not in printed
    assert "- `relu/seed0`: damaged: summary.json is not valid JSON (" in printed
    assert "- `relu/seed1`: damaged: metrics.csv " in printed
    assert "- `gaaf_relu-shift=-1/seed0`: damaged: config.json is not UTF-8 text (bad byte at offset 0)" in printed
    assert "- `gaaf_relu-shift=2/seed0`: damaged: metrics.csv line 4 has " in printed
    assert " fields, its header 8 (cut short?)" in printed
    assert "- `gaaf_relu-shift=2/seed1`: damaged: summary.json says finished but its final_test_acc is 'high'" in printed
    assert "- `gaaf_relu-shift=2/seed2`: damaged: config.json holds no config object" in printed
    damaged = [ln for ln in printed.splitlines() if ": damaged: " in ln]
    assert len(damaged) == 6  # one line per damaged run

    # the statistics use the intact seeds only
    report = build_report(sweep_dir)
    rows = {row.name: row for row in report.rows}
    assert rows["relu"].accs() == [FINALS["relu"][2]]
    assert rows["gaaf_relu-shift=-1"].summary == stats.summarize(FINALS["gaaf_relu-shift=-1"][1:])
    assert rows["gaaf_relu-shift=2"].accs() == []
    assert (sweep_dir / "report" / "learning_curves.png").is_file()
    with open(sweep_dir / "report" / "report.csv", newline="") as f:
        states = {(r["run"], r["seed"]): r["state"] for r in csv.DictReader(f)}
    assert states[("relu", "0")] == states[("relu", "1")] == "damaged" and states[("relu", "2")] == "finished"


def test_metrics_checks_name_the_line_and_keep_the_good_rows(tmp_path: Path):
    cases = {
        "": "metrics.csv is empty",
        "a,b\n1,2\n": "metrics.csv has no epoch column (first line 'a,b')",
        f"{HEADER}\n1,0.1,2,0.5,2,0.5,1,9\n2,0.1,x,0.5,2,0.5,1,9\n": "metrics.csv line 3: 'x' in column train_loss is not a number",
        f"{HEADER}\n1,0.1,2,0.5,2,0.5,1,9\ninf,0.1,2,0.5,2,0.5,1,9\n": "metrics.csv line 3: epoch 'inf' is not a whole number >= 1",
        f"{HEADER}\n1,0.1,2,0.5,2,0.5,1,9,7\n": "metrics.csv line 2 has 9 fields, its header 8 (cut short?)",
        f"{HEADER}\n1,0.1,2,0.5,2,0.5,1,9\n\n": "",  # a blank line is not damage
    }
    for text, problem in cases.items():
        write_run(tmp_path / "r", {}, [0.5])
        (tmp_path / "r" / "metrics.csv").write_text(text)
        rows, found = folders.read_metrics_checked(tmp_path / "r")
        assert found == problem, text
        assert folders.read_run(tmp_path / "r").state == (folders.DAMAGED if problem else folders.FINISHED)
        if "line 3" in problem:
            assert [r["epoch"] for r in rows] == [1.0]  # the rows before the bad one still count
    (tmp_path / "r" / "metrics.csv").write_bytes(b"epoch,lr\n1,\xff\xfe\n")
    assert folders.read_metrics_checked(tmp_path / "r")[1].startswith("metrics.csv cannot be read ('utf-8' codec")
    assert folders.epochs_done(tmp_path / "r") == 0  # the sweep's reader never raises either


def test_json_checks(tmp_path: Path):
    path = tmp_path / "summary.json"
    assert folders.load_json(path) == (None, "")  # absent: not damage
    path.write_text("  \n")
    assert folders.load_json(path) == (None, "summary.json is empty")
    path.write_text('{"status": "fini')
    value, problem = folders.load_json(path)
    assert value is None and problem.startswith("summary.json is not valid JSON (Unterminated string")
    path.write_text('{"a": 1}')
    assert folders.load_json(path) == ({"a": 1}, "")
