"""A command run's stall watch: the supervisor's view of a script that stops making progress.

The script cannot be stepped, so progress is what jobkit sees of it: any line on its output, a
progress line, a `report.progress` call (progress.json rewritten). When none comes for the stall
timeout (the same rule as a workload run's, `jobkit.run.watchdog.StallRule`), the supervisor sends the
script's process group the signal the run names (`stall_signal`, e.g. "USR1" for a script that
registered `faulthandler` on it; none by default), runs `py-spy dump` on each of the group's
processes when py-spy is on PATH, keeps it all in `stacks/attempt<A>-command.txt`, records `stalled`
and stops the script as a stop does (the job requeues it). A second stall at the same step fails
the run instead: "stalled twice at step N; stacks in ...".
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from jobkit.plan.slurmtime import format_duration
from jobkit.run.watchdog import STACKS, StallRule, Watchdog, py_spy, stalled_before
from jobkit.store import RunDir

SIGNAL_WAIT_S = 3.0  # after the stall signal: time for the script to write its own stacks
PY_SPY_TIMEOUT_S = 30.0


class ScriptWatch:
    """The supervisor's stall clock for one attempt (polled from its loop; no thread of its own)."""

    def __init__(self, run: RunDir, rule: StallRule, attempt: int) -> None:
        self.run, self.attempt = run, attempt
        self.dog = Watchdog(rule, on_stall=lambda d, limit: None)  # its clock and rule, not its thread
        self.lines = 0
        self._progress_mtime = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return (self.run.path / "progress.json").stat().st_mtime
        except OSError:
            return None

    def saw_line(self, text: str) -> None:
        """Any output line is progress (called from the output readers' threads)."""
        self._progress()

    def _progress(self) -> None:
        if self.dog.current == "start":  # the first sign of life ends the start's long allowance
            self.dog.phase("step")
        self.lines += 1
        self.dog.feed(self.lines)

    def overdue(self) -> float | None:
        """The stall timeout passed without progress (checks progress.json first); the limit, else None."""
        mtime = self._mtime()
        if mtime != self._progress_mtime:
            self._progress_mtime = mtime
            self._progress()
        return self.dog.overdue()

    def since(self) -> float:
        return self.dog._now() - self.dog.last


def stall_timeout(host: Any, run: RunDir) -> float | None:
    """The host's (the job's: the run's or `jobkit.toml`'s), else the run's own resources."""
    if host.stall_timeout_s is not None:
        return host.stall_timeout_s
    return run.spec().resources.stall_timeout_s


def dump(run: RunDir, attempt: int, pgid: int, limit: float, since: float, step: int, signal_name: str | None,
         lines: list[str]) -> Path:
    """The stacks file of a stalled script: what was sent, py-spy's dump of each process of its group
    (when py-spy is on PATH), the processes and where the kernel has them waiting, its last output."""
    folder = run.path / STACKS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"attempt{attempt}-command.txt"
    pids = group_pids(pgid)
    spy = shutil.which("py-spy")
    sent = signal_name or 'none (set stall_signal = "USR1" to have the script dump its own stacks)'
    parts = [f"jobkit: no progress from the script for {format_duration(since)} (stall timeout "
             f"{format_duration(limit)}) at step {step}; attempt {attempt}; process group {pgid}: {pids}",
             f"stall signal sent: {sent}"]
    for pid in pids:
        parts.append(f"\n--- process {pid}: {_cmdline(pid)} (waiting in {_wchan(pid)}) ---")
    parts.extend(py_spy(pids, PY_SPY_TIMEOUT_S))
    if spy is None:
        parts.append("\n(py-spy is not on PATH: `pip install py-spy` for every process's Python stacks)")
    parts.append("\n--- the script's last output lines ---")
    parts.extend(lines)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group (the script and its children), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return sorted(pids)


def _cmdline(pid: int) -> str:
    try:
        return " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")).strip()
    except OSError:
        return "?"


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip() or "running"
    except OSError:
        return "?"


def signal_group(pgid: int, name: str | None) -> None:
    """Send the run's `stall_signal` to the script's process group, then give it time to answer."""
    if not name:
        return
    try:
        os.killpg(pgid, signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except (ProcessLookupError, PermissionError, KeyError):
        return
    time.sleep(SIGNAL_WAIT_S)


def record(run: RunDir, step: int, watch: ScriptWatch, limit: float, stacks: Path) -> str | None:
    """`stalled` (the detail of the stop that follows), or `failed` when it stalled at this step before
    (None: the run failed)."""
    folder = run.path / STACKS
    if stalled_before(run.events(), step) is not None:
        run.record_failed(f"stalled twice at step {step}; stacks in {folder}", step=step)
        return None
    run.record_stalled(step=step, last_progress_t=round(time.time() - watch.since(), 3), rank=0,
              timeout_s=round(limit, 1), phase="script", stacks=str(folder), file=f"{STACKS}/{stacks.name}")
    return f"stalled: no progress from the script for {format_duration(limit)} at step {step}"
