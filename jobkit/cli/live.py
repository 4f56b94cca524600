"""The live view behind `submit --wait`: progress bars on a terminal, state changes in a log."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from jobkit.cli.common import EXIT_FAILED, console
from jobkit.cli.status_cmd import STATE_STYLE, show_status
from jobkit.observe.lifecycle import all_ended
from jobkit.observe.status import collect_status
from jobkit.plan.siteconfig import SiteConfig
from jobkit.schedcalls import poll_interval
from jobkit.state import State
from jobkit.store import RunDir


def wait_for(root: Path, run_dirs: Sequence[Path], interval: float | None = None,
             site: SiteConfig | None = None) -> int:
    """Live progress until no run is active (`lifecycle.all_ended`); 0 if all completed, else 1.
    Each poll is at most two scheduler calls; polls are `schedcalls.poll_interval` apart by default
    (seconds for a handful of runs, >= 30 s for hundreds; the site's jobkit.toml sets the bounds)."""
    runs = [RunDir(p) for p in run_dirs if RunDir(p).exists()]
    if interval is None:
        site = site or SiteConfig()
        interval = poll_interval(len(runs), site.poll_min_s, site.poll_max_s)
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
                                    state=f"[{STATE_STYLE.get(s.state, '')}]{s.state}[/]")
                if all_ended(report.summaries):
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
            if all_ended(report.summaries):
                break
            time.sleep(interval)
    report = collect_status(runs)
    show_status(report, out)
    return 0 if all(s.state == State.COMPLETED for s in report.summaries) else EXIT_FAILED
