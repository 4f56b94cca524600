"""Whether a run has ended, is active, or needs a person: decided here, once, for every command.

A run's state comes from two witnesses: its folder (the events the run wrote) and the scheduler
(Slurm's word for its job, read as `jobkit.slurm.job_state` maps it). `settle` merges them; `phase`
says what the merged state means. `submit --wait`, `status --watch`, `logs -f`, `cancel`, the status
table and `collect` all ask these two functions, so "ended" has one meaning: nothing is active.
"""
from __future__ import annotations

from typing import Iterable

from jobkit.plan.endings import Ending
from jobkit.observe.runstate import RunSummary
from jobkit.run.memory import oom_message
from jobkit.slurm import SlurmView, job_state
from jobkit.state import ACTIVE, TERMINAL, Phase, State

# Ends only the scheduler can report (the run had no chance to write its own last word).
SCHEDULER_ENDED = frozenset({State.TIMEOUT, State.PREEMPTED, State.NODE_FAIL, State.OUT_OF_MEMORY})


def phase(state: State | str) -> Phase:
    """ACTIVE while it goes on by itself (queued, running, held by the scheduler); DONE once completed;
    ATTENTION for everything else: ended without finishing, never submitted (NEW), unreadable, or a
    scheduler word jobkit does not know — nothing happens to it until a person acts."""
    if state in ACTIVE:
        return Phase.ACTIVE
    return Phase.DONE if state == State.COMPLETED else Phase.ATTENTION


def is_active(state: State | str) -> bool:
    return phase(state) == Phase.ACTIVE


def has_ended(state: State | str) -> bool:
    """Nothing more happens to the run by itself (what `--wait`, `--watch` and `logs -f` wait for)."""
    return phase(state) != Phase.ACTIVE


def needs_attention(state: State | str) -> bool:
    return phase(state) == Phase.ATTENTION


def all_ended(summaries: Iterable[RunSummary]) -> bool:
    return all(has_ended(s.state) for s in summaries)


def settle(summary: RunSummary, view: SlurmView) -> RunSummary:
    """The folder's state corrected by the scheduler's word, where the folder cannot know (the queue,
    a kill, a node failure). The run's own last word wins over its job's exit status."""
    if summary.executor != "slurm" or not summary.job_id or view.source == "none":
        return summary
    word = view.states.get(summary.job_id)
    if word is None:
        if view.source == "squeue" and summary.state in ACTIVE:
            # gone from the queue without a final event: ended abnormally (kill -9, node failure)
            summary.state = State.FAILED
            summary.error = summary.error or "job left the queue without recording an end (see jobkit logs)"
        return summary
    summary.partition = view.partitions.get(summary.job_id) or summary.partition
    said = job_state(word)
    if summary.state in TERMINAL and said not in ACTIVE:
        return summary
    if said == State.PENDING:
        requeued = summary.state in (State.REQUEUED, State.RUNNING) and summary.attempts
        summary.state = State.REQUEUED if requeued else State.PENDING
    elif said == State.COMPLETED:
        # the job ended fine but the run did not finish: submitit gave up requeueing
        summary.state = summary.state if summary.state in TERMINAL else State.FAILED
    elif said == State.UNKNOWN:
        summary.state = State.UNKNOWN
        summary.error = f"Slurm reports job {summary.job_id} as {word}, a state jobkit does not know"
    else:
        summary.state = said
        if said in SCHEDULER_ENDED and not summary.error:
            summary.error = f"Slurm ended job {summary.job_id}: {word}"
    return summary


def ended_by_scheduler(before: State | str, after: State | str) -> bool:
    """The folder said active, Slurm says ended without completing: the run had no last word, so
    Slurm's record is asked how (`jobkit.observe.endings`)."""
    return before in ACTIVE and after not in ACTIVE and after != State.COMPLETED


def name_ending(summary: RunSummary, ending: Ending | None, mem_mb: int) -> RunSummary:
    """An OOM kill or a lost node, named with what to do: OUT_OF_MEMORY with "out of memory at step N
    (mem 4G): `jobkit resume RUN --set mem=8G`"; NODE_FAIL with the node, which a resume avoids."""
    if ending is None:
        return summary
    summary.failed_nodes += [n for n in ending.failed_nodes if n not in summary.failed_nodes]
    if ending.oom:
        summary.state = State.OUT_OF_MEMORY
        summary.error = oom_message(summary.step, mem_mb, summary.run_id)
    elif summary.state == State.NODE_FAIL and summary.failed_nodes:
        nodes = ",".join(summary.failed_nodes)
        summary.error = (f"node {nodes} failed at step {summary.step}: `jobkit resume {summary.run_id}` "
                         f"continues from the last checkpoint with --exclude={nodes}")
    return summary
