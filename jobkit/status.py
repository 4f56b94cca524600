"""Status of many runs: the run folders' own record, corrected by ONE scheduler call for all of them.

`sacct` when accounting answers (it knows finished, timed-out and preempted jobs); else one
`squeue` (which only knows queued and running jobs), the events filling in the rest.
"""
from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .runstate import RunSummary, summarize
from .state import ACTIVE, TERMINAL, State, as_state
from .store import RunDir

SLURM_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"}
SLURM_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "RESV_DEL_HOLD"}


@dataclass
class SlurmView:
    states: dict[str, str] = field(default_factory=dict)  # job id -> Slurm state
    partitions: dict[str, str] = field(default_factory=dict)
    source: str = "none"  # sacct | squeue | none
    calls: int = 0
    error: str | None = None


@dataclass
class StatusReport:
    summaries: list[RunSummary]
    slurm: SlurmView


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def query_slurm(job_ids: Sequence[str]) -> SlurmView:
    """States of `job_ids` with one sacct call, or one squeue call when accounting is off."""
    view = SlurmView()
    ids = sorted({j for j in job_ids if j and str(j)[0].isdigit()})
    if not ids or shutil.which("squeue") is None:
        return view
    if shutil.which("sacct") and accounting_enabled():
        view.calls += 1
        try:
            out = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Partition", "-j", ",".join(ids)])
        except (OSError, subprocess.TimeoutExpired) as exc:
            out, view.error = None, str(exc)
        if out is not None and out.returncode == 0:
            view.source = "sacct"
            for line in out.stdout.splitlines():
                parts = line.split("|")
                if len(parts) >= 3:
                    view.states[parts[0]] = parts[1].split()[0]  # "CANCELLED by 0" -> CANCELLED
                    view.partitions[parts[0]] = parts[2]
            return view
        if out is not None:
            view.error = last_line(out.stderr or out.stdout) or "sacct failed"
    return _squeue(view)


def accounting_enabled() -> bool:
    """Whether slurm.conf names an accounting storage (read from the file: no Slurm call)."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    try:
        text = conf.read_text(errors="replace")
    except OSError:
        return True  # unknown: try sacct, fall back to squeue
    for line in text.splitlines():
        key, _, value = line.split("#", 1)[0].partition("=")
        if key.strip().lower() == "accountingstoragetype":
            return value.strip().lower() not in ("", "accounting_storage/none")
    return False


def last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


def _squeue(view: SlurmView) -> SlurmView:
    view.calls += 1
    try:
        out = _run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%T|%P"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        view.error = str(exc)
        return view
    if out.returncode != 0:
        view.error = last_line(out.stderr) or "squeue failed"
        return view
    view.source = "squeue"
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3:
            view.states[parts[0]] = parts[1]
            view.partitions[parts[0]] = parts[2]
    return view


def overlay(summary: RunSummary, view: SlurmView) -> RunSummary:
    """Correct the folder's view with the scheduler's, where the folder cannot know (kills, queue)."""
    if summary.executor != "slurm" or not summary.job_id or view.source == "none":
        return summary
    slurm_state = view.states.get(summary.job_id)
    if slurm_state is None:
        if view.source == "squeue" and summary.state in ACTIVE:
            # gone from the queue without a final event: ended abnormally (kill -9, node failure)
            summary.state = State.FAILED
            summary.error = summary.error or "job left the queue without recording an end (see jobkit logs)"
        return summary
    summary.partition = view.partitions.get(summary.job_id) or summary.partition
    if summary.state in TERMINAL and slurm_state not in SLURM_RUNNING | SLURM_QUEUED:
        return summary  # the run's own last word wins over the job's exit status
    if slurm_state in SLURM_RUNNING:
        summary.state = State.RUNNING
    elif slurm_state in SLURM_QUEUED:
        requeued = summary.state in (State.REQUEUED, State.RUNNING) and summary.attempts
        summary.state = State.REQUEUED if requeued else State.PENDING
    elif slurm_state == "COMPLETED":
        # the job ended fine but the run did not finish: submitit gave up requeueing
        summary.state = summary.state if summary.state in TERMINAL else State.FAILED
    else:
        summary.state = as_state(slurm_state)
        if slurm_state in ("TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY") and not summary.error:
            summary.error = f"Slurm ended job {summary.job_id}: {slurm_state}"
    return summary


def collect_status(runs: Sequence[RunDir], use_slurm: bool = True) -> StatusReport:
    summaries = [summarize(r) for r in runs]
    view = SlurmView()
    if use_slurm:
        ids = [s.job_id for s in summaries if s.executor == "slurm" and s.job_id]
        view = query_slurm(ids)
    return StatusReport(summaries=[overlay(s, view) for s in summaries], slurm=view)
