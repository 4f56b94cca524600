"""The job entry point: one picklable callable per run, requeued after a stop.

submitit's own USR2 handler would call `checkpoint()` inside the signal handler, wherever the main
thread is (maybe mid optimizer step). Instead the runner's flag handler takes USR2, the loop
checkpoints at a step boundary, and only then is the job requeued (`jobkit.slurm.requeue`: one
`scontrol requeue`, or the local executor's requeue exit) — so the state on disk is always consistent.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from jobkit import slurm
from jobkit.run import distributed, launch, lease, leftovers, nodefail, runner
from jobkit.state import Event
from jobkit.store import RunDir


class TrainJob(slurm.Checkpointable):
    """Runs one run directory; safe to pickle (it holds only the path)."""

    def __init__(self, run_dir: str | Path, signal_delay_s: int = 90, time_limit_min: int | None = None,
                 stall_timeout_s: float | None = None) -> None:
        self.run_dir = str(run_dir)
        self.signal_delay_s = signal_delay_s
        self.time_limit_min = time_limit_min  # this job's limit (a segment's, when chunked)
        self.stall_timeout_s = stall_timeout_s  # the run's or the site's (jobkit.toml); None: derived

    def __call__(self) -> dict[str, float]:
        run = RunDir(Path(self.run_dir))
        if not run.exists():  # removed while the job waited in the queue: nothing to run, nothing to touch
            print(f"jobkit: run folder {self.run_dir} no longer exists (removed while the job was queued); "
                  "nothing to do", file=sys.stderr, flush=True)
            return {}
        env = slurm.job_environment()
        spec = run.spec()
        limit_min = self.time_limit_min or spec.resources.time_min
        granted = os.environ.get("JOBKIT_LOCAL_GRANTED_T")  # set by jobkit.submit.localqueue: the clock starts there
        topology = distributed.Topology.from_job_env(env, os.environ.get("SLURM_JOB_ID") or env.job_id)
        marker = leftovers.mark_rank(env.job_id, topology.rank, env.executor)  # inherited by all this rank starts
        try:
            return self._run(run, env, spec, limit_min, granted, topology)
        finally:  # every exit path: nothing this rank started outlives it (jobkit.run.leftovers)
            leftovers.kill_marked(marker)

    def _run(self, run: RunDir, env: slurm.JobEnvironment, spec: Any, limit_min: int, granted: str | None,
             topology: distributed.Topology) -> dict[str, float]:
        executor = env.executor
        host = runner.Host(executor=executor, job_id=env.job_id, time_limit_s=limit_min * 60,
                           margin_s=self.signal_delay_s, stop_signals=(signal.SIGUSR2,),
                           started=float(granted) if granted else _process_start(),
                           queued_s=float(os.environ.get("JOBKIT_LOCAL_QUEUED_S") or 0) if granted else None,
                           topology=topology, stall_timeout_s=getattr(self, "stall_timeout_s", None))
        chunked = spec.resources.chunk or bool(
            spec.resources.total_time_min and spec.resources.total_time_min > limit_min)
        chunked = chunked or launch.continues_at_limit(spec)
        try:  # one writer per run: a live lease means another job trains it; leave the folder untouched
            held = lease.Lease.take(run.path, job_id=env.job_id, rank=topology.rank)
        except lease.LeaseHeld as exc:  # not a failure of the run (see README): this job just ends
            print(f"jobkit: {exc}; this job ends without touching the run", file=sys.stderr, flush=True)
            return {}
        host.end_stalled = lambda run_, topo, step, detail: _requeue_stalled(run_, env, topo, held, step, detail)
        try:
            lost, on_lost = nodefail.after_restart(run, env) if topology.is_main else ([], False)
            for node in lost:
                run.event(Event.NODE_FAILED, nodes=[node], job_id=env.job_id, message=nodefail.message(node))
            if on_lost:  # Slurm put it back on a node that failed: leave it now, excluding that node
                run.event(Event.REQUEUED, reason="node_fail", job_id=env.job_id,
                          detail="started on a node that failed under an earlier attempt; requeued without it")
                held.release()
                problem = slurm.requeue(env, exclude=nodefail.lost_nodes(run))
                raise runner.RunFailed(f"started on a node that failed before but could not requeue: {problem}")
            return launch.run(run, host, near_limit=lambda s: _classify(s, host, False) == "timeout")
        except runner.Stopped as stop:
            if not topology.is_main:
                # every rank stopped at the same step and the checkpoint is on disk: this task simply
                # ends; the main task requeues the job (which ends any straggler too)
                return {}
            reason = _classify(stop, host, chunked)
            if reason == "timeout":
                # Not chunked: the run asked for less time than it needs. Stop here, resumable,
                # rather than requeue forever; `jobkit resume --partition/--time` continues it.
                run.event(Event.TIMEOUT, step=stop.step, job_id=env.job_id, detail=stop.reason,
                          hint="resume with a longer --time, another --partition, or --chunk")
                return run.metrics()
            run.event(Event.REQUEUED, step=stop.step, reason=reason, job_id=env.job_id, detail=stop.reason)
            held.release()  # before requeueing: the next attempt must not wait for this one's lease
            # exits the process when the job is requeued (kept off the nodes this run lost)
            problem = slurm.requeue(env, exclude=nodefail.lost_nodes(run))
            raise runner.RunFailed(f"stopped at step {stop.step} but could not requeue: {problem}") from None
        finally:
            held.release()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """A signal outside the training loop (submitit's handler): the run's state is already on
        disk, so the same callable is requeued."""
        return slurm.resubmission(TrainJob(self.run_dir, self.signal_delay_s, self.time_limit_min))


def _requeue_stalled(run: RunDir, env: Any, topo: distributed.Topology, held: lease.Lease, step: int,
                     detail: str | None) -> None:
    """A stalled attempt (from the watchdog's thread): the main rank writes `requeued` and requeues the job
    as a stop does; every rank then ends its process with `os._exit` (its main thread is stuck)."""
    if detail is None:  # the run failed (stalled twice): nothing to requeue
        os._exit(1)
    held.release()
    if not topo.is_main:
        time.sleep(5.0)  # the main rank has read this rank's stacks record by now, and requeued the job
        os._exit(1)  # (Slurm ends it sooner; the local executor requeues when any task exits with its code)
    run.event(Event.REQUEUED, step=step, reason="stall", job_id=env.job_id, detail=detail)
    try:
        problem = slurm.requeue(env)  # ends with SystemExit (its exit status) once the job is requeued
    except SystemExit as done:
        os._exit(done.code if isinstance(done.code, int) else 1)
    run.record_failed(f"stalled at step {step} but could not requeue: {problem}", step=step)
    os._exit(1)


def _classify(stop: runner.Stopped, host: runner.Host, chunked: bool) -> str:
    """`segment` / `timeout` when the job's time limit is near (chunked or not), else `preemption`.

    Near the limit a signal is ambiguous (Slurm's time-limit warning and a preemption are the same
    USR2), so there Slurm itself is asked whether it chose the job for preemption."""
    if stop.reason.startswith("stalled"):  # a command run's stall watch (jobkit.command.stall)
        return "stall"
    if host.time_limit_s is None:
        return "preemption"
    if stop.reason.startswith("time limit"):  # jobkit's own deadline: no signal at all
        return "segment" if chunked else "timeout"
    remaining = host.started + host.time_limit_s - time.time()
    if remaining > host.margin_s + 45:
        return "preemption"
    if host.executor == "slurm" and host.job_id and slurm.preempted(host.job_id):
        return "preemption"
    return "segment" if chunked else "timeout"


def _process_start() -> float:
    """When this process started (the job's clock started just before), from /proc; else now."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()
