"""The status table: run summaries -> ordered rows -> a rich Table fitted to a terminal, or aligned
plain lines (one per run, never wrapped) for pipes, CI logs and `make demo`.

Pure: reads only the summaries it is given (no Slurm, no files), so it renders the same in tests.
Full values stay in `jobkit status --json`; here long values are shortened in the middle, columns
that are the same for every run are named once above the table, and a narrow terminal loses the
least useful columns first — a run id is never wrapped or cut.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from jobkit.observe.lifecycle import has_ended, needs_attention
from jobkit.observe.runstate import RunSummary
from jobkit.plan.slurmtime import format_duration
from jobkit.plan.spec import differing_keys
from jobkit.protocol import ReportLayout
from jobkit.state import State

STATE_STYLE = {State.COMPLETED: "green", State.RUNNING: "cyan", State.PENDING: "yellow", State.REQUEUED: "yellow",
               State.FAILED: "red", State.TIMEOUT: "red", State.PREEMPTED: "magenta", State.CANCELLED: "dim",
               State.STOPPED: "yellow", State.NEW: "dim", State.SUSPENDED: "yellow", State.UNKNOWN: "magenta"}
MAX_KEYS = 4
MISSING = "-"
ELLIPSIS = "…"
PLAIN_VALUE_WIDTH = 32  # a parameter value (a path, mostly) in plain output; errors are never cut there
TERMINAL_VALUE_WIDTH = 24
NOTE_MIN_WIDTH = 16  # an error line gets at least this much of a narrow terminal
NOTE_WANT_WIDTH = 48  # and up to this much before a column that matters makes room for it
# Narrow terminal: drop these first (leftmost first); "keys" stands for the parameter columns, widest
# first (the run id carries their values). The first CHEAP ones also make room for an error line.
DROP_ORDER = ("job", "nodes×tasks", "requeues/segs", "partition", "loss", "speed", "keys", "step", "val", "time")
CHEAP = 4


# --- values ---------------------------------------------------------------------------------------

def shorten(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut in the middle. A path keeps its scheme and its file
    name (`npy:/a/b/lfw_faces_25px.npy` -> `npy:…/lfw_faces_25px.npy`): the part that tells runs apart."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    if "/" in text:
        scheme = re.match(r"(?:[A-Za-z][\w+.-]*:)?", text).group(0)
        short = f"{scheme}{ELLIPSIS}/{text.rpartition('/')[2]}"
        if len(short) <= width:
            return short
    left = width // 2
    right = width - 1 - left
    return text[:left] + ELLIPSIS + (text[-right:] if right else "")


def duration(seconds: float | None) -> str:
    """72s, 12m05s, 3h04m, 2d3h: precise where a run's time is short, brief where it is long."""
    if seconds is None:
        return MISSING
    s = int(round(seconds))
    if s < 90:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4g}"


