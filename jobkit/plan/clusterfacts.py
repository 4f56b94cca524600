"""Everything jobkit knows about a cluster before choosing where runs go, as plain data: partitions
(with their access lists), node types (CPUs, memory, typed GPUs, features), QoS limits, the user's
associations and MaxArraySize. Parsed from Slurm's text here; read by `jobkit.slurm`; saved to and
loaded from a JSON *cluster profile* so that planning works anywhere (`--cluster FILE`).

No subprocess here: tests feed canned text or a profile.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobkit.plan.choose import Partition
from jobkit.plan.slurmtext import _fields, _int, _limit, _mem, _time, parse_partitions, parse_tres
from jobkit.plan.slurmvalues import expand_nodes

PROFILE_VERSION = 1


@dataclass(frozen=True)
class PartitionAccess:
    """The parts of a partition's line that say who may use it (cluster.Partition keeps the sizes)."""

    allow_accounts: str = "ALL"
    deny_accounts: str = ""
    allow_qos: str = "ALL"
    deny_qos: str = ""
    allow_groups: str = "ALL"
    qos: str | None = None  # the partition QoS, whose limits apply to every job there
    max_nodes: int | None = None
    node_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeType:
    """Nodes with equal sizes, GPUs and features (a profile keeps one entry per type, not per node)."""

    names: tuple[str, ...]
    cpus: int
    mem_mb: int | None
    gpus: tuple[tuple[str, int], ...] = ()  # (type or "", count) from Gres, e.g. (("a100", 4),)
    features: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    state: str = "IDLE"  # Slurm's State with its flags (IDLE+DRAIN, DOWN*): jobkit.plan.nodefit.usable reads it

    def gpu_count(self, kind: str | None = None) -> int:
        return sum(n for t, n in self.gpus if kind is None or t == kind)


@dataclass(frozen=True)
class Qos:
    name: str
    max_wall_min: int | None = None  # None: no limit
    max_tres: str = ""  # per job, e.g. gres/gpu=4
    max_tres_pu: str = ""  # per user
    max_jobs_pu: int | None = None
    max_submit_pu: int | None = None
    flags: str = ""
    preempt: tuple[str, ...] = ()  # QoS names this QoS may preempt (preempt/qos)
    preempt_mode: str = ""  # this QoS's PreemptMode ("" = the cluster's)

    def max_gpus(self) -> int | None:
        for text in (self.max_tres, self.max_tres_pu):
            tres = parse_tres(text)
            if "gres/gpu" in tres:
                return _int(tres["gres/gpu"])
        return None


@dataclass(frozen=True)
class Association:
    account: str
    user: str = ""
    partition: str = ""  # "" = every partition
    qos: tuple[str, ...] = ()
    default_qos: str = ""
    max_wall_min: int | None = None
    max_jobs: int | None = None  # running at once (more pend; not a refusal)
    max_submit: int | None = None  # queued or running at once: sbatch refuses beyond it
    max_tres: str = ""  # per job, e.g. gres/gpu=2

    def max_gpus(self) -> int | None:
        tres = parse_tres(self.max_tres)
        return _int(tres["gres/gpu"]) if "gres/gpu" in tres else None


