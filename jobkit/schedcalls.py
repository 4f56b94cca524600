"""The scheduler-call budget: every Slurm command a jobkit process runs is counted here.

Sites limit the load one user puts on slurmctld/slurmdbd ("status polls at most once a minute", "no
more than N allocations a minute"). `jobkit/slurm.py` calls `record` before each command; with
`JOBKIT_DEBUG_CALLS=1` (or `jobkit --debug-calls`) every call is printed to stderr as it is made and
the counts per command when the process ends. The log is per process: a count of what *this* command
cost, which is the budget the README states (one poll: at most 2 calls, whatever the number of runs).
"""
from __future__ import annotations

import atexit
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

DEBUG_ENV = "JOBKIT_DEBUG_CALLS"


@dataclass
class CallLog:
    """Calls made so far, per command word (`sacct`, `squeue`, `sbatch`, `scontrol show`, ...)."""

    counts: Counter = field(default_factory=Counter)
    last_sbatch: float = 0.0  # monotonic time of the last sbatch (pacing)
    _reported: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, argv: list[str] | tuple[str, ...]) -> None:
        word = _word(argv)
        self.counts[word] += 1
        if debug_on():
            if not self._reported:
                self._reported = True
                atexit.register(self.report)
            shown = " ".join(argv)
            print(f"jobkit: scheduler call {self.total} ({word} #{self.counts[word]}): "
                  f"{shown[:160]}{'…' if len(shown) > 160 else ''}", file=sys.stderr)

    def report(self) -> None:
        parts = ", ".join(f"{w} {n}" for w, n in sorted(self.counts.items()))
        print(f"jobkit: {self.total} scheduler call{'s' * (self.total != 1)}" + (f": {parts}" if parts else ""),
              file=sys.stderr)

    def since(self, before: Counter) -> int:
        """Calls made since `before` (a copy of `counts`)."""
        return self.total - sum(before.values())

    def pace_sbatch(self, per_minute: float | None) -> float:
        """Sleep so that sbatch calls are at most `per_minute` a minute; returns the seconds slept."""
        if not per_minute or per_minute <= 0:
            return 0.0
        gap = 60.0 / per_minute - (time.monotonic() - self.last_sbatch)
        if self.last_sbatch and gap > 0:
            time.sleep(gap)
            return gap
        return 0.0


def _word(argv: list[str] | tuple[str, ...]) -> str:
    name = os.path.basename(argv[0]) if argv else "?"
    if name in ("scontrol", "sacctmgr") and len(argv) > 1:
        rest = [a for a in argv[1:] if not a.startswith("-")]
        return f"{name} {rest[0]}" if rest else name
    return name


def debug_on() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def poll_interval(runs: int, least_s: float = 3.0, most_s: float = 60.0) -> float:
    """Seconds between two polls of `runs` runs: a few seconds for a handful, >= 30 s from 100 runs on
    (0.3 s per run, within [least_s, most_s]); the site sets the bounds (jobkit.toml `poll_min_s`,
    `poll_max_s`). Each poll costs at most two scheduler calls, whatever the number of runs."""
    return max(least_s, min(most_s, 0.3 * runs))


CALLS = CallLog()  # one per process: what this command has asked the scheduler
