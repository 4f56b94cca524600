"""Where a run goes on a real cluster: partition, account and QoS, by Slurm's own rules (no subprocess).

Per partition, in this order (the first failing rule is the verdict's reason, with numbers):
1. Account: the run's `account` (sweep, `--set`, site config), else the user's DefaultAccount
   (sacctmgr), else the only account; several and no default is refused (name one). It is passed
   explicitly (`--account`), so the plan is what Slurm will do. AllowAccounts/DenyAccounts and the
   associations' Partition field decide whether it may use the partition; when nothing takes the run
   under the default account but another of the user's would, the refusal names that account.
   AllowGroups: against the local user's groups on a live cluster, a profile's `groups` when it lists
   them (a profile's `user` is someone else), else unchecked.
2. Nodes (`nodefit`): at least `nodes` usable nodes each with the GPUs (type as GRES or as node
   feature), `cpus × tasks_per_node`, memory and features asked; MaxNodes.
3. QoS and wall limit (`limits`): among granted and allowed QoS; the limit is the smallest of partition
   MaxTime, QoS MaxWall, partition QoS MaxWall and association MaxWall, named when it refuses; a job's
   GPUs against the tightest of the QoS's MaxTRES/MaxTRESPU and the association's MaxTRES gres/gpu.
4. Preemption (`preemption`): a partition whose own jobs can be preempted is chosen only when named
   or when the run sets `preemptible = true`; partitions that preempt others are ordinary choices.
   `never_partitions` (site config) are chosen only when named.
Ranking among partitions that fit (first difference decides; preemptible ones take part only when
named or with `preemptible = true`):
  a. a CPU-only run: partitions without GPU nodes, then partitions mixing CPU and GPU nodes, then
     (only when nothing else fits) partitions whose nodes all carry GPUs;
  b. Slurm's expected start (`starts`, from `sbatch --test-only` on a live cluster), earliest first;
  c. the shortest limit that admits the time (short queues are backfilled first);  d. a partition
  whose jobs are not preempted;  e. higher PriorityTier;  f. the default partition;  g. the name.
A run too long for every partition: with `chunk`, segments of the longest limit, ranked by the same rules;
without, NoFit naming each partition's binding limit. Sites that route by wall time
(`partition_routing = "time"`) get the predicted partition without `--partition`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from jobkit.plan import limits as lim
from jobkit.plan.choose import Choice, NoFit, Partition, Verdict, _asked, _user_groups
from jobkit.plan.clusterfacts import Association, ClusterFacts
from jobkit.plan.nodefit import Fit, feature_constraint, gpu_types, node_fit
from jobkit.plan.preemption import preemption_risk
from jobkit.plan.slurmtime import format_time
from jobkit.plan.slurmvalues import constraint_terms
from jobkit.plan.spec import Resources


@dataclass(frozen=True)
class Placement:
    choice: Choice
    account: str | None  # what --account gets (None: not passed)
    qos: str | None  # what --qos gets (None: not passed)
    pass_partition: bool = True  # False: the site assigns the partition from the time (not passed)
    constraint: str | None = None  # the run's constraint, plus the GPU type when it is a node feature
    gpu_feature: bool = False  # the GPU type is asked as a feature: untyped --gpus-per-node + constraint
    candidates: tuple[tuple[str, str | None], ...] = ()  # (partition, QoS) that fit, best first (--test-only)

    @property
    def partition(self) -> str | None:
        return self.choice.partition.name if self.choice.partition else None


@dataclass(frozen=True)
class _Judged:
    p: Partition
    problems: tuple[str, ...]  # anything but time: the run cannot go here
    account: str | None = None
    qos: str | None = None
    limit: lim.Limit | None = None
    fit: Fit | None = None
    risk: str | None = None  # why its jobs can be preempted
    purpose: int = 0  # a CPU-only run: 0 no GPU nodes, 1 mixed, 2 all GPU nodes (`_purpose`)

    def time_ok(self, minutes: int) -> bool:
        return self.limit is None or self.limit.admits(minutes)


def _listed(text: str) -> set[str]:
    return {x.strip() for x in (text or "").split(",") if x.strip()}


def _allows(allow: str, deny: str, name: str | None) -> bool:
    if name is not None and name in _listed(deny):
        return False
    if not allow or allow.upper() == "ALL":
        return True
    return name is not None and name in _listed(allow)


def resolve_account(facts: ClusterFacts, res: Resources) -> str | None:
    """The account the run is charged to: named, else DefaultAccount, else the only one; None: not known."""
    if res.account is not None:
        return res.account
    if facts.default_account:
        return facts.default_account
    if not facts.accounting:
        return None
    accounts = facts.accounts()
    if len(accounts) == 1:
        return accounts[0]
    raise NoFit(f"you have several accounts ({', '.join(accounts)}) and no default account: name one with "
                f"account = \"{accounts[0]}\" in the sweep, --set account=..., or in jobkit.toml")


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
        granted = {q for a in facts.associations if res.account is None or a.account == res.account for q in a.qos}
        if granted and res.qos not in granted:
            who = f"account {res.account}" if res.account else "your accounts"
            raise NoFit(f"qos {res.qos!r} is not granted to {who}; granted: {', '.join(sorted(granted))}")
    if facts.node_types:
        if res.gpu_type is not None and res.gpu_type not in gpu_types(facts):
            feats = sorted(set(gpu_types(facts)) - set(facts.gpu_types()))
            types = ", ".join(facts.gpu_types()) or "none in GRES (untyped GPUs: ask gpus = N)"
            types += f"; features of GPU nodes: {', '.join(feats)}" if feats else ""
            raise NoFit(f"gpus {res.gpus_text!r}: no node has GPU type {res.gpu_type!r}; GPU types: {types}")
        if res.constraint is not None and not any(any(t <= set(n.features) for t in constraint_terms(res.constraint))
                                                  for n in facts.node_types):
            raise NoFit(f"constraint {res.constraint!r}: no node offers it; node features: "
                        f"{', '.join(facts.features()) or 'none'}")
    if res.nodes > 1:
        caps = {p.name: _max_nodes(facts, p) for p in facts.partitions}
        if all(c < res.nodes for c in caps.values()):
            raise NoFit(f"nodes {res.nodes}: above every partition's MaxNodes "
                        f"({', '.join(f'{n} {c}' for n, c in caps.items())})")


def _max_nodes(facts: ClusterFacts, p: Partition) -> int:
    cap = facts.access_of(p.name).max_nodes or p.max_nodes
    return min(cap, p.nodes) if cap else p.nodes


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


def _judge(facts: ClusterFacts, p: Partition, res: Resources, account: str | None,
           groups: set[str] | None) -> _Judged:
    acc = facts.access_of(p.name)
    problems: list[str] = []
    if not p.up:
        problems.append(f"State={p.state}")
    if groups is not None and p.allow_groups.upper() != "ALL" and not _listed(p.allow_groups) & groups:
        problems.append(f"AllowGroups={p.allow_groups} (you are in none)")
    # 1. account
    assoc = _association(facts, account, p.name) if (facts.accounting and account) else None
    if not _allows(acc.allow_accounts, acc.deny_accounts, account):
        rule = (f"AllowAccounts={acc.allow_accounts}" if acc.allow_accounts.upper() != "ALL"
                else f"DenyAccounts={acc.deny_accounts}")
        problems.append(f"{rule}: not for account {account or '(none given)'}")
    elif facts.accounting and assoc is None:
        problems.append(f"no association of account {account} with this partition")
    # 2. nodes
    fit = node_fit(facts, p, res)
    if res.nodes > _max_nodes(facts, p):
        problems.append(f"MaxNodes {_max_nodes(facts, p)} < {res.nodes} nodes asked")
    elif not fit.ok:
        problems.append(fit.reason)
    if problems:
        return _Judged(p, tuple(problems), account, fit=fit)
    # 3. QoS and the limit
    qos, why = _qos(facts, p, res, assoc)
    if why:
        return _Judged(p, (why,), account, qos, fit=fit)
    limit = lim.binding_limit(facts, p, qos, assoc)
    caps = [c for c in (lim.gpu_limit(facts, name) for name in {qos, acc.qos} - {None}) if c is not None]
    caps += [c for c in [lim.gpu_limit(facts, None, assoc)] if c is not None]
    if caps and res.gpus * res.nodes > min(caps)[0]:
        return _Judged(p, (f"{min(caps)[1]} < {res.gpus * res.nodes} GPUs asked",), account, qos, limit, fit)
    return _Judged(p, (), account, qos, limit, fit, preemption_risk(facts, p, qos), _purpose(facts, fit, res))


def _qos(facts: ClusterFacts, p: Partition, res: Resources, assoc: Association | None) -> tuple[str | None, str]:
    """(QoS for --qos, problem or "")."""
    acc = facts.access_of(p.name)
    if facts.accounting and assoc is not None:
        granted = set(assoc.qos) or set(facts.qos) or {"normal"}
        default = assoc.default_qos or (next(iter(assoc.qos)) if len(assoc.qos) == 1 else None)
    else:
        granted, default = set(facts.qos), None
    allowed = {q for q in granted if _allows(acc.allow_qos, acc.deny_qos, q)}
    restricted = acc.allow_qos.upper() != "ALL" or bool(acc.deny_qos)
    rule = f"AllowQos={acc.allow_qos}" if acc.allow_qos.upper() != "ALL" else f"DenyQos={acc.deny_qos}"
    if res.qos is not None:
        ok = res.qos in allowed if granted else _allows(acc.allow_qos, acc.deny_qos, res.qos)
        if not ok:
            return res.qos, (f"{rule}: QoS {res.qos} not allowed" if restricted
                             else f"QoS {res.qos} not granted to account {assoc.account if assoc else '?'}")
        return res.qos, ""
    if not granted:
        return None, (f"{rule}: only for that QoS (set qos)" if restricted else "")
    qos = lim.pick_qos(facts, allowed, default, lambda q: lim.binding_limit(facts, p, q, assoc), res.time_min)
    if qos is not None:
        return qos, ""
    if not allowed:
        return None, f"{rule}: none of your QoS ({', '.join(sorted(granted))}) is allowed here"
    return None, (f"{rule}: your default QoS {default} is not allowed here "
                  f"(set qos = \"{sorted(allowed)[0]}\" to use it)")


def _rank(j: _Judged, res: Resources, starts: Mapping[str, str], longest: bool = False) -> tuple:
    """The ranking key (smaller first). `longest`: a chunked run, whose segment is the limit, wants the
    longest limit instead of the shortest; every other rule is the same."""
    limit = math.inf if j.limit is None or j.limit.minutes is None else j.limit.minutes
    return (j.purpose, starts.get(j.p.name, "~"), -limit if longest else limit, j.risk is not None,
            -j.p.priority_tier, not j.p.is_default, j.p.name)


def _purpose(facts: ClusterFacts, fit: Fit, res: Resources) -> int:
    """A CPU-only run: 0 on a partition without GPU nodes, 1 on one mixing CPU and GPU nodes, 2 on one whose
    nodes all carry GPUs (taken only when nothing else fits). A GPU run: 0 everywhere. Where the site
    assigns the partition from the time, mixed partitions are its general ones (0)."""
    if res.gpus:
        return 0
    if fit.gpu_only:
        return 2
    return 1 if fit.gpu_some and facts.partition_routing != "time" else 0


def _fit_text(j: _Judged, minutes: int, starts: Mapping[str, str]) -> str:
    parts = [j.fit.reason] if j.fit is not None and j.fit.known else []
    if j.qos:
        parts.append(f"QoS {j.qos}")
    if j.limit is not None:
        sign = ">=" if j.limit.admits(minutes) else "<"
        src = "" if j.limit.source.endswith(f"{j.p.name} MaxTime") else f" ({j.limit.source})"
        parts.append(f"limit {j.limit.text}{src} {sign} {format_time(minutes)} asked")
    if j.p.name in starts:
        parts.append(f"Slurm: start {starts[j.p.name]}")
    return "; ".join(parts)


def place(facts: ClusterFacts, res: Resources, *, never: Iterable[str] = (), groups: set[str] | None = None,
          starts: Mapping[str, str] | None = None) -> Placement:
    """Partition, account and QoS for a run of `res`; raises NoFit (one line) when nothing can take it.

    `groups`: the user's groups for AllowGroups (None: the local user's on a live cluster, unchecked
    with a profile). `starts`: partition -> Slurm's expected start (ISO text), from `sbatch --test-only`."""
    check_request(facts, res)
    starts = starts or {}
    if groups is None and facts.groups is not None:
        groups = set(facts.groups)
    elif groups is None and facts.source == "slurm":
        groups = _user_groups()
    account = resolve_account(facts, res)
    try:
        return _place(facts, res, account, set(never), groups, starts)
    except NoFit as exc:
        if res.account is None and account is not None and facts.accounting:
            _refuse_with_other_account(facts, res, account, set(never), groups, starts, exc)
        raise


