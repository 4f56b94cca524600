"""The supervisor of a `command` run: the user's script as a child process, under the runner's rules.

It plays the runner's part for a script jobkit cannot step through: the same stop flag and Host
deadline logic decide *when* to stop (Slurm's early warning deferred to jobkit's own deadline, a
preemption at once); then the stop signal goes to the script's own process group and the script gets
a bounded time to save and exit 3. Exits map to the runner's outcomes, so `jobkit.run.job.TrainJob`
requeues a command run exactly as it requeues a workload run (it reaches this module through the
workload's `run`, `jobkit.command.workload.Command`):

- 0: finished (metrics from the helper's progress.json / metrics.json);
- 3, or killed after the wait, after a stop request: `Stopped` (requeued when resumable, and
  on preemption; a script that is not resumable and reaches its time limit is TIMEOUT with its last
  output lines);
- anything else: FAILED with its stderr tail.
"""
from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable

from jobkit.command import lost as lost_mod
from jobkit.command import params as command_mod
from jobkit.command import script as script_mod
from jobkit.command import stall as stall_mod
from jobkit.run import leftovers, memory
from jobkit.run.stops import EXIT_STOPPED, Host, RunFailed, StopFlag, Stopped, refuse_stalled_loop
from jobkit.run.watchdog import StallRule
from jobkit.state import Event
from jobkit.store import RunDir

TAIL_LINES = 20
POLL_S = 0.2
REAP_S = 5.0  # how often exited orphans of the script are collected


def stop_wait_s(host: Host) -> float:
    """How long the script may take to save and exit after the signal: most of the warning margin."""
    return max(5.0, host.margin_s * 2 / 3)


def current_step(run: RunDir) -> int:
    """The script's step as far as jobkit knows: its progress reports and saved checkpoints, back to
    where the next start begins after work was lost (`jobkit.command.lost`)."""
    progress = run.progress()
    step, lost_t = 0, None
    for ev in run.events():
        if ev.get("event") == Event.CHECKPOINT and ev.get("step") is not None:
            step = max(step, int(ev["step"]))
        elif ev.get("event") == Event.WORK_LOST:
            step, lost_t = int(ev.get("step") or 0), ev.get("t")
    if lost_t is None or float(progress.get("t") or 0) > lost_t:
        step = max(step, int(progress.get("step") or 0))
    return step


