"""What a run's own folder says about it: state, progress, requeues — no Slurm call needed.

`jobkit.observe.status` overlays the scheduler's view on this; `jobkit.collect` uses it as is.
"""
from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from jobkit.observe import worklost
from jobkit.run.lease import pid_alive
from jobkit.run.memory import OOM_REASON
from jobkit.state import ATTEMPT_ENDS, QUEUED, STATE_OF_EVENT, Event, State
from jobkit.store import RunDir


@dataclass
class RunSummary:
    run_id: str
    sweep: str
    workload: str
    path: str
    params: dict[str, Any]
    state: State | str = State.NEW
    step: int = 0
    total: int = 0
    loss: float | None = None
    val_loss: float | None = None
    job_id: str | None = None
    partition: str | None = None
    executor: str | None = None
    attempts: int = 0  # jobs started (segments + restarts)
    requeues: int = 0
    requeue_reasons: dict[str, int] = field(default_factory=dict)
    submitted_t: float | None = None
    started_t: float | None = None
    ended_t: float | None = None
    run_seconds: float = 0.0  # wall time spent running, summed over attempts
    last_checkpoint_t: float | None = None
    last_checkpoint_step: int | None = None
    steps_per_s: float | None = None
    error: str | None = None
    alarms: list[str] = field(default_factory=list)
    converged: dict[str, Any] | None = None  # the `converged` event: step, best_step, best, metric
    warnings: list[str] = field(default_factory=list)
    pid: int | None = None
    host: str | None = None
    step_seconds: float | None = None
    checkpoint_seconds: float | None = None
    checkpoint_bytes: int | None = None  # the newest checkpoint's size (with its seconds: the write speed)
    state_bytes: int | None = None  # the state's size as the runner saw it at its start
    checkpoint_every: int | None = None  # the periodic interval in steps the loop uses now (progress.json)
    checkpoint_auto: dict[str, Any] | None = None  # with checkpoint_every = "auto": its interval and inputs
    entry: int = 0  # the sweep file's [[run]] table it came from (sweep order)
    key_params: tuple[str, ...] = ()  # the workload's, as spec.json records them (empty: not recorded)
    final: dict[str, Any] = field(default_factory=dict)  # metrics recorded when it finished
    tasks: str | None = None  # "nodes×tasks per node" of a run of several tasks (None: one process)
    no_step_s: float | None = None  # running, but its last step is older than expected: for how long
    failed_nodes: list[str] = field(default_factory=list)  # nodes lost under an attempt (jobkit.plan.endings)
    work_lost: str | None = None  # a command run's script killed past its checkpoint / restarted from scratch
    work_lost_t: float | None = None  # progress written before it is from the lost work

    @property
    def eta_s(self) -> float | None:
        if self.state != State.RUNNING or not self.steps_per_s or self.total <= self.step:
            return None if self.state != State.COMPLETED else 0.0
        return (self.total - self.step) / self.steps_per_s

    @property
    def convergence_note(self) -> str | None:
        """'converged at step N (best val_loss X; stopped at step M)' for a plateau stop, else None."""
        c = self.converged
        if not c:
            return None
        best = c.get("best")
        best_text = f"best {c.get('metric', 'val_loss')} {best:.4g}; " if isinstance(best, (int, float)) else ""
        return f"converged at step {c.get('best_step')} ({best_text}stopped at step {c.get('step')})"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["eta_s"] = self.eta_s
        data["convergence_note"] = self.convergence_note
        return data


def summarize(run: RunDir) -> RunSummary:
    spec = run.spec()
    s = RunSummary(run_id=run.run_id, sweep=spec.sweep, workload=spec.workload, path=str(run.path),
                   params=dict(spec.params), total=int(spec.params.get("steps", 0)), entry=spec.entry,
                   key_params=tuple(spec.key_params))
    res = spec.resources
    if res.world_size > 1:
        s.tasks = f"{res.nodes}×{res.tasks}"
    attempt_start: float | None = None
    events, s.warnings = run.read_events()
    for ev in events:
        try:
            attempt_start = _apply(s, ev, attempt_start)
        except (TypeError, ValueError, AttributeError, IndexError):
            s.warnings.append(f"event {str(ev)[:80]} has unusable fields and was skipped")
    return _rest(s, run, attempt_start)


