"""`gaaf sweep STUDY.toml --out DIR` (`gaaf report DIR` draws figures, so it lives in gaaf.plots.cli).

    gaaf sweep experiments/demo.toml --out runs/demo          # train every run × seed
    gaaf sweep experiments/seed_table.toml --out X --epochs 1 --limit-train 1000 --limit-test 500
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..data import prepare_dataset
from ..errors import UserError, plural
from . import estimate, folders, sweep
from . import jobs as jobs_rule
from .study import StudyError, load_study

#: `gaaf sweep`'s exit status when it ran but some runs failed (2 stays "bad input", as everywhere)
RUNS_FAILED = 1


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0 like 0,1,2, got {text!r}")
    return seeds


def check_data_once(runs: list[Any]) -> None:
    """Every data set the runs still to train need is present (downloaded now if allowed): one error
    before anything starts instead of the same failure in every run. Ray workers may see other
    disks, so `--backend ray` leaves the check to each run."""
    needed = {(r.config["dataset"], r.config.get("data_dir"), bool(r.config.get("download", True)))
              for r in runs if r.state != folders.FINISHED}
    for dataset, data_dir, download in sorted(needed, key=str):
        prepare_dataset(dataset, data_dir, download=download)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep", help="train every run of a study file (one gaaf train process per run × seed)",
        description="Run a study: every [[runs]]/[grid] entry × every seed, each as `python -m gaaf train` "
                    "in OUT/runs/<run>/seed<k>/. Finished runs are skipped, interrupted ones resumed; runs another "
                    "process is training (another sweep on the same --out) are left to it. "
                    "Exit status: 0 all runs finished (or are running elsewhere), 1 some runs failed (how many is "
                    "printed), 2 bad study file or usage, 130 interrupted.",
    )  # fmt: skip
    p.add_argument("study", help="study file (TOML), e.g. experiments/demo.toml")
    p.add_argument("--out", required=True, help="sweep folder (created; re-running continues it)")
    p.add_argument("--jobs", default=jobs_rule.AUTO, metavar="N|auto",
                   help="runs at a time; CPU threads are split between them (default auto: one single-thread run per "
                        "core, as memory allows; one run per GPU for CUDA runs)")
    g = p.add_argument_group("overrides for every run (applied over the study file)")
    g.add_argument("--epochs", type=int, help="passes over the training set (default: the study's)")
    g.add_argument("--limit-train", dest="limit_train", type=int, metavar="N",
                   help="first N training images (default: the study's)")
    g.add_argument("--limit-test", dest="limit_test", type=int, metavar="N",
                   help="first N test images (default: the study's)")
    g.add_argument("--seeds", type=_seed_list, metavar="0,1", help="seeds to run instead of the study's")
    g.add_argument("--data-dir", dest="data_dir", help="data folder (default: the study's)")
    g.add_argument("--device", help="auto | cpu | cuda (default: the study's)")
    g = p.add_argument_group("execution")
    g.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local processes or Ray tasks (default local)")
    g.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    g.add_argument("--dry-run", action="store_true", help="validate, print the plan and the estimate; run nothing")
    g.add_argument("--no-estimate", dest="estimate", action="store_false", help="skip the warm-up timing")
    g.add_argument("-v", "--verbose", action="store_true", help="echo every run's output")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        study = load_study(args.study)
    except StudyError as e:  # every problem, not just the first line the CLI would print
        print(f"gaaf: error: {e}", file=sys.stderr)
        return 2
    try:
        jobs_arg = jobs_rule.parse_jobs(args.jobs)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.backend != "ray" and args.address:
        raise UserError("--address is only used with --backend ray")
    overrides = {k: getattr(args, k) for k in ("epochs", "limit_train", "limit_test", "data_dir", "device")
                 if getattr(args, k) is not None}  # fmt: skip
    root = Path(args.out)
    runs = sweep.plan(study, root, overrides, args.seeds)
    counts = {s: sum(r.state == s for r in runs) for s in (folders.FINISHED, folders.TO_EXTEND, folders.FAILED)}
    extend = counts[folders.TO_EXTEND]
    resume = sum(r.state not in (folders.FINISHED, folders.TO_EXTEND) and r.resume for r in runs)
    start = len(runs) - counts[folders.FINISHED] - resume - extend
    title = f" ({study.title})" if study.title else ""
    print(f"study {args.study}{title}: {plural(len(study.runs), 'run')} × {plural(len(runs) // max(1, len(study.runs)), 'seed')} "
          f"= {plural(len(runs), 'run folder')} under {root}/runs: {counts[folders.FINISHED]} done, {resume} to resume, "
          + (f"{extend} to extend, " if extend else "") + f"{start} to start"
          + (f" ({counts[folders.FAILED]} failed before, trying again)" if counts[folders.FAILED] else ""))  # fmt: skip
    todo = [r for r in runs if r.state != folders.FINISHED]
    args.jobs = jobs_rule.resolve_jobs(jobs_arg, todo, sweep.cuda_device_count(todo))
    if jobs_arg == jobs_rule.AUTO:
        print(f"jobs: {args.jobs} at a time, {plural(sweep.threads_per_job(args.jobs), 'thread')} each (--jobs auto)")
    if not args.dry_run and args.backend == "local":
        check_data_once(runs)
    if args.estimate and counts[folders.FINISHED] < len(runs):
        try:
            found = sweep.estimate_seconds(runs, args.jobs)
        except Exception as e:  # noqa: BLE001 - an estimate must never stop a sweep
            print(f"estimate: unavailable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        else:
            if found:
                print(f"estimate: ~{estimate.format_seconds(found[0])} of training ({found[1]})")
    if args.dry_run:
        for r in runs:
            spec = study.run(r.name)
            what = ", ".join(f"{k}={v}" for k, v in spec.overrides.items()) or "base"
            print(f"  {r.state if r.state != folders.MISSING else 'to start':<11} {r.label:<40} {what}")
        return 0
    runner = sweep.Sweep(runs, jobs=args.jobs, backend=args.backend, address=args.address, verbose=args.verbose)
    sweep.write_study_json(root, study, runs, {**overrides, **({"seeds": args.seeds} if args.seeds else {})})
    failed = runner.run()
    done = sum(r.state == folders.FINISHED for r in runs)
    elsewhere = f", {len(runner.elsewhere)} running elsewhere" if runner.elsewhere else ""
    print(f"sweep: {done}/{len(runs)} finished, {failed} failed{elsewhere}; report: gaaf report {root}")
    for r in runner.failed:
        print(f"  failed: {r.label} (see {r.folder / 'error.txt'})")
    for r, holder in runner.elsewhere:
        print(f"  running elsewhere: {r.label} ({holder})")
    if runner.elsewhere:
        print(f"  not waiting for them: gaaf report {root} includes them once they finish")
    return RUNS_FAILED if failed else 0
