"""Status of many runs: the run folders' own record, corrected by ONE scheduler call for all of them.

`sacct` when accounting answers (it knows finished, timed-out and preempted jobs); else one
`squeue` (which only knows queued and running jobs), the events filling in the rest. How the two
witnesses are merged, and what "ended" means, is `jobkit.observe.lifecycle`'s to say.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from jobkit.observe.lifecycle import ended_by_scheduler, name_ending, settle
from jobkit.observe.runstate import RunSummary, summarize
from jobkit.plan.endings import read_history
from jobkit.slurm import SlurmView, job_history, query_states
from jobkit.store import RunDir


@dataclass
class StatusReport:
    summaries: list[RunSummary]
    slurm: SlurmView


def collect_status(runs: Sequence[RunDir], use_slurm: bool = True) -> StatusReport:
    summaries = [summarize(r) for r in runs]
    view = SlurmView()
    if use_slurm:
        ids = [s.job_id for s in summaries if s.executor == "slurm" and s.job_id]
        view = query_states(ids)
    before = [s.state for s in summaries]
    settled = [settle(s, view) for s in summaries]
    ended = {s.job_id: (s, r) for s, r, b in zip(settled, runs, before) if ended_by_scheduler(b, s.state)}
    if ended:  # killed without a last word (OOM, a lost node): one more call, for those runs only
        view.calls += 1
        history = read_history(job_history(list(ended)) or "")
        for job_id, (s, r) in ended.items():
            name_ending(s, history.get(job_id), r.spec().resources.mem_mb)
    return StatusReport(summaries=settled, slurm=view)
