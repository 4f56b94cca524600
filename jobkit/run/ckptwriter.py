"""Checkpoints off the step loop: the loop pauses only to copy its state; a background thread writes it.

Why: a synchronous save blocks training for the whole torch.save + fsync + sha256 (0.4 s for 10M
parameters with AdamW here; tens of seconds for 1B on a shared file system), every checkpoint.

How: `snapshot` deep-copies the state (tensors cloned, GPU tensors copied to CPU) at a step boundary,
where it is consistent, into CPU buffers that `warm` made in the background after the first step; the
copy is written by one background thread through the run folder's own `RunDir.save_checkpoint` (room
check, atomic temp file + rename, sha256, latest.json), so a kill -9 at any instant still leaves the
last complete checkpoint. At most one write is in flight: the next
snapshot waits for it. A stop, the end of a run and a preemption wait for the write in flight and then
save synchronously. An error in the background (a full disk) is kept and raised in the loop at its next
step (`raise_error`), so it takes the same path as a synchronous one.

The writer thread runs at nice 10 (Linux), so it takes cores the training threads leave idle.

Memory: when periodic checkpoints are planned, the process keeps one extra copy of the state in CPU
memory from its first step on (model + AdamW moments: ~12 bytes per parameter in fp32; pinned memory
for GPU tensors), reused by every snapshot. `async_checkpoint = false` writes in the loop instead and
holds no copy.
"""
from __future__ import annotations

import copy
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from jobkit.state import Event
from jobkit.store import CheckpointInfo, RunDir

WRITER_NICE = 10  # the background writer's niceness: training threads win a contended core
SLOW_ENV = "JOBKIT_TEST_SLOW_CHECKPOINT_S"  # tests only: every checkpoint write takes this much longer


def snapshot(obj: Any, pool: dict[tuple, Any] | None = None, fill: bool = True) -> Any:
    """A deep copy of a nested state whose tensors are copied onto the CPU (shared tensors stay shared).

    `pool`: CPU buffers kept from the previous snapshot (by place in the state), refilled in place when
    shape and type match: copying into memory already mapped is several times faster than allocating
    (no page faults), which is most of the loop's pause. The caller reuses a pool only once the write of
    the previous snapshot has finished. `fill=False` only makes the pool: buffers allocated and their
    pages touched (`warm`), nothing copied."""
    import torch

    memo: dict[int, Any] = {}
    pool = {} if pool is None else pool
    cuda = False

    def copy_of(x: Any, where: tuple) -> Any:
        nonlocal cuda
        if isinstance(x, torch.Tensor):
            key = id(x)
            if key in memo:
                return memo[key]
            x = x.detach()
            buf = pool.get(where)
            if buf is None or buf.shape != x.shape or buf.dtype != x.dtype or buf.layout != x.layout or x.is_sparse:
                buf = x.to("cpu", copy=True) if x.is_sparse else torch.empty_like(
                    x, device="cpu", pin_memory=x.is_cuda)
                pool[where] = buf
                if not fill and not x.is_sparse:
                    _touch(buf)
            if fill and not x.is_sparse:
                buf.copy_(x, non_blocking=x.is_cuda)
            cuda = cuda or x.is_cuda
            memo[key] = buf
            return buf
        if isinstance(x, dict):
            out = copy.copy(x)  # keeps the mapping's type (OrderedDict, with its metadata)
            for k, v in x.items():
                out[k] = copy_of(v, (*where, k))
            return out
        if isinstance(x, list):
            return [copy_of(v, (*where, i)) for i, v in enumerate(x)]
        if isinstance(x, tuple) and not hasattr(x, "_fields"):
            return tuple(copy_of(v, (*where, i)) for i, v in enumerate(x))
        return copy.deepcopy(x)

    out = copy_of(obj, ())
    if cuda and fill:
        torch.cuda.synchronize()  # the non-blocking copies have landed before the loop changes the tensors
    return out


