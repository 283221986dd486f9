"""`gaaf bench train` and `gaaf bench gpu --smoke`: structure only (no timing thresholds), tiny sizes.

GAAF_NO_COMPILE=1 keeps the GAAF op on its plain eager math (no kernel compilation) so these stay fast;
the benchmark code path is the same.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaaf.bench.train import bench_config, dataset_for, format_table, bench_train
from gaaf.bench.step_split import KINDS, PHASES, kind_of, phase_of, split_lines
from gaaf.cli import main


@pytest.fixture(autouse=True)
def _no_kernel_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAAF_NO_COMPILE", "1")


def test_bench_train_cli_prints_both_activations_and_ratio(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "train.json"
    rc = main(["bench", "train", "--models", "mlp,resnet8_v1", "--batch-size", "8", "--steps", "2", "--rounds", "1",
               "--no-compile", "--device", "cpu", "--threads", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("model"))
    assert "relu img/s" in header and "gaaf img/s" in header and "ratio" in header
    body = [line.split() for line in text.splitlines() if line.startswith(("mlp ", "resnet8_v1 "))]
    assert [(b[0], b[1], b[2]) for b in body] == [
        ("mlp", "eager", "train"), ("mlp", "eager", "eval"), ("resnet8_v1", "eager", "train"),
        ("resnet8_v1", "eager", "eval")]
    assert all(float(b[5]) > 0 for b in body)  # the ratio column
    assert "cpu:" in text and "torch" in text and "threads 1" in text
    mem = [line for line in text.splitlines() if line.startswith("peak memory of one train step")]
    assert [line.split()[6] for line in mem] == ["mlp/eager", "resnet8_v1/eager"]
    assert all("relu" in line and "gaaf_relu" in line and "MiB" in line and "%)" in line for line in mem)
    data = json.loads(out.read_text())
    assert {(r["model"], r["activation"]) for r in data["rows"]} == {
        (m, a) for m in ("mlp", "resnet8_v1") for a in ("relu", "gaaf_relu")}
    assert len(data["ratios"]) == 4 and all(r["gaaf_relu_over_relu"] > 0 for r in data["ratios"])
    assert data["settings"]["gaaf_eager_kernels"] is False and data["environment"]["torch_threads"] == 1
    assert set(data["peak_step_bytes"]) == {f"{m}/eager/{a}" for m in ("mlp", "resnet8_v1") for a in ("relu", "gaaf_relu")}
    assert all(v > 0 for v in data["peak_step_bytes"].values())
    assert "resnet8_v1/eager" in data["targets"] and all(isinstance(t["met"], bool) for t in data["targets"].values())


def test_bench_train_uses_seed_preset_and_dataset_shapes() -> None:
    cfg = bench_config("resnet8_v1", "gaaf_relu", batch_size=4, amp=False, device="cpu")
    assert (cfg.optimizer, cfg.l2, cfg.shift, cfg.dataset) == ("adam", 1e-4, -1.0, "cifar10")
    assert dataset_for("mlp") == "mnist" and dataset_for("resnet56_v2") == "cifar10"


def test_bench_train_profile_lists_top_ops() -> None:
    res = bench_train(["mlp"], batch_size=4, rounds=1, steps=1, warmup=0, modes=("eager",), eval_phase=False,
                      profile_steps=1)
    assert set(res.profiles) == {"mlp/eager/relu", "mlp/eager/gaaf_relu"}
    ops = res.profiles["mlp/eager/relu"]
    assert ops and all(0 < o["share"] <= 1 for o in ops) and any("addmm" in o["op"] or "mm" in o["op"] for o in ops)
    assert "profile mlp/eager/gaaf_relu" in format_table(res)
    # the same profiler run, split by phase and kind: every cell present, the phases an MLP step has
    cells = res.splits["mlp/eager/gaaf_relu"]
    assert set(cells) == {f"{p}/{k}" for p in PHASES for k in KINDS}
    assert all(v >= 0 for v in cells.values())
    for phase in PHASES:  # forward (addmm, loss), backward (autograd's engine), optimizer (Adam's step)
        assert sum(v for c, v in cells.items() if c.startswith(phase + "/")) > 0, phase
    assert cells["forward/convolution"] == 0 and cells["backward/compiled kernels"] == 0
    assert "where the time goes mlp/eager" in format_table(res)


def test_step_split_classifies_ops_by_ancestry_and_name() -> None:
    assert phase_of(["aten::addmm", "autograd::engine::evaluate_function: AddmmBackward0"]) == "backward"
    assert phase_of(["## Call CompiledFxGraph fabc ##", "CompiledFunctionBackward"]) == "backward"
    assert phase_of(["aten::lerp_", "Optimizer.step#Adam.step"]) == "optimizer"
    assert phase_of(["Optimizer.zero_grad#Adam.zero_grad"]) == "optimizer"
    assert phase_of(["CompiledFunction", "Torch-Compiled Region: 0/0"]) == phase_of([]) == "forward"
    assert kind_of("aten::mkldnn_convolution") == kind_of("aten::convolution_backward") == "convolution"
    assert kind_of("aten::cudnn_convolution") == kind_of("aten::conv2d") == "convolution"
    assert kind_of("## Call CompiledFxGraph fikcf4cx ##") == "compiled kernels"
    assert kind_of("graph_1_cpp_fused__native_batch_norm_legit_functional_add_convolution_backward_0") == "compiled kernels"
    assert kind_of("triton_poi_fused_relu_0") == "compiled kernels"
    for other in ("aten::native_batch_norm", "aten::add_", "aten::copy_", "aten::empty", "aten::addmm"):
        assert kind_of(other) == "other ops", other


def test_step_split_lines_pair_the_activations() -> None:
    relu = {f"{p}/{k}": 0.0 for p in PHASES for k in KINDS}
    gaaf = dict(relu)
    relu.update({"backward/compiled kernels": 30.0, "forward/convolution": 50.0})
    gaaf.update({"backward/compiled kernels": 52.5, "forward/convolution": 50.0})
    lines = split_lines({"r/compiled/relu": relu, "r/compiled/gaaf_relu": gaaf, "lone/eager/relu": relu}, 3)
    text = "\n".join(lines)
    assert "where the time goes r/compiled" in text and "lone/eager" not in text  # a pair or nothing
    assert any(line.split()[:3] == ["backward", "compiled", "kernels"] and line.split()[-1] == "+22.50" for line in lines)
    assert lines[-1].split() == ["total", "80.00", "102.50", "+22.50"]
    assert not any(line.split()[:1] == ["optimizer"] for line in lines)  # zero cells are left out


def test_bench_train_rejects_bad_input() -> None:
    assert main(["bench", "train", "--models", "resnet7_v1", "--no-compile", "--device", "cpu"]) == 2
    assert main(["bench", "train", "--steps", "0", "--no-compile", "--device", "cpu"]) == 2


def test_bench_gpu_smoke_writes_json_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    rc = main(["bench", "gpu", "--smoke", "--device", "cpu", "--out", str(out), "--jobs", "1,2", "--scan-seconds", "0.5"])
    report = json.loads((out / "gpu_check.json").read_text())
    assert rc == 0, report
    assert set(report["phases"]) == {"tests", "epoch", "scan"}
    assert all(p["status"] == "ok" for p in report["phases"].values())
    tests = json.loads((out / "tests.json").read_text())
    assert tests["ok"] and tests["pytest"]["status"] == "skipped"
    assert {c["dtype"] for c in tests["fused_op"]} == {"float64", "float32", "bfloat16"}
    epoch = json.loads((out / "epoch.json").read_text())
    assert set(epoch["activations"]) == {"relu", "gaaf_relu"} and epoch["ratio_train_throughput_gaaf_over_relu"] > 0
    scan = json.loads((out / "scan.json").read_text())
    assert [p["jobs"] for p in scan["points"]] == [1, 2] and scan["suggested_jobs"] in (1, 2)
    assert all(len(p["workers"]) == p["jobs"] for p in scan["points"])
    assert "suggested --jobs" in (out / "summary.txt").read_text()


def test_bench_gpu_needs_an_out_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUT", raising=False)
    assert main(["bench", "gpu", "--smoke", "--device", "cpu"]) == 2
    assert main(["bench", "gpu", "--smoke", "--device", "cpu", "--out", "/tmp/x", "--phases", "nope"]) == 2


def test_paired_ratio_cancels_a_drift_that_moves_both_candidates() -> None:
    """Round by round the machine slows down 3×; gaaf_relu always takes 1.25× relu's time in the
    same round. The paired ratio sees exactly 0.8; the ratio of medians sees the drift too."""
    from gaaf.bench._timing import Timing
    from gaaf.bench.train import Row, TrainBenchResult

    drift = [1.0, 1.5, 3.0, 1.2, 2.0]
    relu = Timing("relu", tuple(drift))
    gaaf = Timing("gaaf_relu", tuple(1.25 * d for d in drift[1:] + drift[:1]))  # rotated: medians mislead
    gaaf_paired = Timing("gaaf_relu", tuple(1.25 * d for d in drift))
    for g, paired in ((gaaf_paired, True), (gaaf, False)):
        res = TrainBenchResult(rows=[Row("m", "eager", "train", "relu", relu, 10),
                                     Row("m", "eager", "train", "gaaf_relu", g, 10)])
        med, q1, q3 = res.paired_ratio("m", "eager", "train")
        assert res.ratio("m", "eager", "train") == pytest.approx(0.8)  # same medians either way
        if paired:
            assert (med, q1, q3) == (pytest.approx(0.8), pytest.approx(0.8), pytest.approx(0.8))
        else:
            assert q3 - q1 > 1.0  # unpaired rounds: the per-round ratios carry the drift
        assert res.as_dict()["ratios"][0]["paired_median"] == pytest.approx(med)
    missing = TrainBenchResult(rows=[Row("m", "eager", "train", "relu", relu, 10)])
    assert all(v != v for v in missing.paired_ratio("m", "eager", "train"))


def test_floor_sites_ceiling_and_report() -> None:
    """gaaf_sites finds every GAAF site with the elements it receives; the floor times both kernels
    at those sizes; the ceiling is T / (T + extra); the table and JSON carry them."""
    import torch

    from gaaf.bench._timing import Timing
    from gaaf.bench.activations import environment
    from gaaf.bench.kernel_ceiling import Floor, activation_floor, gaaf_sites
    from gaaf.bench.train import Row, TrainBenchResult
    from gaaf.models import activation_sites, build_model

    model = build_model("resnet8_v1", 10, (3, 32, 32), "gaaf_relu", {"shift": -1.0}, stem_activation="relu")
    spec, sizes = gaaf_sites(model, torch.randn(2, 3, 32, 32))
    assert spec is not None and spec.shape_params["shift"] == -1.0
    n_gaaf = sum(type(m).__name__ == "GAAF" for _, m in activation_sites(model))
    assert len(sizes) == n_gaaf == 6  # 3 blocks × 2; the relu stem is not a GAAF site
    assert sizes[:2] == [2 * 16 * 32 * 32] * 2 and sizes[-1] == 2 * 64 * 8 * 8
    assert gaaf_sites(build_model("resnet8_v1", 10, (3, 32, 32), "relu", {}), torch.randn(1, 3, 32, 32)) == (None, [])

    floor = activation_floor(spec, sizes, torch.device("cpu"), rounds=2)
    assert floor.sites == tuple(sizes) and floor.relu_s > 0 and floor.gaaf_s > 0
    assert Floor((10,), 1.0, 3.0).ceiling(8.0) == pytest.approx(0.8)
    assert Floor((10,), 3.0, 1.0).ceiling(8.0) == 1.0  # a negative extra never raises the ceiling above 1

    res = TrainBenchResult(rows=[Row("m", "eager", "train", "relu", Timing("relu", (0.8, 0.8)), 10)],
                           settings={"steps_per_sample": 2, "batch_size": 5, "eval_batch_size": 5, "rounds": 2,
                                     "warmup": 0, "amp": False, "channels_last": False, "gaaf_eager_kernels": False},
                           environment=environment(torch.device("cpu")),
                           floors={"m": Floor((10,), 0.1, 0.2)})
    assert res.ceiling("m", "eager") == pytest.approx(0.4 / 0.5)  # relu step 0.8 s / 2 steps = 0.4 s
    assert res.ceiling("m", "compiled") != res.ceiling("m", "compiled")  # no compiled row: nan
    assert "highest reachable train ratio: eager 0.800" in format_table(res)
    assert res.as_dict()["floors"]["m"]["ceilings"]["eager"] == pytest.approx(0.8)


def test_ratio_target_cases() -> None:
    """Where the floor allows >= 0.99 the target is 0.97; below, the ceiling less 0.02."""
    from gaaf.bench.step_memory import ratio_target

    assert ratio_target(0.995) == ("floor allows >= 0.99", 0.97)
    case, value = ratio_target(0.95)
    assert case == "exponential binds" and value == pytest.approx(0.93)
    assert ratio_target(float("nan")) is None


def test_peak_step_bytes_counts_what_a_step_holds_at_once() -> None:
    """Two 4 MiB tensors alive together, then freed: the peak is 8 MiB (plus small change), whatever
    was allocated before."""
    import torch

    from gaaf.bench.step_memory import peak_step_bytes

    keep = torch.ones(1 << 20)  # allocated before: not counted

    def step() -> None:
        a = torch.ones(1 << 20)
        b = a * 2
        del a, b
        c = torch.ones(1 << 18)
        del c

    peak = peak_step_bytes(step, torch.device("cpu"))
    assert 8 << 20 <= peak < (8 << 20) + (1 << 20)
    assert keep.sum() > 0
