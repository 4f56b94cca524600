"""Node-level fit: does a partition have `nodes` usable nodes that EACH offer everything a job asks at once?

Slurm places a job on nodes, not on a partition's largest attributes: a request for one a100 and 48
CPUs needs one node with both, not an a100 node plus another node with 48 cores. So a partition fits
when at least `res.nodes` of its nodes are usable (state not DOWN/DRAIN/FAIL/...; POWERED_DOWN nodes
count, Slurm powers them up), not excluded, and each has: the GPU count of the asked type, `cpus ×
tasks_per_node` CPUs, `mem` memory (both capped by the partition's MaxCPUsPerNode/MaxMemPerNode), and
the asked features.

A GPU type may be a GRES type (`Gres=gpu:a100:4`) or, at sites whose GRES are untyped, a node feature
(`Gres=gpu:4 Features=a100`): a typed request then fits through the feature, and the job must ask
`--gpus-per-node=N --constraint=TYPE` instead of `a100:N` (`Fit.gpu_feature`).

Pure: judged from `ClusterFacts.node_types` (no subprocess).
"""
from __future__ import annotations

from dataclasses import dataclass

from jobkit.plan.choose import Partition
from jobkit.plan.clusterfacts import ClusterFacts, NodeType
from jobkit.plan.slurmvalues import constraint_terms, expand_nodes
from jobkit.plan.spec import Resources

# Node state words (base state or +FLAG) that keep new jobs off a node.
UNUSABLE = {"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING", "INVAL", "FUTURE", "NOT_RESPONDING",
            "UNKNOWN_NOT_RESPONDING", "REBOOT_ISSUED", "POWERING_DOWN"}


@dataclass(frozen=True)
class Fit:
    ok: bool
    reason: str  # "fits 8 of 24 nodes (gpu-a100-01..08)" or why not
    nodes: tuple[str, ...] = ()  # the nodes that fit
    gpu_feature: bool = False  # the GPU type is matched by a node feature, not a GRES type
    gpu_only: bool = False  # every usable node of the partition has GPUs
    gpu_some: bool = False  # some usable node of the partition has GPUs (mixed when not gpu_only)
    known: bool = True  # False: no node facts for this partition (judged from its sizes alone)


def usable(node: NodeType) -> bool:
    words = {w.rstrip("*~#!%$@^-") for w in node.state.upper().replace("+", " ").split()}
    return not (words & UNUSABLE) and not node.state.endswith("*")


def nodes_of(facts: ClusterFacts, p: Partition) -> list[NodeType]:
    """The node types of `p`: by the nodes' Partitions field, else by the partition's node list."""
    types = facts.nodes_of(p.name)
    if types:
        return types
    names = set(facts.access_of(p.name).node_names)
    return [t for t in facts.node_types if names & set(t.names)] if names else []


def _features_ok(features: set[str], expr: str | None) -> bool:
    return expr is None or any(term <= features for term in constraint_terms(expr))


def _gpus_ok(node: NodeType, res: Resources) -> tuple[bool, bool]:
    """(fits, through a feature)."""
    if not res.gpus:
        return True, False
    if res.gpu_type is None:
        return node.gpu_count() >= res.gpus, False
    if node.gpu_count(res.gpu_type) >= res.gpus:
        return True, False
    if res.gpu_type in node.features and node.gpu_count("") >= res.gpus:
        return True, True
    return False, False


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{names[0]}, {names[1]}, … {names[-1]}"


def node_fit(facts: ClusterFacts, p: Partition, res: Resources) -> Fit:
    """Whether `p` has enough nodes that each take one node's share of `res`; the reason names them."""
    types = nodes_of(facts, p)
    if not types:
        return _size_fit(p, res)
    excluded = set(expand_nodes(res.exclude)) if res.exclude else set()
    up = [t for t in types if usable(t)]
    pool = [(t, [n for n in t.names if n not in excluded]) for t in up]
    pool = [(t, names) for t, names in pool if names]
    gpu_only = bool(pool) and all(t.gpu_count() > 0 for t, _ in pool)
    gpu_some = any(t.gpu_count() > 0 for t, _ in pool)
    total = sum(len(t.names) for t in types)
    if not pool:
        why = "every node is down or drained" if not up else f"every node excluded ({res.exclude})"
        return Fit(False, why, gpu_only=gpu_only, gpu_some=gpu_some)
    cpus_needed = res.cpus * res.tasks
    fitting: list[str] = []
    via_feature = False
    for t, names in pool:
        cpus = min(t.cpus, p.max_cpus_per_node) if p.max_cpus_per_node else t.cpus
        mem = t.mem_mb if p.mem_per_node_mb is None or t.mem_mb is None else min(t.mem_mb, p.mem_per_node_mb)
        gpus_ok, feature = _gpus_ok(t, res)
        if (cpus >= cpus_needed and (mem is None or mem >= res.mem_mb) and gpus_ok
                and _features_ok(set(t.features), res.constraint)):
            fitting.extend(names)
            via_feature = via_feature or feature
    if len(fitting) >= res.nodes and fitting:
        return Fit(True, f"fits {len(fitting)} of {total} nodes ({_names(fitting)})", tuple(fitting), via_feature,
                   gpu_only, gpu_some)
    if fitting:
        return Fit(False, f"only {len(fitting)} node{'s' if len(fitting) != 1 else ''} fit ({_names(fitting)}) "
                          f"< {res.nodes} asked", tuple(fitting), gpu_only=gpu_only,
                   gpu_some=gpu_some)
    return Fit(False, _why_not(p, [t for t, _ in pool], res), gpu_only=gpu_only, gpu_some=gpu_some)