class _Tail:
    """Copies one of the child's streams through to ours (stderr by default), keeping the last lines
    for events and handing each line to `feed` (the progress pattern)."""

    def __init__(self, stream: IO[bytes], out: Any = None, feed: Callable[[str], None] | None = None) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.capture: list[str] | None = None  # every line while set (what a stalled script prints)
        self._out, self._feed = out, feed
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            out = self._out or sys.stderr
            try:
                out.buffer.write(raw)
                out.flush()
            except (OSError, ValueError, AttributeError):
                pass
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                self.lines.append(text)
                if self.capture is not None:
                    self.capture.append(text)
                if self._feed is not None:
                    try:
                        self._feed(text)
                    except Exception as exc:  # never stop pumping: a full pipe would block the script
                        self._feed = None
                        self.lines.append(f"(jobkit: progress reading stopped: {exc!r})")

    def join(self) -> list[str]:
        self._thread.join(timeout=5)
        return list(self.lines)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent() -> None:  # runs in the child before exec: no orphan if the supervisor is killed
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def run(run: RunDir, host: Host | None = None, near_limit: Any = None) -> dict[str, float]:
    """Run (or continue) one command run to its end; raises `Stopped` / `RunFailed` like
    the runner's `run`. `near_limit(stop) -> bool` says whether a stop was the time limit (the job knows)."""
    host = host or Host()
    spec = run.spec()
    params = dict(spec.params)
    if any(e.get("event") == Event.FINISHED for e in run.events()):
        return run.metrics()  # already done: a duplicate start changes nothing
    step = current_step(run)
    refuse_stalled_loop(run, step, events=lost_mod.for_stall_guard(run.events()))
    attempt = sum(1 for e in run.events() if e.get("event") == Event.STARTED) + 1
    stop_sig = command_mod.stop_signal_of(params.get("stop_signal", command_mod.DEFAULT_STOP_SIGNAL))
    argv = command_mod.expand(params["command"], params, run.path) + script_mod.resume_argv(params, run.path, attempt)
    env = {**os.environ, **command_mod.contract_env(run.path, run.run_id, attempt, stop_sig.name[3:])}
    trackers = script_mod.tracker_env(params, run.run_id, run.path, os.environ)
    for key in ("WANDB_DIR", "TENSORBOARD_LOGDIR"):
        if key in trackers:
            os.makedirs(trackers[key], exist_ok=True)  # W&B wants its folder to exist
    env.update(trackers)
    reader = None
    if params.get("progress"):
        reader = script_mod.ProgressReader(params["progress"], run.path, attempt, params.get("steps"), step)
        env.setdefault("PYTHONUNBUFFERED", "1")  # progress lines arrive as printed, not at exit
    watch = None
    if params.get("checkpoint"):
        watch = script_mod.CheckpointWatch(command_mod.expand([params["checkpoint"]], params, run.path)[0])
    workdir = spec.workdir or os.getcwd()
    marker = run.path / command_mod.STOP_MARKER
    marker.unlink(missing_ok=True)
    flag = StopFlag(tuple(dict.fromkeys((*host.stop_signals, signal.SIGTERM))))
    leftovers.become_subreaper()  # the script's orphans stay ours (and in the job's tree) until we end
    oom_before = memory.oom_kills()
    try:
        try:
            proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    stdout=subprocess.PIPE if reader else None,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            message = f"command could not start: {argv[0]}: {exc.strerror or exc}"
            run.event(Event.FAILED, step=step, error=message)
            raise RunFailed(message) from None
        run.event(Event.STARTED, attempt=attempt, step=step, job_id=host.job_id, executor=host.executor,
                  host=socket.gethostname(), pid=os.getpid(), child_pid=proc.pid, command=argv, workdir=workdir)
        stalls = stall_mod.ScriptWatch(run, StallRule(stall_mod.stall_timeout(host, run)), attempt)

        def feed(text: str) -> None:
            stalls.saw_line(text)
            if reader is not None:
                reader.feed(text)
        tail = _Tail(proc.stderr, feed=feed)  # type: ignore[arg-type]
        out = _Tail(proc.stdout, out=sys.stdout, feed=feed) if reader else None  # type: ignore[arg-type]
        forwarded_at = killed = None
        cancelled = False
        deadline = host.deadline()
        reaped = time.time()
        while proc.poll() is None:
            time.sleep(POLL_S)
            now = time.time()
            if flag.reason is None and stalls.overdue() is not None:
                _stalled(run, proc, stalls, params, attempt, tail, flag)
            if now - reaped > REAP_S:
                leftovers.reap_orphans(keep=proc.pid)
                reaped = now
            if watch is not None:
                _saw_checkpoints(run, watch, reader)
            if flag.signum == signal.SIGTERM and signal.SIGTERM not in host.stop_signals:
                cancelled = True  # scancel / the hard limit: pass it on, record nothing
                _kill_group(proc, signal.SIGTERM)
                continue
            if flag.reason is None and deadline is not None and now >= deadline:
                flag.reason = "time limit of this segment"
            if forwarded_at is None and flag.reason is not None and host.stop_now(flag.at or now, now):
                marker.write_text(f"{attempt} {flag.reason}\n")  # what tells jobkit's signal from Slurm's own
                _kill_group(proc, stop_sig)
                forwarded_at = now
            elif forwarded_at is not None and killed is None and now >= forwarded_at + stop_wait_s(host):
                _kill_group(proc, signal.SIGKILL)
                killed = now
        code = proc.wait()
        lines = tail.join()
        if out is not None:
            out.join()
        _after_exit(run, watch, reader)
    finally:
        flag.restore()
        if "proc" in locals():  # every exit path: whatever the script left in its group ends with it
            _kill_group(proc, signal.SIGKILL)
    oom = _oom_killed(code, oom_before, memory.oom_kills())
    # Slurm may signal the script's processes itself (they are in the job's step): a stop request
    # that reached the supervisor counts even before it was forwarded.
    stopping = forwarded_at is not None or flag.reason is not None
    return _outcome(run, params, code, lines, flag, stopping and not oom, killed is not None, cancelled,
                    near_limit, oom=oom,
                    stopped_codes={EXIT_STOPPED, -stop_sig, 128 + stop_sig, -signal.SIGKILL, 128 + signal.SIGKILL})


