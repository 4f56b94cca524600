"""`jobkit status` of a large sweep: counts, not ten thousand lines.

Above GROUP_ABOVE runs the default is this summary: how many runs are in each state, the same
counts per value of every parameter that varies (a value whose runs failed stands out), and the
first runs that need a person, with their error. `jobkit status --all` prints the full table and
`--json` every run, as for a small sweep. Pure, like the table: reads only the summaries it is given.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from rich.console import Console
from rich.text import Text

from jobkit.observe.lifecycle import needs_attention
from jobkit.observe.runstate import RunSummary
from jobkit.observe.status_table import (MISSING, STATE_STYLE, _note, _param_text, distinguishing_keys, natural_key,
                                         ordered, shorten)
from jobkit.state import State

GROUP_ABOVE = 50  # more runs than this: `status` prints the grouped summary unless --all
MAX_VALUES = 12  # values listed per key (the rest are counted on one line)
MAX_ATTENTION = 10  # runs needing a person, listed by name under the counts
STATE_ORDER = list(State)


@dataclass
class KeyCounts:
    key: str
    rows: list[tuple[str, Counter]]  # value -> runs per state, in natural order of the value
    hidden: int = 0  # values not listed (more than MAX_VALUES)


@dataclass
class Grouped:
    heading: str
    states: list[str]  # the states present, in lifecycle order: the columns
    total: Counter
    keys: list[KeyCounts] = field(default_factory=list)
    unique: list[str] = field(default_factory=list)  # keys with a value of their own per run (seeds...)
    attention: list[RunSummary] = field(default_factory=list)
    attention_total: int = 0


def group(summaries: Sequence[RunSummary], scheduler: str = "none", scheduler_error: str | None = None) -> Grouped:
    runs = list(summaries)  # counts need no order; the few runs listed by name are put in sweep order
    total = Counter(s.state for s in runs)
    states = sorted(total, key=lambda st: (STATE_ORDER.index(st) if st in STATE_ORDER else len(STATE_ORDER), st))
    sweeps = sorted({s.sweep for s in runs})
    heading = [sweeps[0]] if len(sweeps) == 1 else [f"{len(sweeps)} sweeps"]
    heading.append(f"{len(runs)} runs")
    heading.append(f"scheduler: {scheduler}" + (f" ({scheduler_error})" if scheduler_error else ""))
    out = Grouped(heading=" · ".join(heading), states=states, total=total)
    for key in distinguishing_keys(runs, limit=None):
        per: dict[str, Counter] = {}
        raw: dict[str, object] = {}
        for s in runs:
            value = s.params.get(key)
            text = _param_text(value)
            if text not in per:
                per[text], raw[text] = Counter(), value
            per[text][s.state] += 1
        if len(per) == len(runs):  # one value per run: counts of 1 say nothing
            out.unique.append(key)
            continue
        values = sorted(per, key=lambda v: natural_key(raw[v]))
        shown = values[:MAX_VALUES]
        out.keys.append(KeyCounts(key, [(v, per[v]) for v in shown], hidden=len(values) - len(shown)))
    attention = ordered([s for s in runs if needs_attention(s.state)])
    out.attention, out.attention_total = attention[:MAX_ATTENTION], len(attention)
    return out


def lines(g: Grouped, width: int = 120) -> list[str]:
    """The summary as aligned plain lines (a terminal colours the state words, see `show`)."""
    out = [g.heading, "  ".join(f"{st} {g.total[st]}" for st in g.states)]
    for kc in g.keys:
        head = [kc.key, "runs", *g.states]
        rows = [[shorten(v, 32), str(sum(c.values())), *(str(c[st]) if c[st] else MISSING for st in g.states)]
                for v, c in kc.rows]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        out.append("")
        for r in [head, *rows]:
            out.append("  ".join([r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:]))]).rstrip())
        if kc.hidden:
            out.append(f"… and {kc.hidden} more values of {kc.key}")
    if g.unique:
        out += ["", f"one value per run (not grouped): {', '.join(g.unique)}"]
    if g.attention_total:
        more = f" (first {len(g.attention)})" if g.attention_total > len(g.attention) else ""
        out += ["", f"{g.attention_total} runs need attention{more}:"]
        for s in g.attention:
            out.append(shorten(f"  {s.run_id}  {s.state}  {_note(s)}", width))
    out += ["", "every run: jobkit status --all (a table) or --json"]
    return out


def show(summaries: Sequence[RunSummary], console: Console, scheduler: str = "none",
         scheduler_error: str | None = None) -> None:
    """Print the grouped summary: state words coloured on a terminal, plain lines otherwise."""
    text = lines(group(summaries, scheduler, scheduler_error), width=max(60, console.width))
    if not console.is_terminal:
        console.file.write("\n".join(text) + "\n")
        console.file.flush()
        return
    styled = Text("\n".join(text))
    styled.stylize("bold", 0, len(text[0]))
    for state, style in STATE_STYLE.items():
        styled.highlight_words([str(state)], style=style)
    console.print(styled, soft_wrap=True)
