"""A run's job logs, attempt by attempt: what `jobkit logs` prints and follows.

A requeued Slurm job keeps its id and appends to the same files (`--open-mode=append`), so one file
holds several attempts; submitit's banner line starts each one.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

from jobkit.slurm import job_log_paths
from jobkit.state import Event
from jobkit.store import RunDir

ATTEMPT_BANNER = "Starting with JobEnvironment"  # submitit's first line of every start


@dataclass
class Attempt:
    job_id: str
    stdout: str
    stderr: str


@dataclass
class JobLogs:
    job_id: str
    stdout: Path
    stderr: Path


def job_logs(run: RunDir, task: int = 0) -> list[JobLogs]:
    """The log files of every job of a run, oldest first (of one task: 0 is the main rank)."""
    out, seen = [], set()
    for ev in run.events():
        job_id = ev.get("job_id")
        if ev.get("event") in (Event.SUBMITTED, Event.STARTED) and job_id and job_id not in seen:
            seen.add(job_id)
            stdout, stderr = job_log_paths(run.path.parent, str(job_id), task)
            out.append(JobLogs(str(job_id), stdout, stderr))
    return out


def split_attempts(text: str) -> list[str]:
    parts, current = [], []
    for line in text.splitlines(keepends=True):
        if ATTEMPT_BANNER in line and current:
            parts.append("".join(current))
            current = []
        current.append(line)
    if current:
        parts.append("".join(current))
    return parts


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def attempts(run: RunDir, task: int = 0) -> list[Attempt]:
    """Every attempt of every job of the run, in order (of one task)."""
    out = []
    for logs in job_logs(run, task):
        outs, errs = split_attempts(_read(logs.stdout)), split_attempts(_read(logs.stderr))
        for i in range(max(len(outs), len(errs))):
            out.append(Attempt(logs.job_id, outs[i] if i < len(outs) else "", errs[i] if i < len(errs) else ""))
    return out


STACKS = "stacks"  # jobkit.run.watchdog.STACKS: where a stalled run's processes left their stacks


def stacks_files(run: RunDir, attempt: int | None = None) -> list[Path]:
    """The stack dumps a stall left (`stacks/attempt<A>-rank<R>.txt`, a command's `attempt<A>-*.txt`),
    oldest attempt first, rank order within one; only attempt `attempt` when given."""
    folder = run.path / STACKS
    if not folder.is_dir():
        return []

    def key(path: Path) -> tuple[int, str]:
        head = path.name.split("-", 1)[0].removeprefix("attempt")
        return (int(head) if head.isdigit() else 0, path.name)
    files = sorted((p for p in folder.glob("attempt*.txt") if p.is_file()), key=key)
    return [p for p in files if attempt is None or key(p)[0] == attempt]


def follow(paths: list[Path], ended: Callable[[], bool], out: TextIO = sys.stdout, poll_s: float = 1.0) -> None:
    """Print what is appended to `paths` until `ended()` says the run has ended (Ctrl-C stops it too)."""
    offsets = {p: p.stat().st_size if p.exists() else 0 for p in paths}
    try:
        while True:
            for chunk in _new_text(offsets):
                out.write(chunk)
                out.flush()
            if ended():
                for chunk in _new_text(offsets):  # what was written just before the end
                    out.write(chunk)
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        pass


def _new_text(offsets: dict[Path, int]) -> Iterator[str]:
    for path in offsets:
        if path.exists() and path.stat().st_size > offsets[path]:
            with open(path, errors="replace") as f:
                f.seek(offsets[path])
                yield f.read()
                offsets[path] = f.tell()
