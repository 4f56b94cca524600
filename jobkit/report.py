"""The helper for your own training script (a `workload = "command"` run). Needs no torch.

```python
from jobkit import report
for step in range(start, total):
    loss = train_step()
    report.progress(step + 1, total, loss=loss)          # status, ETA, the divergence alarm
    if report.stop_requested():                          # jobkit forwarded the stop signal
        save(f"{run_dir}/ckpt.pt"); report.checkpoint_saved(step + 1, f"{run_dir}/ckpt.pt")
        sys.exit(report.EXIT_STOPPED)                    # 3: "stopped, resume me"
```
It writes the same `progress.json`, `metrics.json` and events (`checkpoint`, `alarm`) the runner
writes, so `jobkit status`, the alarm and `jobkit collect` treat the script like any run. Outside a
jobkit run (no `JOBKIT_RUN_DIR`) every call does nothing, so the script still runs by hand.
Importing it installs a handler for the stop signal (only when run by jobkit, and only over the
default action), so a signal that arrives before the first check is not lost.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from jobkit import atomic
from jobkit.run.divergence import DivergenceMonitor
from jobkit.state import Event

EXIT_STOPPED = 3
PROGRESS_EVERY_S = 5.0
STOP_MARKER = ".jobkit-stop"  # jobkit.command.params.STOP_MARKER (not imported: this module stays tiny)
_STATE_FILE = ".report-state.json"  # the alarm's state as of the last checkpoint (a resume reloads it)


class _Reporter:
    """One script's progress state (the helper's own, or one the command supervisor keeps)."""

    def __init__(self) -> None:
        self.stop_at: float | None = None  # when a stop signal arrived
        self.confirmed = False  # jobkit's marker seen: the signal was its stop request
        self.last_write = 0.0
        self.last_step: int | None = None
        self.last_t: float | None = None
        self.steps_per_s: float | None = None
        self.loss: float | None = None
        self.val: dict[str, float] = {}
        self.monitor: DivergenceMonitor | None = None
        # The newest report not yet written (skipped within PROGRESS_EVERY_S): a timer writes it when
        # the interval is over, so progress.json is never older than the interval (nor lost at exit).
        self.pending: dict[str, Any] | None = None
        self.pending_folder: Path | None = None
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()


Reporter = _Reporter
_r = _Reporter()


def run_dir() -> Path | None:
    """The run's folder (`JOBKIT_RUN_DIR`), or None outside jobkit."""
    value = os.environ.get("JOBKIT_RUN_DIR")
    return Path(value) if value else None


def attempt() -> int:
    """1 for the first start of the run, 2 after the first requeue, ..."""
    return int(os.environ.get("JOBKIT_ATTEMPT", "1") or 1)


def stop_requested() -> bool:
    """True once jobkit has forwarded the stop signal: save, then exit with `EXIT_STOPPED`.

    Slurm may deliver its own early time-limit warning to the script too; jobkit decides when that
    warning means "stop now" (at its deadline, so short segments stay useful) and leaves a marker in
    the run folder when it forwards the signal, so only jobkit's request counts. Cheap to call every
    step: the folder is looked at only after a signal arrived.
    """
    if _r.stop_at is None:
        return False
    folder = run_dir()
    if folder is None or _r.confirmed:
        return True
    _r.confirmed = (folder / STOP_MARKER).exists()
    return _r.confirmed


def _on_stop(signum: int, frame: Any) -> None:
    _r.stop_at = _r.stop_at or time.time()


