"""What a partition choice is made of: partitions, per-partition verdicts, the choice, and its errors.

Pure types shared by the chooser (`jobkit.plan.placement`, which applies Slurm's rules), the parser
(`jobkit.plan.slurmtext`), the cluster facts (`jobkit.plan.clusterfacts`) and the submit path.
"""
from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from jobkit.plan.slurmtime import format_time
from jobkit.plan.spec import Resources

__all__ = ["Partition", "ClusterError", "NoFit", "Verdict", "Choice"]


class ClusterError(RuntimeError):
    """Slurm could not be asked, or answered something unusable. The message is one line."""


class NoFit(ClusterError):
    """No partition can take the run (or the named one cannot). `verdicts` says why, per partition."""

    def __init__(self, message: str, verdicts: list["Verdict"] | None = None):
        super().__init__(message)
        self.verdicts = list(verdicts or [])


@dataclass(frozen=True)
class Partition:
    name: str
    state: str  # UP, DOWN, DRAIN, INACTIVE
    is_default: bool
    max_time_min: int | None  # None = UNLIMITED
    default_time_min: int | None  # None = not set (jobs get MaxTime)
    priority_tier: int
    nodes: int
    total_cpus: int
    max_cpus_per_node: int  # the most CPUs one job can get on one node of the partition
    mem_per_node_mb: int | None  # the most memory one node offers a job; None = unknown
    gpus_per_node: int
    preempt_mode: str  # OFF, REQUEUE, CANCEL, SUSPEND, ...
    grace_time_s: int
    allow_accounts: str = "ALL"
    allow_groups: str = "ALL"
    allow_qos: str = "ALL"
    max_nodes: int | None = None  # MaxNodes per job; None = UNLIMITED

    @property
    def up(self) -> bool:
        return self.state.upper() == "UP"

    @property
    def max_time(self) -> str:
        return format_time(self.max_time_min)


@dataclass(frozen=True)
class Verdict:
    partition: Partition
    fits: bool  # the run could go there (without being named, for a partition that preempts others)
    reason: str  # e.g. "MaxTime 00:10:00 < 00:30:00 asked"


@dataclass(frozen=True)
class Choice:
    partition: Partition | None
    reason: str
    verdicts: list[Verdict]
    segments: int = 1  # > 1: the run is split into this many jobs (chunked)
    time_min: int = 0  # wall time each job (segment) asks for; always <= the partition's MaxTime


def _user_groups() -> set[str]:
    """The local user's name and groups, for AllowGroups on a live cluster."""
    names: set[str] = set()
    try:
        names.add(pwd.getpwuid(os.getuid()).pw_name)
    except KeyError:
        pass
    for gid in {os.getgid(), *os.getgroups()}:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.add(str(gid))
    return names


def _asked(res: Resources) -> str:
    """The run's request in one phrase, for refusals: "00:30:00, 2 cpus, 1000M, 1 node × 2 tasks"."""
    gpus = f", {res.gpus} gpu{'s' if res.gpus != 1 else ''}" if res.gpus else ""
    if res.world_size > 1:
        gpus += f", {res.nodes} node{'s' if res.nodes != 1 else ''} × {res.tasks} tasks"
    return f"{format_time(res.time_min)}, {res.cpus} cpu{'s' if res.cpus != 1 else ''}, {res.mem_mb}M{gpus}"
