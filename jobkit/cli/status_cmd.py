"""`jobkit status`, `jobkit cancel`, `jobkit logs`, and the live view behind `--wait` / `--watch`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.console import Console
from rich.table import Table

from .. import status_table as status_view
from .. import status_watch
from ..status import StatusReport, collect_status, last_line
from ..store import RunDir, find_runs
from .common import EXIT_FAILED, console, fail, json_option, print_json, resolve_root, root_option
from ..state import ACTIVE, FAILED, TERMINAL, Event, State


def status_table(report: StatusReport, width: int = 160) -> Table:
    """The status table as a rich Table fitted to `width` columns (see jobkit.status_table)."""
    return status_view.fit(status_view.build(report.summaries, report.slurm.source, report.slurm.error),
                           Console(width=width))


def show_status(report: StatusReport, out: Console) -> None:
    status_view.show(report.summaries, out, report.slurm.source, report.slurm.error)


def _runs(root: Path, selectors: Sequence[str]) -> list[RunDir]:
    try:
        runs = find_runs(root, selectors)
    except LookupError as exc:
        fail(str(exc))
    return runs


@click.command("status")
@click.argument("selectors", nargs=-1, metavar="[SWEEP|RUN]...")
@click.option("--watch", is_flag=True, help="Redraw the table in place every --interval seconds; stops by itself "
              "when no run is queued or running.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between refreshes with --watch.")
@json_option
@root_option
def status(selectors: tuple[str, ...], watch: bool, interval: float, as_json: bool, root: Path | None) -> None:
    """One table of runs, in sweep order: the params that tell them apart, state, progress, losses;
    final validation loss and run time once finished, speed and ETA while running, the error line of a
    failed run. Columns equal for every run are named once above the table.

    Asks the scheduler once for all runs (sacct; squeue when accounting is off). On a terminal the
    table fits its width (long values shortened in the middle; `--json` has them in full); piped or
    logged, it is one aligned line per run. Exits 1 when a shown run has failed.

    \b
    Examples:
      jobkit status                 # every run under --root
      jobkit status smoke --json    # one sweep, for scripts
      jobkit status charlm-lstm-3f9a1c2e --watch
    """
    root = resolve_root(root)
    runs = _runs(root, selectors)
    if not runs and not as_json:
        console().print(f"no runs under {root} (submit some with `jobkit submit SWEEP_FILE`)")
        return
    if watch and not as_json:  # ends by itself when no run is queued or running
        report = status_watch.watch(lambda: collect_status(_runs(root, selectors)), console(), interval,
                                    describe=lambda r: (r.slurm.source, r.slurm.error))
    elif as_json:
        report = collect_status(runs)
        print_json({"root": str(root), "scheduler": report.slurm.source, "slurm_calls": report.slurm.calls,
                    "scheduler_error": report.slurm.error, "runs": [s.to_json() for s in report.summaries]})
    else:
        report = collect_status(runs)
        show_status(report, console())
    if any(s.state in FAILED for s in report.summaries):
        raise SystemExit(EXIT_FAILED)


def wait_for(root: Path, run_dirs: Sequence[Path], interval: float = 3.0) -> int:
    """Live progress until every run has ended; 0 if all completed, else 1."""
    runs = [RunDir(p) for p in run_dirs if RunDir(p).exists()]
    out = console()
    if not runs:
        return 0
    if out.is_terminal:
        progress = Progress(TextColumn("{task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[state]}"), TimeRemainingColumn(), console=out)
        tasks = {r.run_id: progress.add_task("", total=1, run=r.run_id, state="") for r in runs}
        with progress:
            while True:
                report = collect_status(runs)
                for s in report.summaries:
                    progress.update(tasks[s.run_id], total=max(1, s.total), completed=s.step,
                                    state=f"[{status_view.STATE_STYLE.get(s.state, '')}]{s.state}[/]")
                if all(s.state in TERMINAL for s in report.summaries):
                    break
                time.sleep(interval)
    else:
        last: dict[str, str] = {}
        while True:
            report = collect_status(runs)
            for s in report.summaries:
                line = f"{s.state} step {s.step}/{s.total}"
                if last.get(s.run_id, "").split(" step")[0] != s.state:
                    out.print(f"{time.strftime('%H:%M:%S')} {s.run_id}: {line}")
                    last[s.run_id] = line
            if all(s.state in TERMINAL for s in report.summaries):
                break
            time.sleep(interval)
    report = collect_status(runs)
    show_status(report, out)
    return 0 if all(s.state == State.COMPLETED for s in report.summaries) else EXIT_FAILED


@click.command("cancel")
@click.argument("selectors", nargs=-1, required=True, metavar="SWEEP|RUN...")
@json_option
@root_option
def cancel(selectors: tuple[str, ...], as_json: bool, root: Path | None) -> None:
    """Cancel the queued or running jobs of these runs (one scancel call). Checkpoints stay; `resume` continues.

    \b
    Example:
      jobkit cancel smoke
    """
    root = resolve_root(root)
    report = collect_status(_runs(root, selectors))
    active = [s for s in report.summaries if s.state in ACTIVE]
    slurm_ids = [s.job_id for s in active if s.executor == "slurm" and s.job_id]
    problems = []
    if slurm_ids:
        done = subprocess.run(["scancel", *slurm_ids], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            problems.append(last_line(done.stderr) or "scancel failed")
    for s in active:
        if s.executor != "slurm":
            for pid in (s.pid, int(s.job_id) if (s.job_id or "").isdigit() else None):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        RunDir(Path(s.path)).event(Event.CANCELLED, job_id=s.job_id, step=s.step)
    if as_json:
        print_json({"cancelled": [s.run_id for s in active], "errors": problems})
    else:
        for s in active:
            console().print(f"cancelled {s.run_id} (job {s.job_id})")
        if not active:
            console().print("nothing to cancel: no run is queued or running")
    if problems:
        click.echo(f"error: {problems[0]}", err=True)
        raise SystemExit(EXIT_FAILED)


def log_attempts(run: RunDir, root: Path) -> list[tuple[str, Path, Path]]:
    """(job id, stdout, stderr) per job of a run, oldest first (a requeued job keeps its id and appends)."""
    out = []
    seen = set()
    for ev in run.events():
        job_id = ev.get("job_id")
        if ev.get("event") in (Event.SUBMITTED, Event.STARTED) and job_id and job_id not in seen:
            seen.add(job_id)
            folder = run.path.parent / ".submitit" / str(job_id)
            out.append((str(job_id), folder / f"{job_id}_0_log.out", folder / f"{job_id}_0_log.err"))
    return out


MARKER = "Starting with JobEnvironment"


def _split_attempts(text: str) -> list[str]:
    parts, current = [], []
    for line in text.splitlines(keepends=True):
        if MARKER in line and current:
            parts.append("".join(current))
            current = []
        current.append(line)
    if current:
        parts.append("".join(current))
    return parts


@click.command("logs")
@click.argument("run_selector", metavar="RUN")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the run ends (Ctrl-C stops).")
@click.option("--attempt", type=int, default=None, help="Only attempt N (1 = first start; requeues add attempts).")
@click.option("--stderr/--stdout", "stderr", default=True, show_default=True,
              help="Include stderr (submitit's log and tracebacks go there).")
@root_option
def logs(run_selector: str, follow: bool, attempt: int | None, stderr: bool, root: Path | None) -> None:
    """Print the stdout and stderr of every Slurm attempt of RUN.

    \b
    Examples:
      jobkit logs charlm-lstm-3f9a1c2e
      jobkit logs charlm-lstm --attempt 2
      jobkit logs charlm-lstm -f
    """
    root = resolve_root(root)
    runs = _runs(root, [run_selector])
    if len(runs) != 1:
        fail(f"{run_selector!r} matches {len(runs)} runs; give a longer run id")
    run = runs[0]
    jobs = log_attempts(run, root)
    if not jobs:
        fail(f"{run.run_id} has no job logs (never submitted, or run in the foreground with `jobkit run`)")
    chunks: list[tuple[str, str, str]] = []  # (job id, stream, text)
    for job_id, out_path, err_path in jobs:
        outs = _split_attempts(out_path.read_text(errors="replace")) if out_path.exists() else []
        errs = _split_attempts(err_path.read_text(errors="replace")) if err_path.exists() else []
        for i in range(max(len(outs), len(errs))):
            text = ""
            if i < len(outs):
                text += outs[i]
            if stderr and i < len(errs):
                text += errs[i]
            chunks.append((job_id, str(i), text))
    if attempt is not None:
        if not 1 <= attempt <= len(chunks):
            fail(f"--attempt {attempt}: {run.run_id} has {len(chunks)} attempt(s) with logs")
        chunks = [chunks[attempt - 1]]
    for n, (job_id, _, text) in enumerate(chunks, start=1 if attempt is None else attempt):
        console().rule(f"attempt {n} · job {job_id}")
        sys.stdout.write(text)
    if follow:
        _follow(run, jobs[-1][1], jobs[-1][2] if stderr else None)


def _follow(run: RunDir, out_path: Path, err_path: Path | None) -> None:
    offsets: dict[Path, int] = {p: p.stat().st_size if p.exists() else 0 for p in (out_path, err_path) if p}
    try:
        while True:
            for path in list(offsets):
                if path.exists() and path.stat().st_size > offsets[path]:
                    with open(path, errors="replace") as f:
                        f.seek(offsets[path])
                        sys.stdout.write(f.read())
                        offsets[path] = f.tell()
                    sys.stdout.flush()
            state = collect_status([run]).summaries[0].state
            if state in TERMINAL:
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass

