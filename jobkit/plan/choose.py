"""The choice of a partition for a run, from the partitions' sizes, MaxTime and preemption.

Pure: the partitions come from `jobkit.slurm` (read live) or a saved profile (`jobkit.plan.clusterfacts`),
parsed by `jobkit.plan.slurmtext`. `choose_partition()` picks the partition a run should go to and says
why, or raises `NoFit` naming every partition's limit; `jobkit.plan.placement` adds accounts, QoS, typed
GPUs and node features on top.
"""
from __future__ import annotations

import grp
import math
import os
import pwd
from dataclasses import dataclass
from typing import Iterable

from jobkit.plan.slurmtime import format_time
from jobkit.plan.spec import Resources

__all__ = ["Partition", "ClusterError", "NoFit", "Verdict", "Choice", "choose_partition"]


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


# ------------------------------------------------------------------------------------------- choosing

def _user_groups() -> set[str]:
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


def _at_risk(p: Partition, partitions: Iterable[Partition]) -> bool:
    """True when `p`'s own jobs can be preempted (preempt/partition_prio, nodes unknown so assumed shared):
    its PreemptMode is not OFF and another partition has a higher PriorityTier. `jobkit.plan.preemption`
    is the full rule (shared nodes, preempt/qos) used with cluster facts."""
    return p.preempt_mode.upper() != "OFF" and any(q.name != p.name and q.priority_tier > p.priority_tier
                                                   for q in partitions)


def _asked(res: Resources) -> str:
    gpus = f", {res.gpus} gpu{'s' if res.gpus != 1 else ''}" if res.gpus else ""
    if res.world_size > 1:
        gpus += f", {res.nodes} node{'s' if res.nodes != 1 else ''} × {res.tasks} tasks"
    return f"{format_time(res.time_min)}, {res.cpus} cpu{'s' if res.cpus != 1 else ''}, {res.mem_mb}M{gpus}"


def _resource_problems(p: Partition, res: Resources, groups: set[str] | None) -> list[str]:
    """Why `p` cannot take a job of `res`, leaving time aside."""
    problems = []
    if not p.up:
        problems.append(f"State={p.state}")
    node_cpus = res.cpus * res.tasks  # every task of a node gets `cpus`
    if p.max_cpus_per_node and node_cpus > p.max_cpus_per_node:
        asked = f"{res.tasks} tasks × {res.cpus} cpus" if res.tasks > 1 else f"{res.cpus}"
        problems.append(f"{p.max_cpus_per_node} cpus per node < {asked} asked")
    if res.nodes > p.nodes:
        problems.append(f"{p.nodes} node{'s' if p.nodes != 1 else ''} < {res.nodes} asked")
    elif p.max_nodes is not None and res.nodes > p.max_nodes:
        problems.append(f"MaxNodes={p.max_nodes} < {res.nodes} asked")
    if p.mem_per_node_mb is not None and res.mem_mb > p.mem_per_node_mb:
        problems.append(f"{p.mem_per_node_mb}M memory per node < {res.mem_mb}M asked")
    if res.gpus > p.gpus_per_node:
        problems.append(f"{p.gpus_per_node} gpus per node < {res.gpus} asked")
    if groups is not None and p.allow_groups.upper() != "ALL":
        allowed = {g.strip() for g in p.allow_groups.split(",")}
        if not allowed & groups:
            problems.append(f"AllowGroups={p.allow_groups} (you are in none)")
    return problems


def _time_ok(p: Partition, minutes: int) -> bool:
    return p.max_time_min is None or minutes <= p.max_time_min


def _time_note(p: Partition, minutes: int) -> str:
    sign = ">=" if _time_ok(p, minutes) else "<"
    return f"MaxTime {p.max_time} {sign} {format_time(minutes)} asked"


def _rank(p: Partition) -> tuple:
    """Soonest start first: shortest MaxTime, then higher PriorityTier, then the default one, then name."""
    return (math.inf if p.max_time_min is None else p.max_time_min, -p.priority_tier, not p.is_default, p.name)