def _why_not(p: Partition, pool: list[NodeType], res: Resources) -> str:
    """The first demand no usable node meets, or that no single node meets them all."""
    cpus_needed = res.cpus * res.tasks
    if res.gpus and not any(t.gpu_count() for t in pool):
        return f"0 gpus per node < {res.gpus_text} asked"
    if res.gpus and not any(_gpus_ok(t, res)[0] for t in pool):
        kinds = sorted({k or "untyped" for t in pool for k, _ in t.gpus})
        most = max((t.gpu_count(res.gpu_type) if res.gpu_type else t.gpu_count() for t in pool), default=0)
        what = f"{res.gpus} {res.gpu_type} GPUs" if res.gpu_type else f"{res.gpus} GPUs"
        return (f"no node with {what} (GPU types here: {', '.join(kinds) or 'none'}"
                + (f"; at most {most} per node" if most else "") + ")")
    cap_cpus = lambda t: min(t.cpus, p.max_cpus_per_node) if p.max_cpus_per_node else t.cpus  # noqa: E731
    if not any(cap_cpus(t) >= cpus_needed for t in pool):
        asked = f"{res.tasks} tasks × {res.cpus} cpus" if res.tasks > 1 else f"{res.cpus}"
        return f"{max(cap_cpus(t) for t in pool)} cpus per node < {asked} asked"
    mems = [t.mem_mb if p.mem_per_node_mb is None or t.mem_mb is None else min(t.mem_mb, p.mem_per_node_mb)
            for t in pool]
    if all(m is not None and m < res.mem_mb for m in mems):
        return f"{max(m for m in mems if m is not None)}M memory per node < {res.mem_mb}M asked"
    if res.constraint and not any(_features_ok(set(t.features), res.constraint) for t in pool):
        feats = sorted({f for t in pool for f in t.features})
        return f"no node with features {res.constraint} (features here: {', '.join(feats) or 'none'})"
    gpu = f"{res.gpus_text} gpus, " if res.gpus else ""
    return (f"no single node has {gpu}{cpus_needed} cpus, {res.mem_mb}M"
            + (f" and {res.constraint}" if res.constraint else "") + " at once")


def _size_fit(p: Partition, res: Resources) -> Fit:
    """No node facts (a partition-only profile): judge from the partition's largest node."""
    problems = []
    node_cpus = res.cpus * res.tasks
    if p.max_cpus_per_node and node_cpus > p.max_cpus_per_node:
        problems.append(f"{p.max_cpus_per_node} cpus per node < {node_cpus} asked")
    if res.nodes > p.nodes:
        problems.append(f"{p.nodes} node{'s' if p.nodes != 1 else ''} < {res.nodes} asked")
    if p.mem_per_node_mb is not None and res.mem_mb > p.mem_per_node_mb:
        problems.append(f"{p.mem_per_node_mb}M memory per node < {res.mem_mb}M asked")
    if res.gpus > p.gpus_per_node:
        problems.append(f"{p.gpus_per_node} gpus per node < {res.gpus} asked")
    if problems:
        return Fit(False, "; ".join(problems), gpu_only=p.gpus_per_node > 0, gpu_some=p.gpus_per_node > 0,
                   known=False)
    return Fit(True, f"{p.nodes} node{'s' if p.nodes != 1 else ''}", gpu_only=p.gpus_per_node > 0,
               gpu_some=p.gpus_per_node > 0, known=False)


def gpu_types(facts: ClusterFacts) -> list[str]:
    """GPU types a request may name: GRES types, and features of nodes whose GRES are untyped."""
    kinds = set(facts.gpu_types())
    kinds |= {f for t in facts.node_types if t.gpu_count("") > 0 for f in t.features}
    return sorted(kinds)


def feature_constraint(constraint: str | None, feature: str) -> str:
    """`constraint` AND `feature` as Slurm's flat expression (each `|` term gets the feature)."""
    if not constraint:
        return feature
    return "|".join(f"{term}&{feature}" for term in constraint.split("|"))
