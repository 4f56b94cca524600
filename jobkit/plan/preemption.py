"""Whether a job placed in a partition (under a QoS) can be preempted — Slurm's rules, not a layout's shape.

- `preempt/none`: nothing is preempted.
- `preempt/partition_prio`: a job is at risk in partition P when P's PreemptMode is not OFF and
  another partition with a higher PriorityTier shares nodes with P (its jobs may take those nodes).
  The high-tier partitions themselves are ordinary, safe places (a site's `scavenger` is the low one).
- `preempt/qos`: a job is at risk when the QoS it runs under (its own, or the partition's QoS) is in
  another QoS's `Preempt` list and its PreemptMode (else the partition's, i.e. the cluster's) is not OFF.
See https://slurm.schedmd.com/preempt.html. Pure: judged from `ClusterFacts`.
"""
from __future__ import annotations

from jobkit.plan.choose import Partition
from jobkit.plan.clusterfacts import ClusterFacts


def _nodes(facts: ClusterFacts, p: Partition) -> set[str] | None:
    names = set(facts.access_of(p.name).node_names)
    if not names:
        names = {n for t in facts.node_types if p.name in t.partitions for n in t.names}
    return names or None


def _shares_nodes(facts: ClusterFacts, a: Partition, b: Partition) -> bool:
    na, nb = _nodes(facts, a), _nodes(facts, b)
    return True if na is None or nb is None else bool(na & nb)  # unknown: assume they share


def preemption_risk(facts: ClusterFacts, p: Partition, qos: str | None) -> str | None:
    """Why a job in `p` under `qos` can be preempted ("" never returned), or None when it cannot."""
    kind = facts.preempt_type
    if kind == "preempt/partition_prio":
        if p.preempt_mode.upper() == "OFF":
            return None
        higher = [q.name for q in facts.partitions
                  if q.name != p.name and q.priority_tier > p.priority_tier and _shares_nodes(facts, p, q)]
        if higher:
            return (f"its jobs can be preempted (PreemptMode={p.preempt_mode}, PriorityTier {p.priority_tier} "
                    f"below {', '.join(higher)} on shared nodes)")
        return None
    if kind == "preempt/qos":
        names = [n for n in (qos, facts.access_of(p.name).qos) if n]
        for name in names:
            by = sorted(q.name for q in facts.qos.values() if name in q.preempt and q.name != name)
            mode = (facts.qos[name].preempt_mode if name in facts.qos else "") or p.preempt_mode
            if by and mode.upper() != "OFF":
                return f"its jobs can be preempted (QoS {name} is preemptable by {', '.join(by)})"
    return None