def choose_partition(partitions: list[Partition], res: Resources, *,
                     groups: set[str] | None = None) -> Choice:
    """The partition a run of `res` should go to, and why; raises NoFit when none can take it.

    Rules:
    1. A partition is a candidate when it is UP, its nodes offer the run's cpus, memory (per node) and
       gpus, its AllowGroups admits the user (`groups`; default: the current user's groups), and its
       MaxTime admits `res.time_min`.
    2. A partition whose own jobs can be preempted — PreemptMode not OFF and another partition with a
       higher PriorityTier — is chosen only when named or with `res.preemptible`; partitions that
       preempt others are ordinary choices.
    3. Among candidates, the one that should start soonest: the shortest MaxTime that fits (short
       queues get backfilled first), then the higher PriorityTier (scheduled first), then the
       cluster's default partition, then the name.
    4. `res.partition` set: only that one is checked (it may be a preempting one); if it does not exist
       or cannot take the run, NoFit says why and which partitions would.
    5. Segments (chunking). Each job asks `res.time_min` (the wall time of one job, one segment when
       chunked). When `res.total_time_min` exceeds it, the run is `ceil(total / time)` segments that
       requeue themselves until done. When `res.time_min` exceeds every candidate's MaxTime:
       with `res.chunk`, the segment is the longest MaxTime among partitions that fit otherwise
       (the run needs `ceil(max(time, total) / segment)` of them); without, NoFit names each
       partition's MaxTime and suggests `--chunk`.
    `Choice.time_min` is what each job asks; `Choice.segments` how many jobs the run needs.
    """
    if groups is None:
        groups = _user_groups()
    total = max(res.time_min, res.total_time_min or 0)
    named = res.partition

    if not partitions:
        raise NoFit("Slurm reports no partitions", [])

    if named is not None:
        return _check_named(partitions, res, named, groups, total)

    verdicts: list[Verdict] = []
    fitting: list[Partition] = []
    time_only: list[Partition] = []  # fit everything but the time
    for p in partitions:
        problems = _resource_problems(p, res, groups)
        if _at_risk(p, partitions) and not res.preemptible:
            verdicts.append(Verdict(p, False, f"its jobs can be preempted (PreemptMode={p.preempt_mode}, "
                                              f"PriorityTier {p.priority_tier}): used only when named or with "
                                              "preemptible = true" + (f"; {'; '.join(problems)}" if problems else "")))
            continue
        if problems:
            verdicts.append(Verdict(p, False, "; ".join(problems + ([_time_note(p, res.time_min)]
                                                                    if not _time_ok(p, res.time_min) else []))))
            continue
        if _time_ok(p, res.time_min):
            fitting.append(p)
            verdicts.append(Verdict(p, True, _time_note(p, res.time_min)))
        else:
            time_only.append(p)
            verdicts.append(Verdict(p, False, _time_note(p, res.time_min)))

    if fitting:
        best = min(fitting, key=_rank)
        segments = math.ceil(total / res.time_min)
        why = _why(best, fitting, res)
        if segments > 1:
            why += f"; {format_time(total)} in {segments} segments of {format_time(res.time_min)}"
        return Choice(best, why, verdicts, segments, res.time_min)

    if time_only and res.chunk:
        # The time fits nowhere: segments of the longest MaxTime that exists.
        best = max(time_only, key=lambda p: (p.max_time_min or 0, p.priority_tier, p.is_default))
        seg = best.max_time_min or res.time_min
        segments = math.ceil(total / seg)
        why = (f"{best.name}: no partition allows {format_time(res.time_min)}; chunked into {segments} "
               f"segments of {format_time(seg)} (its MaxTime, the longest)")
        return Choice(best, why, verdicts, segments, seg)

    limits = "; ".join(f"{v.partition.name}: {v.reason}" for v in verdicts)
    hint = (" — use --chunk to run in segments that fit, or ask less time" if time_only
            else " — ask fewer resources")
    raise NoFit(f"no partition fits {_asked(res)} ({limits}){hint}", verdicts)


def _why(best: Partition, fitting: list[Partition], res: Resources) -> str:
    others = [p for p in fitting if p is not best]
    if not others:
        return f"{best.name}: the only partition that fits {_asked(res)} ({_time_note(best, res.time_min)})"
    runner_up = min(others, key=_rank)
    if (best.max_time_min or math.inf) < (runner_up.max_time_min or math.inf):
        basis = f"shortest MaxTime that fits ({best.max_time} >= {format_time(res.time_min)} asked)"
    elif best.priority_tier > runner_up.priority_tier:
        basis = f"higher PriorityTier ({best.priority_tier}) among those with MaxTime {best.max_time}"
    elif best.is_default and not runner_up.is_default:
        basis = f"the default partition among those with MaxTime {best.max_time}"
    else:
        basis = f"first by name among equals (MaxTime {best.max_time})"
    return f"{best.name}: {basis}"


def _check_named(partitions: list[Partition], res: Resources, named: str, groups: set[str],
                 total: int) -> Choice:
    by_name = {p.name: p for p in partitions}
    p = by_name.get(named)
    if p is None:
        raise NoFit(f"partition {named!r} does not exist (partitions: "
                    f"{', '.join(f'{q.name} MaxTime {q.max_time}' for q in partitions)})", [])
    problems = _resource_problems(p, res, groups)
    time_ok = _time_ok(p, res.time_min)
    verdicts = [Verdict(p, not problems and time_ok, "; ".join(problems + [_time_note(p, res.time_min)]))]
    verdicts += [Verdict(q, False, "not named") for q in partitions if q is not p]
    if problems or (not time_ok and not res.chunk):
        alternatives = []
        for q in partitions:
            if (q.name != named and not _resource_problems(q, res, groups) and _time_ok(q, res.time_min)
                    and not (_at_risk(q, partitions) and not res.preemptible)):
                alternatives.append(q)
        alt = (f"; fits: {', '.join(q.name + ' (MaxTime ' + q.max_time + ')' for q in sorted(alternatives, key=_rank))}"
               if alternatives else "")
        hint = " — use --chunk to run in segments, or another partition" if not problems else ""
        raise NoFit(f"partition {named!r} cannot take {_asked(res)}: {verdicts[0].reason}{alt}{hint}", verdicts)
    if time_ok:
        segments = math.ceil(total / res.time_min)
        why = f"{named}: named ({_time_note(p, res.time_min)})"
        if segments > 1:
            why += f"; {format_time(total)} in {segments} segments of {format_time(res.time_min)}"
        return Choice(p, why, verdicts, segments, res.time_min)
    seg = p.max_time_min or res.time_min
    segments = math.ceil(total / seg)
    why = f"{named}: named; MaxTime {p.max_time} < {format_time(res.time_min)}: {segments} segments of {format_time(seg)}"
    return Choice(p, why, verdicts, segments, seg)
