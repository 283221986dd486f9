"""`gaaf bench activations` and the shared timing helpers (no timing thresholds: only structure)."""
from __future__ import annotations

import json

import pytest
import torch

from gaaf.bench._timing import Timing, alternate, calls_per_sample, format_seconds, rotated
from gaaf.bench.activations import ACTIVATIONS, saved_bytes
from gaaf.bench.cli import parse_size
from gaaf.cli import main
from gaaf.errors import UserError


def test_alternate_interleaves_in_rotated_order_and_counts_rounds() -> None:
    calls: list[str] = []
    cands = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    timings = alternate(cands, repeats=4, warmup=2)
    assert list(timings) == ["a", "b", "c"]
    assert all(len(t.samples) == 4 and t.median >= 0 and t.first_call >= 0 for t in timings.values())
    # first call + 2 warm-ups per candidate, one after another; then rounds rotate the order
    assert calls[:9] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert calls[9:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        alternate(cands, repeats=0)


def test_timing_summary_and_formatting() -> None:
    t = Timing("x", (3.0, 1.0, 2.0, 10.0, 4.0))
    assert t.median == 3.0 and t.best == 1.0 and t.iqr == pytest.approx(2.0)
    assert Timing("y", (1.0,)).iqr == 0.0
    assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert [format_seconds(s) for s in (1.5, 0.0123, 8.12e-4, 5e-9)] == ["1.5 s", "12.3 ms", "812 µs", "5 ns"]
    assert calls_per_sample(lambda: None, 0.0) == 1 and calls_per_sample(lambda: None, 1e-3, cap=7) == 7


def test_saved_bytes_counts_distinct_storages() -> None:
    x = torch.randn(4, 8, requires_grad=True)
    nbytes = x.numel() * x.element_size()
    assert saved_bytes(lambda t: t * 2.0, x) == 0  # scalar multiply keeps nothing
    assert saved_bytes(torch.relu, x) == nbytes  # relu keeps its output
    assert saved_bytes(lambda t: t * t, x) == nbytes  # x saved twice: one storage
    assert saved_bytes(lambda t: torch.sigmoid(t) * torch.tanh(t), x) == 2 * nbytes  # both outputs, no input


def test_parse_size() -> None:
    assert parse_size("128x16x32x32") == (128, 16, 32, 32) and parse_size("7") == (7,)
    for bad in ("", "4x0", "4xa", "-1x2"):
        with pytest.raises(UserError, match="bad size"):
            parse_size(bad)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["bench", "activations", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_bench_activations_eager_table_and_json(tmp_path, capsys) -> None:
    path = tmp_path / "bench.json"
    rc, out, _ = _run(capsys, "--sizes", "2x3x4x4", "--repeats", "1", "--warmup", "0", "--no-compile",
                      "--json", str(path))
    assert rc == 0
    assert "torch " in out and "threads" in out and "size (2, 3, 4, 4)" in out
    rows = [line.split() for line in out.splitlines()]
    names = {r[0] for r in rows if len(r) > 1 and r[1] in ("eager", "naive")}
    assert names == set(ACTIVATIONS)
    assert sum(1 for r in rows if len(r) > 1 and r[1] == "naive") == 3  # one per GAAF activation
    data = json.loads(path.read_text())
    assert {r["activation"] for r in data["rows"]} == set(ACTIVATIONS)
    by_key = {(r["activation"], r["mode"]): r for r in data["rows"]}
    assert by_key[("relu", "eager")]["saved_bytes"] == 2 * 3 * 4 * 4 * 4  # relu keeps one output-sized tensor
    assert all(r["median_s"] > 0 and r["saved_bytes"] > 0 for r in data["rows"])


def test_bench_activations_compiled_candidates(capsys) -> None:
    rc, out, _ = _run(capsys, "--sizes", "4x4", "--repeats", "1", "--warmup", "0", "--activations", "gaaf_relu")
    assert rc == 0
    modes = {(r.split()[0], r.split()[1]) for r in out.splitlines() if r.startswith(("relu ", "gaaf_relu "))}
    assert modes == {("relu", "eager"), ("relu", "compiled"), ("gaaf_relu", "eager"), ("gaaf_relu", "compiled"),
                     ("gaaf_relu", "naive")}


@pytest.mark.parametrize("argv,message", [
    (["--sizes", "4xq"], "bad size '4xq'"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--activations", "gaaf_swish"], "cannot benchmark 'gaaf_swish'"),
    (["--device", "tpu"], "bad --device"),
])
def test_bad_arguments_are_one_line_errors(capsys, argv, message) -> None:
    rc, _, err = _run(capsys, "--no-compile", *argv)
    assert rc == 2 and err.startswith("gaaf: error: ") and message in err