@dataclass
class ClusterFacts:
    """What a command read once (or loaded from a profile) and plans every run against."""

    partitions: list[Partition]
    access: dict[str, PartitionAccess] = field(default_factory=dict)
    node_types: list[NodeType] = field(default_factory=list)
    qos: dict[str, Qos] = field(default_factory=dict)
    associations: list[Association] = field(default_factory=list)
    accounting: bool = False  # False: sacctmgr failed or was not asked; accounts and QoS are not checked
    max_array_size: int | None = None
    source: str = "slurm"  # "slurm" or the profile's path
    notes: list[str] = field(default_factory=list)  # said once per command (e.g. "no accounting")
    preempt_type: str = "preempt/none"  # scontrol show config: preempt/none, preempt/partition_prio, preempt/qos
    user: str = ""  # whose associations these are ("" = the user running jobkit)
    default_account: str | None = None  # sacctmgr show user format=DefaultAccount (None: none / unknown)
    partition_routing: str = ""  # "time": the site assigns the partition from the wall time (job_submit)
    site: dict[str, Any] = field(default_factory=dict)  # a profile's provenance: {"urls": [...], "read": date}
    queued_jobs: dict[str, int] = field(default_factory=dict)  # live only (never in a profile): queued jobs per QoS
    queued_by_account: dict[str, int] = field(default_factory=dict)  # live only: the user's queued jobs per account
    groups: list[str] | None = None  # a profile's `user`'s Unix groups, for AllowGroups (None: not checked)

    def access_of(self, name: str) -> PartitionAccess:
        return self.access.get(name, PartitionAccess())

    def nodes_of(self, partition: str) -> list[NodeType]:
        return [t for t in self.node_types if partition in t.partitions]

    def gpu_types(self) -> list[str]:
        return sorted({t for n in self.node_types for t, _ in n.gpus if t})

    def features(self) -> list[str]:
        return sorted({f for n in self.node_types for f in n.features})

    def accounts(self) -> list[str]:
        return sorted({a.account for a in self.associations})

    # ------------------------------------------------------------------------------ profile JSON

    def to_json(self) -> dict[str, Any]:
        parts = []
        for p in self.partitions:
            d = dataclasses.asdict(p)
            d.update({k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in dataclasses.asdict(self.access_of(p.name)).items()})
            parts.append(d)
        return {
            "version": PROFILE_VERSION,
            "accounting": self.accounting,
            "max_array_size": self.max_array_size,
            "partitions": parts,
            "node_types": [_listify(dataclasses.asdict(t)) for t in self.node_types],
            "qos": [dataclasses.asdict(q) for q in self.qos.values()],
            "associations": [_listify(dataclasses.asdict(a)) for a in self.associations],
            "preempt_type": self.preempt_type,
            "user": self.user,
            "default_account": self.default_account,
            "partition_routing": self.partition_routing,
            **({"groups": list(self.groups)} if self.groups is not None else {}),
            **({"source": self.site} if self.site else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "profile") -> "ClusterFacts":
        part_fields = {f.name for f in dataclasses.fields(Partition)}
        access_fields = {f.name for f in dataclasses.fields(PartitionAccess)}
        partitions, access = [], {}
        for d in data.get("partitions", []):
            partitions.append(Partition(**{k: v for k, v in d.items() if k in part_fields}))
            acc = {k: v for k, v in d.items() if k in access_fields}
            acc["node_names"] = tuple(acc.get("node_names", ()))
            access[d["name"]] = PartitionAccess(**acc)
        node_types = [NodeType(names=tuple(t["names"]), cpus=int(t["cpus"]), mem_mb=t.get("mem_mb"),
                               gpus=tuple((str(k), int(n)) for k, n in t.get("gpus", [])),
                               features=tuple(t.get("features", [])), partitions=tuple(t.get("partitions", [])),
                               state=t.get("state", "IDLE"))
                      for t in data.get("node_types", [])]
        qos = {q["name"]: Qos(**{**q, "preempt": tuple(q.get("preempt", ()))}) for q in data.get("qos", [])}
        assocs = [Association(account=a["account"], user=a.get("user", ""), partition=a.get("partition", ""),
                              qos=tuple(a.get("qos", [])), default_qos=a.get("default_qos", ""),
                              max_wall_min=a.get("max_wall_min"), max_jobs=a.get("max_jobs"),
                              max_submit=a.get("max_submit"), max_tres=a.get("max_tres", ""))
                  for a in data.get("associations", [])]
        return cls(partitions=partitions, access=access, node_types=node_types, qos=qos, associations=assocs,
                   accounting=bool(data.get("accounting", bool(assocs))),
                   max_array_size=data.get("max_array_size"), source=source,
                   preempt_type=data.get("preempt_type") or _infer_preempt_type(partitions),
                   user=data.get("user", ""), default_account=data.get("default_account"),
                   partition_routing=data.get("partition_routing", ""),
                   groups=[str(g) for g in data["groups"]] if data.get("groups") is not None else None,
                   site=data["source"] if isinstance(data.get("source"), dict) else {})


def _infer_preempt_type(partitions: list[Partition]) -> str:
    """A profile saved before PreemptType was recorded: partition_prio when any partition is preemptible."""
    return ("preempt/partition_prio" if any(p.preempt_mode.upper() != "OFF" for p in partitions)
            else "preempt/none")


def _listify(d: dict[str, Any]) -> dict[str, Any]:
    return {k: ([list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v)
            for k, v in d.items()}


def save_profile(facts: ClusterFacts, path: Path) -> None:
    from jobkit.atomic import write_text

    write_text(Path(path), json.dumps(facts.to_json(), indent=2) + "\n")


def load_profile(path: Path) -> ClusterFacts:
    """A profile written by `jobkit partitions --save`; raises ValueError with a one-line message."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--cluster {path}: no such file (write one with `jobkit partitions --save FILE`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--cluster {path}: not a cluster profile ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION or not data.get("partitions"):
        raise ValueError(f"--cluster {path}: not a version-{PROFILE_VERSION} cluster profile with partitions "
                         "(write one with `jobkit partitions --save FILE`)")
    try:
        return ClusterFacts.from_json(data, source=str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"--cluster {path}: malformed profile ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------------------- parsing

def parse_access(text: str) -> dict[str, PartitionAccess]:
    """Per partition, from `scontrol show partition -o`: Allow/Deny Accounts and Qos, AllowGroups, QoS, MaxNodes."""
    out = {}
    for line in text.splitlines():
        f = _fields(line)
        name = f.get("PartitionName")
        if not name:
            continue
        qos = f.get("QoS")
        out[name] = PartitionAccess(
            allow_accounts=f.get("AllowAccounts", "ALL"), deny_accounts=f.get("DenyAccounts", ""),
            allow_qos=f.get("AllowQos", "ALL"), deny_qos=f.get("DenyQos", ""),
            allow_groups=f.get("AllowGroups", "ALL"),
            qos=None if not qos or qos.upper() in ("N/A", "(NULL)") else qos,
            max_nodes=_limit(f.get("MaxNodes")),
            node_names=tuple(expand_nodes(f["Nodes"]) if f.get("Nodes") not in (None, "(null)") else ()))
    return out


def parse_gres(text: str | None) -> tuple[tuple[str, int], ...]:
    """`gpu:a100:4(S:0-1),gpu:v100:2` -> (('a100', 4), ('v100', 2)); untyped `gpu:2` -> (('', 2),)."""
    import re

    out: dict[str, int] = {}
    for item in re.split(r",(?![^(]*\))", text or ""):
        item = re.sub(r"\(.*?\)", "", item).strip()
        parts = item.split(":")
        if not parts or parts[0] != "gpu":
            continue
        if len(parts) == 1:
            kind, count = "", 1
        elif len(parts) == 2:
            kind, count = ("", _int(parts[1])) if parts[1].isdigit() else (parts[1], 1)
        else:
            kind, count = parts[1], _int(parts[2])
        out[kind] = out.get(kind, 0) + count
    return tuple(sorted(out.items()))


def parse_nodes(text: str) -> list[NodeType]:
    """`scontrol show node -o` -> node types (nodes grouped by CPUs, memory, GPUs, features, partitions)."""
    groups: dict[tuple, list[str]] = {}
    for line in text.splitlines():
        f = _fields(line)
        name = f.get("NodeName")
        if not name:
            continue
        cpus = _int(f.get("CPUTot"), _int(parse_tres(f.get("CfgTRES")).get("cpu")))
        mem = _mem(f.get("RealMemory"))
        gpus = parse_gres(f.get("Gres"))
        feats = f.get("AvailableFeatures") or f.get("Features") or ""
        features = tuple(sorted(x for x in feats.split(",") if x and x != "(null)"))
        parts = tuple(x for x in (f.get("Partitions") or "").split(",") if x and x != "(null)")
        state = f.get("State") or "UNKNOWN"  # flags kept: IDLE+DRAIN is not usable
        groups.setdefault((cpus, mem, gpus, features, parts, state), []).append(name)
    return [NodeType(names=tuple(names), cpus=k[0], mem_mb=k[1], gpus=k[2], features=k[3], partitions=k[4],
                     state=k[5]) for k, names in groups.items()]


def parse_qos(text: str) -> dict[str, Qos]:
    """`sacctmgr -nP show qos format=Name,Priority,MaxWall,MaxTRES,MaxTRESPU,MaxJobsPU,MaxSubmitPU,Flags[,Preempt,
    PreemptMode]` (PreemptMode `cluster` = the cluster's: kept as "")."""
    out = {}
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) < 8 or not cols[0]:
            continue
        name, _prio, wall, tres, tres_pu, jobs_pu, submit_pu, flags = cols[:8]
        preempt = tuple(x for x in cols[8].split(",") if x) if len(cols) > 8 else ()
        mode = cols[9].strip().upper() if len(cols) > 9 and cols[9].strip().lower() != "cluster" else ""
        out[name] = Qos(name=name, max_wall_min=_time(wall) if wall else None, max_tres=tres, max_tres_pu=tres_pu,
                        max_jobs_pu=_limit(jobs_pu), max_submit_pu=_limit(submit_pu), flags=flags,
                        preempt=preempt, preempt_mode=mode)
    return out


def parse_associations(text: str) -> list[Association]:
    """`sacctmgr -nP show user U withassoc format=Cluster,Account,User,Partition,QOS,DefaultQOS,MaxWall,
    MaxJobs,MaxSubmit,MaxTRES[,DefaultAccount]` (the last three optional)."""
    out = []
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) < 7 or not cols[1]:
            continue
        _cluster, account, user, partition, qos, default_qos, wall = cols[:7]
        if not user:  # the account's own line, not the user's association
            continue
        jobs, submit, tres = (cols[7:10] + ["", "", ""])[:3]
        out.append(Association(account=account, user=user, partition=partition,
                               qos=tuple(q for q in qos.split(",") if q), default_qos=default_qos,
                               max_wall_min=_time(wall) if wall else None, max_jobs=_limit(jobs),
                               max_submit=_limit(submit), max_tres=tres))
    return out


def parse_max_array_size(text: str) -> int | None:
    """`scontrol show config`: `MaxArraySize            = 1001`."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return _limit(value)
    return None


def parse_preempt_type(text: str) -> str:
    """`scontrol show config`: `PreemptType = preempt/partition_prio` (absent: preempt/none)."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "PreemptType":
            return value.strip() or "preempt/none"
    return "preempt/none"


def parse_default_account(text: str | None) -> str | None:
    """`sacctmgr -nP show user NAME withassoc format=...,DefaultAccount`: the last column of the first line."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip().split("|")[-1] or None
    return None


def parse_queued(text: str | None, column: int = 0) -> dict[str, int]:
    """`squeue -h -u USER -o %q|%a`: how many of the user's jobs (pending or running) each QoS (column 0)
    or account (column 1) holds."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        cols = line.strip().split("|")
        if line.strip() and len(cols) > column and cols[column]:
            out[cols[column]] = out.get(cols[column], 0) + 1
    return out


def facts_from_text(partitions_text: str, nodes_text: str | None = None, qos_text: str | None = None,
                    assoc_text: str | None = None, config_text: str | None = None,
                    source: str = "slurm", user_text: str | None = None, queue_text: str | None = None,
                    user: str = "") -> ClusterFacts:
    """All the facts from Slurm's own output; qos/assoc None = accounting not available."""
    accounting = qos_text is not None and assoc_text is not None
    return ClusterFacts(
        partitions=parse_partitions(partitions_text, nodes_text),
        access=parse_access(partitions_text),
        node_types=parse_nodes(nodes_text) if nodes_text else [],
        qos=parse_qos(qos_text) if qos_text else {},
        associations=parse_associations(assoc_text) if assoc_text else [],
        accounting=accounting,
        max_array_size=parse_max_array_size(config_text) if config_text else None,
        source=source,
        preempt_type=parse_preempt_type(config_text) if config_text else "preempt/none",
        default_account=parse_default_account(user_text), queued_jobs=parse_queued(queue_text),
        queued_by_account=parse_queued(queue_text, 1), user=user)