def _stalled(run: RunDir, proc: subprocess.Popen, watch: stall_mod.ScriptWatch, params: dict[str, Any],
             attempt: int, tail: _Tail, flag: StopFlag) -> None:
    """No progress for the stall timeout: the stacks, then `stalled` and a stop as a signal would ask
    (the job requeues it); a second stall at this step: FAILED, and the script is killed."""
    limit, since, step = watch.dog.limit() or 0.0, watch.since(), current_step(run)
    tail.capture = []
    stall_mod.signal_group(proc.pid, params.get("stall_signal"))
    stacks = stall_mod.dump(run, attempt, proc.pid, limit, since, step, params.get("stall_signal"),
                            list(tail.lines) if not tail.capture else tail.capture)
    detail = stall_mod.record(run, step, watch, limit, stacks)
    print(f"jobkit: {detail or 'stalled twice'}; stacks in {stacks}", file=sys.stderr, flush=True)
    if detail is None:
        _kill_group(proc, signal.SIGKILL)
        proc.wait()
        raise RunFailed(f"stalled twice at step {step}; stacks in {run.path / stall_mod.STACKS}")
    flag.reason, flag.at = detail, time.time()
def _signal_name(code: int) -> str:
    number = -code if code < 0 else code - 128
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"exit code {code}"


def _saw_checkpoints(run: RunDir, watch: script_mod.CheckpointWatch, reader: Any, final: bool = False) -> None:
    """A checkpoint event for each checkpoint file that changed, at the last step printed before its mtime."""
    for name in watch.poll(final=final):
        mtime = watch.recorded[name][0]
        step = reader.step_at(mtime) if reader is not None else current_step(run)  # printed before it was saved
        path = os.path.abspath(name)
        shown = os.path.relpath(path, run.path.resolve()) if path.startswith(str(run.path.resolve())) else name
        run.event(Event.CHECKPOINT, step=int(step), file=shown, reason="seen", mtime=round(mtime, 3))


def _after_exit(run: RunDir, watch: Any, reader: Any) -> None:
    if watch is not None:
        _saw_checkpoints(run, watch, reader, final=True)
    if reader is None:
        return
    reader.flush()
    if reader.matches == 0:
        run.event(Event.WARNING, message=f"progress: the pattern {reader.regex.pattern!r} matched no line of "
                                         "this attempt's output; status shows no step from it")


def _oom_killed(code: int, before: int | None, after: int | None) -> bool:
    """Killed by SIGKILL while the memory cgroup's OOM count went up: the OOM killer, not a person."""
    return code in (-signal.SIGKILL, 128 + signal.SIGKILL) and after is not None and after > (before or 0)


def _outcome(run: RunDir, params: dict[str, Any], code: int, lines: list[str], flag: Any, stopping: bool,
             killed: bool, cancelled: bool, near_limit: Any, stopped_codes: set[int],
             oom: bool = False) -> dict[str, float]:
    step = current_step(run)
    if oom:
        message = memory.oom_message(step, run.spec().resources.mem_mb, run.run_id)
        run.event(Event.FAILED, step=step, error=message, exit_code=code, stderr_tail=lines,
                  reason=memory.OOM_REASON)
        raise RunFailed(message)
    last = lines[-1] if lines else "(no output on stderr)"
    if code == 0:
        progress, metrics = run.progress(), run.metrics()
        final = {k: float(v) for k, v in metrics.items()
                 if k not in ("step", "t") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if isinstance(progress.get("loss"), (int, float)):
            final["train_loss"] = float(progress["loss"])
        run.event(Event.FINISHED, step=step, metrics=final)
        return final
    if cancelled:
        raise RunFailed(f"cancelled (SIGTERM) at step {step}")
    if code == EXIT_STOPPED or (stopping and code in stopped_codes):
        reason = flag.reason or "the script exited 3"
        if killed:
            reason += "; killed after the wait (it did not exit 3 in time)"
        stop = Stopped(step, reason)
        if not params.get("resumable") and near_limit is not None and near_limit(stop):
            hint = ("not resumable (resumable = false): a resubmit starts it again; give it a longer --time. "
                    f"last output: {' | '.join(lines[-3:]) or '(none)'}")
            run.event(Event.TIMEOUT, step=step, detail=reason, hint=hint, stderr_tail=lines, exit_code=code)
            return run.metrics()
        if code != EXIT_STOPPED or not params.get("resumable"):  # its own save cannot be trusted, or none
            died = "killed after the wait" if killed else "exited 3" if code == EXIT_STOPPED else \
                f"died of {_signal_name(code)}"
            back = run.event(Event.WORK_LOST, **lost_mod.fields(run, params, step, cause=f"the script {died}"))
            raise Stopped(int(back["step"]), f"{reason}; the script {died} at step {step}: the next start "
                                             f"begins at step {back['step']}")
        raise stop
    what = f"killed by signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() \
        else f"exited with code {code}"
    message = f"command {what}: {last}"
    run.event(Event.FAILED, step=step, error=message, exit_code=code, stderr_tail=lines,
              traceback="\n".join(lines))
    raise RunFailed(message)
