"""What torch.compile costs and gains for ResNet20 v1 (batch 128) training on this machine: the
measurement behind `compile = "auto"` (gaaf.train.compile_rule).

    PYTHONPATH=src python scripts/compile_cost.py --activation gaaf_relu --threads 1

Three fresh processes: eager; compiled with an empty Inductor cache (cold); compiled again with that
cache (warm). Each times, in wall and CPU seconds (the process and its compile workers), the first
training step (compiles), steady steps, the first and steady steps of a last partial batch (80
images: a recompile), the first evaluation batch (the eval graph) and a partial one. Prints one
JSON line per process and the break-even: compile seconds ÷ per-step gain.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(activation: str, compiled: bool, threads: int) -> dict:
    import torch

    from gaaf.bench.train import bench_config, build_candidate, synthetic_batch
    from gaaf.train.allocator import keep_freed_memory
    from gaaf.train.step import evaluate, new_accumulator

    torch.set_num_threads(threads)
    keep_freed_memory()
    cpu = torch.device("cpu")
    cfg = bench_config("resnet20_v1", activation, batch_size=128, amp=False, device="cpu")
    c = build_candidate(cfg, cpu, compile=compiled, channels_last=False)
    x, y = synthetic_batch(cfg, 128, cpu)
    xs, ys = x[:80].contiguous(), y[:80].contiguous()
    xe, ye = synthetic_batch(cfg, 256, cpu, seed=1)
    acc, out = new_accumulator(cpu), {}

    def rec(name: str, fn, n: int = 1) -> None:
        wall, cpu_s = time.perf_counter(), _cpu()
        for _ in range(n):
            fn()
        out[name] = {"wall_s": (time.perf_counter() - wall) / n, "cpu_s": (_cpu() - cpu_s) / n}

    c.net.train()
    rec("train_first", lambda: c.step(x, y, acc))
    rec("train_steady", lambda: c.step(x, y, acc), 4)
    rec("partial_first", lambda: c.step(xs, ys, acc))
    rec("partial_steady", lambda: c.step(xs, ys, acc), 2)
    rec("eval_first", lambda: evaluate(c.eval_net, [(xe, ye)]))
    rec("eval_partial_first", lambda: evaluate(c.eval_net, [(xe[:16], ye[:16])]))
    rec("eval_steady", lambda: evaluate(c.eval_net, [(xe, ye)]), 2)
    c.net.train()
    rec("train_after", lambda: c.step(x, y, acc), 3)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--activation", default="gaaf_relu", choices=("relu", "gaaf_relu"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", choices=("eager", "compiled"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(a.activation, a.child == "compiled", a.threads)))
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="compile-cost-inductor-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "GAAF_QUIET": "1"}
        for label, mode in (("eager", "eager"), ("compiled, cold cache", "compiled"), ("compiled, warm cache", "compiled")):
            run = subprocess.run([sys.executable, __file__, "--activation", a.activation, "--threads", str(a.threads),
                                  "--child", mode], env=env, capture_output=True, text=True, check=True)
            results[label] = json.loads(run.stdout.strip().splitlines()[-1])
            print(label, json.dumps({k: round(v["cpu_s"], 2) for k, v in results[label].items()}), flush=True)
    eager = results["eager"]["train_after"]["cpu_s"]
    for label in ("compiled, cold cache", "compiled, warm cache"):
        r = results[label]
        steady = r["train_after"]["cpu_s"]
        one_off = sum(r[k]["cpu_s"] - r[s]["cpu_s"] for k, s in (("train_first", "train_steady"),
                      ("partial_first", "partial_steady"), ("eval_first", "eval_steady")))
        gain = eager - steady
        print(f"{label}: compile ≈ {one_off:.0f} CPU s, step {eager:.2f} → {steady:.2f} CPU s (gain {gain:.2f}): "
              f"break-even ≈ {one_off / gain:.0f} steps" if gain > 0 else f"{label}: no per-step gain measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
