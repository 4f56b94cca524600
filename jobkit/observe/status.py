"""Status of many runs: the run folders' own record, corrected by ONE scheduler call for all of them.

`sacct` when accounting answers (it knows finished, timed-out and preempted jobs); else one
`squeue` (which only knows queued and running jobs), the events filling in the rest. How the two
witnesses are merged, and what "ended" means, is `jobkit.observe.lifecycle`'s to say.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from jobkit.observe import feeders
from jobkit.observe.lifecycle import ended_by_scheduler, name_ending, settle
from jobkit.observe.runstate import RunSummary, summarize
from jobkit.plan.endings import read_history
from jobkit.slurm import SlurmView, job_history, query_states
from jobkit.state import State
from jobkit.store import RunDir


@dataclass
class StatusReport:
    summaries: list[RunSummary]
    slurm: SlurmView
    feeders: list[str] = field(default_factory=list)  # one line per sweep with a feeder job (same call)


def collect_status(runs: Sequence[RunDir], use_slurm: bool = True) -> StatusReport:
    summaries = [summarize(r) for r in runs]
    view = SlurmView()
    fed = feeders.records(s.path for s in summaries)
    if use_slurm:
        ids = [s.job_id for s in summaries if s.executor == "slurm" and s.job_id]
        ids += [str(r["job_id"]) for r in fed.values() if not r.get("ended")]
        view = query_states(ids)
    before = [s.state for s in summaries]
    settled = [settle(s, view) for s in summaries]
    ended = {s.job_id: (s, r) for s, r, b in zip(settled, runs, before) if ended_by_scheduler(b, s.state)}
    if ended and view.source == "sacct":  # killed without a last word (OOM, a lost node): one more
        view.calls += 1                      # sacct, for those runs only (a poll stays within 2 calls)
        history = read_history(job_history(list(ended)) or "")
        for job_id, (s, r) in ended.items():
            name_ending(s, history.get(job_id), r.spec().resources.mem_mb)
    lines = [feeders.describe(sweep, rec, view.states.get(str(rec["job_id"])),
                              sum(1 for s in settled if s.sweep == sweep and s.state == State.WAITING))
             for sweep, rec in sorted(fed.items())]
    return StatusReport(summaries=settled, slurm=view, feeders=lines)
