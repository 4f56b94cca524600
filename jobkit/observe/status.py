"""Status of many runs: the run folders' own record, corrected by ONE scheduler call for all of them.

`sacct` when accounting answers (it knows finished, timed-out and preempted jobs); else one
`squeue` (which only knows queued and running jobs), the events filling in the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from jobkit.observe.runstate import RunSummary, summarize
from jobkit.slurm import SLURM_QUEUED, SLURM_RUNNING, SlurmView, query_states
from jobkit.state import ACTIVE, TERMINAL, State, as_state
from jobkit.store import RunDir

# Ends only the scheduler can report (the run had no chance to write its own last word).
SCHEDULER_ENDED = {State.TIMEOUT, State.PREEMPTED, State.NODE_FAIL, State.OUT_OF_MEMORY}


@dataclass
class StatusReport:
    summaries: list[RunSummary]
    slurm: SlurmView


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
    elif slurm_state == State.COMPLETED:
        # the job ended fine but the run did not finish: submitit gave up requeueing
        summary.state = summary.state if summary.state in TERMINAL else State.FAILED
    else:
        summary.state = as_state(slurm_state)
        if slurm_state in SCHEDULER_ENDED and not summary.error:
            summary.error = f"Slurm ended job {summary.job_id}: {slurm_state}"
    return summary


def collect_status(runs: Sequence[RunDir], use_slurm: bool = True) -> StatusReport:
    summaries = [summarize(r) for r in runs]
    view = SlurmView()
    if use_slurm:
        ids = [s.job_id for s in summaries if s.executor == "slurm" and s.job_id]
        view = query_states(ids)
    return StatusReport(summaries=[overlay(s, view) for s in summaries], slurm=view)
