"""The training loop every run goes through, in a Slurm job, a local job or the foreground.

It owns seeding, threads, checkpoint cadence, signals, TensorBoard, events and progress; the
workload owns the science. A stop request (USR2 from Slurm before a time limit or preemption,
TERM/INT in the foreground, or the segment's own deadline) only sets a flag: the loop checkpoints
at the next step boundary, where the state is consistent, and then hands over to the host
(submitit requeues the job; the foreground exits with `EXIT_STOPPED`).
"""
from __future__ import annotations

import inspect
import math
import os
import socket
import time
import traceback
from typing import Any, Callable

import torch

from jobkit.plan import params as params_mod
from jobkit.plan import registry
from jobkit.protocol import RunContext
from jobkit.run import distributed, faults, rng
from jobkit.run.convergence import Plateau, judged_by
from jobkit.run.divergence import DivergenceMonitor
from jobkit.run.stops import EXIT_STOPPED, Host, RunFailed, StopFlag, Stopped, refuse_stalled_loop
from jobkit.state import Event
from jobkit.store import RunDir

# The loop's own names, and the stop vocabulary every host of it uses (jobkit.run.stops).
__all__ = ["run", "build_workload", "EXIT_STOPPED", "Host", "RunFailed", "Stopped", "StopFlag",
           "refuse_stalled_loop"]
CHECKPOINT_FORMAT = 1
PROGRESS_EVERY_S = 5.0


def build_workload(run: RunDir):
    """The workload object for a run, from its spec (cross-field checks run again on this code)."""
    spec = run.spec()
    cls = registry.load(spec.workload)
    params = params_mod.from_dict(cls.Params, spec.workload_values)
    params_mod.check(params)
    return spec, cls(params), params


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value)
    return out


def _write_hparams(writer: Any, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    from torch.utils.tensorboard.summary import hparams as hp_summary

    flat = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}
    final = {f"hparam/{k}": v for k, v in metrics.items() if math.isfinite(v)}
    for summary in hp_summary(flat, final):
        writer.file_writer.add_summary(summary)
    for key, value in final.items():
        writer.add_scalar(key, value)


def run(run: RunDir, host: Host | None = None,
        on_step: Callable[[int], None] | None = None) -> dict[str, float]:
    """Run (or continue) one run to its end. Returns the final metrics.

    Raises `Stopped` after checkpointing on a stop request, `RunFailed` on a user-facing failure.
    `on_step(step)` is a test hook called after every completed step.
    """
    from torch.utils.tensorboard import SummaryWriter

    host = host or Host()
    flag = StopFlag(host.stop_signals)
    try:
        return _loop(run, host, flag, on_step, SummaryWriter)
    except (Stopped, RunFailed):
        raise
    except Exception as exc:
        if faults.is_no_space(exc):  # a full disk or quota: named; the last good checkpoint stays latest
            raise RunFailed(faults.report_no_space(run, exc, record=host.topology.is_main)) from None
        # a bug or a crash in the workload: recorded, then raised
        _record_crash(run, host.topology, exc)
        raise
    finally:
        flag.restore()
        if host.topology.is_main:
            faults.release_reserve(run.path)


def _record_crash(run: RunDir, topo: distributed.Topology, exc: BaseException) -> None:
    """A FAILED event for a crash. With several tasks the rank that crashed names itself; a rank that
    only lost contact with it records nothing when the crashed rank already said why."""
    error = f"{type(exc).__name__}: {exc}"
    extra: dict[str, Any] = {}
    if topo.distributed:
        if distributed.looks_collective(exc):
            time.sleep(1.0)  # the crashed rank's own event, if it could write one, lands first
            started = [i for i, e in enumerate(run.events()) if e.get("event") == Event.STARTED]
            since = run.events()[started[-1] if started else 0:]
            if any(e.get("event") == Event.FAILED for e in since):
                return
            if not topo.is_main:
                return  # the main rank speaks for a lost peer
            error = str(exc) if isinstance(exc, distributed.PeerLost) else f"rank {topo.rank}: lost another rank: {error}"
        else:
            error = f"rank {topo.rank}: {error}"
        extra = {"rank": topo.rank}
    run.event(Event.FAILED, error=error.splitlines()[0][:500] if topo.distributed else error,
              traceback=traceback.format_exc(limit=8), **extra)


