"""`gaaf sweep`: run every run × seed of a study, each as its own `gaaf train` process.

Each run is the subprocess ``python -m gaaf train --config OUT/configs/<run>/seed<k>.json
--out OUT/runs/<run>/seed<k> [--resume]`` — exactly what a person would type — so a crash, an
out-of-memory kill or a NaN in one run cannot take the others down. The sweep is idempotent:
finished runs are skipped, interrupted ones (last.pt present) resumed, failed ones tried again.
A failure is recorded in <run folder>/error.txt (the command, its exit status and the tail of its
output) and the sweep goes on; `gaaf sweep` then exits 1 (the count is printed).

Each run is claimed before the sweep touches its folder (launch.py, gaaf.train.claim): two sweeps on
one --out, or a local sweep beside a Ray one or beside a hand-started `gaaf train`, train every run
once. A run another live process holds is skipped and listed as "running elsewhere" (not a failure,
not waited for); a claim left by a killed process is taken over.

With ``--jobs N`` (default auto: one single-thread run per core as memory allows, :mod:`.jobs`)
the runs go N at a time and the CPU is split between them: each child gets
OMP_NUM_THREADS = max(1, cores // N), which torch reads at start-up for its thread pool, and as many
TORCHINDUCTOR_COMPILE_THREADS (N runs compiling at once would otherwise each start a pool of compile
workers the size of the core count). With several CUDA GPUs (runs on device cuda/auto) each of the N
job slots gets CUDA_VISIBLE_DEVICES = one GPU, round-robin, so the runs spread over the GPUs; with one
GPU all runs share it.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UserError, plural
from ..io import atomic_write_json
from . import estimate, folders, launch, trainopts
from .launch import Outcome, PlannedRun
from .study import Study

#: config keys that may differ between a run folder and a re-run without changing the result
#: (epochs too: a finished run with fewer epochs than asked is resumed and extended)
_IGNORED_KEYS = {"out", "device", "data_dir", "download", "tensorboard", "compile", "channels_last", "epochs"}


def plan(study: Study, root: Path, overrides: dict[str, Any] | None = None,
         seeds: list[int] | None = None) -> list[PlannedRun]:  # fmt: skip
    """Every run × seed with its resolved config and current state. Raises UserError when a config
    is invalid or an existing run folder was made with different settings (listing all of them)."""
    root = Path(root).resolve()
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    runs, problems, conflicts = [], [], []
    for spec in study.runs:
        for seed in seeds if seeds is not None else study.seeds:
            options = study.options(spec, seed, overrides)
            try:
                config = trainopts.resolve(options)
            except (UserError, ValueError, TypeError) as e:
                problems.append(f"{spec.name}/seed{seed}: {str(e).splitlines()[0]}")
                continue
            folder = folders.run_dir(root, spec.name, seed)
            run = PlannedRun(spec.name, seed, config, folder, folders.config_path(root, spec.name, seed),
                             folders.state(folder))  # fmt: skip
            diff = config_differences(folder, config)
            done = folders.epochs_done(folder)
            if done > config["epochs"]:
                more = f"has {plural(done, 'epoch')}, more than the {config['epochs']} asked"
                diff = ", ".join(filter(None, [diff, more]))
            elif (run.state == folders.FINISHED and done < config["epochs"] and run.resume
                  and not folders.reached_max_iterations(folder, config)):
                run.state = folders.TO_EXTEND  # finished with fewer epochs: resume to extend it
            if diff:
                conflicts.append(f"{run.label}: {diff}")
            runs.append(run)
    if problems:
        have = "has" if len(problems) == 1 else "have"
        raise UserError(f"{plural(len(problems), 'run')} {have} an invalid config: " + "; ".join(problems))
    if conflicts:
        raise UserError(
            f"{plural(len(conflicts), 'existing run folder')} under {root} {'was' if len(conflicts) == 1 else 'were'} "
            "made with different settings "
            f"({'; '.join(conflicts[:5])}{'; ...' if len(conflicts) > 5 else ''}); "
            "use another --out, or delete those folders to run them again"
        )
    return runs


def config_differences(folder: Path, config: dict[str, Any]) -> str:
    """`epochs 1 → 2, lr 0.001 → 0.01` for a run folder whose config.json differs from `config`."""
    raw = folders.read_json(Path(folder) / "config.json")
    if not isinstance(raw, dict):
        return ""
    # both sides resolved: a folder written before the activation's parameters were recorded holds
    # None for "the activation's default", the same setting as the value the plan now records
    old = trainopts.resolved(raw["config"] if isinstance(raw.get("config"), dict) else raw)
    config = trainopts.resolved(config)
    norm = lambda v: json.loads(json.dumps(v))  # noqa: E731 - tuples vs lists, ints vs floats as JSON sees them
    diffs = [
        f"{k} {old[k]!r} → {config[k]!r}"
        for k in config
        if k not in _IGNORED_KEYS and k in old and norm(old[k]) != norm(config[k])
        and not (isinstance(old[k], (int, float)) and isinstance(config[k], (int, float)) and old[k] == config[k])
    ]  # fmt: skip
    return ", ".join(diffs)


def write_study_json(root: Path, study: Study, runs: list[PlannedRun], overrides: dict[str, Any]) -> None:
    """OUT/study.json: the study as validated, the command-line overrides and every run's config."""
    root = Path(root)
    atomic_write_json(root / folders.STUDY_FILE, {
        "gaaf_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "study": study.to_dict(),
        "overrides": overrides,
        "seeds": sorted({r.seed for r in runs}),
        "runs": [{"name": r.name, "seed": r.seed, "folder": str(r.folder.relative_to(root.resolve())),
                  "config": r.config} for r in runs],
    })  # fmt: skip