def _refuse_with_other_account(facts: ClusterFacts, res: Resources, account: str, never: set[str],
                               groups: set[str] | None, starts: Mapping[str, str], exc: NoFit) -> None:
    """Nothing takes the run under the default account: when another of the user's accounts would get it
    a partition (on purpose), refuse naming both (Slurm would use the default account: name the other)."""
    for other in facts.accounts():
        if other == account:
            continue
        try:
            where = _place(facts, res, other, never, groups, starts)
        except NoFit:
            continue
        if _purpose(facts, node_fit(facts, where.choice.partition, res), res) == 2:
            continue  # a CPU-only run is not sent to another account's GPU partitions
        names = [name for name, _ in where.candidates] or [where.partition]
        one = len(names) == 1
        raise NoFit(f"no partition takes {_asked(res)}: "
                    f"{', '.join(names)} {'does' if one else 'do'} not allow your default account {account}; "
                    f"your account {other} may use {'it' if one else 'them'}: set account = \"{other}\" in the "
                    f"sweep (or --set account={other})", exc.verdicts) from None


def _place(facts: ClusterFacts, res: Resources, account: str | None, never: set[str], groups: set[str] | None,
           starts: Mapping[str, str]) -> Placement:
    by_name = {p.name: p for p in facts.partitions}
    if res.partition is not None and res.partition not in by_name:
        raise NoFit(f"partition {res.partition!r} does not exist (partitions: "
                    f"{', '.join(f'{q.name} MaxTime {q.max_time}' for q in facts.partitions)})", [])
    if not facts.partitions:
        raise NoFit("Slurm reports no partitions", [])
    judged = [_judge(facts, p, res, account, groups) for p in facts.partitions]
    minutes, total = res.time_min, max(res.time_min, res.total_time_min or 0)
    verdicts: list[Verdict] = []
    fitting: list[_Judged] = []
    time_only: list[_Judged] = []
    risky: list[str] = []  # would fit but for the risk of preemption
    for j in judged:
        if res.partition is not None and j.p.name != res.partition:
            verdicts.append(Verdict(j.p, False, "not named"))
            continue
        named = res.partition == j.p.name
        if j.problems:
            verdicts.append(Verdict(j.p, False, "; ".join(j.problems)))
            continue
        if not named and j.p.name in never:
            verdicts.append(Verdict(j.p, False, "never_partitions in the site config: used only when named"))
            continue
        if not named and j.risk and not res.preemptible:
            if j.time_ok(minutes) or res.chunk:
                risky.append(j.p.name)
            verdicts.append(Verdict(j.p, False, f"{j.risk}: used only when named or with preemptible = true"))
            continue
        if j.time_ok(minutes):
            fitting.append(j)
            verdicts.append(Verdict(j.p, True, _fit_text(j, minutes, starts)))
        else:
            time_only.append(j)
            verdicts.append(Verdict(j.p, False, lim.time_refusal(j.limit, j.p, minutes)))
    if fitting:
        ranked = sorted(fitting, key=lambda j: _rank(j, res, starts))
        best = ranked[0]
        why = _why(best, ranked, res, starts)
        segments = math.ceil(total / minutes)
        if segments > 1:
            why += f"; {format_time(total)} in {segments} segments of {format_time(minutes)}"
        return _placement(facts, res, best, Choice(best.p, why, verdicts, segments, minutes),
                          tuple((j.p.name, j.qos) for j in ranked))
    if time_only and res.chunk:
        best = min(time_only, key=lambda j: _rank(j, res, starts, longest=True))
        seg = best.limit.minutes or minutes
        segments = math.ceil(total / seg)
        why = (f"{best.p.name}: no partition allows {format_time(minutes)}; chunked into {segments} segments "
               f"of {format_time(seg)} ({best.limit.source}, the longest)")
        return _placement(facts, res, best, Choice(best.p, why, verdicts, segments, seg),
                          ((best.p.name, best.qos),))
    if res.partition is not None:
        v = next(v for v in verdicts if v.partition.name == res.partition)
        hint = " — use --chunk to run in segments, or another partition" if time_only else ""
        alts = [j.p.name for j in judged if not j.problems and j.time_ok(minutes) and j.p.name != res.partition
                and not (j.risk and not res.preemptible) and j.p.name not in never]
        alt = f"; fits: {', '.join(alts)}" if alts else ""
        raise NoFit(f"partition {res.partition!r} cannot take {_asked(res)}: {v.reason}{alt}{hint}", verdicts)
    reasons = "; ".join(f"{v.partition.name}: {v.reason}" for v in verdicts)
    hint = (f" — set preemptible = true to accept preemption ({', '.join(risky)} would take it), or name one"
            if risky else " — use --chunk to run in segments that fit, or ask less time" if time_only
            else " — ask fewer resources")
    raise NoFit(f"no partition fits {_asked(res)} ({reasons}){hint}", verdicts)


def _placement(facts: ClusterFacts, res: Resources, best: _Judged, choice: Choice,
               candidates: tuple[str, ...]) -> Placement:
    feature = bool(best.fit and best.fit.gpu_feature and res.gpu_type)
    constraint = feature_constraint(res.constraint, res.gpu_type) if feature else res.constraint
    routed = facts.partition_routing == "time" and res.partition is None
    return Placement(choice, best.account, best.qos if best.qos else res.qos, not routed, constraint, feature,
                     candidates)


def _why(best: _Judged, ranked: list[_Judged], res: Resources, starts: Mapping[str, str]) -> str:
    note = (f"; QoS {best.qos}" if best.qos else "") + (
        f"; limit {best.limit.text} ({best.limit.source})" if best.limit is not None else "")
    if res.partition is not None:
        return f"{best.p.name}: named ({_fit_text(best, res.time_min, starts)}){note}"
    if len(ranked) == 1:
        return f"{best.p.name}: the only partition that fits {_asked(res)}{note}"
    runner = ranked[1]
    a, b = _rank(best, res, starts), _rank(runner, res, starts)
    if a[0] != b[0]:
        basis = (f"has CPU nodes for a CPU-only run ({runner.p.name}'s nodes all carry GPUs)" if b[0] == 2 else
                 f"has no GPU nodes, for a CPU-only run ({runner.p.name} mixes CPU and GPU nodes)")
    elif a[1] != b[1]:
        basis = f"Slurm expects it to start first ({starts.get(best.p.name)})"
    elif a[2] != b[2]:
        basis = f"shortest limit that fits ({best.limit.text} >= {format_time(res.time_min)} asked)"
    elif a[3] != b[3]:
        basis = f"its jobs are not preempted ({runner.p.name}'s can be)"
    elif a[4] != b[4]:
        basis = f"higher PriorityTier ({best.p.priority_tier})"
    elif a[5] != b[5]:
        basis = "the default partition among equals"
    else:
        basis = "first by name among equals"
    return f"{best.p.name}: {basis}{note}"


def with_placement(res: Resources, where: Placement, time_min: int) -> Resources:
    """What one job asks once placed: the time, partition, account, QoS; a GPU type given as a node
    feature becomes an untyped count plus a constraint."""
    out = replace(res, time_min=time_min, partition=where.partition, account=where.account, qos=where.qos,
                  constraint=where.constraint)
    return replace(out, gpu_type=None) if where.gpu_feature else out
