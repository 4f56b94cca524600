"""`jobkit status`: one table of runs (or JSON), once or redrawn with `--watch`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import click
from rich.live import Live
from rich.table import Table

from ..runstate import RunSummary, age
from ..spec import differing_keys
from ..state import FAILED, State
from ..status import StatusReport, collect_status
from .complete import sweeps_and_runs
from .common import EXIT_FAILED, console, find, json_option, print_json, resolve_root, root_option

STATE_STYLE = {State.COMPLETED: "green", State.RUNNING: "cyan", State.PENDING: "yellow", State.REQUEUED: "yellow",
               State.FAILED: "red", State.TIMEOUT: "red", State.PREEMPTED: "magenta", State.CANCELLED: "dim",
               State.STOPPED: "yellow", State.NEW: "dim"}


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


def _fmt_f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def varying_keys(summaries: Sequence[RunSummary], limit: int = 3) -> list[str]:
    """Params whose values differ between the runs shown (the columns that tell them apart)."""
    keys = sorted(differing_keys([s.params for s in summaries]))
    priority = ["workload", "model", "beta", "dataset"]
    keys.sort(key=lambda k: (priority.index(k) if k in priority else len(priority), k))
    return keys[:limit]


def status_table(report: StatusReport) -> Table:
    summaries = report.summaries
    keys = varying_keys(summaries)
    table = Table(title_justify="left", title=f"{len(summaries)} runs · scheduler view: {report.slurm.source}"
                  + (f" ({report.slurm.error})" if report.slurm.error else ""))
    for col in ["run", *keys, "partition", "job", "state", "requeues/segs", "step", "loss", "val", "ckpt age", "ETA"]:
        table.add_column(col, overflow="fold")
    for s in summaries:
        state = f"[{STATE_STYLE.get(s.state, '')}]{s.state}[/]"
        if s.error and s.state in FAILED | {State.STOPPED}:
            state += f"\n[dim]{s.error[:120]}[/]"
        if s.convergence_note:
            state += f"\n[green]{s.convergence_note}[/]"
        if s.alarms:
            state += f"\n[magenta]alarm: {s.alarms[-1][:100]}[/]"
        table.add_row(s.run_id, *[str(s.params.get(k, "-")) for k in keys], s.partition or "-", s.job_id or "-",
                      state, f"{s.requeues}/{max(s.attempts, 0)}", f"{s.step}/{s.total}", _fmt_f(s.loss),
                      _fmt_f(s.val_loss), _fmt_s(age(s.last_checkpoint_t)), _fmt_s(s.eta_s))
    return table


@click.command("status")
@click.argument("selectors", nargs=-1, metavar="[SWEEP|RUN]...", shell_complete=sweeps_and_runs)
@click.option("--watch", is_flag=True, help="Refresh the table every few seconds until interrupted.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between refreshes with --watch.")
@json_option
@root_option
def status(selectors: tuple[str, ...], watch: bool, interval: float, as_json: bool, root: Path | None) -> None:
    """One table of runs: state, partition, job, requeues, progress, losses, checkpoint age, ETA.

    Asks the scheduler once for all runs (sacct; squeue when accounting is off). Exits 1 when a
    shown run has failed.

    \b
    Examples:
      jobkit status                 # every run under --root
      jobkit status smoke --json    # one sweep, for scripts
      jobkit status charlm-lstm-3f9a1c2e --watch
    """
    root = resolve_root(root)
    runs = find(root, selectors)
    if not runs and not as_json:
        console().print(f"no runs under {root} (submit some with `jobkit submit SWEEP_FILE`)")
        return
    if watch and not as_json:
        with Live(status_table(collect_status(runs)), console=console(), refresh_per_second=1) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(status_table(collect_status(find(root, selectors))))
            except KeyboardInterrupt:
                return
    report = collect_status(runs)
    if as_json:
        print_json({"root": str(root), "scheduler": report.slurm.source, "slurm_calls": report.slurm.calls,
                    "scheduler_error": report.slurm.error, "runs": [s.to_json() for s in report.summaries]})
    else:
        console().print(status_table(report))
    if any(s.state in FAILED for s in report.summaries):
        raise SystemExit(EXIT_FAILED)