def shorten(line: str, limit: int = 400) -> str:
    """A failed run's last output line for the console: whole when it fits, else cut at a space
    (never inside a path or URL) with "…"; error.txt always has the full text."""
    line = line.strip()
    if len(line) <= limit:
        return line
    cut = line.rfind(" ", 0, limit)
    return line[: cut if cut > 0 else limit] + " …"


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """CPU threads for each of `jobs` parallel runs: max(1, cores // jobs)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def child_env(threads: int, slot: int | None = None, gpus: int = 0) -> dict[str, str]:
    """The environment of one training process: thread counts set, output unbuffered.

    `slot` is the job slot (0 .. jobs-1) the process runs in and `gpus` the CUDA devices the parent sees;
    with gpus > 1 the child sees only GPU slot % gpus (mapped through the parent's own
    CUDA_VISIBLE_DEVICES when that is set), so parallel runs spread over the GPUs."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS"):
        env[var] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"  # lines arrive as they are printed, so the tail is current
    if slot is not None and gpus > 1:
        k = slot % gpus
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[k] if len(visible) >= gpus else str(k)
    return env


def uses_cuda(config: dict[str, Any]) -> bool:
    """Whether a run's config may put it on a GPU (device cuda or auto)."""
    return config.get("device", "auto") in ("cuda", "auto")


def cuda_device_count(runs: list[PlannedRun]) -> int:
    """CUDA devices this process sees when any run may use one (0 otherwise, or without CUDA)."""
    if not any(uses_cuda(r.config) for r in runs):
        return 0
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no usable CUDA: nothing to spread
        return 0


class Sweep:
    """Runs a plan (locally with a thread pool of subprocesses, or on Ray) and records outcomes."""

    def __init__(self, runs: list[PlannedRun], jobs: int = 1, backend: str = "local",
                 address: str | None = None, verbose: bool = False, out: Any = None):  # fmt: skip
        if jobs < 1:
            raise UserError(f"--jobs must be >= 1, got {jobs}")
        if backend not in ("local", "ray"):
            raise UserError(f"unknown --backend {backend!r}; choose one of: local, ray")
        self.runs, self.jobs, self.backend, self.address = runs, jobs, backend, address
        self.verbose = verbose
        self.out = out or sys.stdout
        self.threads = threads_per_job(jobs)
        self.failed: list[PlannedRun] = []
        self.elsewhere: list[tuple[PlannedRun, str]] = []  # claimed by another live process: (run, holder)
        self._lock = threading.Lock()
        self._done = 0
        self._total = len(self.todo())

    def print(self, msg: str) -> None:
        with self._lock:
            print(msg, file=self.out, flush=True)

    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.state != folders.FINISHED]

    def record(self, run: PlannedRun, outcome: Outcome) -> None:
        """Report one line for what became of `run` (launch.run_claimed decided it from the folder)."""
        with self._lock:
            self._done += 1
            k, n = self._done, self._total
        if outcome.status in (launch.FINISHED, launch.FINISHED_ELSEWHERE):
            run.state = folders.FINISHED
            summary = folders.read_json(run.folder / "summary.json") or {}
            acc = summary.get("final_test_acc")
            acc_s = f"test acc {acc:.4f}" if isinstance(acc, (int, float)) else "finished"
            if outcome.status == launch.FINISHED_ELSEWHERE:  # by another sweep while this one ran
                self.print(f"[{k}/{n}] {run.label}: finished elsewhere meanwhile ({acc_s})")
            else:
                self.print(f"[{k}/{n}] {run.label}: {acc_s} ({estimate.format_seconds(outcome.seconds)})")
        elif outcome.status == launch.RUNNING_ELSEWHERE:
            with self._lock:
                self.elsewhere.append((run, outcome.holder))
            self.print(f"[{k}/{n}] {run.label}: running elsewhere ({outcome.holder}); skipped")
        else:
            run.state = folders.FAILED
            with self._lock:
                self.failed.append(run)
            last = next((ln for ln in reversed(outcome.tail.splitlines()) if ln.strip()), "")
            self.print(f"[{k}/{n}] {run.label}: FAILED ({outcome.why}): {shorten(last)}  → {run.folder / 'error.txt'}")

    def run(self) -> int:
        """Run everything not finished; return the number of failed runs (runs another process
        holds are not failures: they are listed in self.elsewhere)."""
        todo = self.todo()
        if self.backend == "ray":
            self._run_ray(todo)
        else:
            self._run_local(todo)
        return len(self.failed)

    def _run_local(self, todo: list[PlannedRun]) -> None:
        gpus = cuda_device_count(todo) if self.jobs > 1 else 0
        slots: queue.Queue[int] = queue.Queue()  # the free job slots: a run takes one, gives it back
        for k in range(self.jobs):
            slots.put(k)
        procs: set[subprocess.Popen] = set()

        def one(run: PlannedRun) -> None:
            slot = slots.get()
            try:
                env = child_env(self.threads, slot, gpus if uses_cuda(run.config) else 0)
                gpu = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus > 1 and uses_cuda(run.config) else ""
                echo = (lambda line: self.print(f"  {run.label}| {line}")) if self.verbose else None

                def started(resume: bool) -> None:  # the claim is held, the child about to start
                    self.print(f"start {run.label}{' (resume)' if resume else ''}{gpu}")

                outcome = launch.run_claimed(run, env, echo, procs, started)
            finally:
                slots.put(slot)
            self.record(run, outcome)

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = [pool.submit(one, run) for run in todo]
            for f in concurrent.futures.as_completed(futures):
                f.result()
        except KeyboardInterrupt:
            for f in futures:
                f.cancel()
            for p in list(procs):  # children got the SIGINT too; make sure they go
                p.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_ray(self, todo: list[PlannedRun]) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--backend ray needs the ray package: pip install 'gaaf[ray]' (or 'ray[default]')") from None
        started = not ray.is_initialized()
        if started:
            kwargs: dict[str, Any] = {"address": self.address} if self.address else {"num_cpus": os.cpu_count()}
            ray.init(log_to_driver=False, include_dashboard=False, **kwargs)
        try:
            self._ray_tasks(ray, todo)
        finally:
            if started:  # leave a Ray the caller had started alone
                ray.shutdown()

    def _ray_tasks(self, ray: Any, todo: list[PlannedRun]) -> None:
        # each task reserves its share of CPUs, so Ray itself keeps at most `jobs` runs per node
        # and the task claims the run folder on the worker, where the training runs (launch.py)
        task = ray.remote(num_cpus=self.threads)(launch.run_claimed)
        env = child_env(self.threads)
        pending = {}
        for run in todo:
            self.print(f"submit {run.label}{' (resume)' if run.resume else ''}")
            pending[task.remote(run, env)] = run
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - a Ray task error is recorded like a crash
                outcome = launch.record_failure(run, 1, f"ray task failed: {e}")
            self.record(run, outcome)


def estimate_seconds(runs: list[PlannedRun], jobs: int) -> tuple[float, str] | None:
    """(seconds, how it was measured) for the runs still to do, or None when nothing is left."""
    todo = [r for r in runs if r.state != folders.FINISHED]
    if not todo:
        return None
    threads = threads_per_job(jobs)
    step, one_off = estimate.measure_step_seconds(todo[0].config, threads)
    steps = sum(estimate.steps_per_run(r.config, max(0, r.config.get("epochs", 1) - folders.epochs_done(r.folder)))
                for r in todo)  # fmt: skip
    startup = estimate.measure_startup_seconds(todo[0].config, threads)
    parallel = max(1, min(jobs, len(todo)))
    total = (step * steps + startup * len(todo)) / parallel
    how = (f"{step * 1000:.0f} ms/step measured on {todo[0].config.get('model')} at batch "
           f"{todo[0].config.get('batch_size')} with {plural(threads, 'thread')} × {plural(round(steps), 'step')}"
           f" + {startup:.0f} s start-up × {plural(len(todo), 'run')}, / {plural(parallel, 'job')}"
           + (f"; plus a one-off compile of ~{estimate.format_seconds(one_off)}, done now and cached"
              if one_off >= 0.5 else ""))  # fmt: skip
    return total, how
