"""`gaaf sweep --jobs auto` (the default): how many runs to train at once on this machine.

A study is many independent runs, so what counts is total throughput, not one run's speed. On CPU,
one run per core beats one run over all cores: a run's intra-op threads synchronise inside every
op (OpenMP barriers, and busy-waiting whenever another process takes the core), while separate runs
never wait for each other. Measured with ``gaaf bench gpu --device cpu --phases scan --jobs 1,2
--scan-seconds 60`` (ResNet20 v1 gaaf_relu, batch 128, compiled, 60 s per point; the README's
`gaaf sweep` section has the machine):

    2 cores: one run × 2 threads 307 img/s; two runs × 1 thread 383 img/s in total (1.25×)

So the rule is one thread per run, as many runs as cores, memory and the study allow:

    jobs = max(1, min(cores // THREADS_PER_JOB, available memory // JOB_MEMORY_BYTES, runs to do))

with THREADS_PER_JOB = 1 and JOB_MEMORY_BYTES = 2 GiB (a ResNet20 run on CIFAR-10 peaks at ≈ 0.9 GiB
resident, plus 0.6 GiB for the full training set on the device). On a larger machine the same rule
gives cores runs of one thread each; where a run's own step is too slow that way (a large model:
fewer, wider runs finish each result sooner), pass ``--jobs N``: each then gets cores // N threads.
With CUDA runs and GPUs present, auto is one run per GPU (``gaaf bench gpu``'s scan measures
whether a GPU takes more).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

AUTO = "auto"
THREADS_PER_JOB = 1
JOB_MEMORY_BYTES = 2 << 30


def available_memory() -> "int | None":
    """Bytes of memory available to new processes (Linux: MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def auto_jobs(todo: int, cores: "int | None" = None, memory: "int | None" = None, gpus: int = 0) -> int:
    """Runs at a time for `todo` runs on a machine with `cores` CPUs, `memory` bytes available and
    `gpus` CUDA devices the runs may use (see the module docstring)."""
    if gpus > 0:
        return max(1, min(gpus, todo))
    cores = cores if cores is not None else (os.cpu_count() or 1)
    by_memory = memory // JOB_MEMORY_BYTES if memory is not None else cores
    return max(1, min(cores // THREADS_PER_JOB, by_memory, todo))


def parse_jobs(text: Any) -> "int | str":
    """`--jobs` value: "auto" or a whole number >= 1 (ValueError otherwise)."""
    if isinstance(text, str) and text.strip().lower() == AUTO:
        return AUTO
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"--jobs must be a whole number >= 1 or 'auto', got {text!r}") from None
    if n < 1 or str(text).strip() != str(n):
        raise ValueError(f"--jobs must be a whole number >= 1 or 'auto', got {text!r}")
    return n


def resolve_jobs(jobs: "int | str", runs: Sequence[Any], gpus: int = 0) -> int:
    """An explicit `jobs` as given; "auto" by :func:`auto_jobs` for the runs still to do."""
    if jobs != AUTO:
        return int(jobs)
    return auto_jobs(max(1, len(runs)), memory=available_memory(), gpus=gpus)


__all__ = ["AUTO", "JOB_MEMORY_BYTES", "THREADS_PER_JOB", "auto_jobs", "available_memory", "parse_jobs", "resolve_jobs"]
