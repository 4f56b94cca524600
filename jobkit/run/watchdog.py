"""The stall watchdog: a run whose loop stops finishing steps is found in minutes, not at its time limit.

A daemon thread per rank. The loop feeds it once per finished step (one cheap call: a clock read and
two assignments) and says when it enters a slow phase (start, evaluate, sample, checkpoint). When no
step finishes for the stall timeout, the thread — the loop itself is stuck, so it must act — writes
the stacks of every thread of its process to `<run>/stacks/attempt<A>-rank<R>.txt`, says whether its
main thread is waiting on the other ranks (inside a collective) or stuck in its own code, and the main
rank records `stalled` naming the rank(s) that stopped moving. The host then ends the attempt
(`Host.end_stalled`: the job writes `requeued` and asks Slurm to requeue it; the foreground records
`stopped`) and every process exits with `os._exit` (its main thread cannot be interrupted). A second
stall at the same step fails the run: "stalled twice at step N; stacks in ...".

The timeout rule (`StallRule`): `stall_timeout` when set (a run's resources or `jobkit.toml`), else
max(5 minutes, 20 x the median step); the first step, `start` (setup, resume) and evaluate / sample /
checkpoint get 4x that, and never less than 30 minutes unless the timeout was set.
"""
from __future__ import annotations

import collections
import faulthandler
import json
import os
import socket
import statistics
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jobkit import atomic
from jobkit.plan.slurmtime import format_duration
from jobkit.state import Event

FLOOR_S = 300.0  # never less than 5 minutes between steps when derived from step times
FACTOR = 20.0  # x the median step
SLOW_FACTOR = 4.0  # first step, start, evaluate, sample, checkpoint
SLOW_FLOOR_S = 1800.0  # ... at least 30 minutes when derived (a first step may compile; an eval may be long)
EXIT_STALLED = 6  # a process that ended itself after a stall it could not hand to a host
STACKS = "stacks"
PEER_WAIT_S = 20.0  # how long the main rank waits for the other ranks' reports
# Where a main thread waits on other ranks (a collective, or DDP's gradient all-reduce in backward).
_WAITING_IN = ("torch/distributed", "torch/nn/parallel", "torch/autograd", "jobkit/run/distributed.py")


@dataclass(frozen=True)
class StallRule:
    """How long without a finished step is a stall. `timeout_s`: None derives it, 0 turns it off."""

    timeout_s: float | None = None
    floor_s: float = FLOOR_S
    factor: float = FACTOR
    slow_factor: float = SLOW_FACTOR
    slow_floor_s: float = SLOW_FLOOR_S

    def limit(self, phase: str, median_step_s: float | None) -> float | None:
        """Seconds allowed in `phase` ("step" between steps; any other phase is slow), or None: off."""
        if self.timeout_s == 0:
            return None
        derived = self.timeout_s is None
        base = max(self.floor_s, self.factor * (median_step_s or 0.0)) if derived else float(self.timeout_s)
        if phase == "step" and median_step_s is not None:
            return base
        slow = base * self.slow_factor
        return max(slow, self.slow_floor_s) if derived else slow


@dataclass(frozen=True)
class Stall:
    """What one process saw when it gave up waiting."""

    step: int
    phase: str
    timeout_s: float
    last_t: float  # wall time of the last progress (a finished step or a phase change)
    rank: int
    waiting_on_peers: bool
    frame: str  # the main thread's innermost frame, `file:line in function`
    stacks: str  # the stacks file, relative to the run folder


