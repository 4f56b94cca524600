"""Slurm's text, parsed: `scontrol show partition|node -o` lines of `Key=Value` pairs, TRES and GRES.

No command runs here (`jobkit.slurm` runs them), so every format is tested with canned text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from jobkit.plan.choose import Partition
from jobkit.plan.slurmtime import parse_mem, parse_time
from jobkit.state import State


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


@dataclass(frozen=True)
class SlurmJudgement:
    """What `sbatch --test-only` answered: when and where Slurm would start the job, or why not."""

    ok: bool
    start: str = ""  # ISO time, e.g. 2026-12-04T21:50:00
    partition: str = ""
    message: str = ""  # Slurm's line (the refusal when not ok)


def parse_sbatch_test_only(rc: int, text: str) -> SlurmJudgement:
    """`sbatch: Job 12 to start at 2026-12-04T21:50:00 using 1 processors on nodes n1 in partition test`,
    or rc 1 with `sbatch: error: ... allocation failure: <reason>`."""
    m = re.search(r"Job \d+ to start at (\S+) using .*? in partition (\S+)", text)
    if rc == 0 and m:
        return SlurmJudgement(True, m.group(1), m.group(2), m.group(0).strip())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else f"rc {rc}")
    msg = re.sub(r"^sbatch:\s*(error:\s*)?", "", msg)
    return SlurmJudgement(rc == 0, message=msg)


# Slurm's job state words (squeue %T, sacct State), each read explicitly as what it means to jobkit.
# A word not listed is State.UNKNOWN: shown with the word, never taken for a jobkit state by its name
# (Slurm's STOPPED is a job held by SIGSTOP, not jobkit's terminal STOPPED).
SLURM_WORDS: dict[str, State] = {
    **dict.fromkeys(("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"), State.PENDING),
    **dict.fromkeys(("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"), State.RUNNING),
    **dict.fromkeys(("SUSPENDED", "STOPPED"), State.SUSPENDED),  # allocation kept; goes on when released
    "COMPLETED": State.COMPLETED, "FAILED": State.FAILED, "CANCELLED": State.CANCELLED,
    "TIMEOUT": State.TIMEOUT, "PREEMPTED": State.PREEMPTED, "OUT_OF_MEMORY": State.OUT_OF_MEMORY,
    "NODE_FAIL": State.NODE_FAIL, "BOOT_FAIL": State.BOOT_FAIL, "DEADLINE": State.DEADLINE,
}


def job_state(word: str | None) -> State:
    """What Slurm's state word for a job means to jobkit ("CANCELLED by 0" reads as CANCELLED)."""
    return SLURM_WORDS.get((word or "").split(" ")[0].strip(), State.UNKNOWN)


def accounting_in_conf(text: str) -> bool:
    """Whether a slurm.conf's text names an accounting storage (AccountingStorageType, not none)."""
    for line in text.splitlines():
        key, _, value = line.split("#", 1)[0].partition("=")
        if key.strip().lower() == "accountingstoragetype":
            return value.strip().lower() not in ("", "accounting_storage/none")
    return False
