"""Where a run goes on a real cluster: partition, account and QoS, from facts read once (no subprocess).

`cluster.choose_partition` knows sizes, MaxTime and preemption. This module adds what a university
cluster adds, then hands the partitions that remain to it with their *effective* time limits:

1. Account. The run's `account` (sweep, `--set`, else the site config's). With accounting, it must be
   one the user has an association with; without one given, the user's only account, or per partition
   the first of the user's accounts that may use it. A partition's AllowAccounts/DenyAccounts and the
   associations' Partition field decide whether the account may use it.
2. QoS. The QoS the user's association grants, limited by the partition's AllowQos/DenyQos. With
   `qos` given it must be one of them. Without: the association's default QoS when the partition
   allows it and its MaxWall admits the time; when the default QoS cannot admit the time, the allowed
   QoS with the shortest MaxWall that does; a partition that does not allow the default QoS (e.g. one
   open only to QoS `short`) is used only when that QoS is asked for — as Slurm itself would do.
3. Effective limit = min(partition MaxTime, QoS MaxWall, partition QoS MaxWall, association MaxWall);
   chunked runs are cut into segments of it.
4. Nodes: typed GPUs (`a100:1`) need a node of the partition whose GRES has that many of that type;
   `constraint` needs a node whose features satisfy it; `exclude`d nodes do not count; `nodes` must not
   exceed the partition's MaxNodes.
5. `never` (the site config's never_partitions) are not chosen unless named.
Requests no partition could ever satisfy (unknown account, QoS, GPU type or feature; too many nodes)
raise NoFit at once with one line naming what the cluster offers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable

from jobkit.plan.choose import Choice, NoFit, Partition, Verdict, _preempting, _user_groups, choose_partition
from jobkit.plan.clusterfacts import Association, ClusterFacts, NodeType
from jobkit.plan.slurmtime import format_time
from jobkit.plan.slurmvalues import constraint_terms, expand_nodes
from jobkit.plan.spec import Resources


@dataclass(frozen=True)
class Placement:
    choice: Choice
    account: str | None  # what --account gets (None: not passed)
    qos: str | None  # what --qos gets (None: not passed)

    @property
    def partition(self) -> str | None:
        return self.choice.partition.name if self.choice.partition else None


@dataclass(frozen=True)
class _Access:
    ok: bool
    problems: tuple[str, ...]
    account: str | None = None
    qos: str | None = None
    limit_min: int | None = None  # effective time limit
    note: str = ""  # e.g. "QoS short (MaxWall 00:05:00)"
    capped: bool = False  # the limit is below the partition's MaxTime


def _listed(text: str) -> set[str]:
    return {x.strip() for x in (text or "").split(",") if x.strip()}


def _allows(allow: str, deny: str, name: str | None) -> bool:
    if name is not None and name in _listed(deny):
        return False
    if not allow or allow.upper() == "ALL":
        return True
    return name is not None and name in _listed(allow)


def _minimum(*values: int | None) -> int | None:
    real = [v for v in values if v is not None]
    return min(real) if real else None


def check_request(facts: ClusterFacts, res: Resources) -> None:
    """Raise NoFit (one line, naming what the cluster accepts) for a request no partition can satisfy."""
    if facts.accounting:
        accounts = facts.accounts()
        if not accounts:
            raise NoFit("you have no Slurm association on this cluster (sacctmgr lists none for your user): "
                        "ask the cluster's administrators for an account")
        if res.account is not None and res.account not in accounts:
            raise NoFit(f"account {res.account!r}: you have no association with it; your accounts: "
                        f"{', '.join(accounts)}")
    if res.qos is not None and facts.qos and res.qos not in facts.qos:
        raise NoFit(f"qos {res.qos!r} does not exist; QoS on this cluster: {', '.join(sorted(facts.qos))}")
    if res.qos is not None and facts.accounting:
        granted = _granted(facts, res.account)
        if granted is not None and res.qos not in granted:
            who = f"account {res.account}" if res.account else "your accounts"
            raise NoFit(f"qos {res.qos!r} is not granted to {who}; granted: {', '.join(sorted(granted))}")
    if facts.node_types:
        if res.gpu_type is not None and res.gpu_type not in facts.gpu_types():
            types = ", ".join(facts.gpu_types()) or "none (untyped GPUs only: ask gpus = N)"
            raise NoFit(f"gpus {res.gpus_text!r}: no node has GPU type {res.gpu_type!r}; GPU types: {types}")
        if res.constraint is not None and not any(_features_ok(t, res.constraint) for t in facts.node_types):
            raise NoFit(f"constraint {res.constraint!r}: no node offers it; node features: "
                        f"{', '.join(facts.features()) or 'none'}")
    if res.nodes > 1:
        caps = {p.name: _max_nodes(facts, p) for p in facts.partitions}
        if all(c < res.nodes for c in caps.values()):
            raise NoFit(f"nodes {res.nodes}: above every partition's MaxNodes "
                        f"({', '.join(f'{n} {c}' for n, c in caps.items())})")


def _max_nodes(facts: ClusterFacts, p: Partition) -> int:
    cap = facts.access_of(p.name).max_nodes
    return min(cap, p.nodes) if cap else p.nodes


def _granted(facts: ClusterFacts, account: str | None) -> set[str] | None:
    """QoS the user's associations (of `account`, or all) grant; None when unknown."""
    assocs = [a for a in facts.associations if account is None or a.account == account]
    granted = {q for a in assocs for q in a.qos}
    return granted or None


