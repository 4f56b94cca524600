"""A run's lifecycle, in one place: its states, the groups commands act on, and the events that move it.

Every module that asks "is this run still going?" or writes an event uses these names, so that
`status`, `logs -f`, `cancel`, `submit`, `collect` and the runner agree on what "ended" means.
States are `StrEnum`s: they compare equal to their names and are written to JSON as plain strings.
"""
from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    NEW = "NEW"  # a folder without a submission
    PENDING = "PENDING"  # queued
    RUNNING = "RUNNING"
    REQUEUED = "REQUEUED"  # stopped at a step boundary, queued again (segment or preemption)
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    STOPPED = "STOPPED"  # a foreground run stopped by a signal, checkpointed
    TIMEOUT = "TIMEOUT"  # reached its time limit, checkpointed; `resume` continues it
    # What the scheduler alone can say about a job that ended without the run's own last word.
    PREEMPTED = "PREEMPTED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    UNREADABLE = "UNREADABLE"  # a folder whose spec cannot be read (shown by `collect`)
    # Held by the scheduler (Slurm's SUSPENDED, or STOPPED: SIGSTOP with the allocation kept): it goes on
    # when released, so it is active, never ended.
    SUSPENDED = "SUSPENDED"
    UNKNOWN = "UNKNOWN"  # the scheduler reports a word jobkit does not know (the word is in the run's note)
    WAITING = "WAITING"  # planned, not sent: the user's job limits leave no room yet (the feeder sends it)


QUEUED = frozenset({State.PENDING, State.REQUEUED})
ACTIVE = QUEUED | {State.RUNNING, State.SUSPENDED}  # has a job that `cancel` would stop; `resume` leaves alone
FAILED = frozenset({State.FAILED, State.TIMEOUT, State.CANCELLED, State.PREEMPTED, State.OUT_OF_MEMORY,
                    State.NODE_FAIL, State.BOOT_FAIL, State.DEADLINE})  # exit code 1 from `status`
TERMINAL = FAILED | {State.COMPLETED, State.STOPPED}  # nothing more happens without `resume`


class Phase(StrEnum):
    """What a state means to whoever waits on a run (`jobkit.observe.lifecycle.phase` decides)."""

    ACTIVE = "active"  # queued, running or held: it goes on by itself
    DONE = "done"  # completed
    ATTENTION = "attention"  # ended without finishing, never submitted, or unknown: a person acts next


class Event(StrEnum):
    """Kinds of line in a run's `events.jsonl`."""

    SUBMITTED = "submitted"
    STARTED = "started"
    CHECKPOINT = "checkpoint"
    REQUEUED = "requeued"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    TIMEOUT = "timeout"
    ALARM = "alarm"
    CONVERGED = "converged"  # a plateau stop decided; `finished` follows
    WARNING = "warning"
    CHECKPOINT_REJECTED = "checkpoint_rejected"  # failed its size/sha256/load check; the previous one is used
    LEASE_TAKEN_OVER = "lease_taken_over"  # a writer took the lease of one gone silent (jobkit/run/lease.py)
    SUBMIT_INTENT = "submit_intent"  # about to sbatch, with the token the job carries; `submitted` is the receipt
    SUBMIT_ABORTED = "submit_aborted"  # the submission of an intent was taken back (all or nothing)
    STALLED = "stalled"  # no step for the stall timeout: stacks kept, the job requeued (jobkit/run/watchdog.py)
    NODE_FAILED = "node_failed"  # an attempt's node was lost (NODE_FAIL); later attempts exclude it
    WORK_LOST = "work_lost"  # a script killed past its checkpoint, or not resumable: the next start goes back
    WAITING = "waiting"  # waiting for room under MaxSubmitPU/MaxJobsPU; a later submit (the feeder) sends it


# The state a run is in when this event is its latest lifecycle event.
STATE_OF_EVENT: dict[str, State] = {
    Event.SUBMITTED: State.PENDING,
    Event.WAITING: State.WAITING,
    Event.STARTED: State.RUNNING,
    Event.REQUEUED: State.REQUEUED,
    Event.FINISHED: State.COMPLETED,
    Event.FAILED: State.FAILED,
    Event.CANCELLED: State.CANCELLED,
    Event.STOPPED: State.STOPPED,
    Event.TIMEOUT: State.TIMEOUT,
}
# Events that end one attempt (a job's run of the loop).
ATTEMPT_ENDS = frozenset({Event.REQUEUED, Event.FINISHED, Event.FAILED, Event.CANCELLED, Event.STOPPED,
                          Event.TIMEOUT})

