"""Nothing of a run left behind: every process of a run carries a marker, and the run's own exit path
kills what carries its marker on its node.

Slurm's `proctrack/linuxproc` (no cgroups) kills a job's process *tree* at scancel, time limit, requeue
and memory kill; a process that left the tree (a double fork reparented to init) survives it. So:
- the batch script exports `JOBKIT_RUN_MARKER=<job id>/<restart count>` before `srun`
  (`jobkit.slurm.marker_setup`), and each rank narrows it to `.../rank<r>` for what it starts
  (`mark_rank`): children, DataLoader workers and command scripts inherit it, and an exec shows it in
  /proc/<pid>/environ;
- the command supervisor becomes a child subreaper (`become_subreaper`), so orphans of the script stay in
  the job's tree, where linuxproc finds them even when the supervisor itself is killed;
- on every exit path a rank kills the processes that carry its own rank marker (`kill_marked`).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

MARKER_ENV = "JOBKIT_RUN_MARKER"
PROC = Path("/proc")


def mark_rank(job_id: str, rank: int, executor: str = "slurm",
              environ: "os._Environ[str] | dict[str, str]" = os.environ) -> str:
    """Narrow the job's marker (the batch script's on Slurm; `<job id>/local` for the local executor,
    whose jobs inherit whatever the submitter had) to this rank, for every process it starts from now
    on; returns the rank's marker."""
    base = environ.get(MARKER_ENV) if executor == "slurm" else None
    base = (base or f"{job_id}/{'local' if executor != 'slurm' else 0}").split("/rank", 1)[0]
    environ[MARKER_ENV] = f"{base}/rank{rank}"
    return environ[MARKER_ENV]


def marker_of(pid: int, proc: Path = PROC) -> str | None:
    """The marker in a process's environment as it was exec'd; None when it has none or is unreadable."""
    try:
        raw = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = MARKER_ENV.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode("utf-8", "replace")
    return None


def marked(prefix: str, proc: Path = PROC) -> list[int]:
    """Live processes whose marker is `prefix` or starts with `prefix/` (zombies have no environment
    and are not counted: they hold no memory and no device)."""
    found = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        value = marker_of(int(entry.name), proc)
        if value is not None and (value == prefix or value.startswith(prefix.rstrip("/") + "/")):
            found.append(int(entry.name))
    return sorted(found)


def kill_marked(marker: str | None, proc: Path = PROC) -> list[int]:
    """SIGKILL every process carrying exactly this rank's marker (or below it), except this process and
    its ancestors; returns the pids signalled. Called when the rank's work is over on every exit path."""
    if not marker:
        return []
    spare = _ancestors(os.getpid(), proc)
    killed = []
    for pid in marked(marker, proc):
        if pid in spare:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return killed


def become_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants are re-parented to this process instead of init, so
    they stay in the job's process tree (what linuxproc kills). False where the call is not available."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


def reap_orphans(keep: int | None) -> None:
    """Collect exited orphans re-parented to this subreaper (never `keep`, the child subprocess waits on)."""
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == keep:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            try:
                os.waitpid(int(entry.name), os.WNOHANG)
            except ChildProcessError:
                pass


def _ancestors(pid: int, proc: Path) -> set[int]:
    seen = {pid}
    while pid > 1:
        try:
            pid = int((proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        seen.add(pid)
    return seen
