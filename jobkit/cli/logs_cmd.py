"""`jobkit logs`: the stdout and stderr of every attempt of a run, and `-f` to follow the newest."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from jobkit.cli.common import console, fail, find, resolve_root, root_option
from jobkit.cli.complete import runs_only
from jobkit.observe import logs as logs_mod
from jobkit.observe.lifecycle import has_ended
from jobkit.observe.status import collect_status


@click.command("logs")
@click.argument("run_selector", metavar="RUN", shell_complete=runs_only)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the run ends (Ctrl-C stops).")
@click.option("--attempt", type=int, default=None, help="Only attempt N (1 = first start; requeues add attempts).")
@click.option("--stderr/--stdout", "stderr", default=True, show_default=True,
              help="Include stderr (submitit's log and tracebacks go there).")
@click.option("--task", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which task (rank) of a run of several tasks; 0 is the main rank.")
@click.option("--stacks", is_flag=True, help="Print the stacks a stalled run's processes left (stacks/).")
@root_option
def logs(run_selector: str, follow: bool, attempt: int | None, stderr: bool, task: int, stacks: bool,
         root: Path | None) -> None:
    """Print the stdout and stderr of every Slurm attempt of RUN (--stacks: the stacks of a stall).

    \b
    Examples:
      jobkit logs charlm-lstm-3f9a1c2e
      jobkit logs charlm-lstm --attempt 2
      jobkit logs charlm-lstm -f
      jobkit logs charlm-ddp --task 1
      jobkit logs charlm-lstm --stacks
    """
    root = resolve_root(root)
    runs = find(root, [run_selector])
    if len(runs) != 1:
        fail(f"{run_selector!r} matches {len(runs)} runs; give a longer run id")
    run = runs[0]
    if stacks:
        files = logs_mod.stacks_files(run, attempt)
        if not files:
            which = "" if attempt is None else f" in attempt {attempt}"
            fail(f"{run.run_id} has no stacks{which}: they are written when a run stalls (no step for its "
                 "stall_timeout)")
        for path in files:
            console().rule(f"{path.parent.name}/{path.name}")
            sys.stdout.write(path.read_text(errors="replace"))
        return
    jobs = logs_mod.job_logs(run, task)
    if not jobs:
        fail(f"{run.run_id} has no job logs (never submitted, or run in the foreground with `jobkit run`)")
    if task and not any(j.stdout.exists() or j.stderr.exists() for j in jobs):
        tasks = run.spec().resources.world_size
        fail(f"--task {task}: {run.run_id} has no logs of task {task} (it runs {tasks} task(s): 0..{tasks - 1})")
    chunks = logs_mod.attempts(run, task)
    first = 1
    if attempt is not None:
        if not 1 <= attempt <= len(chunks):
            fail(f"--attempt {attempt}: {run.run_id} has {len(chunks)} attempt(s) with logs")
        chunks, first = [chunks[attempt - 1]], attempt
    for n, a in enumerate(chunks, start=first):
        console().rule(f"attempt {n} · job {a.job_id}")
        sys.stdout.write(a.stdout + (a.stderr if stderr else ""))
    if follow:
        newest = jobs[-1]
        paths = [newest.stdout, newest.stderr] if stderr else [newest.stdout]
        logs_mod.follow(paths, lambda: has_ended(collect_status([run]).summaries[0].state))
