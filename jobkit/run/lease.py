"""One writer per run folder: the lease whoever trains a run holds for its whole life.

Two layers, because run folders live on file systems that keep locks more or less well:

- an OS lock (`flock` on `.lease.lock` in the run folder). While its holder lives nobody else gets it
  on this machine, nor on another one where the file system honours locks across hosts; it dies with
  its process, so a `kill -9` frees it at once.
- a lease record (`lease.json`: host, pid, job id, attempt, since, heartbeat), written atomically and
  refreshed by a heartbeat thread (nothing per training step). Where locks are unreliable across
  hosts, a record whose heartbeat is younger than the timeout still refuses a second writer; an older
  one (its writer is gone) may be taken over, and the takeover is recorded as a `lease_taken_over`
  event. On the holder's own host a record whose process is gone is taken over at once.

A second writer refuses (`LeaseHeld`, one line naming the holder) before it writes anything. Each
rank of a multi-process run holds its own lease (`lease.json` for rank 0, `lease-rank<N>.json` for
the others), so a second job of the same run is refused by every one of its ranks; a rank > 0 of a
job also checks that rank 0's lease is its own job's. A requeued job
that finds the lease of its own job id (the previous attempt's allocation still tearing down) waits
for it, up to the timeout, instead of refusing.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jobkit import atomic
from jobkit.state import Event
from jobkit.store import RunDir

TIMEOUT_ENV = "JOBKIT_LEASE_TIMEOUT_S"  # seconds without a heartbeat after which a lease may be taken over
DEFAULT_TIMEOUT_S = 300.0
EXIT_LEASE_HELD = 4  # `jobkit run` on a folder another process trains: nothing was done, nothing written
POLL_S = 0.5


def timeout_s() -> float:
    """The takeover timeout: $JOBKIT_LEASE_TIMEOUT_S, else 300 s (the heartbeat beats 5 times per timeout)."""
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def paths(run_dir: Path, rank: int = 0) -> tuple[Path, Path]:
    """(lock file, record) of one rank's lease."""
    suffix = "" if rank == 0 else f"-rank{rank}"
    return Path(run_dir) / f".lease{suffix}.lock", Path(run_dir) / f"lease{suffix}.json"


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as its record says."""

    host: str
    pid: int
    job_id: str | None
    attempt: int
    rank: int
    since: float
    heartbeat: float
    token: str = ""

    def describe(self) -> str:
        """`job 1234 on n2 since 14:02` (a job) or `pid 5678 on n2 since 14:02` (a foreground run)."""
        who = f"job {self.job_id}" if self.job_id else f"pid {self.pid}"
        return f"{who} on {self.host} since {time.strftime('%H:%M', time.localtime(self.since))}"

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.heartbeat

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Holder":
        return cls(host=str(data["host"]), pid=int(data["pid"]), job_id=data.get("job_id") or None,
                   attempt=int(data.get("attempt") or 0), rank=int(data.get("rank") or 0),
                   since=float(data["since"]), heartbeat=float(data["heartbeat"]), token=str(data.get("token", "")))


class LeaseHeld(RuntimeError):
    """Another process trains this run; nothing was written."""

    def __init__(self, run_dir: Path, holder: Holder | None) -> None:
        self.run_dir, self.holder = Path(run_dir), holder
        who = holder.describe() if holder else "another process (its lease record is not written yet)"
        fix = f"`jobkit cancel {self.run_dir.name}` it first" if holder is None or holder.job_id else \
            f"stop it first (kill {holder.pid} on {holder.host})"
        super().__init__(f"{self.run_dir.name} is being trained by {who}; {fix}")


def read(run_dir: Path, rank: int = 0) -> Holder | None:
    """The lease record, or None (no lease, released, or unreadable)."""
    try:
        return Holder.from_json(json.loads(paths(run_dir, rank)[1].read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_holder(run_dir: Path, now: float | None = None) -> Holder | None:
    """The holder of rank 0's lease if its heartbeat is within the timeout: what `status` shows."""
    holder = read(run_dir)
    return holder if holder is not None and holder.age(now) <= timeout_s() else None