def _param_text(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def natural_key(value: Any) -> tuple:
    """Sort key: numbers (and numeric strings) by value, other strings with their digit runs as
    numbers (`beta4` < `beta20`), missing values last."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), ())
    if value is None:
        return (2, 0.0, ())
    text = str(value)
    try:
        return (0, float(text), ())
    except ValueError:
        parts = re.split(r"(\d+)", text.lower())
        return (1, 0.0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


# --- which keys, in which order -------------------------------------------------------------------

def distinguishing_keys(summaries: Sequence[RunSummary], limit: int | None = MAX_KEYS) -> list[str]:
    """Params that tell runs of the same workload apart (a key that exists for only one workload is
    not a difference between runs): each workload's declared key params first (`ReportLayout`, as
    spec.json records them), then the rest by name."""
    by_workload: dict[str, list[dict[str, Any]]] = {}
    priority: dict[str, None] = {}
    for s in summaries:
        by_workload.setdefault(s.workload, []).append(s.params)
        priority.update(dict.fromkeys(s.key_params or ReportLayout().key_params))
    keys: dict[str, None] = {}
    for params in by_workload.values():
        keys.update(dict.fromkeys(differing_keys(params)))
    first = list(priority)
    ordered = sorted(keys, key=lambda k: (first.index(k) if k in first else len(first), k))
    return ordered if limit is None else ordered[:limit]


def ordered(summaries: Sequence[RunSummary]) -> list[RunSummary]:
    """Sweep order ([[run]] tables as written in the sweep file), then the distinguishing keys' values,
    numerically where numeric (β 0, 1, 4, 20 — not 0, 1, 20, 4), then the run id."""
    keys = distinguishing_keys(summaries, limit=None)
    return sorted(summaries, key=lambda s: (s.sweep, s.entry or 1 << 30, s.workload,
                                            tuple(natural_key(s.params.get(k)) for k in keys), s.run_id))


# --- the table's content --------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    name: str
    cell: Callable[[RunSummary], str]
    right: bool = False  # numbers line up on the right


@dataclass
class StatusTable:
    """What the table says, before it is fitted to a width: header line, columns, full cells."""

    heading: str
    columns: list[str]
    rows: list[list[str]]
    states: list[str]  # per row, for colour
    right: set[str] = field(default_factory=set)
    keys: list[str] = field(default_factory=list)


def _val(s: RunSummary) -> str:
    if s.state == State.COMPLETED and s.final.get("val_loss") is not None:
        return number(s.final["val_loss"])  # the final evaluation's figure
    return number(s.val_loss)


def _speed(s: RunSummary) -> str:
    return f"{s.steps_per_s:.3g}/s" if s.state == State.RUNNING and s.steps_per_s else MISSING


def _time(s: RunSummary) -> str:
    """A running run's ETA; an ended one's time spent running (every attempt together)."""
    if s.state == State.RUNNING:
        return f"ETA {duration(s.eta_s)}" if s.eta_s is not None else MISSING
    return duration(s.run_seconds) if s.run_seconds and (has_ended(s.state) or s.requeues) else MISSING


def _state(s: RunSummary) -> str:
    """`RUNNING (no step for 14m)` when a running run's last step is older than expected."""
    if s.state == State.RUNNING and s.no_step_s is not None:
        return f"{s.state} (no step for {format_duration(s.no_step_s)})"
    return str(s.state)


def _note(s: RunSummary) -> str:
    notes = []
    if s.error and needs_attention(s.state):  # ended without finishing, or unknown: say why
        notes.append(s.error)
    if s.convergence_note:
        notes.append(s.convergence_note)
    if s.work_lost:
        notes.append(s.work_lost)
    if s.alarms:
        notes.append(f"alarm: {s.alarms[-1]}")
    if s.warnings:
        notes.append(f"warning: {s.warnings[-1]}")
    return " · ".join(n.replace("\n", " ") for n in notes) or MISSING


def _columns(keys: Sequence[str]) -> list[Column]:
    cols = [Column("run", lambda s: s.run_id)]
    cols += [Column(k, (lambda s, k=k: _param_text(s.params.get(k)))) for k in keys]
    cols += [
        Column("partition", lambda s: s.partition or MISSING),
        Column("job", lambda s: s.job_id or MISSING),
        Column("nodes×tasks", lambda s: s.tasks or MISSING),
        Column("state", _state),
        Column("requeues/segs", lambda s: f"{s.requeues}/{max(s.attempts, 0)}"),
        Column("step", lambda s: f"{s.step}/{s.total}", right=True),
        Column("loss", lambda s: number(s.loss), right=True),
        Column("val", _val, right=True),
        Column("speed", _speed, right=True),
        Column("time", _time, right=True),
        Column("note", _note),
    ]
    return cols


def build(summaries: Sequence[RunSummary], scheduler: str = "none", scheduler_error: str | None = None) -> StatusTable:
    """Rows in sweep order; columns empty for every run dropped; columns with one value for every run
    (two runs or more) moved into the heading (`partition test · 9 runs`)."""
    runs = ordered(summaries)
    keys = distinguishing_keys(runs)
    cols = _columns(keys)
    cells = [[c.cell(s) for s in runs] for c in cols]
    heading: list[str] = []
    sweeps = sorted({s.sweep for s in runs})
    if len(sweeps) == 1:
        heading.append(sweeps[0])
    kept: list[int] = []
    for i, (col, values) in enumerate(zip(cols, cells)):
        distinct = set(values)
        if col.name != "run" and distinct == {MISSING}:
            continue
        if col.name not in ("run", "note") and len(runs) > 1 and len(distinct) == 1:
            heading.append(f"{col.name} {values[0]}")
            continue
        kept.append(i)
    heading.append(f"{len(runs)} run{'s' if len(runs) != 1 else ''}")
    heading.append(f"scheduler: {scheduler}" + (f" ({scheduler_error})" if scheduler_error else ""))
    right = {cols[i].name for i in kept if cols[i].right}
    right |= {k for k in keys if all(natural_key(s.params[k])[0] == 0 for s in runs if s.params.get(k) is not None)}
    return StatusTable(heading=" · ".join(heading), columns=[cols[i].name for i in kept],
                       rows=[[cells[i][r] for i in kept] for r in range(len(runs))],
                       states=[s.state for s in runs], right=right, keys=[k for k in keys if k in
                                                                         {cols[i].name for i in kept}])


