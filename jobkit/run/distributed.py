"""Several processes as one run: where each task stands, and the few collectives the runner needs.

Slurm starts the run's tasks (one job step; submitit's local executor does the same on one machine);
`torch.distributed` connects them. The rendezvous is the first node of the allocation on a port
derived from the job id, so the tasks of one job agree without talking first. The runner's loop
reaches the group only through `Ranks` (the one place where one task and several differ), for three
things: agreeing at a step boundary (stop? checkpoint now? averaged metrics), gathering every rank's
RNG state into the main rank's checkpoint, and a barrier after a checkpoint. Every collective has a timeout, so a rank that dies fails the others instead of hanging
them (gloo notices a closed connection at once; a rank that hangs is waited for `timeout_s`).
"""
from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

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


class Ranks:
    """Everything the training loop does differently with several tasks, in one place.

    With one task every method is the identity or does nothing (no collective, no extra work), so
    a one-task run is exactly the plain loop. With several, each is one collective, called by every
    rank at the same point of the loop: before the first step, after each step (averaged metrics,
    "stop?" and "checkpoint by time?" agreed together), around a checkpoint.
    """

    def __init__(self, topo: Topology, group: Group | None = None) -> None:
        self.topo, self.group = topo, group
        self._stop = self._due = False  # what the ranks last agreed on

    @classmethod
    def open(cls, topo: Topology, device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> "Ranks":
        return cls(topo, Group(topo, device, timeout_s) if topo.distributed else None)

    @property
    def is_main(self) -> bool:
        return self.topo.is_main

    @property
    def several(self) -> bool:
        return self.group is not None

    def rng_to_restore(self, state: Mapping[str, Any]) -> Any | None:
        """This rank's RNG state from a checkpoint. With another world size than the checkpoint's,
        rank 0 takes the main state and the others keep their seeds: exact no more (README)."""
        ranks = state.get("rng_ranks")
        if self.group is None:
            return state["rng"]
        if ranks is not None and len(ranks) == self.topo.world_size:
            return ranks[self.topo.rank]
        return state["rng"] if self.topo.rank == 0 else None

    def where(self, host: str, pid: int) -> dict[str, Any]:
        """The `started` event's fields on where each rank runs (every rank has read the run by then)."""
        if self.group is None:
            return {}
        return {"nodes": self.topo.nodes, "tasks": self.topo.world_size, "ranks": self.group.gather([host, pid])}

    def begin(self, stop_wanted: Callable[[], bool]) -> None:
        """Agree once before the first step whether to stop at once."""
        if self.group is not None:
            self._stop = self.group.agree([float(stop_wanted())])[0] > 0

    def stop_agreed(self, stop_wanted: Callable[[], bool]) -> bool:
        """Whether to stop at this step boundary: this rank's view, or what the ranks last agreed."""
        return stop_wanted() if self.group is None else self._stop

    def after_step(self, metrics: dict[str, float], stop_wanted: Callable[[], bool],
                   due_by_time: Callable[[], bool]) -> dict[str, float]:
        """The step's metrics, averaged over ranks, with "stop?" and "checkpoint by time?" agreed in
        the same collective (with one task: the metrics, nothing else is asked)."""
        if self.group is None:
            return metrics
        due = due_by_time()
        metrics, flags = mean_metrics(self.group, metrics, [float(stop_wanted()), float(due)])
        self._stop, self._due = flags[0] > 0, flags[1] > 0
        return metrics

    def due_agreed(self, due_by_time: Callable[[], bool]) -> bool:
        """Whether a checkpoint is due by time: this rank's clock, or what the ranks agreed after the step."""
        return due_by_time() if self.group is None else self._due

    def gather_rng(self, state: Any) -> list[Any] | None:
        """Every rank's RNG state for the main rank's checkpoint (None with one task)."""
        return None if self.group is None else self.group.gather(state)

    def checkpoint_written(self) -> None:
        """Nobody goes on (or exits) before the main rank's checkpoint is on disk."""
        if self.group is not None:
            self.group.barrier("waiting for the main rank's checkpoint")

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
