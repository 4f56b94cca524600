"""`jobkit status --watch`: the status table redrawn in place until no run is queued or running.

On a terminal the table is redrawn where it stands (rich Live); without one (a log, a pipe) it is
printed again only when it changed. Either way the watch ends by itself, says so, and hands the last
report back so the command exits with the same code a plain `jobkit status` would.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Callable, Protocol, Sequence

from rich.console import Console
from rich.live import Live
from rich.text import Text

from jobkit.observe import status_groups, status_table
from jobkit.observe.lifecycle import all_ended
from jobkit.observe.runstate import RunSummary


class Report(Protocol):
    summaries: list[RunSummary]


def ended_message(summaries: Sequence[RunSummary]) -> str:
    counts = Counter(s.state for s in summaries)
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"all {len(summaries)} runs have ended: {parts}"


def watch(fetch: Callable[[], Report], out: Console, interval: float = 5.0,
          describe: Callable[[Report], tuple[str, str | None]] = lambda r: ("none", None),
          grouped: bool = False) -> Report:
    """Show `fetch()` every `interval` seconds until no run is active (or Ctrl-C); the last report.

    `describe(report)` gives the scheduler's name and error for the heading; `grouped`: the counts of
    `status_groups` (a large sweep) instead of the table."""
    report = fetch()
    try:
        if out.is_terminal:
            with Live(console=out, auto_refresh=False, transient=False) as live:
                while True:
                    if grouped:
                        live.update(Text("\n".join(_grouped(report, describe, out.width))), refresh=True)
                    else:
                        table = status_table.build(report.summaries, *describe(report))
                        live.update(status_table.fit(table, out), refresh=True)
                    if all_ended(report.summaries):
                        break
                    time.sleep(interval)
                    report = fetch()
        else:
            shown: list[str] = []
            while True:
                lines = (_grouped(report, describe, out.width) if grouped else
                         status_table.plain_lines(status_table.build(report.summaries, *describe(report))))
                if lines != shown:
                    out.file.write(f"{time.strftime('%H:%M:%S')}\n" + "\n".join(lines) + "\n")
                    out.file.flush()
                    shown = lines
                if all_ended(report.summaries):
                    break
                time.sleep(interval)
                report = fetch()
    except KeyboardInterrupt:
        out.print("stopped watching (runs go on)")
        return report
    out.print(ended_message(report.summaries), soft_wrap=True)
    return report


def _grouped(report: Report, describe: Callable[[Report], tuple[str, str | None]], width: int) -> list[str]:
    return status_groups.lines(status_groups.group(report.summaries, *describe(report)), width=max(60, width))
