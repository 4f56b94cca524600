"""Cancel runs: their Slurm jobs in one scancel, local ones by their process, and a `cancelled` event
in each run folder. Checkpoints stay; `jobkit resume` continues."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from jobkit.observe import feeders
from jobkit.observe.lifecycle import is_active
from jobkit.observe.runstate import RunSummary
from jobkit.slurm import scancel
from jobkit.state import State
from jobkit.store import RunDir
from jobkit.submit import feeder


@dataclass
class CancelOutcome:
    cancelled: list[RunSummary] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def cancel_runs(summaries: Sequence[RunSummary]) -> CancelOutcome:
    """Cancel the runs that are active (queued, running, held); the others are left alone."""
    active = [s for s in summaries if is_active(s.state)]
    outcome = CancelOutcome(cancelled=active)
    slurm_ids = [s.job_id for s in active if s.executor == "slurm" and s.job_id and s.state != State.WAITING]
    slurm_ids += _stop_feeders(active)
    if slurm_ids:
        problem = scancel(slurm_ids)
        if problem:
            outcome.errors.append(problem)
    for s in active:
        if s.executor != "slurm":
            _kill_local(s)
        RunDir(Path(s.path)).record_cancelled(s.job_id, s.step)
    return outcome


def _stop_feeders(active: Sequence[RunSummary]) -> list[str]:
    """The feeder jobs of the sweeps being cancelled (else they would send the cancelled runs again),
    recorded as ended so that one already running submits nothing; `jobkit submit` starts a new one."""
    ids = []
    for sweep_dir in {Path(s.path).parent for s in active}:
        rec = feeders.record(sweep_dir)
        if rec and rec.get("job_id") and not rec.get("ended"):
            ids.append(str(rec["job_id"]))
            feeder.write_record(sweep_dir, job_id=rec["job_id"], ended="cancelled")
    return ids


def _kill_local(s: RunSummary) -> None:
    """A local job: the training process and, when the job id is a pid, submitit's process."""
    for pid in (s.pid, int(s.job_id) if (s.job_id or "").isdigit() else None):
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
