"""Several processes as one run: where each task stands, and the few collectives the runner needs.

Slurm starts the run's tasks (one job step; submitit's local executor does the same on one machine);
`torch.distributed` connects them. The rendezvous is the first node of the allocation on a port
derived from the job id, so the tasks of one job agree without talking first. The runner uses a
`Group` for three things only: agreeing at a step boundary (stop? checkpoint now? averaged
metrics), gathering every rank's RNG state into the main rank's checkpoint, and barriers around a
checkpoint. Every collective has a timeout, so a rank that dies fails the others instead of hanging
them (gloo notices a closed connection at once; a rank that hangs is waited for `timeout_s`).
"""
from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

DEFAULT_TIMEOUT_S = 600.0  # must cover the main rank writing a checkpoint while the others wait
PORT_BASE, PORT_SPAN = 20000, 30000


@dataclass(frozen=True)
class Topology:
    """Where this process stands among the run's tasks."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def tasks_per_node(self) -> int:
        return max(1, self.world_size // max(1, self.nodes))

    @classmethod
    def from_job_env(cls, env: Any, job_id: str) -> "Topology":
        """From a submitit `JobEnvironment` (Slurm's or the local executor's), duck-typed.

        `job_id` should be unique per running job (Slurm's `SLURM_JOB_ID`, not `array_task`).
        """
        hosts = list(env.hostnames) or ["127.0.0.1"]
        return cls(rank=int(env.global_rank), world_size=int(env.num_tasks), local_rank=int(env.local_rank),
                   nodes=int(getattr(env, "num_nodes", 1) or 1), master_addr=hosts[0],
                   master_port=port_for(job_id))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Topology | None":
        """From torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), if set."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ or "RANK" not in environ:
            return None
        return cls(rank=int(environ["RANK"]), world_size=int(environ["WORLD_SIZE"]),
                   local_rank=int(environ.get("LOCAL_RANK", environ["RANK"])),
                   nodes=int(environ.get("NUM_NODES", "1")),
                   master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
                   master_port=int(environ.get("MASTER_PORT", "29500")))


def port_for(job_id: str) -> int:
    """A rendezvous port from the job id: every task computes the same one, neighbours rarely clash."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return PORT_BASE + int(digits) % PORT_SPAN


class PeerLost(RuntimeError):
    """A collective failed: another rank died, hung past the timeout, or its node went away."""


def collective_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean a collective failed (raised inside DDP's backward as well as ours)."""
    errors: list[type[BaseException]] = [PeerLost]
    for name in ("DistBackendError", "DistNetworkError", "DistError"):
        cls = getattr(torch.distributed, name, None)
        if isinstance(cls, type):
            errors.append(cls)
    return tuple(errors)


def looks_collective(exc: BaseException) -> bool:
    """Whether an exception came from a broken collective (gloo says so in plain RuntimeErrors too)."""
    if isinstance(exc, collective_errors()):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("gloo", "nccl", "connection closed by peer", "connection reset", "timed out"))


class Group:
    """The run's process group; `backend` is gloo on CPU, NCCL on GPU (control messages go over gloo)."""

    def __init__(self, topo: Topology, device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        import torch.distributed as dist

        self.topo, self.device = topo, device
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method=f"tcp://{topo.master_addr}:{topo.master_port}",
                                rank=topo.rank, world_size=topo.world_size, timeout=timeout)
        self.control = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, group=self.control, **kwargs)
        except RuntimeError as exc:
            raise PeerLost(f"rank {self.topo.rank}: {what} failed, another rank is gone "
                           f"(killed, crashed or its node failed): {_first_line(exc)}") from exc

    def agree(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of `values` over every rank (float64, CPU): flags and metrics in one call."""
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64)
        self._call("agreeing at a step boundary", dist.all_reduce, tensor)
        return tensor.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (e.g. RNG states for the checkpoint)."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.topo.world_size
        self._call("gathering RNG states", dist.all_gather_object, out, obj)
        return out

    def barrier(self, what: str = "waiting for the other ranks") -> None:
        import torch.distributed as dist

        self._call(what, dist.barrier)

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _first_line(exc: BaseException) -> str:
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def rank_seed(seed: int, rank: int) -> int:
    """Seed of a rank's global RNGs (dropout): rank 0 keeps `seed`, so one task is today's run exactly."""
    return seed if rank == 0 else seed + 1_000_003 * rank


def mean_metrics(group: Group, metrics: Mapping[str, float], flags: Sequence[float]) -> tuple[dict[str, float], list[float]]:
    """Metrics averaged over ranks and flags summed, in one collective. Every rank has the same keys."""
    keys = sorted(metrics)
    summed = group.agree([metrics[k] for k in keys] + list(flags))
    n = group.topo.world_size
    return {k: v / n for k, v in zip(keys, summed)}, summed[len(keys):]
