"""Work lost when a script does not stop cleanly: it died of the forwarded stop signal, was killed after
the wait, or is not resumable at all. The next start goes back to the last checkpoint (or to step 0),
so status must say how far back (`jobkit.observe.worklost`), and jobkit's own idea of the run's step
must go back with it (`supervise.current_step`).

The checkpoint is the latest `checkpoint` event: one the script reported (`report.checkpoint_saved`)
or a file jobkit saw change (the `checkpoint` key) at the last step the progress pattern had read by
the file's mtime; the time lost counts from that mtime.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from jobkit.state import Event
from jobkit.store import RunDir


def last_checkpoint(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest checkpoint event with a step (after the latest restart from scratch), or None."""
    found = None
    for ev in events:
        if ev.get("event") == Event.CHECKPOINT and ev.get("step") is not None:
            found = ev
        elif ev.get("event") == Event.WORK_LOST and ev.get("from_scratch"):
            found = None  # that run's checkpoints are not where the next start begins
    return found


def for_stall_guard(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with each requeue after lost work at the step the script had reached: the
    requeue-without-progress guard counts a start that got past its checkpoint as progress."""
    out, reached = [], None
    for ev in events:
        if ev.get("event") == Event.WORK_LOST:
            reached = ev.get("reached")
        elif ev.get("event") == Event.REQUEUED and reached is not None:
            ev, reached = {**ev, "step": reached}, None
        out.append(ev)
    return out


def fields(run: RunDir, params: Mapping[str, Any], reached: int, cause: str, died_at: float | None = None) -> dict:
    """The `work_lost` event's fields for a stop that will be requeued (the supervisor writes it).

    `reached`: the last step the script got to; `cause`: why its own save cannot be trusted."""
    died_at = time.time() if died_at is None else died_at
    events = run.events()
    started = [e for e in events if e.get("event") == Event.STARTED]
    attempt_t = started[-1].get("t") if started else None
    if not params.get("resumable"):
        lost_s = None if attempt_t is None else max(0.0, died_at - attempt_t)
        return dict(step=0, reached=int(reached), lost_steps=int(reached),
                    lost_s=_round(lost_s), from_scratch=True, cause=cause)
    ckpt = last_checkpoint(events)
    if ckpt is None:
        watched = bool(params.get("checkpoint"))  # watched and none seen: back to step 0; else unknown
        lost_s = None if attempt_t is None or not watched else max(0.0, died_at - attempt_t)
        return dict(step=0 if watched else int(reached), reached=int(reached),
                    lost_steps=int(reached) if watched else None, lost_s=_round(lost_s),
                    from_scratch=False, cause=cause, checkpoint=None)
    back_to = int(ckpt["step"])
    saved_t = ckpt.get("mtime") or ckpt.get("t")
    return dict(step=back_to, reached=int(reached), lost_steps=max(0, int(reached) - back_to),
                lost_s=_round(None if saved_t is None else max(0.0, died_at - saved_t)), from_scratch=False,
                cause=cause, checkpoint=ckpt.get("file"))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
