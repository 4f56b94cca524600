"""How many of a sweep's jobs the user's job limits leave room for now, and what waits.

Slurm refuses a whole array when it would take the user past a QoS's MaxSubmitPU or an association's
MaxSubmit (`QOSMaxSubmitJobPerUserLimit`), and MaxJobsPU / MaxJobs hold the surplus pending. So a
submission sends, in order, only the runs that the tightest of those limits leaves room for — counting
the user's jobs already queued or running (`ClusterFacts.queued_jobs`, one squeue read with the facts)
and one job for the feeder when anything is left to wait — and records the rest as waiting.
Pure: no subprocess.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from jobkit.plan.clusterfacts import ClusterFacts


@dataclass
class Room:
    """Free job slots per limit: key ("qos", name) or ("account", name) -> (free slots, what limits it)."""

    free: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)

    def keys_of(self, qos: str | None, account: str | None) -> list[tuple[str, str]]:
        return [k for k in (("qos", qos or ""), ("account", account or "")) if k in self.free]

    def without(self, slots: int) -> "Room":
        """The same room less `slots` under every limit (the feeder's own job)."""
        return Room({k: (n - slots, why) for k, (n, why) in self.free.items()})


def room_of(facts: ClusterFacts | None) -> Room:
    """The free slots under every per-user job limit that applies, now (live facts only: a saved
    profile knows no queue, so its room is the whole limit)."""
    room = Room()
    if facts is None:
        return room
    for name, q in facts.qos.items():
        caps = [(v, f"QoS {name} {what}") for v, what in ((q.max_submit_pu, "MaxSubmitPU"), (q.max_jobs_pu, "MaxJobsPU"))
                if v is not None]
        if caps:
            limit, what = min(caps)
            queued = facts.queued_jobs.get(name, 0)
            room.free[("qos", name)] = (limit - queued, f"{what} {limit}, {queued} of yours queued or running")
    for a in facts.associations:
        caps = [(v, f"association {a.account} {what}") for v, what in ((a.max_submit, "MaxSubmit"), (a.max_jobs, "MaxJobs"))
                if v is not None]
        if caps:
            limit, what = min(caps)
            key = ("account", a.account)
            if key not in room.free or limit - facts.queued_by_account.get(a.account, 0) < room.free[key][0]:
                queued = facts.queued_by_account.get(a.account, 0)
                room.free[key] = (limit - queued, f"{what} {limit}, {queued} of yours queued or running")
    return room


def admit(room: Room, wanted: Sequence[tuple[str | None, str | None]], feeder: bool = True) -> tuple[list[bool], str]:
    """Which of the jobs `wanted` ((qos, account) each, in submission order) go now; the others wait.
    When any must wait and `feeder` is on, one slot under every limit is kept for the feeder's job.
    Returns the verdicts and, when some wait, the limit that held them (one line)."""
    verdicts, why = _greedy(room, wanted)
    if feeder and not all(verdicts):
        verdicts, why = _greedy(room.without(1), wanted)
    return verdicts, why


def _greedy(room: Room, wanted: Sequence[tuple[str | None, str | None]]) -> tuple[list[bool], str]:
    free = {k: n for k, (n, _) in room.free.items()}
    out, why = [], ""
    for qos, account in wanted:
        keys = room.keys_of(qos, account)
        full = [k for k in keys if free[k] <= 0]
        if full:
            out.append(False)
            why = why or room.free[full[0]][1]
            continue
        for k in keys:
            free[k] -= 1
        out.append(True)
    return out, why