# --- rendering ------------------------------------------------------------------------------------

def plain_lines(table: StatusTable, gap: int = 2) -> list[str]:
    """Heading, header and one line per run, aligned, as wide as they need to be (no wrapping).
    Parameter values are shortened to PLAIN_VALUE_WIDTH; everything else is shown in full."""
    rows = [[shorten(c, PLAIN_VALUE_WIDTH) if name in table.keys else c for name, c in zip(table.columns, row)]
            for row in table.rows]
    widths = [max([len(name)] + [len(r[i]) for r in rows]) for i, name in enumerate(table.columns)]
    last = len(table.columns) - 1

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, (name, cell) in enumerate(zip(table.columns, cells)):
            if name in table.right:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell if i == last else cell.ljust(widths[i]))
        return (" " * gap).join(parts).rstrip()

    return [table.heading, line(table.columns), *(line(r) for r in rows)]


def _rich(table: StatusTable, columns: Sequence[str], value_width: int, note_width: int | None) -> Table:
    out = Table(title=table.heading, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                title_style="bold")
    run_width = max([len("run")] + [len(r[0]) for r in table.rows])
    index = {name: i for i, name in enumerate(table.columns)}
    for name in columns:
        if name == "run":
            out.add_column(name, no_wrap=True, min_width=run_width, overflow="ellipsis")
        else:
            out.add_column(name, no_wrap=True, overflow="ellipsis", justify="right" if name in table.right else "left")
    for row, state in zip(table.rows, table.states):
        cells: list[Any] = []
        for name in columns:
            cell = row[index[name]]
            if name in table.keys:
                cell = shorten(cell, value_width)
            elif name == "note" and note_width is not None:
                cell = shorten(cell, note_width)
            if name == "state":
                cells.append(Text(cell, style=STATE_STYLE.get(state, "")))
            elif name == "note" and cell != MISSING:
                cells.append(Text(cell, style="red" if needs_attention(state) else "magenta"))
            else:
                cells.append(Text(cell))
        out.add_row(*cells)
    return out


def fit(table: StatusTable, console: Console) -> Table:
    """A rich Table no wider than the console: parameter values cut to TERMINAL_VALUE_WIDTH, then the
    least useful columns dropped (DROP_ORDER), then the note cut in the middle to what is left."""
    width = console.width
    columns = list(table.columns)
    unbounded = console.options.update_width(1 << 16)  # measure the natural width, not the one it gets

    def natural(cols: Sequence[str], note_width: int | None) -> int:
        return Measurement.get(console, unbounded, _rich(table, cols, TERMINAL_VALUE_WIDTH, note_width)).maximum

    has_note = "note" in columns
    cheap = {c for c in DROP_ORDER[:CHEAP]}
    widest_key_first = sorted(table.keys, key=lambda k: -max(len(r[table.columns.index(k)]) for r in table.rows))
    droppable = [c for group in DROP_ORDER for c in (widest_key_first if group == "keys" else [group]) if c in columns]
    while droppable and natural(columns, NOTE_MIN_WIDTH if has_note else None) > width:
        columns.remove(droppable.pop(0))
    if not has_note:
        return _rich(table, columns, TERMINAL_VALUE_WIDTH, None)
    longest = max(len(r[table.columns.index("note")]) for r in table.rows)
    while droppable and droppable[0] in cheap and natural(columns, min(longest, NOTE_WANT_WIDTH)) > width:
        columns.remove(droppable.pop(0))
    full = natural(columns, None)
    note_width = max(NOTE_MIN_WIDTH, longest - (full - width)) if full > width else None
    return _rich(table, columns, TERMINAL_VALUE_WIDTH, note_width)


def show(summaries: Sequence[RunSummary], console: Console, scheduler: str = "none",
         scheduler_error: str | None = None) -> None:
    """Print the table: fitted to a terminal, or plain aligned lines when output is not a terminal."""
    table = build(summaries, scheduler, scheduler_error)
    if console.is_terminal:
        console.print(fit(table, console))
    else:
        console.file.write("\n".join(plain_lines(table)) + "\n")
        console.file.flush()
