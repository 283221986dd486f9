r"""`gaaf bench gpu --out DIR`: everything a short GPU session should measure, in one invocation.

Phases (each writes ``DIR/<phase>.json`` as soon as it ends, and a line to ``DIR/summary.txt``;
a failing phase is recorded and the next one still runs; ``DIR/gpu_check.json`` holds it all):

1. ``tests`` — ``pytest tests/test_activations*.py`` (where the source tree is present) and a CUDA
   check of the fused op: value and gradient against autograd of the reference composition on the
   same device (float64, float32, bfloat16; contiguous and channels_last; eager and compiled).
2. ``epoch`` — the seed recipe's epoch for ResNet20 v1, relu vs gaaf_relu (shift −1): 50k
   synthetic device-resident images through :class:`gaaf.data.DeviceLoader` and the engine's
   train step, then 10k through its ``evaluate``; channels_last + bf16 + ``torch.compile``. One
   warm-up epoch each (compilation), then timed epochs alternating: seconds per epoch, train
   images/s and the ratio gaaf/relu (target ≤ 2 s per epoch on an H200).
3. ``scan`` — N = 1, 2, 4, 8 concurrent training processes on the one GPU, each with the CPU-thread
   share ``gaaf sweep --jobs N`` gives it; all start together after compiling and run for the same
   wall time: total images/s vs N, and the suggested ``--jobs`` (smallest N within 5 % of the best).

``--smoke`` shrinks everything (resnet8_v1, batch 8, a few dozen images, eager, N = 1, 2, no pytest)
so the whole path runs on a CPU in seconds: that is what the test suite runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from ..activations import get_activation
from ..activations.reference import gaaf_reference
from ..data import DeviceLoader
from ..errors import UserError
from ..experiments.sweep import child_env, threads_per_job
from ..io import atomic_write_json, atomic_write_text
from ..train.distributed import DistInfo, resolve_device
from ..train.engine import test_batches
from ..train.step import evaluate, new_accumulator
from ._timing import alternate
from .activations import compile_cache_room, environment
from .train import ACTIVATIONS, bench_config, build_candidate, synthetic_batch

_REPO = Path(__file__).resolve().parents[3]  # src/gaaf/bench/gpu.py → the source tree's root


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=os.environ.get("OUT"), metavar="DIR",
                   help="folder for the results (default: $OUT)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, eager, CPU-friendly: checks the plumbing only")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--phases", default="tests,epoch,scan",
                   help="comma-separated subset of tests,epoch,scan (default: all three)")
    p.add_argument("--model", default=None, help="model (default resnet20_v1; smoke: resnet8_v1)")
    p.add_argument("--epochs", type=int, default=2, metavar="N", help="timed epochs per activation (default 2)")
    p.add_argument("--jobs", default=None, metavar="N1,N2", help="concurrency scan (default 1,2,4,8; smoke: 1,2)")
    p.add_argument("--scan-seconds", type=float, default=None, metavar="S",
                   help="measured seconds per scan point (default 15; smoke: 1)")
    p.add_argument("--budget", type=float, default=450.0, metavar="S",
                   help="stop starting new work after S seconds (default 450)")


def _settings(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    smoke, cuda = bool(args.smoke), device.type == "cuda"
    jobs = args.jobs or ("1,2" if smoke else "1,2,4,8")
    try:
        job_list = [int(j) for j in jobs.split(",") if j.strip()]
    except ValueError:
        raise UserError(f"bad --jobs {jobs!r}; write whole numbers joined by commas, e.g. 1,2,4,8") from None
    if not job_list or min(job_list) < 1:
        raise UserError(f"bad --jobs {jobs!r}; each N must be >= 1")
    phases = [ph.strip() for ph in args.phases.split(",") if ph.strip()]
    unknown = [ph for ph in phases if ph not in ("tests", "epoch", "scan")]
    if unknown:
        raise UserError(f"unknown phase {unknown[0]!r}; choose from: tests, epoch, scan")
    if args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    return {
        "smoke": smoke, "device": str(device), "phases": phases,
        "model": args.model or ("resnet8_v1" if smoke else "resnet20_v1"),
        "batch_size": 8 if smoke else 128, "train_images": 48 if smoke else 50_000,
        "test_images": 24 if smoke else 10_000, "epochs": 1 if smoke else args.epochs,
        "compile": not smoke, "amp": cuda and not smoke, "channels_last": cuda and not smoke,
        "jobs": job_list, "scan_seconds": args.scan_seconds or (1.0 if smoke else 15.0), "budget_s": args.budget,
    }


def run_from_args(args: argparse.Namespace) -> int:
    if not args.out:
        raise UserError("no output folder: pass --out DIR (or set $OUT)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    st = _settings(args, device)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"environment": environment(device), "settings": st, "phases": {}}
    lines: list[str] = [f"gaaf bench gpu on {report['environment'].get('gpu', device)} — torch "
                        f"{report['environment']['torch_version']}"]

    def left() -> float:
        return st["budget_s"] - (time.perf_counter() - t0)

    phases: dict[str, Callable[[], dict[str, Any]]] = {
        "tests": lambda: phase_tests(device, st), "epoch": lambda: phase_epoch(device, st),
        "scan": lambda: phase_scan(device, st, out, left),
    }
    for name in st["phases"]:
        if left() <= 0:
            res: dict[str, Any] = {"status": "skipped", "why": "out of --budget"}
        else:
            start = time.perf_counter()
            try:
                res = {"status": "ok", **phases[name]()}
            except Exception as e:  # noqa: BLE001 - record it, run the next phase
                res = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            res["seconds"] = time.perf_counter() - start
        report["phases"][name] = res
        lines.append(f"[{name}] {res['status']} ({res.get('seconds', 0):.0f} s): {res.get('line', res.get('error', res.get('why', '')))}")
        print(lines[-1], flush=True)
        atomic_write_json(out / f"{name}.json", res)
        atomic_write_json(out / "gpu_check.json", report)
        atomic_write_text(out / "summary.txt", "\n".join(lines) + "\n")
    report["total_seconds"] = time.perf_counter() - t0
    atomic_write_json(out / "gpu_check.json", report)
    return 0 if all(r["status"] == "ok" for r in report["phases"].values()) else 1


# --------------------------------------------------------------------------- 1. tests
def phase_tests(device: Any, st: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"fused_op": check_fused_op(device, compiled=not st["smoke"])}
    tests = sorted((_REPO / "tests").glob("test_activations*.py"))
    if st["smoke"] or not tests:
        res["pytest"] = {"status": "skipped", "why": "smoke" if st["smoke"] else "no tests/ beside the source"}
    else:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, tests)],
                              cwd=_REPO, capture_output=True, text=True, timeout=180)
        res["pytest"] = {"rc": proc.returncode, "tail": (proc.stdout + proc.stderr)[-3000:]}
    worst = max(c["max_err_over_tol"] for c in res["fused_op"])
    res["ok"] = worst <= 1.0 and res["pytest"].get("rc", 0) == 0
    res["line"] = (f"fused op vs reference on {device}: worst error {worst:.2g}× tolerance; pytest "
                   f"{res['pytest'].get('rc', res['pytest'].get('status'))}")
    return res


def check_fused_op(device: Any, compiled: bool = True) -> list[dict[str, Any]]:
    """Fused gaaf_relu (shift −1) and gaaf_tanh on `device` vs autograd of the reference composition
    on the same device: max |error| of value and gradient, relative to a per-dtype tolerance.
    `compiled`: also through ``torch.compile`` (the smoke run skips it: compiling is slow on a CPU)."""
    with compile_cache_room(32):  # 2 activations × 3 dtypes × 2 layouts share one lambda's code object
        return _check_fused_op(device, compiled)


def _check_fused_op(device: Any, compiled: bool) -> list[dict[str, Any]]:
    tol = {torch.float64: 1e-10, torch.float32: 2e-4, torch.bfloat16: 3e-2}  # f32: one sawtooth step 1/K
    gen = torch.Generator().manual_seed(0)
    checks = []
    for name, params in (("gaaf_relu", {"shift": -1.0}), ("gaaf_tanh", {})):
        module = get_activation(name, **params).to(device)
        spec = module.spec
        compiled_fn = torch.compile(lambda t, m=module: m(t))
        for dtype in tol:
            for layout in ("contiguous", "channels_last"):
                for path, fn in (("eager", module), ("compiled", compiled_fn))[: 2 if compiled else 1]:
                    x0 = (3 * torch.randn(8, 16, 32, 32, generator=gen, dtype=torch.float64)).to(device, dtype)
                    if layout == "channels_last":
                        x0 = x0.contiguous(memory_format=torch.channels_last)
                    dy = torch.randn(x0.shape, generator=gen, dtype=torch.float64).to(device, dtype)
                    x = x0.clone().requires_grad_(True)
                    y = fn(x)
                    (gx,) = torch.autograd.grad(y, x, dy)
                    xr = x0.detach().double().requires_grad_(True)
                    yr = gaaf_reference(xr, spec.base, spec.shape, spec.frequency, spec.variant, **spec.shape_params)
                    (gr,) = torch.autograd.grad(yr, xr, dy.double())
                    err = max((y.detach().double() - yr.detach()).abs().max().item(),
                              (gx.double() - gr).abs().max().item())
                    scale = tol[dtype] * max(1.0, yr.detach().abs().max().item(), gr.abs().max().item())
                    checks.append({"activation": name, "dtype": str(dtype).removeprefix("torch."), "layout": layout,
                                   "path": path, "max_abs_err": err, "max_err_over_tol": err / scale})
    return checks


# --------------------------------------------------------------------------- 2. epoch
def phase_epoch(device: Any, st: dict[str, Any]) -> dict[str, Any]:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    epochs, seconds_train = {}, {}
    for act in ACTIVATIONS:
        cfg = bench_config(st["model"], act, batch_size=st["batch_size"], amp=st["amp"], device=device.type)
        c = build_candidate(cfg, device, compile=st["compile"], channels_last=st["channels_last"])
        epochs[act] = _epoch_fn(c, device, st, seconds_train.setdefault(act, []))
    timings = alternate(epochs, repeats=st["epochs"], warmup=0, sync=sync)
    res: dict[str, Any] = {"model": st["model"], "train_images": st["train_images"], "test_images": st["test_images"],
                           "batch_size": st["batch_size"], "amp_bf16": st["amp"], "channels_last": st["channels_last"],
                           "compile": st["compile"], "activations": {}}
    for act, t in timings.items():
        train_s = sorted(seconds_train[act][1:])[len(seconds_train[act][1:]) // 2]  # median of the timed epochs
        res["activations"][act] = {"epoch_seconds": t.median, "epoch_seconds_all": list(t.samples),
                                   "first_epoch_seconds": t.first_call, "train_seconds": train_s,
                                   "train_images_per_second": st["train_images"] / train_s,
                                   "epoch_images_per_second": (st["train_images"] + st["test_images"]) / t.median}
    a = res["activations"]
    res["ratio_epoch_seconds_gaaf_over_relu"] = a["gaaf_relu"]["epoch_seconds"] / a["relu"]["epoch_seconds"]
    res["ratio_train_throughput_gaaf_over_relu"] = (a["gaaf_relu"]["train_images_per_second"]
                                                    / a["relu"]["train_images_per_second"])
    res["line"] = (f"{st['model']} epoch: relu {a['relu']['epoch_seconds']:.2f} s, gaaf_relu "
                   f"{a['gaaf_relu']['epoch_seconds']:.2f} s ({a['gaaf_relu']['train_images_per_second']:.0f} train "
                   f"img/s); throughput ratio gaaf/relu {res['ratio_train_throughput_gaaf_over_relu']:.3f}")
    return res


def _epoch_fn(c: Any, device: Any, st: dict[str, Any], train_seconds: list[float]) -> Callable[[], None]:
    """One engine epoch on synthetic data: DeviceLoader + train step, one host sync, then evaluate."""
    x, y = synthetic_batch(c.cfg, st["train_images"], device, seed=2)
    xt, yt = synthetic_batch(c.cfg, st["test_images"], device, seed=3)
    loader = DeviceLoader(x, y, st["batch_size"], shuffle=True, generator=torch.Generator().manual_seed(0))
    eval_bs = c.eval_batch_size

    def epoch() -> None:
        t0 = time.perf_counter()
        c.net.train()
        acc = new_accumulator(device)
        for xb, yb in loader:
            c.step(xb, yb, acc)
        acc.tolist()  # the engine's one sync per epoch
        train_seconds.append(time.perf_counter() - t0)
        evaluate(c.eval_net, test_batches(xt, yt, eval_bs, DistInfo()), amp=c.cfg.amp,
                 channels_last=c.channels_last).tolist()

    return epoch


# --------------------------------------------------------------------------- 3. concurrency scan
def phase_scan(device: Any, st: dict[str, Any], out: Path, left: Callable[[], float]) -> dict[str, Any]:
    points = []
    for n in st["jobs"]:
        if left() < 30 + st["scan_seconds"] and points:
            points.append({"jobs": n, "status": "skipped", "why": "out of --budget"})
            continue
        work = out / "scan" / f"n{n}"
        work.mkdir(parents=True, exist_ok=True)
        for f in work.glob("*"):
            f.unlink()
        threads = threads_per_job(n)
        cmd = [sys.executable, "-m", "gaaf.bench.gpu", "--worker", "--dir", str(work), "--device", device.type,
               "--model", st["model"], "--batch-size", str(st["batch_size"]), "--images", str(st["train_images"]),
               "--seconds", str(st["scan_seconds"])]
        cmd += ["--compile"] * st["compile"] + ["--amp"] * st["amp"] + ["--channels-last"] * st["channels_last"]
        logs = [open(work / f"stderr{i}.txt", "w") for i in range(n)]
        procs = [subprocess.Popen([*cmd, "--rank", str(i)], env=child_env(threads), stdout=subprocess.DEVNULL,
                                  stderr=logs[i]) for i in range(n)]
        why = ""
        try:
            _wait(lambda: all((work / f"ready{i}").exists() for i in range(n)) or any(p.poll() for p in procs),
                  timeout=max(60.0, left()))
            (work / "go").touch()
            for p in procs:
                p.wait(timeout=st["scan_seconds"] + 120)
        except (TimeoutError, subprocess.TimeoutExpired) as e:  # this point fails, the scan goes on
            why = str(e)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for f in logs:
                f.close()
        results = [json.loads((work / f"result{i}.json").read_text()) for i in range(n)
                   if (work / f"result{i}.json").exists()]
        ok = len(results) == n
        total = sum(r["images_per_second"] for r in results)
        points.append({"jobs": n, "threads_per_job": threads, "status": "ok" if ok else "failed",
                       "total_images_per_second": total if ok else None, "workers": results,
                       "stderr_tail": "" if ok else why + "\n" + (work / "stderr0.txt").read_text()[-2000:]})
    good = [p for p in points if p["status"] == "ok"]
    if not good:
        raise RuntimeError("no scan point finished; see scan/n*/stderr*.txt")
    best = max(p["total_images_per_second"] for p in good)
    pick = min(p["jobs"] for p in good if p["total_images_per_second"] >= 0.95 * best)
    base = next((p["total_images_per_second"] for p in good if p["jobs"] == 1), None)
    curve = ", ".join(f"N={p['jobs']}: {p['total_images_per_second']:.0f}" for p in good)
    return {"points": points, "suggested_jobs": pick, "speedup_vs_1": {p["jobs"]: p["total_images_per_second"] / base
            for p in good} if base else None, "line": f"total img/s {curve}; suggested --jobs {pick}"}


def _wait(done: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise TimeoutError(f"workers not ready after {timeout:.0f} s")
        time.sleep(0.05)


def _worker(argv: list[str]) -> int:
    """One scan process: build and compile, say ready, wait for go, train for --seconds, write its rate."""
    p = argparse.ArgumentParser(prog="gaaf.bench.gpu --worker")
    for flag in ("--worker", "--compile", "--amp", "--channels-last"):
        p.add_argument(flag, action="store_true")
    for flag, typ in (("--dir", str), ("--device", str), ("--model", str), ("--batch-size", int), ("--images", int),
                      ("--seconds", float), ("--rank", int)):
        p.add_argument(flag, type=typ, required=True)
    a = p.parse_args(argv)
    work, device = Path(a.dir), resolve_device(a.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    cfg = bench_config(a.model, "gaaf_relu", batch_size=a.batch_size, amp=a.amp, device=device.type)
    c = build_candidate(cfg, device, compile=a.compile, channels_last=a.channels_last, seed=a.rank)
    x, y = synthetic_batch(cfg, a.images, device, seed=a.rank)
    loader = DeviceLoader(x, y, a.batch_size, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(a.rank))
    acc = new_accumulator(device)

    def batches():
        while True:
            yield from loader

    it = batches()
    for _ in range(5):  # compile + warm-up
        c.step(*next(it), acc)
    sync()
    (work / f"ready{a.rank}").touch()
    _wait(lambda: (work / "go").exists(), timeout=600)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < a.seconds:
        c.step(*next(it), acc)
        steps += 1
    sync()
    seconds = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    atomic_write_json(work / f"result{a.rank}.json", {
        "rank": a.rank, "steps": steps, "seconds": seconds, "images_per_second": steps * a.batch_size / seconds,
        "threads": torch.get_num_threads(), "max_memory_allocated": mem})
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
