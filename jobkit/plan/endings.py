"""How a job ended when the run could not say: out of memory, or a node lost — read from Slurm's record.

A run killed by SIGKILL writes no last word. Slurm's accounting (`sacct -D`, every attempt and step,
`jobkit.slurm.job_history`) still knows: a job or step in `OUT_OF_MEMORY` (cgroup enforcement), or a
step killed by signal 9 at or past the job's memory (`JobAcctGatherParams=OverMemoryKill` without cgroups
leaves the job FAILED and the step CANCELLED, its MaxRSS over ReqMem); an attempt in `NODE_FAIL` names
the node that was lost. `jobkit.observe.lifecycle.name_ending` turns this into the run's state and sentence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

OOM_SHARE = 0.95  # a step killed by SIGKILL using this share of its memory or more was killed for memory


@dataclass
class Ending:
    """What Slurm's record says of one job (all its attempts)."""

    oom: bool = False  # the latest attempt was killed for memory
    max_rss_mb: int | None = None  # the most a step of the latest attempt held
    failed_nodes: list[str] = field(default_factory=list)  # nodes lost under any attempt, first first
    attempts: int = 0


def mem_mb(text: str) -> int | None:
    """Megabytes in sacct's memory words (`935040K`, `1.5G`, `300M`, `300Mn`; `` or `0` → None)."""
    m = re.fullmatch(r"([\d.]+)([KMGT]?)[nc]?", (text or "").strip())
    if not m or float(m.group(1)) == 0:
        return None
    return int(float(m.group(1)) * {"K": 1 / 1024, "": 1 / (1 << 20), "M": 1, "G": 1024, "T": 1 << 20}[m.group(2)])


def expand_nodes(text: str) -> list[str]:
    """Slurm's compressed node list (`n[1-3,5],gpu7`) as names, without asking Slurm."""
    names: list[str] = []
    for prefix, inner, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", (text or "").strip()):
        if plain:
            names.append(plain.strip())
            continue
        for part in inner.split(","):
            lo, _, hi = part.partition("-")
            if hi and lo.isdigit() and hi.isdigit():
                names.extend(f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1))
            else:
                names.append(f"{prefix}{lo}")
    return [n for n in names if n and n not in ("None", "None assigned")]


def read_history(text: str) -> dict[str, Ending]:
    """{job id: Ending} from `sacct -D -n -P -o JobID,State,ExitCode,NodeList,MaxRSS,ReqMem,NTasks` lines.

    Each job line starts an attempt (with -D, in order); its steps follow. Only the latest attempt
    decides `oom` (an earlier attempt's kill was already answered by the resume that followed it).
    ReqMem is the whole job's (22.05: `1000M` for --mem=500M on two nodes) unless it ends in `n` (per
    node); a step's MaxRSS is its largest task's, so a node holds at most that times its tasks there."""
    out: dict[str, Ending] = {}
    per_node: dict[str, int | None] = {}
    for line in (text or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) < 6:
            continue
        job_id, word, exit_code, nodes, rss, req_mem = parts[:6]
        job, _, step = job_id.partition(".")
        word = word.split(" ")[0]
        ending = out.setdefault(job, Ending())
        n_nodes = max(1, len(expand_nodes(nodes)))
        if not step:  # a new attempt of the job
            ending.attempts += 1
            ending.oom, ending.max_rss_mb = word == "OUT_OF_MEMORY", None
            req = mem_mb(req_mem) if not req_mem.endswith("c") else None  # per CPU: not comparable here
            per_node[job] = req if req is None or req_mem.endswith("n") else req // n_nodes
            if word == "NODE_FAIL":
                ending.failed_nodes += [n for n in expand_nodes(nodes) if n not in ending.failed_nodes]
            continue
        used = mem_mb(rss)
        if used is not None:
            ending.max_rss_mb = max(ending.max_rss_mb or 0, used)
        tasks = int(parts[6]) if len(parts) > 6 and parts[6].isdigit() else 1
        on_node = used * -(-tasks // n_nodes) if used is not None else None
        limit = per_node.get(job)
        if word == "OUT_OF_MEMORY" or (exit_code.partition(":")[2] == "9" and on_node is not None and limit
                                       and on_node >= OOM_SHARE * limit):
            ending.oom = True
    return out
