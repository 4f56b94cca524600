"""The limits that bind a job, named with their value and source, and the QoS chosen to satisfy them.

- Wall limit = the smallest of the partition's MaxTime, the job QoS's MaxWall, the partition QoS's
  MaxWall and the association's MaxWall; `Limit.source` says which binds, so a refusal blames the
  QoS when the QoS is the cause ("QoS normal MaxWall 1-00:00:00 < 3-00:00:00 asked (partition gpu
  allows 2-00:00:00)").
- QoS: among those the association grants and the partition allows: the default QoS when its limit
  admits the time; else the granted QoS with the shortest MaxWall that does (a longer QoS when the
  run needs it and the user has it); none admitting it: the longest (a chunked run's segments).
- Per user: a job's GPUs against the tightest of the QoS's MaxTRES and MaxTRESPU and the association's
  MaxTRES `gres/gpu`. A sweep's job count against MaxSubmitPU/MaxJobsPU and MaxSubmit/MaxJobs is
  `jobkit.plan.room`'s: what does not fit now waits, it is not refused.
Pure: no subprocess.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from jobkit.plan.choose import Partition
from jobkit.plan.clusterfacts import Association, ClusterFacts
from jobkit.plan.slurmtext import _int, parse_tres
from jobkit.plan.slurmtime import format_time


@dataclass(frozen=True)
class Limit:
    minutes: int | None  # None: unlimited
    source: str  # "partition gpu MaxTime", "QoS normal MaxWall", "association physics MaxWall", ...

    def admits(self, minutes: int) -> bool:
        return self.minutes is None or minutes <= self.minutes

    @property
    def text(self) -> str:
        return format_time(self.minutes)


def qos_wall(facts: ClusterFacts, name: str | None) -> int | None:
    q = facts.qos.get(name) if name else None
    return q.max_wall_min if q else None


def binding_limit(facts: ClusterFacts, p: Partition, qos: str | None, assoc: Association | None) -> Limit:
    """The smallest wall limit on a job of `p` under `qos`, and where it comes from (ties: the partition)."""
    part_qos = facts.access_of(p.name).qos
    candidates = [Limit(p.max_time_min, f"partition {p.name} MaxTime")]
    if qos:
        candidates.append(Limit(qos_wall(facts, qos), f"QoS {qos} MaxWall"))
    if part_qos and part_qos != qos:
        candidates.append(Limit(qos_wall(facts, part_qos), f"partition QoS {part_qos} MaxWall"))
    if assoc is not None:
        candidates.append(Limit(assoc.max_wall_min, f"association {assoc.account} MaxWall"))
    real = [c for c in candidates if c.minutes is not None]
    return min(real, key=lambda c: c.minutes) if real else candidates[0]


def time_refusal(limit: Limit, p: Partition, minutes: int) -> str:
    """`MaxTime 1-00:00:00 < 3-00:00:00 asked`, or the QoS/association that binds below the partition."""
    asked = f"{limit.text} < {format_time(minutes)} asked"
    if limit.source.startswith("partition ") and limit.source.endswith(" MaxTime"):
        return f"MaxTime {asked}"
    return f"{limit.source} {asked} (partition {p.name} allows {p.max_time})"


def pick_qos(facts: ClusterFacts, allowed: set[str], default: str | None, limit_of, minutes: int) -> str | None:
    """The QoS a job of `minutes` gets among `allowed` (`limit_of(q)` -> Limit); None: the partition is
    reserved to a QoS other than the user's default (used only when that QoS is asked for)."""
    def wall(q: str) -> float:
        w = qos_wall(facts, q)
        return math.inf if w is None else w

    if default and default in allowed and limit_of(default).admits(minutes):
        return default
    if default and default not in allowed and wall(default) >= minutes:
        return None
    fitting = [q for q in allowed if limit_of(q).admits(minutes)]
    if fitting:
        return min(fitting, key=lambda q: (wall(q), q))
    return max(allowed, key=lambda q: (wall(q), q)) if allowed else None


def gpu_limit(facts: ClusterFacts, qos: str | None, assoc: Association | None = None) -> tuple[int, str] | None:
    """The smallest of QoS `qos`'s MaxTRES (per job) and MaxTRESPU (per user) gres/gpu and the association's
    MaxTRES (per job), and where it comes from."""
    q = facts.qos.get(qos) if qos else None
    found = []
    for text, what in ((q.max_tres, f"QoS {q.name} MaxTRES"), (q.max_tres_pu, f"QoS {q.name} MaxTRESPU")) if q else ():
        tres = parse_tres(text)
        if "gres/gpu" in tres:
            found.append((_int(tres["gres/gpu"]), f"{what} gres/gpu={tres['gres/gpu']}"))
    if assoc is not None and assoc.max_gpus() is not None:
        found.append((assoc.max_gpus(), f"association {assoc.account} MaxTRES gres/gpu={assoc.max_gpus()}"))
    return min(found) if found else None
