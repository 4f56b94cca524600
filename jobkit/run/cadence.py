"""How often to checkpoint: a fixed number of steps, or `checkpoint_every = "auto"` (Young/Daly).

Young/Daly: with a checkpoint costing C seconds and interruptions every M seconds on average, the
interval that loses the least time is T = √(2·C·M). C is the run's measured checkpoint write (the
cost of a synchronous save; with asynchronous checkpoints an upper bound of the loop's cost, and it
keeps T above the write so the next snapshot seldom waits). Before the first checkpoint C is estimated
from the state's size and the write bandwidth the run measured (or DEFAULT_BANDWIDTH). M comes from this
run's own events: its running time over its interruptions (preemptions, attempts that vanished), with
one pretend interruption after DEFAULT_MTBI_S so that a run with none observed starts at the stated
default and a first preemption does not swing it to extremes. T becomes steps through the measured step
time, re-evaluated after each checkpoint.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable

from jobkit.plan.lead import DEFAULT_BANDWIDTH
from jobkit.state import ATTEMPT_ENDS, Event

AUTO = "auto"
DEFAULT_MTBI_S = 4 * 3600.0  # stated default: one interruption every 4 h when none was observed
MTBI_ENV = "JOBKIT_DEFAULT_MTBI_S"  # overrides it (a site's known rate; benchmarks)


def young_daly_s(checkpoint_s: float, mtbi_s: float) -> float:
    """The interval √(2·C·M) in seconds (C and M in seconds)."""
    return math.sqrt(2.0 * max(0.0, checkpoint_s) * max(0.0, mtbi_s))


def default_mtbi_s() -> float:
    try:
        value = float(os.environ.get(MTBI_ENV) or DEFAULT_MTBI_S)
    except ValueError:
        return DEFAULT_MTBI_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_MTBI_S


@dataclass(frozen=True)
class Interruptions:
    """What a run's events say about how often it is interrupted."""

    running_s: float  # time its attempts ran
    count: int  # preemptions, and attempts that ended without a word (killed, node lost)

    def mtbi_s(self, default_s: float) -> float:
        """(running time + default) / (interruptions + 1): the default until there is evidence."""
        return (self.running_s + default_s) / (self.count + 1)


def interruptions(events: Iterable[dict[str, Any]], now: float | None = None) -> Interruptions:
    """Running time and interruptions from events.jsonl (a planned segment end is not an interruption)."""
    running, count = 0.0, 0
    start: float | None = None
    last_t: float | None = None
    for ev in events:
        kind, t = ev.get("event"), ev.get("t")
        if not isinstance(t, (int, float)):
            continue
        if kind == Event.STARTED:
            if start is not None:  # the previous attempt vanished: killed, its node lost
                running += max(0.0, (last_t or t) - start)
                count += 1
            start = t
        elif start is not None and kind in ATTEMPT_ENDS:
            running += max(0.0, t - start)
            if kind == Event.REQUEUED and ev.get("reason") == "preemption":
                count += 1
            start = None
        last_t = t
    if start is not None:
        running += max(0.0, (now if now is not None else last_t or start) - start)
    return Interruptions(running, count)


def measured_bandwidth(events: Iterable[dict[str, Any]]) -> float | None:
    """Bytes per second of this run's newest checkpoint write that recorded its size, or None."""
    found = None
    for ev in events:
        if ev.get("event") == Event.CHECKPOINT and ev.get("size") and ev.get("seconds"):
            found = float(ev["size"]) / max(float(ev["seconds"]), 1e-6)
    return found


class Cadence:
    """Whether a step is due for a periodic checkpoint: every N steps, or `auto` (Young/Daly)."""

    def __init__(self, every: int | str, mtbi_s: float = DEFAULT_MTBI_S, estimate_s: float | None = None) -> None:
        self.every, self.mtbi_s = every, mtbi_s
        self.checkpoint_s = estimate_s  # measured after the first checkpoint; estimated before
        self.since = 0  # the step of the last checkpoint
        self.steps: int | None = None if every == AUTO else int(every or 0)  # the interval in use
        self.interval_s: float | None = None

    @property
    def auto(self) -> bool:
        return self.every == AUTO

    @classmethod
    def for_run(cls, every: int | str, events: list[dict[str, Any]], state_bytes: int | None,
                step: int, now: float) -> "Cadence":
        """The cadence of a run starting (or resuming) at `step`, from its events so far."""
        # this attempt is starting: one the events leave open ended without a word (an interruption)
        mtbi = interruptions([*events, {"t": now, "event": Event.STARTED}], now).mtbi_s(default_mtbi_s())
        measured = [e for e in events if e.get("event") == Event.CHECKPOINT and e.get("seconds")]
        if measured:
            estimate = float(measured[-1]["seconds"])
        else:
            estimate = (state_bytes or 0) / (measured_bandwidth(events) or DEFAULT_BANDWIDTH)
        cadence = cls(every, mtbi, estimate)
        cadence.since = step
        return cadence

    def due(self, step: int) -> bool:
        """A fixed cadence: every `checkpoint_every` steps (every rank computes the same)."""
        return not self.auto and bool(self.steps) and step % self.steps == 0

    def due_auto(self, step: int, step_s: float | None, checkpoint_s: float | None = None) -> bool:
        """`auto`: the planned interval has passed since the last checkpoint (asked on the main rank,
        whose answer the ranks agree on with the time-based one). `checkpoint_s`: the newest write
        measured (a background write reports it after the loop went on): the interval is re-planned."""
        if not self.auto:
            return False
        if checkpoint_s and checkpoint_s != self.checkpoint_s:
            self.checkpoint_s, self.steps = checkpoint_s, None
        if self.steps is None:
            if not step_s:
                return False
            self._plan(step_s)
        return step - self.since >= (self.steps or 1)

    def checkpointed(self, step: int, checkpoint_s: float | None, step_s: float | None) -> None:
        """After each checkpoint: the newest measured cost re-plans the interval."""
        self.since = step
        if checkpoint_s:
            self.checkpoint_s = checkpoint_s
        if self.auto and step_s:
            self._plan(step_s)

    def _plan(self, step_s: float) -> None:
        self.interval_s = young_daly_s(self.checkpoint_s or 0.0, self.mtbi_s)
        self.steps = max(1, round(self.interval_s / max(step_s, 1e-9)))

    def describe(self) -> dict[str, Any]:
        """What progress.json shows: the interval in use (and for `auto`, why)."""
        if not self.auto:
            return {"checkpoint_every": self.steps}
        return {"checkpoint_every": self.steps, "checkpoint_auto": {
            "interval_s": None if self.interval_s is None else round(self.interval_s, 1),
            "checkpoint_s": None if self.checkpoint_s is None else round(self.checkpoint_s, 4),
            "mtbi_s": round(self.mtbi_s, 1)}}
