"""Validation of the Slurm values a sweep may carry into an sbatch script: names, feature expressions,
node lists and the `[sbatch]` allow-list.

Why: whatever a sweep file or `--set` says ends up in `#SBATCH` lines. Each value here is checked
against a narrow pattern, so nothing that would need shell quoting (spaces, quotes, `$`, `;`,
newlines) can reach the script, and only options jobkit does not manage itself can be passed.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # account, QoS, partition, GPU type, feature
_FEATURE_EXPR = re.compile(r"^[A-Za-z0-9_.-]+(?:[&|][A-Za-z0-9_.-]+)*$")
_NODE_LIST = re.compile(r"^[A-Za-z0-9_.-]+(?:\[[0-9,-]+\])?(?:,[A-Za-z0-9_.-]+(?:\[[0-9,-]+\])?)*$")
_SAFE = re.compile(r"^[A-Za-z0-9_.,:=@+/-]+$")  # what an sbatch value may contain (no quoting needed)

# `[sbatch]` options jobkit passes through: long name -> (pattern of the value, what it accepts).
# jobkit sets time, partition, account, qos, cpus, mem, gpus, constraint, nodes, exclude, job name,
# output/error, signal and array itself: they are keys of their own, never passed here.
SBATCH_OPTIONS: dict[str, tuple[re.Pattern, str]] = {
    "mail-type": (re.compile(r"^(NONE|BEGIN|END|FAIL|REQUEUE|ALL|INVALID_DEPEND|STAGE_OUT|TIME_LIMIT|"
                             r"TIME_LIMIT_90|TIME_LIMIT_80|TIME_LIMIT_50|ARRAY_TASKS)"
                             r"(,(NONE|BEGIN|END|FAIL|REQUEUE|ALL|INVALID_DEPEND|STAGE_OUT|TIME_LIMIT|"
                             r"TIME_LIMIT_90|TIME_LIMIT_80|TIME_LIMIT_50|ARRAY_TASKS))*$"),
                  "a comma list of BEGIN, END, FAIL, REQUEUE, ALL, TIME_LIMIT_80, ..."),
    "mail-user": (re.compile(r"^[A-Za-z0-9_.+-]+(@[A-Za-z0-9.-]+)?$"), "a user name or e-mail address"),
    "reservation": (NAME, "a reservation name"),
    "licenses": (re.compile(r"^[A-Za-z0-9_.-]+(:[0-9]+)?(,[A-Za-z0-9_.-]+(:[0-9]+)?)*$"), "like matlab:1,ansys"),
    "wckey": (NAME, "a workload characterization key name"),
    "comment": (re.compile(r"^[A-Za-z0-9_.,:=@+/-]{1,200}$"), "letters, digits and . , : = @ + / - _ (no spaces)"),
    "nice": (re.compile(r"^[0-9]{1,6}$"), "a non-negative integer"),
    "mem-per-gpu": (re.compile(r"^[0-9]+[KMGT]?$"), "a size like 16G"),
    "cpus-per-gpu": (re.compile(r"^[0-9]{1,4}$"), "an integer"),
    "tmp": (re.compile(r"^[0-9]+[KMGT]?$"), "a size like 100G"),
    "hint": (re.compile(r"^(compute_bound|memory_bound|multithread|nomultithread)$"),
             "compute_bound, memory_bound, multithread or nomultithread"),
    "gres-flags": (re.compile(r"^(enforce-binding|disable-binding)$"), "enforce-binding or disable-binding"),
    "exclusive": (re.compile(r"^(true|user|mcs)$"), "true, user or mcs"),
    "begin": (re.compile(r"^(now(\+[0-9]+(seconds|minutes|hours|days)?)?|[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:]+)?)$"),
              "now, now+1hours or 2026-12-01T08:00:00"),
    "requeue": (re.compile(r"^true$"), "true"),
    "switches": (re.compile(r"^[0-9]{1,3}(@[0-9:-]+)?$"), "a count, optionally @max-time"),
    "cluster-constraint": (re.compile(r"^[A-Za-z0-9_.&|,-]+$"), "a cluster feature expression"),
}


def check_name(what: str, value: Any) -> str:
    """An account, QoS or feature name; raises ValueError naming what is accepted."""
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(f"expected a {what} name (letters, digits, . _ -), got {value!r}")
    return value


def check_constraint(value: Any) -> str:
    """Slurm's feature expression, restricted to feature names joined by `&` (and) and `|` (or)."""
    if not isinstance(value, str) or not _FEATURE_EXPR.match(value):
        raise ValueError(f"expected node features joined by & or |, like 'a100&ib' or 'v100|a100', got {value!r}")
    return value


def constraint_terms(expr: str) -> list[set[str]]:
    """`a&b|c` -> [{'a','b'}, {'c'}]: a node satisfies the expression when it has every feature of one term."""
    return [set(term.split("&")) for term in expr.split("|")]


def check_node_list(value: Any) -> str:
    """Node names, comma-separated, each optionally with one numeric range: `n1,gpu[01-04,07]`."""
    if not isinstance(value, str) or not _NODE_LIST.match(value):
        raise ValueError(f"expected node names like 'n1,n2' or 'gpu[01-04]', got {value!r}")
    return value


def expand_nodes(text: str) -> list[str]:
    """Slurm's host list notation (one bracket per name): `n[1-3],x` -> ['n1', 'n2', 'n3', 'x']."""
    out: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", text or ""):
        m = re.fullmatch(r"(.*)\[(.*)\](.*)", item)
        if not m:
            out.append(item)
            continue
        prefix, ranges, suffix = m.groups()
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            width = len(lo)
            for n in range(int(lo), int(hi or lo) + 1):
                out.append(f"{prefix}{n:0{width}d}{suffix}")
    return out


def check_sbatch(table: Any) -> tuple[tuple[str, str], ...]:
    """The `[sbatch]` table -> sorted (option, value) pairs; only allow-listed long options, safe values."""
    if not isinstance(table, Mapping):
        raise ValueError(f"expected a table of long sbatch options, like {{ mail-type = \"END\" }}, got {table!r}")
    pairs = []
    for key, value in table.items():
        name = str(key).strip().lstrip("-")
        if name not in SBATCH_OPTIONS:
            raise ValueError(f"{key!r} is not an allowed sbatch option; allowed: {', '.join(sorted(SBATCH_OPTIONS))}")
        if isinstance(value, bool):
            value = "true" if value else None
            if value is None:
                continue
        if isinstance(value, int):
            value = str(value)
        pattern, accepts = SBATCH_OPTIONS[name]
        if not isinstance(value, str) or not _SAFE.match(value) or not pattern.match(value):
            raise ValueError(f"{name}: {value!r} is not accepted (expected {accepts}; "
                             "no spaces, quotes or shell characters)")
        pairs.append((name, value))
    return tuple(sorted(pairs))
