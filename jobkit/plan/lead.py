"""The warning time a job asks for (`#SBATCH --signal=USR2@LEAD`), from what its run measured.

Between Slurm's signal and the kill the run must finish its step, wait for the checkpoint in flight
and save the final one: at least two checkpoints, two steps (the one running and the stop's boundary)
and a margin. Measured by the runner (`checkpoint` events: write seconds, size, step seconds; the
`started` event: the state's size), so resubmissions and resumes ask for what the run needs. Before
the first checkpoint the write is estimated from the state's size and a write bandwidth (measured by
the run, else a conservative default). Never less than the fixed default (it allows for slurmctld
checking limits only every 30 s), never more than a fraction of the job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Hashable, Sequence

MARGIN_S = 10.0  # exit, requeue, a slow file system's hiccup
CAP_FRACTION = 0.5  # the warning never takes more than this share of the job's time
DEFAULT_BANDWIDTH = 50e6  # bytes/s, conservative for a shared file system, until measured


@dataclass(frozen=True)
class Figures:
    """What a run measured (None: not yet)."""

    step_s: float | None = None
    checkpoint_s: float | None = None
    checkpoint_bytes: int | None = None
    state_bytes: int | None = None

    @classmethod
    def of(cls, summary: Any) -> "Figures":
        """What a run measured, as its summary (`observe.runstate.RunSummary`) read it from its events."""
        if summary is None:
            return cls()
        return cls(step_s=summary.step_seconds, checkpoint_s=summary.checkpoint_seconds,
                   checkpoint_bytes=summary.checkpoint_bytes, state_bytes=summary.state_bytes)

    @property
    def known(self) -> bool:
        return self.checkpoint_s is not None or self.state_bytes is not None or self.step_s is not None


@dataclass(frozen=True)
class Lead:
    """The lead in seconds, why, and a problem line when the run needs more than its job allows."""

    seconds: int
    why: str
    need_s: float | None = None
    problem: str | None = None


def default_lead_s(time_min: int) -> int:
    """The lead without measurements: enough to checkpoint a small model, never most of the job."""
    return int(max(10, min(90, time_min * 60 // 4)))


def checkpoint_estimate_s(f: Figures, bandwidth: float | None = None) -> tuple[float, str]:
    """(seconds one checkpoint write takes, how that is known); `bandwidth`: bytes/s measured on this
    file system (by another run), else DEFAULT_BANDWIDTH."""
    if f.checkpoint_s is not None:
        return f.checkpoint_s, f"a checkpoint took {f.checkpoint_s:.1f}s"
    size = f.state_bytes or 0
    measured = "measured" if bandwidth else "assumed"
    bandwidth = bandwidth or DEFAULT_BANDWIDTH
    return size / bandwidth, (f"a checkpoint of {size / 1e6:.0f} MB at {bandwidth / 1e6:.0f} MB/s ({measured}) "
                              f"~{size / bandwidth:.1f}s")


def lead_for(time_min: int, f: Figures, grace_s: int | None = None, partition: str | None = None,
             bandwidth: float | None = None) -> Lead:
    """The lead for a job of `time_min` minutes of a run that measured `f`; `grace_s`: the partition's
    GraceTime (what a preempted job gets, whatever it asked)."""
    default = default_lead_s(time_min)
    if not f.known:
        return Lead(default, f"default for a {time_min}-minute job (nothing measured yet)")
    ckpt, how = checkpoint_estimate_s(f, bandwidth)
    step = f.step_s or 0.0
    need = 2 * ckpt + 2 * step + MARGIN_S
    cap = max(default, int(time_min * 60 * CAP_FRACTION))
    seconds = max(default, min(cap, math.ceil(need)))
    why = (f"2 × checkpoint + 2 × step + {MARGIN_S:.0f}s margin = {need:.0f}s ({how}, a step {step:.2f}s)"
           f"; default {default}s, at most {cap}s")
    problem = None
    if need > cap:
        problem = (f"a step takes {step:.1f}s and {how}: stopping needs ~{need:.0f}s, but a {time_min}-minute "
                   f"job allows at most {cap}s of warning, too short to checkpoint; ask for a longer --time")
    elif grace_s and need > grace_s:
        problem = (f"stopping needs ~{need:.0f}s ({how}), but partition {partition or '?'} gives a preempted job "
                   f"only {grace_s}s (GraceTime); a preemption may lose the work since the last checkpoint")
    return Lead(seconds, why, need, problem)


def measured_bandwidth(summaries: Sequence[Any]) -> float | None:
    """Bytes/s of the slowest checkpoint write these runs measured (runs of one root share a file system)."""
    speeds = [s.checkpoint_bytes / s.checkpoint_seconds for s in summaries
              if s.checkpoint_bytes and s.checkpoint_seconds]
    return min(speeds) if speeds else None


def shared(groups: Sequence[Hashable], leads: Sequence[Lead | None]) -> list[Lead | None]:
    """The leads with each group's longest (the jobs of one array share one --signal; longer is safe):
    resuming a large sweep stays one sbatch per shape, whatever each run measured."""
    longest: dict[Hashable, int] = {}
    for group, lead in zip(groups, leads):
        if lead is not None:
            longest[group] = max(longest.get(group, 0), lead.seconds)
    out: list[Lead | None] = []
    for group, lead in zip(groups, leads):
        if lead is not None and lead.seconds < longest[group]:
            lead = replace(lead, seconds=longest[group], why=f"{lead.why}; {longest[group]}s, the longest its array needs")
        out.append(lead)
    return out