def _features_ok(node: NodeType, expr: str) -> bool:
    have = set(node.features)
    return any(term <= have for term in constraint_terms(expr))


def _association(facts: ClusterFacts, account: str, partition: str) -> Association | None:
    """The user's association for this account on this partition (a partition-specific one first)."""
    best = None
    for a in facts.associations:
        if a.account != account:
            continue
        if a.partition == partition:
            return a
        if a.partition == "" and best is None:
            best = a
    return best


def _node_problems(facts: ClusterFacts, p: Partition, res: Resources) -> list[str]:
    """Typed GPUs, features, exclusions and node count, checked against the partition's node types."""
    problems = []
    cap = _max_nodes(facts, p)
    if res.nodes > cap:
        problems.append(f"MaxNodes {cap} < {res.nodes} nodes asked")
    types = facts.nodes_of(p.name)
    if not types or not (res.gpu_type or res.constraint or res.exclude):
        return problems
    excluded = set(expand_nodes(res.exclude)) if res.exclude else set()
    usable = [t for t in types if set(t.names) - excluded]
    if not usable:
        return problems + [f"every node excluded ({res.exclude})"]
    if res.gpu_type:
        kinds = sorted({k or "untyped" for t in usable for k, _ in t.gpus})
        with_type = [t for t in usable if t.gpu_count(res.gpu_type) >= res.gpus]
        if not with_type:
            have = max((t.gpu_count(res.gpu_type) for t in usable), default=0)
            problems.append(f"no node with {res.gpus} {res.gpu_type} GPUs (GPU types here: "
                            f"{', '.join(kinds) or 'none'}" + (f"; at most {have} {res.gpu_type}" if have else "")
                            + ")")
            return problems
        usable = with_type
    if res.constraint and not any(_features_ok(t, res.constraint) for t in usable):
        feats = sorted({f for t in usable for f in t.features})
        problems.append(f"no node with features {res.constraint} (features here: {', '.join(feats) or 'none'})")
    return problems


def _qos_wall(facts: ClusterFacts, name: str | None) -> int | None:
    q = facts.qos.get(name) if name else None
    return q.max_wall_min if q else None


def _fits(limit: int | None, minutes: int) -> bool:
    return limit is None or minutes <= limit