class _NullWriter:
    """TensorBoard for ranks other than the main one: every call does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _loop(run: RunDir, host: Host, flag: StopFlag, on_step: Callable[[int], None] | None,
          writer_cls: Any) -> dict[str, float]:
    try:
        spec, workload, params = build_workload(run)
    except params_mod.ParamError as exc:
        message = f"spec.json: {exc}"
        if host.topology.is_main:
            run.event(Event.FAILED, step=0, error=message)
        raise RunFailed(message) from None
    res = spec.resources
    topo = host.topology
    main = topo.is_main
    torch.set_num_threads(max(1, res.cpus))
    device = torch.device("cuda" if res.gpus > 0 and torch.cuda.is_available() else "cpu")
    if topo.distributed and device.type == "cuda":
        device = torch.device("cuda", topo.local_rank % max(1, torch.cuda.device_count()))
    takes_ctx = "ctx" in inspect.signature(workload.setup).parameters
    if topo.distributed and not takes_ctx:
        message = (f"workload {spec.workload!r} trains in one process only (its setup() takes no ctx); "
                   "resubmit with tasks_per_node = 1 and nodes = 1")
        if main:
            run.event(Event.FAILED, step=0, error=message)
        raise RunFailed(message)
    group = distributed.Group(topo, device, host.collective_timeout_s) if topo.distributed else None
    try:
        return _train(run, host, flag, on_step, writer_cls, spec, workload, params, device, group, takes_ctx)
    finally:
        if group is not None:
            group.close()


def _train(run: RunDir, host: Host, flag: StopFlag, on_step: Callable[[int], None] | None, writer_cls: Any,
           spec: Any, workload: Any, params: Any, device: torch.device, group: "distributed.Group | None",
           takes_ctx: bool) -> dict[str, float]:
    topo = host.topology
    main = topo.is_main

    def note(name: str, **fields: Any) -> None:  # events come from the main rank only
        if main:
            run.event(name, **fields)

    rng.seed_all(distributed.rank_seed(params.seed, topo.rank))
    attempt = sum(1 for e in run.events() if e.get("event") == Event.STARTED) + 1
    if main:  # one writer of the run folder: other ranks must not delete its temporary files
        run.remove_temp_files()
        faults.ensure_reserve(run.path)
    try:
        if takes_ctx:
            ctx = RunContext(rank=topo.rank, world_size=topo.world_size, local_rank=topo.local_rank, device=device)
            workload.setup(run.path, device, ctx=ctx)
        else:
            workload.setup(run.path, device)
    except (OSError, ValueError, RuntimeError) as exc:
        if faults.is_no_space(exc):
            raise
        if group is not None and distributed.looks_collective(exc):
            raise
        message = f"setup failed: {exc}" if group is None else f"setup failed on rank {topo.rank}: {exc}"
        run.event(Event.FAILED, step=0, error=message)
        raise RunFailed(message) from exc

    monitor = DivergenceMonitor(min_delta=params.min_delta)
    target = judged_by(type(workload))
    plateau = Plateau(params.patience, params.min_delta, not target.higher_is_better) if params.stop == "plateau" else None
    step = 0
    loaded = run.load_checkpoint(map_location=device)
    if loaded is not None:
        state, info = loaded
        workload.load_state_dict(state["workload"])
        ranks = state.get("rng_ranks")
        if group is None:
            rng.set_state(state["rng"])
        elif ranks is not None and len(ranks) == topo.world_size:
            rng.set_state(ranks[topo.rank])
        elif topo.rank == 0:  # another world size than the checkpoint's: exact no more (README)
            rng.set_state(state["rng"])
        monitor.load_state_dict(state.get("runner", {}).get("divergence", {}))
        if plateau is not None:
            plateau.load_state_dict(state.get("runner", {}).get("plateau", {}))
        step = int(state["step"])
    total = int(workload.total_steps)
    ended = step >= total or (plateau is not None and plateau.converged)
    if ended and any(e.get("event") == Event.FINISHED for e in run.events()):
        return run.metrics()  # already done: a duplicate start changes nothing
    refuse_stalled_loop(run, step, write=main)
    ranks: list[Any] = []
    if group is not None:  # every rank has read the run before the main rank writes; where each one runs
        ranks = group.gather([socket.gethostname(), os.getpid()])
    note(Event.STARTED, attempt=attempt, step=step, job_id=host.job_id, executor=host.executor,
         host=socket.gethostname(), pid=os.getpid(), device=str(device),
         resumed_from=None if loaded is None else loaded[1].file, threads=torch.get_num_threads(),
         cores=_cores(), **({} if host.queued_s is None else {"queued_s": round(host.queued_s, 3)}),
         **({"nodes": topo.nodes, "tasks": topo.world_size, "ranks": ranks} if group is not None else {}))

    # a deep queue: scalars are handed to the writer thread in bursts (it is flushed at checkpoints)
    if main and step:
        _after_older_event_files(run)
    writer = (writer_cls(log_dir=str(run.tb_dir), purge_step=step + 1 if step else None, max_queue=1000)
              if main else _NullWriter())
    last_ckpt_time = time.monotonic()
    last_progress = 0.0
    step_time_ema: float | None = None
    last_metrics: dict[str, float] = {}
    val_metrics: dict[str, float] = run.metrics() if step else {}
    deadline = host.deadline()

    def checkpoint(reason: str) -> None:
        nonlocal last_ckpt_time
        writer.flush()
        ranks = group.gather(rng.get_state()) if group is not None else None
        if main:
            state = {"format": CHECKPOINT_FORMAT, "step": step, "workload": workload.state_dict(),
                     "rng": rng.get_state(), "runner": {"divergence": monitor.state_dict(),
                                                        **({"plateau": plateau.state_dict()} if plateau else {})}}
            if ranks is not None:
                state["rng_ranks"] = ranks
            info = run.save_checkpoint(step, state, keep=params.keep_checkpoints)
            run.event(Event.CHECKPOINT, step=step, file=info.file, reason=reason, seconds=round(info.seconds, 4),
                      step_seconds=None if step_time_ema is None else round(step_time_ema, 5))
        if group is not None:
            group.barrier("waiting for the main rank's checkpoint")  # nobody goes on (or exits) before it is on disk
        last_ckpt_time = time.monotonic()

    def progress(force: bool = False) -> None:
        nonlocal last_progress
        if not main:
            return
        now = time.time()
        if not force and now - last_progress < PROGRESS_EVERY_S:
            return
        last_progress = now
        run.write_progress({"step": step, "total": total, "t": now, "attempt": attempt,
                            "loss": last_metrics.get("loss"), "val_loss": val_metrics.get("val_loss"),
                            "steps_per_s": None if not step_time_ema else 1.0 / step_time_ema})

    def evaluate() -> None:
        nonlocal val_metrics
        val_metrics = _scalar_metrics(workload.evaluate())
        for key, value in val_metrics.items():
            writer.add_scalar(f"val/{key}", value, step)
        if main:
            run.write_metrics({"step": step, **val_metrics})
        if plateau is not None and not plateau.converged:
            value = val_metrics.get(target.name)
            if value is None or not math.isfinite(value):
                message = (f"stop = 'plateau' watches {target.name}, but evaluate() returned "
                           f"{value!r} for it at step {step}; use stop = 'steps' for this workload")
                note(Event.FAILED, step=step, error=message)
                raise RunFailed(message)
            plateau.update(step, value)
            if plateau.converged:
                note(Event.CONVERGED, step=step, best_step=plateau.best_step, best=plateau.best,
                          metric=target.name, patience=plateau.patience, min_delta=plateau.min_delta)

    def artifacts() -> None:
        if not main:
            return
        extra = _scalar_metrics(workload.artifacts(step, writer, run.samples_dir) or {})
        for key, value in extra.items():
            writer.add_scalar(f"val/{key}", value, step)

    def stop_wanted() -> bool:  # this rank's view; with several ranks it is agreed on below
        if flag.reason is None and deadline is not None and time.time() >= deadline:
            flag.reason = "time limit of this segment"
        return flag.reason is not None and host.stop_now(flag.at or time.time(), time.time())

    # with several ranks, whether to stop (and to checkpoint on time) is agreed at every step boundary
    agreed_stop = group is not None and group.agree([float(stop_wanted())])[0] > 0
    due_time_agreed = False
    try:
        while step < total:
            if agreed_stop if group is not None else stop_wanted():
                checkpoint("stop")
                progress(force=True)
                raise Stopped(step, flag.reason or "stop agreed with the other ranks")
            t0 = time.perf_counter()
            metrics = _scalar_metrics(workload.train_step(step))
            if group is not None:
                due = bool(params.checkpoint_minutes) and (
                    time.monotonic() - last_ckpt_time >= params.checkpoint_minutes * 60)
                metrics, flags = distributed.mean_metrics(group, metrics, [float(stop_wanted()), float(due)])
                agreed_stop, due_time_agreed = flags[0] > 0, flags[1] > 0
            elapsed = time.perf_counter() - t0
            step_time_ema = elapsed if step_time_ema is None else 0.9 * step_time_ema + 0.1 * elapsed
            loss = metrics.get("loss")
            if loss is None or not math.isfinite(loss):
                good = run.checkpoints()
                kept = f"the last good checkpoint (step {good[0].step}) is kept" if good else "no checkpoint was written"
                message = (f"loss is {loss} at step {step + 1}: training diverged; {kept}. "
                           "Lower the learning rate or enable gradient clipping, then resubmit.")
                note(Event.FAILED, step=step, error=message)
                raise RunFailed(message)
            step += 1
            last_metrics = metrics
            for kind, message in monitor.update(step, loss):
                note(Event.ALARM, step=step, kind=kind, message=message)
            if step % params.log_every == 0 or step == total:
                for key, value in metrics.items():
                    writer.add_scalar(f"train/{key}", value, step)
            if params.eval_every and step % params.eval_every == 0 and step < total:
                evaluate()
                if plateau is not None and plateau.converged:
                    break  # the final phase below reuses this evaluation
            if params.sample_every and step % params.sample_every == 0 and step < total:
                artifacts()
            due_steps = params.checkpoint_every and step % params.checkpoint_every == 0
            if group is None:
                due_time = params.checkpoint_minutes and time.monotonic() - last_ckpt_time >= params.checkpoint_minutes * 60
            else:
                due_time = due_time_agreed
            if (due_steps or due_time) and step < total:
                checkpoint("periodic")
            progress()
            if on_step is not None:
                on_step(step)
        if plateau is None or not plateau.converged:
            evaluate()
        artifacts()
        checkpoint("final")
        final = {**{f"train_{k}": v for k, v in last_metrics.items()}, **val_metrics}
        if main:
            _write_hparams(writer, dict(spec.params), final)
        progress(force=True)
    except BaseException:
        try:
            writer.close()  # may re-raise the writer thread's own error: the first one is what counts
        except Exception:
            pass
        raise
    writer.close()
    note(Event.FINISHED, step=step, metrics=final,
         **({"converged": {"step": plateau.converged_step, "best_step": plateau.best_step,
                           "best": plateau.best, "metric": target.name}}
            if plateau is not None and plateau.converged else {}))
    return final


def _after_older_event_files(run: RunDir) -> None:
    """TensorBoard reads a run's event files in name order, and the name starts with the second it was
    made in; a resumed attempt's file (whose purge_step drops the old attempt's later points) must sort
    after the old ones. Only an attempt resumed within the same second in one process can tie: wait."""
    newest = max((int(p.name.split(".")[3]) for p in run.tb_dir.glob("events.out.tfevents.*")
                  if p.name.split(".")[3].isdigit()), default=0)
    while int(time.time()) <= newest:
        time.sleep(0.05)


def _cores() -> list[int] | None:
    """The CPUs this process may run on (a local job is pinned to its share)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