class Watchdog:
    """One rank's watch on its loop (`feed` per step, `phase` around slow parts)."""

    def __init__(self, rule: StallRule, on_stall: Callable[["Watchdog", float], None],
                 now: Callable[[], float] = time.monotonic) -> None:
        self.rule, self.on_stall, self._now = rule, on_stall, now
        self.step = 0
        self.current = "start"
        self.last = now()
        self.fed = False  # the interval since `last` is a clean step (no phase in between)
        self.durations: collections.deque[float] = collections.deque(maxlen=101)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = False

    # --- called by the loop (its thread) ---------------------------------------------------------
    def feed(self, step: int) -> None:
        """A step finished: cheap enough for every step."""
        now = self._now()
        if self.fed:
            self.durations.append(now - self.last)
        self.step, self.last, self.fed = step, now, True

    def phase(self, name: str) -> None:
        """Entering `name` ("step" when back in the plain loop): the clock starts again."""
        self.current, self.last, self.fed = name, self._now(), False

    # --- the watch -------------------------------------------------------------------------------
    def median(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None

    def limit(self) -> float | None:
        return self.rule.limit(self.current, self.median())

    def overdue(self) -> float | None:
        """The limit passed, if it has (the thread's test, also for tests)."""
        limit = self.limit()
        return limit if limit is not None and self._now() - self.last > limit else None

    def start(self) -> "Watchdog":
        if self.rule.timeout_s != 0:
            self._thread = threading.Thread(target=self._watch, name="jobkit-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._poll()):
            limit = self.overdue()
            if limit is not None and not self._stop.is_set():
                self.fired = True
                self.on_stall(self, limit)
                return

    def _poll(self) -> float:
        limit = self.limit()
        return 1.0 if limit is None else max(0.2, min(5.0, limit / 30))


# --- what a stalled process leaves behind ---------------------------------------------------------
def _frame_text(frame: Any) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def waiting_on_peers(frame: Any) -> bool:
    """Whether a thread stopped at `frame` waits inside a collective (the other ranks are behind)."""
    while frame is not None:
        name = frame.f_code.co_filename.replace(os.sep, "/")
        if any(part in name for part in _WAITING_IN):
            return True
        frame = frame.f_back
    return False


def py_spy(pids: list[int], timeout_s: float = 30.0) -> list[str]:
    """`py-spy dump --pid` of each process, when py-spy is on PATH (else nothing): the Python stacks
    of processes this one cannot ask itself (DataLoader workers, a command's script)."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy")
    out: list[str] = []
    for pid in pids if spy else []:
        try:
            done = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=timeout_s)
            out.append(f"--- py-spy dump --pid {pid} ---\n" + (done.stdout + done.stderr).rstrip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            out.append(f"--- py-spy dump --pid {pid}: {exc} ---")
    return out


def children(pid: int) -> list[int]:
    """This process's child processes (e.g. DataLoader workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return sorted(found)


def write_stacks(folder: Path, name: str, header: str) -> tuple[Path, Any]:
    """Every thread's stack into `folder/name.txt`: a readable traceback per thread, then faulthandler's
    own dump (it works even when Python-level formatting would not). Returns the file and the main
    thread's frame."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    frames = sys._current_frames()
    main = frames.get(threading.main_thread().ident or -1)
    names = {t.ident: t.name for t in threading.enumerate()}
    with open(path, "w", encoding="utf-8") as out:
        out.write(header + "\n\n")
        main_id = threading.main_thread().ident
        for ident, frame in sorted(frames.items(), key=lambda item: item[0] != main_id):  # the main thread first
            if ident == threading.get_ident():
                continue  # the watchdog itself
            out.write(f"--- thread {names.get(ident, ident)} ---\n")
            out.write("".join(traceback.format_stack(frame)) + "\n")
        out.write("--- faulthandler (all threads) ---\n")
        out.flush()
        faulthandler.dump_traceback(file=out, all_threads=True)
        out.flush()
        for text in py_spy(children(os.getpid())):  # DataLoader workers and other children
            out.write("\n" + text + "\n")
        out.flush()
        os.fsync(out.fileno())
    return path, main


def describe(dog: Watchdog, limit: float, run_path: Path, attempt: int, rank: int) -> Stall:
    """This process's stacks and its record (`stacks/attempt<A>-rank<R>.json`) for the main rank."""
    since = dog._now() - dog.last
    last_t = time.time() - since
    header = (f"jobkit: no progress for {format_duration(since)} (stall timeout {format_duration(limit)}) "
              f"after step {dog.step}, phase {dog.current}; attempt {attempt}, rank {rank}, "
              f"host {socket.gethostname()}, pid {os.getpid()}")
    name = f"attempt{attempt}-rank{rank}"
    path, main = write_stacks(run_path / STACKS, name, header)
    stall = Stall(step=dog.step, phase=dog.current, timeout_s=round(limit, 1), last_t=round(last_t, 3), rank=rank,
                  waiting_on_peers=main is not None and waiting_on_peers(main),
                  frame=_frame_text(main) if main is not None else "?", stacks=f"{STACKS}/{path.name}")
    atomic.write_json(run_path / STACKS / f"{name}.json", stall.__dict__)
    return stall


def peers(run_path: Path, attempt: int, world: int, wait_s: float = PEER_WAIT_S) -> dict[int, dict[str, Any]]:
    """The ranks' records of this attempt, waiting up to `wait_s` for all of them."""
    end = time.monotonic() + wait_s
    found: dict[int, dict[str, Any]] = {}
    while True:
        for r in range(world):
            if r not in found:
                try:
                    found[r] = json.loads((run_path / STACKS / f"attempt{attempt}-rank{r}.json").read_text())
                except (OSError, ValueError):
                    pass
        if len(found) == world or time.monotonic() >= end:
            return found
        time.sleep(0.2)


def stalled_ranks(records: dict[int, dict[str, Any]], world: int) -> list[int]:
    """The ranks that stopped moving: those stuck in their own code, and those that did not answer;
    when every rank waits in a collective, none can be told apart and all are named."""
    named = [r for r in range(world) if r not in records or not records[r].get("waiting_on_peers")]
    return named or list(range(world))


def stalled_before(events: list[dict[str, Any]], step: int) -> dict[str, Any] | None:
    """An earlier `stalled` event at this step (since the run was last submitted), if any."""
    for ev in reversed(events):
        if ev.get("event") == Event.SUBMITTED:
            return None
        if ev.get("event") == Event.STALLED and ev.get("step") == step:
            return ev
    return None


def collective_timeout(host: Any, resources: Any, environ: Any = os.environ) -> float:
    """The process group's timeout: long enough that a hang is the watchdog's to name (it knows which
    rank stopped), not a collective's timeout (a failure blaming no one). $JOBKIT_COLLECTIVE_TIMEOUT_S wins;
    a dead rank is noticed at once either way (its connection closes)."""
    if "JOBKIT_COLLECTIVE_TIMEOUT_S" in environ:
        return float(host.collective_timeout_s)
    timeout = host.stall_timeout_s if host.stall_timeout_s is not None else resources.stall_timeout_s
    slow = StallRule(timeout).limit("start", None)
    return max(float(host.collective_timeout_s), 0.0 if slow is None else slow + 120.0)


# --- the loop's watchdog ---------------------------------------------------------------------------
def watch(loop: Any) -> Watchdog:
    """Start watching `loop` (a `runner.Loop`): its `train_step` feeds the watchdog after each step and
    its slow parts set the phase. The loop's own code is unchanged: its bound methods are wrapped."""
    host = loop.host
    timeout = host.stall_timeout_s if host.stall_timeout_s is not None else loop.spec.resources.stall_timeout_s
    dog = Watchdog(StallRule(timeout), lambda d, limit: _stalled(loop, d, limit))
    if timeout == 0:  # `stall_timeout = "off"`: the plain loop
        return dog
    train_step = loop.train_step

    def fed_step() -> None:
        train_step()
        dog.feed(loop.step)

    loop.train_step = fed_step
    for name in ("start", "evaluate", "sample", "checkpoint"):
        setattr(loop, name, _phased(getattr(loop, name), name, dog))
    return dog.start()


def _phased(fn: Callable[..., Any], name: str, dog: Watchdog) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        dog.phase(name)
        try:
            return fn(*args, **kwargs)
        finally:
            dog.phase("step")
    return call


def _stalled(loop: Any, dog: Watchdog, limit: float) -> None:
    """In the watchdog's thread: leave the stacks, decide (main rank), end this process."""
    run, host = loop.run, loop.host
    topo = host.topology
    try:
        stall = describe(dog, limit, run.path, loop.attempt, topo.rank)
        if topo.is_main:
            records = peers(run.path, loop.attempt, topo.world_size) if topo.distributed else {0: stall.__dict__}
            detail = decide(run, stall, records, topo.world_size)
        else:
            detail = None
    except BaseException as exc:  # the process must end whatever happened here
        print(f"jobkit: stall watchdog: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        detail = f"stalled at step {dog.step}"
    print(f"jobkit: no step for {format_duration(limit)} (rank {topo.rank}, step {dog.step}); stacks in "
          f"{run.path / STACKS}", file=sys.stderr, flush=True)
    end = host.end_stalled or _end_foreground
    try:
        end(run, topo, dog.step, detail)
    finally:
        os._exit(EXIT_STALLED)


def decide(run: Any, stall: Stall, records: dict[int, dict[str, Any]], world: int) -> str | None:
    """Record what happened (main rank): `stalled`, or `failed` when it stalled at this step before.
    Returns the requeue's detail, or None when the run failed (nothing to requeue)."""
    ranks = stalled_ranks(records, world)
    folder = run.path / STACKS
    if stalled_before(run.events(), stall.step) is not None:
        run.record_failed(f"stalled twice at step {stall.step}; stacks in {folder}", step=stall.step,
                          ranks=ranks)
        return None
    frames = {str(r): records[r].get("frame") for r in ranks if r in records}
    run.record_stalled(step=stall.step, last_progress_t=stall.last_t, rank=ranks[0] if len(ranks) == 1 else ranks,
              timeout_s=stall.timeout_s, phase=stall.phase, stacks=str(folder), frames=frames)
    who = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"
    return f"stalled: no step for {format_duration(stall.timeout_s)} after step {stall.step} ({who})"


def _end_foreground(run: Any, topo: Any, step: int, detail: str | None) -> None:
    """`jobkit run`: the attempt ends as a stop does (exit 3, resumable) unless the run failed."""
    if topo.is_main and detail is not None:
        run.record_stopped(step, detail)
    if not topo.is_main:
        time.sleep(2.0)  # the main rank records first
    os._exit(3 if detail is not None or not topo.is_main else 1)