def _access(facts: ClusterFacts, p: Partition, res: Resources, accounts: list[str | None]) -> _Access:
    """May the run's account and some QoS use `p`, and with which effective time limit."""
    acc = facts.access_of(p.name)
    problems = _node_problems(facts, p, res)
    # Account
    usable_accounts = [a for a in accounts if _allows(acc.allow_accounts, acc.deny_accounts, a)
                       and (not facts.accounting or (a is not None and _association(facts, a, p.name)))]
    if not usable_accounts:
        shown = res.account or (", ".join(a for a in accounts if a) or "none given")
        if acc.allow_accounts.upper() != "ALL" or acc.deny_accounts:
            rule = (f"AllowAccounts={acc.allow_accounts}" if acc.allow_accounts.upper() != "ALL"
                    else f"DenyAccounts={acc.deny_accounts}")
            problems.append(f"{rule}: not for account {shown}")
        else:
            problems.append(f"no association of account {shown} with this partition")
        return _Access(False, tuple(problems))
    account = usable_accounts[0]
    assoc = _association(facts, account, p.name) if (facts.accounting and account) else None
    # QoS
    part_qos_wall = _qos_wall(facts, acc.qos)
    base_limit = _minimum(p.max_time_min, part_qos_wall, assoc.max_wall_min if assoc else None)
    if facts.accounting and assoc is not None:
        granted = set(assoc.qos) or set(facts.qos) or {"normal"}
        default = assoc.default_qos or None
    else:  # no accounting: whatever QoS exists (Slurm's default when none is asked)
        granted = set(facts.qos)
        default = None
    allowed = {q for q in granted if _allows(acc.allow_qos, acc.deny_qos, q)}
    restricted = acc.allow_qos.upper() != "ALL" or bool(acc.deny_qos)
    qos: str | None
    if res.qos is not None:
        if granted and res.qos not in allowed or (not granted and not _allows(acc.allow_qos, acc.deny_qos, res.qos)):
            rule = f"AllowQos={acc.allow_qos}" if acc.allow_qos.upper() != "ALL" else f"DenyQos={acc.deny_qos}"
            why = rule if restricted else f"QoS {res.qos} not granted to account {account}"
            problems.append(f"{why}: QoS {res.qos} not allowed")
        qos = res.qos
    elif not granted:  # nothing known about QoS: Slurm's default applies
        if restricted:
            problems.append(f"AllowQos={acc.allow_qos}: only for that QoS (set qos)")
        qos = None
    else:
        qos = _pick_qos(facts, allowed, default, base_limit, res)
        if qos is None:
            if not allowed:
                problems.append(f"AllowQos={acc.allow_qos}: none of your QoS ({', '.join(sorted(granted))}) "
                                "is allowed here")
            elif default and default not in allowed:
                problems.append(f"AllowQos={acc.allow_qos}: your default QoS {default} is not allowed here "
                                f"(set qos = \"{sorted(allowed)[0]}\" to use it)")
            else:
                problems.append(f"none of your QoS is allowed here (AllowQos={acc.allow_qos}; yours: "
                                f"{', '.join(sorted(granted))})")
    if problems:
        return _Access(False, tuple(problems), account, qos)
    q = facts.qos.get(qos) if qos else None
    if q is not None and q.max_gpus() is not None and res.gpus * res.nodes > q.max_gpus():
        return _Access(False, (f"QoS {qos} allows at most {q.max_gpus()} GPUs per job",), account, qos)
    limit = _minimum(base_limit, _qos_wall(facts, qos))
    notes = []
    if qos:
        wall = _qos_wall(facts, qos)
        notes.append(f"QoS {qos}" + (f" (MaxWall {format_time(wall)})" if wall is not None else ""))
    if acc.qos and part_qos_wall is not None:
        notes.append(f"partition QoS {acc.qos} (MaxWall {format_time(part_qos_wall)})")
    capped = limit is not None and (p.max_time_min is None or limit < p.max_time_min)
    return _Access(True, (), account, qos, limit, ", ".join(notes), capped)