def _touch(buf: Any) -> None:
    """Fault in a fresh buffer's pages by writing one byte in each: the kernel zero-fills them here,
    not in the step loop's first copy (2.7 s for 1.2 GB of 4 KiB pages in a VM here)."""
    import torch

    storage = buf.untyped_storage()
    if storage.nbytes():
        torch.empty(0, dtype=torch.uint8).set_(storage)[::4096].zero_()


def _lower_priority() -> None:
    """The writer thread yields the cores to the training threads when they compete (Linux: per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
    except (AttributeError, OSError):
        pass


@dataclass(frozen=True)
class Saved:
    """One checkpoint written: what the `checkpoint` event records."""

    info: CheckpointInfo
    reason: str
    seconds: float  # the write: torch.save, fsync, sha256, rename, latest.json (what a synchronous save costs)
    pause_s: float  # how long the step loop stood still for it
    mode: str  # "async" or "sync"


class CheckpointWriter:
    """Writes a run's checkpoints, periodic ones in a background thread (one at a time)."""

    def __init__(self, run: RunDir, keep: int, background: bool = True) -> None:
        self.run, self.keep, self.background = run, keep, background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pool: dict[tuple, Any] = {}  # the CPU copy of the state, reused from one snapshot to the next
        self.last: Saved | None = None  # the newest checkpoint written (its figures feed the cadence)

    def save(self, step: int, state: dict[str, Any], reason: str, periodic: bool,
             **fields: Any) -> float:
        """Checkpoint `state` at `step`; returns the loop's pause in seconds. `fields` join the event.

        Periodic and `background`: wait for the write in flight, copy the state, write it in a thread.
        Otherwise (stop, final, or async off): wait for the write in flight, then write it here."""
        t0 = time.perf_counter()
        self.wait()
        if periodic and self.background:
            copied = snapshot(state, self._pool)
            pause = time.perf_counter() - t0
            self._thread = threading.Thread(target=self._write_quietly, name="jobkit-checkpoint", daemon=True,
                                             args=(step, copied, reason, pause, "async", fields))
            self._thread.start()
            return pause
        self._write(step, state, reason, None, "sync", fields)
        return time.perf_counter() - t0

    def warm(self, state: dict[str, Any]) -> None:
        """Make the snapshot buffers for `state` in the background (allocated, pages touched), so the
        first periodic checkpoint pauses the loop for the copy only. Called once the state has its full
        shape (after the first step: optimisers create their moments there); the next `save` waits for it."""
        if not self.background or self._pool or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._warm_quietly, args=(state,), name="jobkit-checkpoint-warm",
                                        daemon=True)
        self._thread.start()

    def _warm_quietly(self, state: dict[str, Any]) -> None:
        _lower_priority()
        try:
            snapshot(state, self._pool, fill=False)
        except Exception:  # only a head start: the snapshot makes whatever is missing
            self._pool.clear()

    def wait(self) -> None:
        """Wait for the write in flight; raise its error, if it had one."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.raise_error()

    def raise_error(self) -> None:
        """Raise (once) the error of a background write: the loop calls this after each step."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """Wait for the write in flight and forget its error (the loop is ending on another one)."""
        try:
            self.wait()
        except Exception:
            pass

    @property
    def in_flight(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _write_quietly(self, *args: Any) -> None:
        _lower_priority()
        try:
            self._write(*args)
        except BaseException as exc:  # kept for the loop: it is raised there at the next step
            self._error = exc

    def _write(self, step: int, state: dict[str, Any], reason: str, pause: float | None, mode: str,
               fields: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        slow = float(os.environ.get(SLOW_ENV) or 0)
        if slow > 0:
            time.sleep(slow)
        info = self.run.save_checkpoint(step, state, keep=self.keep)
        seconds = time.perf_counter() - t0
        saved = Saved(replace(info, seconds=seconds), reason, seconds, seconds if pause is None else pause, mode)
        self.run.event(Event.CHECKPOINT, step=step, file=info.file, reason=reason, seconds=round(seconds, 4),
                       size=info.size, pause_s=round(saved.pause_s, 4), mode=mode, **fields)
        self.last = saved
