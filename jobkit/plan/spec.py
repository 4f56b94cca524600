"""JobSpec: one run, fully resolved — what it trains (workload + params) and what it asks for.

The run id is `<readable name>-<8 hex>` where the hex is a hash of the workload and its params only:
neither the resources nor the run settings (how often to checkpoint, evaluate, log) are part of it,
so moving a run to another partition, time limit or cadence keeps its identity (and its checkpoints).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Mapping

from jobkit.plan import slurmvalues
from jobkit.plan.slurmtime import format_duration, format_time, parse_duration, parse_mem, parse_time

# what a run asks for and how it is handled (`check_data`: check its data at submit); never hashed
RESOURCE_KEYS = ("time", "total_time", "cpus", "mem", "gpus", "partition", "chunk",
                 "account", "qos", "constraint", "nodes", "exclude", "sbatch", "tasks_per_node",
                 "check_data", "preemptible", "max_running", "stall_timeout")
# Workload fields (validated with the workload's params) that say how a run is run, not what it
# computes: recorded in the spec beside the resources, changeable by `resume --set`, never hashed.
SETTING_KEYS = ("checkpoint_every", "checkpoint_minutes", "eval_every", "sample_every", "log_every",
                "keep_checkpoints", "async_checkpoint")
_NAME_SAFE = re.compile(r"[^a-z0-9.]+")
SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Resources:
    """What one Slurm job of the run asks for. Never part of the run's identity."""

    time_min: int = 30  # wall time of one job (one segment when chunked)
    total_time_min: int | None = None  # the whole run's need; > time_min means segments
    cpus: int = 1
    mem_mb: int = 4096
    gpus: int = 0
    partition: str | None = None  # None: chosen from the cluster's limits
    chunk: bool = False  # allow splitting into segments that each fit a partition
    gpu_type: str | None = None  # `gpus = "a100:1"`: only nodes whose GRES has this type
    account: str | None = None  # None: the site config's, else Slurm's default account
    qos: str | None = None  # None: chosen (the association's default QoS, else the shortest that fits)
    constraint: str | None = None  # node features joined by & and |
    nodes: int = 1
    tasks_per_node: int | None = None  # None: one task per GPU (`gpus` is per node), else one
    exclude: str | None = None  # node list never to run on
    sbatch: tuple[tuple[str, str], ...] = ()  # allow-listed extra sbatch options (slurmvalues.SBATCH_OPTIONS)
    check_data: bool = True  # check the data at submit (false: it exists only on compute nodes)
    preemptible: bool = False  # may go to a partition whose jobs can be preempted (it resumes; gains a queue)
    max_running: int | None = None  # the array throttle (`--array=...%N`): at most N of these runs at once
    stall_timeout_s: float | None = None  # no step this long is a stall (run/watchdog.py); None: derived, 0: off

    def shape(self) -> tuple:
        """Runs with equal shapes share one job array (one sbatch call)."""
        return (self.time_min, self.cpus, self.mem_mb, self.gpus, self.partition, self.gpu_type, self.account,
                self.qos, self.constraint, self.nodes, self.exclude, self.sbatch, self.tasks, self.max_running)

    @property
    def tasks(self) -> int:
        """Tasks (processes) per node: data-parallel ranks, `cpus` threads each."""
        return self.tasks_per_node or max(1, self.gpus)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks

    @property
    def time(self) -> str:
        return format_time(self.time_min)

    @property
    def gpus_text(self) -> str:
        """`2` or `a100:2`: what sbatch's --gpus-per-node takes."""
        return f"{self.gpu_type}:{self.gpus}" if self.gpu_type else str(self.gpus)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": format_time(self.time_min),
            "total_time": None if self.total_time_min is None else format_time(self.total_time_min),
            "cpus": self.cpus,
            "mem": f"{self.mem_mb}M",
            "gpus": self.gpus_text if self.gpu_type else self.gpus,
            "partition": self.partition,
            "chunk": self.chunk,
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
            "nodes": self.nodes,
            "tasks_per_node": self.tasks_per_node,
            "exclude": self.exclude,
            "sbatch": dict(self.sbatch),
            "check_data": self.check_data,
            "preemptible": self.preemptible,
            **({"max_running": self.max_running} if self.max_running else {}),
            **({} if self.stall_timeout_s is None else {"stall_timeout": stall_text(self.stall_timeout_s)}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Resources":
        return parse_resources(data)


class ResourceError(ValueError):
    """A bad resource value: `key` names it, the message says what is accepted."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def parse_resources(data: Mapping[str, Any], base: Resources | None = None) -> Resources:
    """Resources from sweep/`--set` values. Raises ResourceError('key: message') on bad input."""
    res = base or Resources()
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in RESOURCE_KEYS:
            raise ResourceError(key, f"not a resource key ({', '.join(RESOURCE_KEYS)})")
        try:
            if key in ("time", "total_time"):
                if value is None and key == "total_time":
                    changes["total_time_min"] = None
                    continue
                if isinstance(value, datetime.time):  # TOML reads an unquoted 02:00:00 as a time of day
                    value = value.strftime("%H:%M:%S")
                if isinstance(value, bool) or not isinstance(value, (str, int)):
                    raise ValueError(f"expected a Slurm time like '02:00:00', got {value!r}")
                minutes = parse_time(str(value))
                if minutes is None or minutes <= 0:
                    raise ValueError(f"expected a positive time like '02:00:00', got {value!r}")
                changes["time_min" if key == "time" else "total_time_min"] = minutes
            elif key in ("tasks_per_node", "max_running"):
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                    raise ValueError(f"expected an integer >= 1, got {value!r}")
                changes[key] = value
                continue
            elif key == "gpus":
                changes["gpus"], changes["gpu_type"] = _parse_gpus(value)
            elif key in ("cpus", "nodes"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"expected an integer >= 1, got {value!r}")
                changes[key] = value
            elif key in ("account", "qos"):
                changes[key] = None if value is None or value == "" else slurmvalues.check_name(
                    "an account" if key == "account" else "a QoS", value)
            elif key == "constraint":
                changes[key] = None if value is None or value == "" else slurmvalues.check_constraint(value)
            elif key == "exclude":
                changes[key] = None if value is None or value == "" else slurmvalues.check_node_list(value)
            elif key == "sbatch":
                changes[key] = slurmvalues.check_sbatch(value or {})
            elif key == "mem":
                if isinstance(value, bool) or not isinstance(value, (str, int)):
                    raise ValueError(f"expected a size like '4G' or '500M', got {value!r}")
                changes["mem_mb"] = parse_mem(value)
            elif key == "partition":
                if value is not None and (not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value)):
                    raise ValueError(f"expected a partition name (letters, digits, . _ -), got {value!r}")
                changes["partition"] = value or None
            elif key == "stall_timeout":
                changes["stall_timeout_s"] = None if value is None or value == "" else parse_duration(value)
            elif key in ("chunk", "check_data", "preemptible"):
                if not isinstance(value, bool):
                    raise ValueError(f"expected true or false, got {value!r}")
                changes[key] = value
        except ValueError as exc:
            raise ResourceError(key, str(exc)) from None
    return replace(res, **changes)


def stall_text(seconds: float) -> str:
    """How a stall timeout is written back (spec.json, `config`): `off`, `5m`, `90s`."""
    return "off" if not seconds else format_duration(seconds)


def _parse_gpus(value: Any) -> tuple[int, str | None]:
    """`1`, `"1"` or `"a100:1"` -> (count, type or None)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, None
    if isinstance(value, str):
        kind, sep, count = value.strip().rpartition(":")
        if count.isdigit() and (not sep or slurmvalues.NAME.match(kind)):
            if sep and int(count) < 1:
                raise ValueError(f"a typed request needs at least one GPU, got {value!r}")
            return int(count), (kind or None)
    raise ValueError(f"expected a GPU count or TYPE:COUNT like 'a100:1', got {value!r}")


def differing_keys(param_sets: list[Mapping[str, Any]]) -> dict[str, int]:
    """Keys whose values are not all equal across `param_sets` -> how many distinct values they take
    (first-seen order; a missing key counts as a value of its own). What tells runs apart."""
    keys: dict[str, None] = {}
    for params in param_sets:
        keys.update(dict.fromkeys(params))
    counts = {}
    for key in keys:
        values = {_identity(p[key]) if key in p else "<unset>" for p in param_sets}
        if len(values) > 1:
            counts[key] = len(values)
    return counts


_KIND = {bool: "b", int: "i", float: "f", str: "s"}


def _identity(value: Any) -> Any:
    """A hashable stand-in that tells values apart as their JSON does (1, 1.0 and true differ);
    plain scalars without json.dumps, which a 10,000-run `status` would otherwise spend its time in."""
    kind = _KIND.get(type(value))
    if kind is None:
        return json.dumps(value, sort_keys=True, default=str)
    return (kind, "nan") if value != value else (kind, value)


def _readable(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _NAME_SAFE.sub("-", str(value).lower()).strip("-.")


def readable_name(workload: str, varying: Mapping[str, Any]) -> str:
    """`charlm-lstm`, `vae-beta4`, `vae-sprites-beta20`: strings bare, numbers as key+value."""
    parts = [workload]
    for key, value in varying.items():
        if isinstance(value, str):
            base = value.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
            text = _readable(base.rsplit(".", 1)[0] if "." in base[1:] else base) or _readable(key)
        else:
            text = _readable(key.replace("_", "")) + _readable(value)
        parts.append(text[:24])
    return "-".join(p for p in parts if p)[:80]


@dataclass(frozen=True)
class JobSpec:
    """One run: workload + resolved params (its identity), resources (how it is scheduled) and
    settings (how often it checkpoints, evaluates and logs)."""

    sweep: str
    workload: str
    params: Mapping[str, Any]
    resources: Resources = field(default_factory=Resources)
    name: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    entry: int = 0  # which [[run]] table of the sweep file (1-based; 0 unknown): status shows sweep order
    workdir: str | None = None  # where the job runs (command runs record it); not part of the identity
    # the workload's declared key params (ReportLayout), recorded so that `status` orders its columns
    # without importing the workload; not part of the identity
    key_params: tuple[str, ...] = field(default=(), compare=False)

    @cached_property  # asked many times per run (its id, its folder): hashed once (10,000-run sweeps)
    def signature(self) -> str:
        blob = json.dumps({"workload": self.workload, "params": dict(self.params)},
                          sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        return f"{self.name or self.workload}-{self.signature}"

    def with_resources(self, resources: Resources) -> "JobSpec":
        return replace(self, resources=resources)

    @property
    def workload_values(self) -> dict[str, Any]:
        """Params and settings together: what the workload's `Params` dataclass is built from."""
        return {**self.params, **self.settings}

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "sweep": self.sweep,
            "workload": self.workload,
            "name": self.name,
            "entry": self.entry,
            "signature": self.signature,
            "params": dict(self.params),
            "settings": dict(self.settings),
            "resources": self.resources.to_json(),
            **({"workdir": self.workdir} if self.workdir else {}),
            **({"key_params": list(self.key_params)} if self.key_params else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "JobSpec":
        # A spec.json written before settings existed keeps them in its params, and so keeps its run id.
        params, settings = dict(data["params"]), dict(data.get("settings") or {})
        return cls(sweep=data["sweep"], workload=data["workload"], params=params,
                   resources=Resources.from_json(data.get("resources", {})), name=data.get("name", ""),
                   settings=settings, entry=int(data.get("entry") or 0), workdir=data.get("workdir"),
                   key_params=tuple(data.get("key_params") or ()))


def split_settings(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, settings) of a workload's resolved values."""
    params = {k: v for k, v in values.items() if k not in SETTING_KEYS}
    return params, {k: v for k, v in values.items() if k in SETTING_KEYS}