def _pick_qos(facts: ClusterFacts, allowed: set[str], default: str | None, base_limit: int | None,
              res: Resources) -> str | None:
    """The default QoS when allowed here and admitting the time; else the shortest-MaxWall allowed one that
    admits it; when none does (a chunked run), the longest. None when the default QoS is not allowed here."""
    minutes = res.time_min

    def wall(q: str) -> float:
        w = _qos_wall(facts, q)
        return math.inf if w is None else w

    if default and default in allowed and _fits(_minimum(base_limit, _qos_wall(facts, default)), minutes):
        return default
    if default and default not in allowed and wall(default) >= minutes:
        return None  # a partition reserved for another QoS: only when that QoS is asked for
    fitting = [q for q in allowed if _fits(_minimum(base_limit, _qos_wall(facts, q)), minutes)]
    if fitting:
        return min(fitting, key=lambda q: (wall(q), q))
    if not allowed:
        return None
    return max(allowed, key=lambda q: (wall(q), q))


def place(facts: ClusterFacts, res: Resources, *, never: Iterable[str] = (),
          groups: set[str] | None = None) -> Placement:
    """Partition, account and QoS for a run of `res`; raises NoFit (one line) when nothing can take it."""
    check_request(facts, res)
    if groups is None:
        groups = _user_groups()
    never = set(never)
    if res.account is not None:
        accounts: list[str | None] = [res.account]
    elif facts.accounting:
        accounts = list(facts.accounts())
    else:
        accounts = [None]
    refused: list[Verdict] = []
    open_: list[Partition] = []
    info: dict[str, _Access] = {}
    for p in facts.partitions:
        named = res.partition == p.name
        if res.partition is not None and not named:
            continue
        if not named and p.name in never:
            refused.append(Verdict(p, False, "never_partitions in the site config: used only when named"))
            continue
        if not named and _preempting(p, facts.partitions):
            refused.append(Verdict(p, False, f"preempts other partitions (PriorityTier {p.priority_tier}): "
                                             "used only when named"))
            continue
        a = _access(facts, p, res, accounts)
        info[p.name] = a
        if not a.ok:
            refused.append(Verdict(p, False, "; ".join(a.problems)))
            continue
        open_.append(replace(p, max_time_min=a.limit_min) if a.limit_min != p.max_time_min else p)
    if res.partition is not None and res.partition not in {p.name for p in facts.partitions}:
        raise NoFit(f"partition {res.partition!r} does not exist (partitions: "
                    f"{', '.join(f'{q.name} MaxTime {q.max_time}' for q in facts.partitions)})", [])
    if not open_:
        reasons = "; ".join(f"{v.partition.name}: {v.reason}" for v in refused)
        raise NoFit(f"no partition may take this run ({reasons})", refused)
    try:
        choice = choose_partition(open_, res, groups=groups)
    except NoFit as exc:
        verdicts = _annotate(exc.verdicts, info) + refused
        msg = str(exc)
        if refused:
            msg = msg.replace(" — ", f"; refused: {'; '.join(f'{v.partition.name}: {v.reason}' for v in refused)} — ", 1)
        raise NoFit(msg, verdicts) from None
    chosen = info.get(choice.partition.name) if choice.partition else None
    reason = choice.reason + (f"; {chosen.note}" if chosen and chosen.note else "")
    verdicts = _annotate(choice.verdicts, info) + refused
    order = {p.name: i for i, p in enumerate(facts.partitions)}
    verdicts.sort(key=lambda v: order.get(v.partition.name, 0))
    choice = replace(choice, reason=reason, verdicts=verdicts)
    # --account only when asked (sweep, --set or site config): otherwise Slurm's default account applies.
    return Placement(choice, res.account, chosen.qos if chosen else res.qos)


def _annotate(verdicts: list[Verdict], info: dict[str, _Access]) -> list[Verdict]:
    """Say which QoS/account a fitting verdict assumed (its MaxTime is then the effective limit)."""
    out = []
    for v in verdicts:
        a = info.get(v.partition.name)
        if a is not None and a.ok and a.note and (v.fits or v.reason.startswith("MaxTime")):
            reason = v.reason.replace("MaxTime", "limit", 1) if a.capped else v.reason
            out.append(Verdict(v.partition, v.fits, f"{a.note}: {reason}"))
        else:
            out.append(v)
    return out
