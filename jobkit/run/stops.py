"""Stop requests and the host a run is on: what a signal, a time limit or a stalled requeue means.

The runner's flag handler only records a request (`StopFlag`); the loop acts on it at a step
boundary, where the state is consistent. `Host` knows the job's time limit and tells a preemption
(act now) from the early time-limit warning (keep training until jobkit's own deadline).
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from jobkit.run import distributed
from jobkit.state import Event
from jobkit.store import RunDir

EXIT_STOPPED = 3  # a run stopped by a signal, checkpointed, resumable ("stopped, resume me")


class RunFailed(RuntimeError):
    """The run cannot go on (bad data, NaN loss, no progress); the message is for the user."""


class Stopped(Exception):
    """The loop checkpointed after a stop request; the host decides what happens next."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"stopped at step {step}: {reason}")
        self.step, self.reason = step, reason


@dataclass
class Host:
    """Where the loop runs: how it is named in events and what a stop request means there."""

    executor: str = "foreground"
    job_id: str | None = None
    time_limit_s: float | None = None  # this job's wall-time limit; the loop stops before it
    margin_s: float = 60.0  # stop this long before the limit (checkpoint + exit must fit)
    stop_signals: tuple[int, ...] = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    started: float = field(default_factory=time.time)
    early_s: float = 35.0  # slurmctld checks limits every 30 s: its warning may come this much early
    defer_s: float = 20.0  # ...so a warning near the limit is acted on this much later at most
    queued_s: float | None = None  # how long a local job waited for its share of the machine
    topology: distributed.Topology = field(default_factory=distributed.Topology)  # this task among the run's
    collective_timeout_s: float = field(default_factory=lambda: float(
        os.environ.get("JOBKIT_COLLECTIVE_TIMEOUT_S", distributed.DEFAULT_TIMEOUT_S)))
    stall_timeout_s: float | None = None  # no step for this long is a stall (run/watchdog.py); None: the spec's
    # How a stalled attempt ends (run, topology, step, detail or None when the run failed); it exits the
    # process. The job requeues (run/job.py); None: the foreground's stop (exit 3).
    end_stalled: Callable[[Any, Any, int, str | None], None] | None = None

    def deadline(self) -> float | None:
        if self.time_limit_s is None:
            return None
        return self.started + self.time_limit_s - self.margin_s

    def stop_now(self, signal_at: float, now: float) -> bool:
        """Whether a stop signal received at `signal_at` must be acted on at `now`.

        A signal within `early_s` of our own deadline is the time-limit warning, sent early: the
        loop keeps training until the deadline (or `defer_s`), which makes short segments useful.
        Any other signal (a preemption) is acted on at once.
        """
        deadline = self.deadline()
        if deadline is None or signal_at < deadline - self.early_s:
            return True
        return now >= min(deadline, signal_at + self.defer_s)


class StopFlag:
    """Signal handlers that only record the request; the loop acts on it at a step boundary."""

    def __init__(self, signals: tuple[int, ...]) -> None:
        self.reason: str | None = None
        self.signum: int | None = None
        self.at: float | None = None  # when the first stop signal arrived
        self.previous: dict[int, Any] = {}
        for sig in signals:
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self.at = self.at or time.time()
        self.reason = self.reason or f"signal {signal.Signals(signum).name}"

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def refuse_stalled_loop(run: RunDir, step: int, write: bool = True,
                        events: list[dict[str, Any]] | None = None) -> None:
    """Stop a run that keeps being requeued without finishing a step (it would loop forever).
    `events`: the run's events when the caller has just read them."""
    stalled = 0
    for ev in reversed(run.events() if events is None else events):
        if ev.get("event") == Event.REQUEUED:
            if ev.get("step", -1) != step:
                break
            stalled += 1
        elif ev.get("event") in (Event.FINISHED, Event.FAILED, Event.SUBMITTED):
            break
    if stalled >= 3:
        message = (f"no progress: requeued {stalled} times at step {step} without finishing a step; "
                   "the job's time limit is too short for setup + one step + a checkpoint. "
                   "Resubmit with a longer --time.")
        if write:
            run.record_failed(message, step=step)
        raise RunFailed(message)
