"""The training loop every run goes through, in a Slurm job, a local job or the foreground.

It owns seeding, threads, checkpoint cadence, signals, TensorBoard, events and progress; the
workload owns the science. A stop request (USR2 from Slurm before a time limit or preemption,
TERM/INT in the foreground, or the segment's own deadline) only sets a flag: the loop checkpoints
at the next step boundary, where the state is consistent, and then hands over to the host
(submitit requeues the job; the foreground exits with `EXIT_STOPPED`).

`run` prepares one attempt and `Loop` is the attempt, read top to bottom: `start` (seed, set up,
resume), then per step `train_step` → `evaluate` / `sample` / `checkpoint` as their cadences say,
`stop` at a boundary when asked, `finish` at the end. What several tasks do differently lives in
`distributed.Ranks`; only the main rank writes the run folder and TensorBoard.
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
from jobkit.run import distributed, faults, heap, rng, tblog, testhooks, watchdog
from jobkit.run.cadence import Cadence
from jobkit.run.ckptwriter import CheckpointWriter
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


def run(run: RunDir, host: Host | None = None,
        on_step: Callable[[int], None] | None = None) -> dict[str, float]:
    """Run (or continue) one run to its end. Returns the final metrics.

    Raises `Stopped` after checkpointing on a stop request, `RunFailed` on a user-facing failure.
    `on_step(step)` is a test hook called after every completed step.
    """
    from torch.utils.tensorboard import SummaryWriter  # here: `jobkit submit` imports this module too

    host = host or Host()
    flag = StopFlag(host.stop_signals)
    try:
        loop = _prepare(run, host, flag)
        dog = watchdog.watch(loop)  # a stalled loop is found, its stacks kept, the attempt ended
        try:
            if not loop.start(SummaryWriter):
                return run.metrics()  # already done: a duplicate start changes nothing
            return loop.train(on_step)
        finally:
            dog.stop()
            loop.ranks.close()
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


def _prepare(run: RunDir, host: Host, flag: StopFlag) -> "Loop":
    """The workload from the spec, the device, and the ranks connected: a loop ready to start."""
    topo = host.topology

    def refuse(message: str) -> RunFailed:
        """A run that cannot start: its `failed` event (written by the main rank) and the error to raise."""
        if topo.is_main:
            run.event(Event.FAILED, step=0, error=message)
        return RunFailed(message)

    try:
        spec, workload, params = build_workload(run)
    except params_mod.ParamError as exc:
        raise refuse(f"spec.json: {exc}") from None
    torch.set_num_threads(max(1, spec.resources.cpus))
    try:
        heap_mode = heap.keep_freed_memory()  # before setup() allocates the model
    except ValueError as exc:
        raise refuse(str(exc)) from None
    device = torch.device("cuda" if spec.resources.gpus > 0 and torch.cuda.is_available() else "cpu")
    if topo.distributed and device.type == "cuda":
        device = torch.device("cuda", topo.local_rank % max(1, torch.cuda.device_count()))
    takes_ctx = "ctx" in inspect.signature(workload.setup).parameters
    if topo.distributed and not takes_ctx:
        raise refuse(f"workload {spec.workload!r} trains in one process only (its setup() takes no ctx); "
                     "resubmit with tasks_per_node = 1 and nodes = 1")
    ranks = distributed.Ranks.open(topo, device, watchdog.collective_timeout(host, spec.resources))
    return Loop(run, host, flag, spec, workload, params, device, ranks, takes_ctx, heap_mode)


class Loop:
    """One attempt at a run: the state the training loop carries from step to step."""

    def __init__(self, run: RunDir, host: Host, flag: StopFlag, spec: Any, workload: Any, params: Any,
                 device: torch.device, ranks: distributed.Ranks, takes_ctx: bool, heap_mode: str = "system") -> None:
        self.run, self.host, self.flag = run, host, flag
        self.spec, self.workload, self.params = spec, workload, params
        self.device, self.ranks, self.takes_ctx = device, ranks, takes_ctx
        self.main = ranks.is_main  # the one writer of the run folder, its events and TensorBoard
        self.monitor = DivergenceMonitor(min_delta=params.min_delta)
        self.target = judged_by(type(workload))
        self.plateau = (Plateau(params.patience, params.min_delta, not self.target.higher_is_better)
                        if params.stop == "plateau" else None)
        self.step, self.total, self.attempt = 0, 0, 1
        self.writer: Any = tblog.NullWriter()
        self.deadline = host.deadline()
        self.last_ckpt_time = time.monotonic()
        self.last_progress = 0.0
        self.step_time_ema: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.val_metrics: dict[str, float] = {}
        self.saver = CheckpointWriter(run, params.keep_checkpoints, background=params.async_checkpoint)
        self.heap = heap_mode  # what `heap.keep_freed_memory` did in this process (the `started` event says)
        self.cadence = Cadence(params.checkpoint_every)  # `auto`: planned from the run's events at start

    def note(self, name: str, **fields: Any) -> None:
        """An event, from the main rank only."""
        if self.main:
            self.run.event(name, **fields)

    # --- start: seed, set up, resume -------------------------------------------------------------
    def start(self, writer_cls: Any) -> bool:
        """Seed, set up the workload, resume from the newest good checkpoint and record `started`.
        False when the run had already finished (a duplicate start)."""
        run, topo = self.run, self.host.topology
        rng.seed_all(distributed.rank_seed(self.params.seed, topo.rank))
        events = run.events()  # read once: the attempt, a duplicate start, a stalled requeue loop
        self.attempt = sum(1 for e in events if e.get("event") == Event.STARTED) + 1
        if self.main:  # one writer of the run folder: other ranks must not delete its temporary files
            run.remove_temp_files()
            faults.ensure_reserve(run.path)
        self._setup()
        loaded = self._resume()
        self.total = int(self.workload.total_steps)
        if self._converged_or_done() and any(e.get("event") == Event.FINISHED for e in events):
            return False
        refuse_stalled_loop(run, self.step, write=self.main, events=events)
        state_bytes = faults.state_bytes(self.workload.state_dict())  # the checkpoint's size, before one exists
        self.cadence = Cadence.for_run(self.params.checkpoint_every, events, state_bytes, self.step, time.time())
        where = self.ranks.where(socket.gethostname(), os.getpid())  # every rank has read the run by now
        self.note(Event.STARTED, attempt=self.attempt, step=self.step, job_id=self.host.job_id,
                  executor=self.host.executor, host=socket.gethostname(), pid=os.getpid(), device=str(self.device),
                  resumed_from=None if loaded is None else loaded.file, threads=torch.get_num_threads(),
                  cores=_cores(), state_bytes=state_bytes, heap=self.heap,
                  **({} if self.host.queued_s is None else {"queued_s": round(self.host.queued_s, 3)}),
                  **where)
        if self.main:
            self.writer = tblog.open_writer(writer_cls, run.tb_dir, self.step)
        self.last_ckpt_time = time.monotonic()
        self.val_metrics = run.metrics() if self.step else {}
        return True

    def _setup(self) -> None:
        topo = self.host.topology
        try:
            if self.takes_ctx:
                ctx = RunContext(rank=topo.rank, world_size=topo.world_size, local_rank=topo.local_rank,
                                 device=self.device)
                self.workload.setup(self.run.path, self.device, ctx=ctx)
            else:
                self.workload.setup(self.run.path, self.device)
        except (OSError, ValueError, RuntimeError) as exc:
            if faults.is_no_space(exc) or (self.ranks.several and distributed.looks_collective(exc)):
                raise
            message = f"setup failed: {exc}" if not self.ranks.several else f"setup failed on rank {topo.rank}: {exc}"
            self.run.event(Event.FAILED, step=0, error=message)
            raise RunFailed(message) from exc

    def _resume(self) -> Any:
        """Load the newest checkpoint that verifies into the workload, the RNGs and the monitors."""
        loaded = self.run.load_checkpoint(map_location=self.device)
        if loaded is None:
            return None
        state, info = loaded
        self.workload.load_state_dict(state["workload"])
        rng_state = self.ranks.rng_to_restore(state)
        if rng_state is not None:
            rng.set_state(rng_state)
        own = state.get("runner", {})
        self.monitor.load_state_dict(own.get("divergence", {}))
        if self.plateau is not None:
            self.plateau.load_state_dict(own.get("plateau", {}))
        self.step = int(state["step"])
        return info

    def _converged_or_done(self) -> bool:
        return self.step >= self.total or (self.plateau is not None and self.plateau.converged)

    # --- the loop --------------------------------------------------------------------------------
    def train(self, on_step: Callable[[int], None] | None = None) -> dict[str, float]:
        """Steps until the total (or a plateau), each followed by what its cadences ask for."""
        p = self.params
        self.ranks.begin(self.stop_wanted)
        # periodic checkpoints planned: their snapshot buffers are made off the loop once the state has its shape
        warm_pending = self.main and bool(p.checkpoint_every or p.checkpoint_minutes) and self.step < self.total
        try:
            while self.step < self.total:
                if self.ranks.stop_agreed(self.stop_wanted):
                    self.stop()
                self.train_step()
                self.saver.raise_error()  # a background checkpoint write failed: surfaced here, at the next step
                if warm_pending:  # after the first step: optimisers create their moments there
                    self.saver.warm(self._state())
                    warm_pending = False
                if p.eval_every and self.step % p.eval_every == 0 and self.step < self.total:
                    self.evaluate()
                    if self.plateau is not None and self.plateau.converged:
                        break  # finish() reuses this evaluation
                if p.sample_every and self.step % p.sample_every == 0 and self.step < self.total:
                    self.sample()
                due_steps = self.cadence.due(self.step)
                if (due_steps or self.ranks.due_agreed(self.due_by_time)) and self.step < self.total:
                    self.checkpoint("periodic")
                self.progress()
                testhooks.at_step(self.step, self.ranks.topo.rank)  # tests only: injected faults
                if on_step is not None:
                    on_step(self.step)
            final = self.finish()
        except BaseException:
            self.saver.close()  # a checkpoint write in flight completes (or fails) before the loop ends
            try:
                self.writer.close()  # may re-raise the writer thread's own error: the first one is what counts
            except Exception:
                pass
            raise
        self.writer.close()
        converged = self.plateau is not None and self.plateau.converged
        self.note(Event.FINISHED, step=self.step, metrics=final,
                  **({"converged": {"step": self.plateau.converged_step, "best_step": self.plateau.best_step,
                                    "best": self.plateau.best, "metric": self.target.name}} if converged else {}))
        return final

    def train_step(self) -> None:
        """One optimisation step: metrics (averaged over ranks), the divergence checks, the train log."""
        t0 = time.perf_counter()
        metrics = self.ranks.after_step(_scalar_metrics(self.workload.train_step(self.step)),
                                        self.stop_wanted, self.due_by_time)
        elapsed = time.perf_counter() - t0
        ema = self.step_time_ema
        self.step_time_ema = elapsed if ema is None else 0.9 * ema + 0.1 * elapsed
        loss = metrics.get("loss")
        if loss is None or not math.isfinite(loss):
            self.fail_diverged(loss)
        self.step += 1
        self.last_metrics = metrics
        for kind, message in self.monitor.update(self.step, loss):
            self.note(Event.ALARM, step=self.step, kind=kind, message=message)
        if self.step % self.params.log_every == 0 or self.step == self.total:
            for key, value in metrics.items():
                self.writer.add_scalar(f"train/{key}", value, self.step)

    def fail_diverged(self, loss: float | None) -> None:
        self.saver.close()  # the checkpoint in flight is the last good one
        good = self.run.checkpoints()
        kept = f"the last good checkpoint (step {good[0].step}) is kept" if good else "no checkpoint was written"
        message = (f"loss is {loss} at step {self.step + 1}: training diverged; {kept}. "
                   "Lower the learning rate or enable gradient clipping, then resubmit.")
        self.note(Event.FAILED, step=self.step, error=message)
        raise RunFailed(message)

    def evaluate(self) -> None:
        """Validation metrics to TensorBoard and metrics.json; the plateau watch sees its target."""
        self.val_metrics = _scalar_metrics(self.workload.evaluate())
        for key, value in self.val_metrics.items():
            self.writer.add_scalar(f"val/{key}", value, self.step)
        if self.main:
            self.run.write_metrics({"step": self.step, **self.val_metrics})
        plateau, target = self.plateau, self.target
        if plateau is None or plateau.converged:
            return
        value = self.val_metrics.get(target.name)
        if value is None or not math.isfinite(value):
            message = (f"stop = 'plateau' watches {target.name}, but evaluate() returned "
                       f"{value!r} for it at step {self.step}; use stop = 'steps' for this workload")
            self.note(Event.FAILED, step=self.step, error=message)
            raise RunFailed(message)
        plateau.update(self.step, value)
        if plateau.converged:
            self.note(Event.CONVERGED, step=self.step, best_step=plateau.best_step, best=plateau.best,
                      metric=target.name, patience=plateau.patience, min_delta=plateau.min_delta)

    def sample(self) -> None:
        """The workload's artifacts (samples, images), on the main rank only."""
        if not self.main:
            return
        extra = _scalar_metrics(self.workload.artifacts(self.step, self.writer, self.run.samples_dir) or {})
        for key, value in extra.items():
            self.writer.add_scalar(f"val/{key}", value, self.step)

    def checkpoint(self, reason: str) -> None:
        """Workload, RNGs (every rank's) and the monitors, written by the main rank; the others wait."""
        self.writer.flush()
        rng_ranks = self.ranks.gather_rng(rng.get_state())
        if self.main:
            state = self._state(rng_ranks)
            ema = self.step_time_ema
            self.saver.save(self.step, state, reason, periodic=reason == "periodic",
                            step_seconds=None if ema is None else round(ema, 5))
            self.cadence.checkpointed(self.step, self.saver.last.seconds if self.saver.last else None, ema)
        self.ranks.checkpoint_written()
        self.last_ckpt_time = time.monotonic()

    def _state(self, rng_ranks: Any = None) -> dict[str, Any]:
        """What a checkpoint holds: the workload, RNGs (every rank's when gathered) and the monitors."""
        own = {"divergence": self.monitor.state_dict(),
               **({"plateau": self.plateau.state_dict()} if self.plateau else {})}
        state = {"format": CHECKPOINT_FORMAT, "step": self.step, "workload": self.workload.state_dict(),
                 "rng": rng.get_state(), "runner": own}
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        return state

    def progress(self, force: bool = False) -> None:
        """progress.json for `jobkit status`, at most every PROGRESS_EVERY_S unless forced."""
        if not self.main:
            return
        now = time.time()
        if not force and now - self.last_progress < PROGRESS_EVERY_S:
            return
        self.last_progress = now
        ema = self.step_time_ema
        self.run.write_progress({"step": self.step, "total": self.total, "t": now, "attempt": self.attempt,
                                 "loss": self.last_metrics.get("loss"), "val_loss": self.val_metrics.get("val_loss"),
                                 "steps_per_s": None if not ema else 1.0 / ema, **self.cadence.describe()})

    # --- stop and finish -------------------------------------------------------------------------
    def stop_wanted(self) -> bool:
        """This rank's view: a stop signal to act on now, or the segment's deadline passed."""
        flag = self.flag
        if flag.reason is None and self.deadline is not None and time.time() >= self.deadline:
            flag.reason = "time limit of this segment"
        return flag.reason is not None and self.host.stop_now(flag.at or time.time(), time.time())

    def due_by_time(self) -> bool:
        minutes = self.params.checkpoint_minutes
        last = self.saver.last
        if self.main and self.cadence.due_auto(self.step, self.step_time_ema, last and last.seconds):  # Young/Daly
            return True
        return bool(minutes) and time.monotonic() - self.last_ckpt_time >= minutes * 60

    def stop(self) -> None:
        """Checkpoint at this step boundary and hand over to the host (requeue, or exit 3)."""
        self.checkpoint("stop")
        self.progress(force=True)
        raise Stopped(self.step, self.flag.reason or "stop agreed with the other ranks")

    def finish(self) -> dict[str, float]:
        """The last evaluation, samples and checkpoint; the final metrics (TensorBoard's hparams too)."""
        if self.plateau is None or not self.plateau.converged:
            self.evaluate()
        self.sample()
        self.checkpoint("final")
        final = {**{f"train_{k}": v for k, v in self.last_metrics.items()}, **self.val_metrics}
        if self.main:
            tblog.write_hparams(self.writer, dict(self.spec.params), final)
        self.progress(force=True)
        return final


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


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value)
    return out


def _cores() -> list[int] | None:
    """The CPUs this process may run on (a local job is pinned to its share)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
