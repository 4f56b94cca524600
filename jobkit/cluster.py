"""The cluster's partitions, read live from Slurm, and the choice of one for a run.

`read_partitions()` runs `scontrol show partition -o` (and `scontrol show node -o` for per-node sizes);
`parse_partitions()` turns that text into `Partition`s; `choose_partition()` picks the partition a run
should go to and says why, or raises `NoFit` naming every partition's limit.
"""
from __future__ import annotations

import grp
import math
import os
import pwd
import re
import subprocess
from dataclasses import dataclass
from typing import Iterable

from .slurmtime import format_time, parse_mem, parse_time
from .spec import Resources

__all__ = ["Partition", "ClusterError", "NoFit", "Verdict", "Choice",
           "parse_partitions", "read_partitions", "choose_partition"]


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

    def to_json(self) -> dict:
        return {
            "name": self.name, "state": self.state, "default": self.is_default,
            "max_time": self.max_time, "max_time_min": self.max_time_min,
            "default_time": None if self.default_time_min is None else format_time(self.default_time_min),
            "priority_tier": self.priority_tier, "nodes": self.nodes, "total_cpus": self.total_cpus,
            "max_cpus_per_node": self.max_cpus_per_node, "mem_per_node_mb": self.mem_per_node_mb,
            "gpus_per_node": self.gpus_per_node, "preempt_mode": self.preempt_mode,
            "grace_time_s": self.grace_time_s, "allow_accounts": self.allow_accounts,
            "allow_groups": self.allow_groups, "allow_qos": self.allow_qos,
        }


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


# ------------------------------------------------------------------------------------------- parsing

def _fields(line: str) -> dict[str, str]:
    """`Key=Value Key2=a=b,c=d` -> dict; a token without '=' continues the previous value."""
    out: dict[str, str] = {}
    last = None
    for token in line.split():
        key, eq, value = token.partition("=")
        if eq and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key):
            out[key] = value
            last = key
        elif last is not None:
            out[last] += " " + token
    return out


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _limit(value: str | None) -> int | None:
    """An integer limit, None for UNLIMITED/NONE/absent/0-as-unset."""
    if value is None or value.strip().upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A", ""):
        return None
    n = _int(value, -1)
    return n if n > 0 else None


def _time(value: str | None) -> int | None:
    if value is None or value.strip().upper() in ("NONE", "N/A", ""):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _mem(value: str | None) -> int | None:
    if value is None:
        return None
    v = value.strip()
    if v.upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A", "0", ""):
        return None
    try:
        return parse_mem(v)
    except ValueError:
        return None


def parse_tres(text: str | None) -> dict[str, str]:
    """`cpu=2,mem=21694M,node=1,billing=2,gres/gpu=4` -> {'cpu': '2', 'mem': '21694M', ...}."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        key, eq, value = part.strip().partition("=")
        if eq and key:
            out[key] = value
    return out


def tres_gpus(tres: dict[str, str]) -> int:
    """GPUs in a TRES dict: `gres/gpu=N`, else the sum of typed `gres/gpu:TYPE=N`."""
    if "gres/gpu" in tres:
        return _int(tres["gres/gpu"])
    return sum(_int(v) for k, v in tres.items() if k.startswith("gres/gpu:"))


def gres_gpus(text: str | None) -> int:
    """GPUs in a node's Gres: `gpu:4`, `gpu:a100:4(S:0-1)`, `gpu:a100:2,gpu:v100:2`, `(null)`."""
    total = 0
    for item in re.split(r",(?![^(]*\))", text or ""):
        item = re.sub(r"\(.*?\)", "", item).strip()
        parts = item.split(":")
        if parts and parts[0] == "gpu":
            count = parts[-1] if len(parts) > 1 else "1"
            total += _int(count.split("(")[0], 1 if len(parts) == 1 else 0)
    return total


@dataclass
class _NodeSize:
    cpus: int = 0
    mem_mb: int | None = None
    gpus: int = 0


def _node_sizes(text: str) -> dict[str, _NodeSize]:
    """Per partition: the largest CPUs, memory and GPUs one of its nodes offers (`scontrol show node -o`)."""
    sizes: dict[str, _NodeSize] = {}
    for line in text.splitlines():
        f = _fields(line)
        if "NodeName" not in f:
            continue
        tres = parse_tres(f.get("CfgTRES"))
        cpus = _int(tres.get("cpu"), _int(f.get("CPUTot")))
        mem = _mem(tres.get("mem")) or _mem(f.get("RealMemory"))
        gpus = tres_gpus(tres) if tres else gres_gpus(f.get("Gres"))
        for name in (f.get("Partitions") or "").split(","):
            if not name or name == "(null)":
                continue
            s = sizes.setdefault(name, _NodeSize())
            s.cpus = max(s.cpus, cpus)
            if mem is not None:
                s.mem_mb = max(s.mem_mb or 0, mem)
            s.gpus = max(s.gpus, gpus)
    return sizes


