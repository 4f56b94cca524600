"""`jobkit status`: one table of runs (or JSON), once or redrawn with `--watch`."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from jobkit.cli.common import EXIT_FAILED, console, find, json_option, print_json, resolve_root, root_option
from jobkit.cli.complete import sweeps_and_runs
from jobkit.observe import status_groups
from jobkit.observe import status_table as status_view
from jobkit.observe import status_watch
from jobkit.observe.status import StatusReport, collect_status
from jobkit.run import lease
from jobkit.schedcalls import poll_interval
from jobkit.plan import siteconfig
from jobkit.state import FAILED, State


def watch_interval(runs: int) -> float:
    """`--watch`'s default: grows with the number of runs, within the site's bounds (jobkit.toml)."""
    try:
        site = siteconfig.load()
    except siteconfig.ConfigError:
        site = siteconfig.SiteConfig()
    return poll_interval(runs, site.poll_min_s, site.poll_max_s)

STATE_STYLE = status_view.STATE_STYLE


def status_table(report: StatusReport, width: int = 160) -> Table:
    """The status table as a rich Table fitted to `width` columns (see jobkit.observe.status_table)."""
    return status_view.fit(status_view.build(report.summaries, report.slurm.source, report.slurm.error),
                           Console(width=width))


def show_status(report: StatusReport, out: Console) -> None:
    """Fitted to a terminal, or one aligned line per run when `out` is not one."""
    status_view.show(report.summaries, out, report.slurm.source, report.slurm.error)


def _lease_json(path: str) -> dict | None:
    """Who trains the run now (its lease, if the heartbeat is fresh): host, pid, job id, attempt, times."""
    holder = lease.live_holder(Path(path))
    return holder.to_json() if holder is not None else None


def show_holders(report: StatusReport, out: Console, most: int = 10) -> None:
    """One line per run whose lease is held: who trains it (the writer jobkit would refuse a second)."""
    held = [(s.run_id, h) for s in report.summaries if (h := lease.live_holder(Path(s.path))) is not None]
    for run_id, holder in held[:most]:
        out.print(f"[dim]{run_id}: trained by {holder.describe()} (heartbeat {holder.age():.0f}s ago)[/]")
    if len(held) > most:
        out.print(f"[dim]… and {len(held) - most} more runs being trained (`--json` names every holder)[/]")


def show_auto_cadence(report: StatusReport, out: Console, most: int = 10) -> None:
    """One line per running run at checkpoint_every = "auto": the interval it uses now, and why."""
    auto = [s for s in report.summaries if s.checkpoint_auto and s.state == State.RUNNING]
    for s in auto[:most]:
        a = s.checkpoint_auto
        out.print(f"[dim]{s.run_id}: checkpoint every {s.checkpoint_every} steps (auto: √(2 × {a.get('checkpoint_s')}s "
                  f"checkpoint × {a.get('mtbi_s')}s between interruptions) = {a.get('interval_s')}s)[/]")


@click.command("status")
@click.argument("selectors", nargs=-1, metavar="[SWEEP|RUN]...", shell_complete=sweeps_and_runs)
@click.option("--watch", is_flag=True, help="Redraw the table in place every --interval seconds; stops by itself "
              "when no run is queued or running.")
@click.option("--interval", type=float, default=None, help="Seconds between refreshes with --watch (default: 0.3 s "
              "per run, 3 to 60 s; jobkit.toml poll_min_s/poll_max_s). Each refresh is at most 2 scheduler calls.")
@click.option("--all", "show_all", is_flag=True,
              help=f"The full table even for more than {status_groups.GROUP_ABOVE} runs (else counts per state "
                   "and per value of each varying parameter).")
@json_option
@root_option
def status(selectors: tuple[str, ...], watch: bool, interval: float | None, show_all: bool, as_json: bool,
           root: Path | None) -> None:
    """One table of runs, in sweep order: the params that tell them apart, state, progress, losses;
    final validation loss and run time once finished, speed and ETA while running, the error line of a
    failed run. Columns equal for every run are named once above the table.

    Asks the scheduler once for all runs (sacct; squeue when accounting is off). On a terminal the
    table fits its width (long values shortened in the middle; `--json` has them in full); piped or
    logged, it is one aligned line per run. Over more than 50 runs it prints counts instead (per state,
    and per value of each parameter that varies, then the runs that need attention); `--all` prints
    the table. Under it, who trains each run being trained (its lease:
    job, host, since when; `lease` in `--json`). Exits 1 when a shown run has failed.

    \b
    Examples:
      jobkit status                 # every run under --root
      jobkit status smoke --json    # one sweep, for scripts
      jobkit status big-sweep --all # every run of a large sweep, one line each
      jobkit status charlm-lstm-3f9a1c2e --watch
    """
    root = resolve_root(root)
    runs = find(root, selectors)
    if not runs and not as_json:
        console().print(f"no runs under {root} (submit some with `jobkit submit SWEEP_FILE`)")
        return
    if watch and not as_json:  # ends by itself when no run is queued or running
        interval = interval or watch_interval(len(runs))
        report = status_watch.watch(lambda: collect_status(find(root, selectors)), console(), interval,
                                    describe=lambda r: (r.slurm.source, r.slurm.error),
                                    grouped=len(runs) > status_groups.GROUP_ABOVE and not show_all)
    elif as_json:
        report = collect_status(runs)
        print_json({"root": str(root), "scheduler": report.slurm.source, "slurm_calls": report.slurm.calls,
                    "scheduler_error": report.slurm.error, "feeders": report.feeders,
                    "runs": [{**s.to_json(), "lease": _lease_json(s.path)} for s in report.summaries]})
    else:
        report = collect_status(runs)
        if len(report.summaries) > status_groups.GROUP_ABOVE and not show_all:
            status_groups.show(report.summaries, console(), report.slurm.source, report.slurm.error)
        else:
            show_status(report, console())
        show_holders(report, console())
        show_auto_cadence(report, console())
    for line in report.feeders if not as_json else ():
        console().print(line)
    if any(s.state in FAILED for s in report.summaries):
        raise SystemExit(EXIT_FAILED)