def _apply(s: RunSummary, ev: dict[str, Any], attempt_start: float | None) -> float | None:
    """Fold one event into the summary; returns when the current attempt started."""
    kind, t = ev.get("event"), ev.get("t")
    if t is not None and not isinstance(t, (int, float)):
        raise TypeError("t")
    if kind in STATE_OF_EVENT:
        s.state = STATE_OF_EVENT[kind]
    if kind == Event.SUBMITTED:
        s.job_id, s.partition, s.executor = ev.get("job_id"), ev.get("partition"), ev.get("executor")
        s.host = ev.get("host", s.host)
        s.submitted_t = t
        s.error = None
    elif kind == Event.STARTED:
        s.attempts += 1
        s.started_t = s.started_t or t
        attempt_start = t
        s.job_id = ev.get("job_id") or s.job_id
        s.pid, s.host = ev.get("pid"), ev.get("host")
        if ev.get("tasks"):  # what the job really ran (the spec may have changed since)
            nodes = int(ev.get("nodes") or 1)
            s.tasks = f"{nodes}×{int(ev['tasks']) // nodes}"
        s.executor = ev.get("executor") or s.executor
        s.step = max(s.step, int(ev.get("step", 0)))
        s.state_bytes = ev.get("state_bytes", s.state_bytes)
    elif kind == Event.CHECKPOINT:
        s.last_checkpoint_t, s.last_checkpoint_step = t, ev.get("step")
        s.checkpoint_seconds = ev.get("seconds", s.checkpoint_seconds)
        s.step_seconds = ev.get("step_seconds", s.step_seconds)
        s.checkpoint_bytes = ev.get("size", s.checkpoint_bytes)
    elif kind == Event.REQUEUED:
        s.requeues += 1
        reason = str(ev.get("reason", "signal"))
        s.requeue_reasons[reason] = s.requeue_reasons.get(reason, 0) + 1
    elif kind == Event.TIMEOUT:
        s.error = f"time limit reached at step {ev.get('step')}: {ev.get('hint', '')}".strip()
    elif kind == Event.FAILED:
        s.error = str(ev.get("error", "")).strip().splitlines()[-1:][0] if ev.get("error") else "failed"
        if ev.get("reason") == OOM_REASON:  # its supervisor saw the OOM killer (jobkit.run.memory)
            s.state = State.OUT_OF_MEMORY
    elif kind == Event.NODE_FAILED:
        s.failed_nodes += [n for n in ev.get("nodes") or [] if n not in s.failed_nodes]
        s.warnings.append(str(ev.get("message")))
    elif kind == Event.CONVERGED:
        s.converged = {k: ev.get(k) for k in ("step", "best_step", "best", "metric")}
    elif kind == Event.FINISHED:
        s.final = dict(ev.get("metrics") or {})
    elif kind == Event.ALARM:
        s.alarms.append(f"step {ev.get('step')}: {ev.get('message')}")
    elif kind == Event.STALLED:
        s.warnings.append(f"stalled after step {ev.get('step')} (rank {ev.get('rank')}); "
                          f"stacks: jobkit logs {s.run_id} --stacks")
    elif kind in (Event.WARNING, Event.CHECKPOINT_REJECTED):
        s.warnings.append(str(ev.get("message")))
    elif kind == Event.WORK_LOST:
        s.step, s.work_lost, s.work_lost_t = int(ev.get("step") or 0), worklost.note(ev), t
    if kind in ATTEMPT_ENDS:
        if attempt_start is not None and t is not None:
            s.run_seconds += max(0.0, t - attempt_start)
        attempt_start = None
        s.ended_t = t
    if "step" in ev and kind != Event.SUBMITTED:
        s.step = max(s.step, int(ev["step"]))
    return attempt_start


def _rest(s: RunSummary, run: RunDir, attempt_start: float | None) -> RunSummary:
    progress = run.progress()
    if progress and (s.work_lost_t is None or float(progress.get("t") or 0) > s.work_lost_t):
        try:
            s.step = max(s.step, int(progress.get("step", 0)))
        except (TypeError, ValueError):
            s.warnings.append("progress.json has an unusable step; ignored")
        s.total = s.total or int(progress.get("total") or 0)  # a command run's script may say it
        s.loss = progress.get("loss", s.loss)
        s.val_loss = progress.get("val_loss", s.val_loss)
        s.steps_per_s = progress.get("steps_per_s")
        s.checkpoint_every, s.checkpoint_auto = progress.get("checkpoint_every"), progress.get("checkpoint_auto")
        if s.state == State.RUNNING and attempt_start is not None and progress.get("t"):
            s.run_seconds += max(0.0, progress["t"] - attempt_start)
        if s.state == State.RUNNING and attempt_start is not None:
            s.no_step_s = no_step_for(progress.get("t"), attempt_start, s.steps_per_s or None, time.time())
    if s.state == State.RUNNING and s.executor != "slurm" and not _alive_here(s.pid, s.host):
        s.state = State.FAILED  # a local process that died without a word (kill -9, OOM)
        s.error = s.error or "the process ended without recording why (killed?)"
    if s.state in QUEUED and s.executor == "local" and (s.job_id or "").isdigit() \
            and not _alive_here(int(s.job_id), s.host):
        s.state = State.FAILED  # its local controller is gone: it will never (re)start
        s.error = s.error or "its local job is gone without recording an end (killed?)"
    return s


NO_STEP_AFTER_S = 120.0  # a step older than this (or 10 steps' time, when longer) is worth saying
FIRST_STEP_AFTER_S = 600.0  # ... and this long for an attempt's first step (setup, resume, compile)


def no_step_for(last_t: Any, attempt_start: float, steps_per_s: float | None, now: float) -> float | None:
    """How long a running run has gone without a step, when that is longer than expected; else None.
    `last_t` is progress.json's time (written at most every few seconds); older than the attempt's
    start means no step yet in this attempt."""
    try:
        last = float(last_t) if last_t is not None else None
    except (TypeError, ValueError):
        return None
    first = last is None or last < attempt_start
    since = now - (attempt_start if first else last)
    expected = FIRST_STEP_AFTER_S if first else max(NO_STEP_AFTER_S, 10.0 / steps_per_s if steps_per_s else 0.0)
    return since if since > expected else None


def _alive_here(pid: int | None, host: str | None) -> bool:
    if pid is None or host != socket.gethostname():
        return True  # cannot tell from here: believe the events
    return pid_alive(pid)


def age(t: float | None) -> float | None:
    return None if t is None else max(0.0, time.time() - t)
