"""This machine seen as a one-node cluster: its CPUs, memory and GPUs, and what fits on it at once.

The local executor used to start every run of a sweep at once: on a 2-core machine three 2-CPU runs
each ran many times slower than alone (oversubscribed threads cost more than a queue). With a size,
`jobkit submit --executor local` can refuse a run the machine cannot hold, and say how many runs start
now and how many wait (`jobkit.submit.localqueue` does the waiting). Reading the size is cheap: no torch, no
CUDA initialisation.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from jobkit.plan.spec import Resources


@dataclass(frozen=True)
class Request:
    """What one run holds while it runs on this machine."""

    cpus: int
    mem_mb: int
    gpus: int

    @classmethod
    def of(cls, res: Resources) -> "Request":
        return cls(cpus=res.cpus, mem_mb=res.mem_mb, gpus=res.gpus)


@dataclass(frozen=True)
class Node:
    """The machine: the cores this process may use, its memory, the GPUs it may see."""

    cores: tuple[int, ...]
    mem_mb: int
    gpus: tuple[str, ...]  # CUDA device ids as CUDA_VISIBLE_DEVICES names them

    @classmethod
    def detect(cls) -> "Node":
        return cls(cores=_cores(), mem_mb=_mem_total_mb(), gpus=_visible_gpus())

    @property
    def cpus(self) -> int:
        return len(self.cores)

    def refusal(self, req: Request) -> str | None:
        """Why `req` can never run here, or None when it fits the empty machine."""
        if req.cpus > self.cpus:
            return f"cpus = {req.cpus} but this machine has {self.cpus} CPU{'s' * (self.cpus != 1)}"
        if req.mem_mb > self.mem_mb:
            return f"mem = {req.mem_mb}M but this machine has {self.mem_mb}M"
        if req.gpus > len(self.gpus):
            return f"gpus = {req.gpus} but this machine has {len(self.gpus)} GPU{'s' * (len(self.gpus) != 1)}"
        return None

    def fits(self, req: Request, used: Request) -> bool:
        return (used.cpus + req.cpus <= self.cpus and used.mem_mb + req.mem_mb <= self.mem_mb
                and used.gpus + req.gpus <= len(self.gpus))

    def at_once(self, req: Request) -> int:
        """How many runs like `req` the empty machine holds side by side."""
        counts = [self.cpus // max(1, req.cpus), self.mem_mb // max(1, req.mem_mb)]
        if req.gpus:
            counts.append(len(self.gpus) // req.gpus)
        return max(0, min(counts))

    def describe(self) -> str:
        gib = self.mem_mb / 1024
        return (f"{self.cpus} CPU{'s' * (self.cpus != 1)} (cores {_ranges(self.cores)}), {gib:.1f} GiB memory, "
                f"{len(self.gpus)} GPU{'s' * (len(self.gpus) != 1)}")

    def to_json(self) -> dict:
        return {"cpus": self.cpus, "cores": list(self.cores), "mem_mb": self.mem_mb, "gpus": list(self.gpus)}


def total(reqs: Iterable[Request]) -> Request:
    reqs = list(reqs)
    return Request(sum(r.cpus for r in reqs), sum(r.mem_mb for r in reqs), sum(r.gpus for r in reqs))


def schedule(node: Node, reqs: Sequence[Request], busy: Request = Request(0, 0, 0)) -> int:
    """How many of `reqs` (in order) start at once when `busy` is already taken; the rest wait.

    The queue is first in, first out: once one run does not fit, every later one waits too, so a
    large run is never starved by small ones.
    """
    used = busy
    for n, req in enumerate(reqs):
        if not node.fits(req, used):
            return n
        used = total([used, req])
    return len(reqs)


def _cores() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def _mem_total_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError, AttributeError):
        return 0


def _visible_gpus(dev: Path = Path("/dev")) -> tuple[str, ...]:
    """CUDA_VISIBLE_DEVICES when set (what CUDA will show), else the NVIDIA device files."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        out = []
        for v in ids:
            if v.startswith("-"):
                break  # CUDA stops at the first invalid id
            out.append(v)
        return tuple(out)
    try:
        count = sum(1 for p in dev.iterdir() if re.fullmatch(r"nvidia\d+", p.name))
    except OSError:
        count = 0
    return tuple(str(i) for i in range(count))


def _ranges(values: Sequence[int]) -> str:
    """0,1,2,5 -> '0-2,5'."""
    parts: list[str] = []
    start = prev = None
    for v in sorted(values):
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = v
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(parts) or "-"
