"""Which loop runs a run, decided here only: the runner's step loop, or the workload's own process.

Both entry points (`jobkit.run.job.TrainJob` for a scheduled job, `jobkit run` in the foreground)
call `run`; a workload that runs itself (`protocol.SelfRunning`, e.g. the user's own script) gets
the run folder and the host, every other one goes through `runner.run`. Either raises the runner's
`Stopped` / `RunFailed`, so the host handles both alike.
"""
from __future__ import annotations

from typing import Any, Callable

from jobkit.plan import registry
from jobkit.plan.spec import JobSpec
from jobkit.run.stops import Host, Stopped
from jobkit.store import RunDir


def self_running(spec: JobSpec) -> Any | None:
    """The workload class when it runs itself, else None (an unknown workload is the runner's to
    record as a failed start)."""
    try:
        cls = registry.load(spec.workload, check=False)
    except registry.UnknownWorkload:
        return None
    return cls if registry.runs_itself(cls) else None


def continues_at_limit(spec: JobSpec) -> bool:
    """Whether a stop at the job's time limit continues in a new segment although the run is not
    chunked (a resumable script continues from its own checkpoint)."""
    cls = self_running(spec)
    return cls is not None and bool(cls.continues_at_limit(spec.params))


def run(run: RunDir, host: Host, near_limit: Callable[[Stopped], bool] | None = None) -> dict[str, float]:
    """Run (or continue) `run` to its end on `host`; raises `Stopped` / `RunFailed` like `runner.run`.
    `near_limit(stop)`: whether a stop was the job's time limit (a self-running workload asks)."""
    cls = self_running(run.spec())
    if cls is not None:
        return cls.run(run, host, near_limit=near_limit)
    from jobkit.run import runner  # here: torch is imported only for runs it steps

    return runner.run(run, host)