def install(sig: str | None = None) -> None:
    """Catch the stop signal (`JOBKIT_STOP_SIGNAL`, USR2 by default). Done on import under jobkit."""
    name = (sig or os.environ.get("JOBKIT_STOP_SIGNAL") or "USR2").upper()
    signal.signal(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"], _on_stop)


def _event(name: str, **fields: Any) -> None:
    folder = run_dir()
    if folder is not None:
        _event_in(folder, name, **fields)


def _event_in(folder: Path, name: str, **fields: Any) -> None:
    line = {"t": round(time.time(), 3), "event": name, **fields}
    atomic.append_line(folder / "events.jsonl", json.dumps(line, default=str, sort_keys=True))


def _load_monitor(folder: Path) -> DivergenceMonitor:
    monitor = DivergenceMonitor()
    try:
        monitor.load_state_dict(json.loads((folder / _STATE_FILE).read_text()))
    except (OSError, ValueError):
        pass
    return monitor


def progress(step: int, total: int | None = None, *, loss: float | None = None, val_loss: float | None = None,
             **val_metrics: float) -> None:
    """Report the step reached (1-based: steps done) and its losses.

    Call it every step if you like: progress.json is rewritten at most every few seconds (a report
    skipped within the interval is written when it ends, so status is never more than that behind; and at the
    last step); `loss` feeds the divergence alarm; `val_loss` and other keyword metrics (validation
    metrics, e.g. `val_bpc=...`) go to metrics.json, which `collect` reads as final metrics.
    """
    folder = run_dir()
    if folder is not None:
        record(_r, folder, attempt(), step, total, loss=loss, val_loss=val_loss, **val_metrics)


def record(r: _Reporter, folder: Path, attempt_no: int, step: int, total: int | None = None, *,
           loss: float | None = None, val_loss: float | None = None, force: bool = False,
           **val_metrics: float) -> None:
    """`progress` for an explicit run folder and state: the supervisor of a script reports its
    printed progress through it (the same files and alarm as the helper)."""
    now = time.time()
    if r.last_step is not None and r.last_t is not None and step > r.last_step and now > r.last_t:
        rate = (step - r.last_step) / (now - r.last_t)
        r.steps_per_s = rate if r.steps_per_s is None else 0.9 * r.steps_per_s + 0.1 * rate
    r.last_step, r.last_t = step, now
    if loss is not None:
        loss = float(loss)
        r.loss = loss
        if math.isfinite(loss):
            if r.monitor is None:
                r.monitor = _load_monitor(folder)
            for kind, message in r.monitor.update(step, loss):
                _event_in(folder, Event.ALARM, step=step, kind=kind, message=message)
    if val_loss is not None or val_metrics:
        if val_loss is not None:
            r.val["val_loss"] = float(val_loss)
        r.val.update((k, float(v)) for k, v in val_metrics.items())
        atomic.write_json(folder / "metrics.json", {"step": step, **r.val})
    last = total is not None and step >= total
    state = {"step": step, "total": total, "t": now, "attempt": attempt_no, "loss": r.loss,
             "val_loss": r.val.get("val_loss"), "steps_per_s": r.steps_per_s}
    with r.lock:
        r.pending, r.pending_folder = state, folder
        if force or last or val_loss is not None or now - r.last_write >= PROGRESS_EVERY_S:
            _write_pending(r)
        elif r.timer is None:  # the last call of a burst is written when the interval ends
            r.timer = threading.Timer(max(0.05, r.last_write + PROGRESS_EVERY_S - now), flush, args=(r,))
            r.timer.daemon = True
            r.timer.start()


def _write_pending(r: _Reporter) -> None:
    """Write the pending report (the caller holds `r.lock`)."""
    if r.pending is None or r.pending_folder is None:
        return
    r.last_write = time.time()
    atomic.write_json(r.pending_folder / "progress.json", r.pending)
    r.pending = None


def flush(r: _Reporter | None = None) -> None:
    """Write the newest progress report now, if one is waiting (also run at the interval's end and at exit)."""
    r = _r if r is None else r
    with r.lock:
        r.timer = None
        try:
            _write_pending(r)
        except OSError:
            pass  # the run folder went away: nothing to show it in


def checkpoint_saved(step: int, path: str | os.PathLike[str], seconds: float | None = None) -> None:
    """Record that the script saved a checkpoint at `step` (status shows its age; a requeue that
    makes no progress past it is caught)."""
    folder = run_dir()
    if folder is None:
        return
    if _r.monitor is not None:
        atomic.write_json(folder / _STATE_FILE, _r.monitor.state_dict())
    target = Path(path)
    shown = str(target.relative_to(folder)) if target.is_absolute() and folder in target.parents else str(path)
    step_seconds = None if not _r.steps_per_s else round(1.0 / _r.steps_per_s, 5)
    _event(Event.CHECKPOINT, step=int(step), file=shown, reason="stop" if stop_requested() else "script",
           seconds=None if seconds is None else round(float(seconds), 4), step_seconds=step_seconds)
    atomic.write_json(folder / "progress.json", {
        "step": int(step), "total": _total_hint(folder), "t": time.time(), "attempt": attempt(),
        "loss": _r.loss, "val_loss": _r.val.get("val_loss"), "steps_per_s": _r.steps_per_s})


def _total_hint(folder: Path) -> int | None:
    try:
        return json.loads((folder / "progress.json").read_text()).get("total")
    except (OSError, ValueError, AttributeError):
        return None


if run_dir() is not None:
    atexit.register(flush)
    try:
        name = (os.environ.get("JOBKIT_STOP_SIGNAL") or "USR2").upper()
        sig = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_stop)
    except (KeyError, ValueError):  # an unknown name, or imported outside the main thread
        pass