def pid_alive(pid: int) -> bool:
    """Whether a process of this host exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _hostname() -> str:
    return socket.gethostname()


class Lease:
    """A held lease: the locked file descriptor, the record and its heartbeat thread."""

    def __init__(self, run: RunDir, rank: int, fd: int, holder: Holder, limit_s: float) -> None:
        self.run, self.rank, self.fd, self.holder, self.limit_s = run, rank, fd, holder, limit_s
        self.lost = False  # another writer took the lease over (this one's heartbeat had stopped)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"jobkit-lease-{rank}", daemon=True)

    @classmethod
    def take(cls, run_dir: Path, job_id: str | None = None, rank: int = 0, attempt: int | None = None,
             limit_s: float | None = None) -> "Lease":
        """Take the lease or raise LeaseHeld having written nothing. Records a takeover as an event."""
        run = RunDir(Path(run_dir))
        limit = timeout_s() if limit_s is None else limit_s
        lock_path, _ = paths(run.path, rank)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        host, pid = _hostname(), os.getpid()
        wait_until = time.time() + limit  # a requeued job waits this long for its previous attempt
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                except BlockingIOError:
                    locked = False
                old = read(run.path, rank)
                if not locked and old is None:  # the holder locked but has not written its record yet
                    time.sleep(0.05)
                    old = read(run.path, rank)
                verdict = _verdict(old, locked, host, pid, limit)
                if verdict == "refuse" and old is not None and job_id and old.job_id == job_id \
                        and time.time() < wait_until:
                    if locked:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    time.sleep(POLL_S)  # our own job's previous attempt: let it finish tearing down
                    continue
                if verdict == "refuse":
                    raise LeaseHeld(run.path, old)
                break
        except BaseException:
            os.close(fd)  # closing drops the lock too
            raise
        now = time.time()
        if attempt is None:
            attempt = sum(1 for e in run.events() if e.get("event") == Event.STARTED) + 1
        lease = cls(run, rank, fd, Holder(host=host, pid=pid, job_id=job_id, attempt=attempt, rank=rank,
                                          since=now, heartbeat=now, token=secrets.token_hex(6)), limit)
        lease._write()
        if verdict == "takeover" and old is not None:
            run.event(Event.LEASE_TAKEN_OVER, rank=rank, job_id=job_id, host=host, pid=pid,
                      previous=old.to_json(), heartbeat_age_s=round(old.age(now), 1),
                      message=f"lease of {old.describe()} taken over: "
                              + ("its process is gone" if old.host == host and not pid_alive(old.pid)
                                 else f"no heartbeat for {old.age(now):.0f}s (timeout {limit:g}s)"))
        lease._thread.start()
        if rank > 0 and job_id:
            lease._same_job_as_rank0(job_id)
        return lease

    def _same_job_as_rank0(self, job_id: str, wait_s: float = 30.0) -> None:
        """A rank > 0 trains only beside its own job's rank 0: if rank 0's lease names another live
        writer, this rank refuses too (rather than wait for a rank 0 that will never come)."""
        end = time.time() + wait_s
        while True:
            main = read(self.run.path, 0)
            if main is not None and main.job_id == job_id:
                return
            if main is not None and main.age() <= self.limit_s:
                self.release()
                raise LeaseHeld(self.run.path, main)
            if time.time() > end:
                return  # no rank 0 yet: the collectives' timeout decides
            time.sleep(0.1)

    def _write(self) -> None:
        atomic.write_json(paths(self.run.path, self.rank)[1], self.holder.to_json())

    def _beat(self) -> None:
        interval = max(0.05, self.limit_s / 5)
        while not self._stop.wait(interval):
            current = read(self.run.path, self.rank)
            if current is not None and current.token != self.holder.token:
                self.lost = True  # taken over: never overwrite the new holder's record
                print(f"jobkit: the lease on {self.run.path.name} was taken over by {current.describe()}",
                      file=sys.stderr, flush=True)
                return
            self.holder = Holder(**{**self.holder.to_json(), "heartbeat": time.time()})
            try:
                self._write()
            except OSError:
                pass  # a full or unreachable disk: the next beat tries again

    def release(self) -> None:
        """Remove the record (if still ours) and drop the lock. Safe to call twice."""
        if self.fd < 0:
            return
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        current = read(self.run.path, self.rank)
        if current is not None and current.token == self.holder.token:
            paths(self.run.path, self.rank)[1].unlink(missing_ok=True)
        fd, self.fd = self.fd, -1
        os.close(fd)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _verdict(old: Holder | None, locked: bool, host: str, pid: int, limit: float) -> str:
    """take | takeover | refuse, from the OS lock and the record."""
    if old is None:
        return "take" if locked else "refuse"
    if old.host == host and old.pid != pid and not pid_alive(old.pid):
        return "takeover" if locked else "refuse"
    if old.age() > limit:
        return "takeover" if locked else "refuse"
    if locked and old.host == host and old.pid == pid:
        return "takeover"  # this very process left it (a release that did not run)
    return "refuse"  # a live heartbeat: its writer is alive, even where the lock says otherwise