def parse_partitions(text: str, nodes_text: str | None = None) -> list[Partition]:
    """Partitions from `scontrol show partition -o` (one line of `Key=Value` pairs per partition).

    Per-node sizes (CPUs, memory, GPUs) come from the partition's TRES divided by its node count —
    exact for homogeneous partitions. Pass `nodes_text` (`scontrol show node -o`) to use the largest
    node of each partition instead. `MaxCPUsPerNode` and `MaxMemPerNode` cap them.
    """
    nodes = _node_sizes(nodes_text) if nodes_text else {}
    out: list[Partition] = []
    for line in text.splitlines():
        f = _fields(line)
        name = f.get("PartitionName")
        if not name:
            continue
        tres = parse_tres(f.get("TRES"))
        n_nodes = max(1, _int(f.get("TotalNodes"), _int(tres.get("node"), 1)))
        total_cpus = _int(f.get("TotalCPUs"), _int(tres.get("cpu")))
        size = nodes.get(name)
        cpus = size.cpus if size and size.cpus else total_cpus // n_nodes
        tres_mem = _mem(tres.get("mem"))
        mem = size.mem_mb if size and size.mem_mb else (tres_mem // n_nodes if tres_mem else None)
        gpus = size.gpus if size is not None else tres_gpus(tres) // n_nodes
        cap_cpus = _limit(f.get("MaxCPUsPerNode"))
        if cap_cpus is not None:
            cpus = min(cpus, cap_cpus) if cpus else cap_cpus
        cap_mem = _mem(f.get("MaxMemPerNode"))
        if cap_mem is not None:
            mem = min(mem, cap_mem) if mem else cap_mem
        out.append(Partition(
            name=name,
            state=(f.get("State") or "UNKNOWN").upper(),
            is_default=(f.get("Default") or "NO").upper() == "YES",
            max_time_min=_time(f.get("MaxTime")),
            default_time_min=_time(f.get("DefaultTime")),
            priority_tier=_int(f.get("PriorityTier"), 1),
            nodes=_int(f.get("TotalNodes"), n_nodes),
            total_cpus=total_cpus,
            max_cpus_per_node=cpus,
            mem_per_node_mb=mem,
            gpus_per_node=gpus,
            preempt_mode=(f.get("PreemptMode") or "OFF").upper(),
            grace_time_s=_int(f.get("GraceTime")),
            allow_accounts=f.get("AllowAccounts", "ALL"),
            allow_groups=f.get("AllowGroups", "ALL"),
            allow_qos=f.get("AllowQos", "ALL"),
            max_nodes=_limit(f.get("MaxNodes")),
        ))
    return out


# ------------------------------------------------------------------------------------------- reading

def _check_conf() -> None:
    """Slurm's clients retry a missing config file for a minute: say so at once instead."""
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.exists(conf):
        raise ClusterError(f"SLURM_CONF={conf} does not exist: is the cluster up? (slurm/up.sh prints the path)")
    default = "/etc/slurm/slurm.conf"
    if not conf and os.path.islink(default) and not os.path.exists(default):
        raise ClusterError(f"{default} points to {os.readlink(default)}, which does not exist: "
                           "start the cluster (slurm/up.sh) or use --executor local")


def _scontrol(args: list[str], timeout: float) -> str:
    argv = ["scontrol", *args]
    _check_conf()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ClusterError("scontrol not found: is Slurm installed? "
                           "Run slurm/up.sh or use --executor local") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`{' '.join(argv)}` did not answer in {timeout:g} s: is slurmctld running? "
                           "(slurm/up.sh, or --executor local)") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        raise ClusterError(f"`{' '.join(argv)}` failed: {detail}")
    return proc.stdout


def read_partitions(timeout: float = 10) -> list[Partition]:
    """The cluster's partitions, now. Raises ClusterError with a one-line message."""
    text = _scontrol(["show", "partition", "-o"], timeout)
    try:
        nodes_text = _scontrol(["show", "node", "-o"], timeout)
    except ClusterError:
        nodes_text = None  # per-node sizes then come from the partitions' TRES
    parts = parse_partitions(text, nodes_text)
    if not parts:
        raise ClusterError("Slurm reports no partitions (`scontrol show partition -o` printed none)")
    return parts


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


def _preempting(p: Partition, partitions: Iterable[Partition]) -> bool:
    """True when `p` exists to preempt others: some partition with a lower PriorityTier can be preempted."""
    return any(q.name != p.name and q.priority_tier < p.priority_tier and q.preempt_mode != "OFF"
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
    2. Partitions that exist to preempt others — a higher PriorityTier than some partition whose
       PreemptMode is not OFF (e.g. `preempt` here) — are never chosen unless named
       (`res.partition`): sending every run there would evict other people's jobs.
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
        if _preempting(p, partitions):
            verdicts.append(Verdict(p, False, f"preempts other partitions (PriorityTier {p.priority_tier}): "
                                              "used only when named"
                                              + (f"; {'; '.join(problems)}" if problems else "")))
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
                    and not _preempting(q, partitions)):
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
