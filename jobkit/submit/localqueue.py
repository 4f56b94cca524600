"""The local executor's queue: a run waits here until its CPUs, memory and GPUs are free, then is pinned.

submitit's local controller starts `python -m jobkit.submit.localqueue ... -- python -u -m submitit.core._submit`
for every job at once; this small process (no torch) waits for a slot, pins itself to its cores, sets
the thread counts, arms a hard kill at the job's time limit, and `exec`s the real job in place (same
pid, so `jobkit cancel` and status' liveness check see one process).

There is no daemon. The queue is a folder shared by every jobkit process of this user
(`$JOBKIT_LOCAL_POOL`, else `$XDG_RUNTIME_DIR/jobkit-local`, else `~/.cache/jobkit/local`) holding one
JSON file per waiting or running job, each `flock`ed by its owner for the owner's whole life — the
lock survives the `exec` and dies with the process, so a job killed with -9 frees its share at once
and its file is swept by the next reader. Files are created, read and rewritten only under the
folder's `.lock`, so nobody reads half a file. Order is first in, first out by the key the submit
gave (submission time, then position in the sweep).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from jobkit.submit.localnode import Node, Request, total

POLL_S = 0.5


def pool_dir() -> Path:
    """The queue folder for this user on this machine."""
    if os.environ.get("JOBKIT_LOCAL_POOL"):
        return Path(os.environ["JOBKIT_LOCAL_POOL"]).expanduser()
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "jobkit-local"
    return Path.home() / ".cache" / "jobkit" / "local"


@dataclass
class Entry:
    """One waiting or running job, as its file says."""

    name: str
    state: str  # waiting | running
    req: Request
    cores: tuple[int, ...] = ()
    gpu_ids: tuple[str, ...] = ()
    run: str = ""
    pid: int = 0
    since: float = 0.0

    def to_json(self) -> dict:
        return {"state": self.state, "cpus": self.req.cpus, "mem_mb": self.req.mem_mb, "gpus": self.req.gpus,
                "cores": list(self.cores), "gpu_ids": list(self.gpu_ids), "run": self.run, "pid": self.pid,
                "since": self.since}

    @classmethod
    def from_json(cls, name: str, data: dict) -> "Entry":
        return cls(name=name, state=str(data["state"]),
                   req=Request(int(data["cpus"]), int(data["mem_mb"]), int(data["gpus"])),
                   cores=tuple(int(c) for c in data.get("cores", ())),
                   gpu_ids=tuple(str(g) for g in data.get("gpu_ids", ())), run=str(data.get("run", "")),
                   pid=int(data.get("pid", 0)), since=float(data.get("since", 0.0)))


@dataclass
class Slot:
    """A share of the machine held by this process (the open, locked file descriptor holds it)."""

    fd: int
    path: Path
    cores: tuple[int, ...]
    gpu_ids: tuple[str, ...]
    queued_s: float
    granted_t: float


@contextmanager
def _pool_lock(pool: Path) -> Iterator[None]:
    fd = os.open(pool / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def open_pool(pool: Path) -> Path:
    """The queue folder, created 0700; refused when others could write into it."""
    pool.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = pool.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{pool} must be yours and writable by you only")
    return pool


def entries(pool: Path, skip: Path | None = None) -> list[Entry]:
    """Live entries, oldest first; files whose owner died are removed. Call under the pool lock."""
    out = []
    for path in sorted(pool.glob("*.json")):
        if skip is not None and path == skip:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its owner is alive
                try:
                    out.append(Entry.from_json(path.stem, json.loads(os.pread(fd, 1 << 16, 0) or b"{}")))
                except (ValueError, KeyError, TypeError):
                    pass
                continue
            path.unlink(missing_ok=True)  # we got the lock: the owner is gone
        finally:
            os.close(fd)
    return out


def controllers_by_token(tokens: set[str] | Sequence[str]) -> dict[str, int]:
    """{token: pid of the submitit controller} of this user's local jobs whose queue key ends with a
    token (`--key <time>-<n>-<token>` in the command the controller runs): one pass over /proc. A
    controller is the local job (its pid is the job id), waiting or running."""
    wanted, found = set(tokens), {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != os.getuid() or b"submitit.local._local" not in (proc / "cmdline").read_bytes():
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for var in environ:
            if var.startswith(b"SUBMITIT_LOCAL_COMMAND="):
                words = var.decode(errors="replace").split()
                key = words[words.index("--key") + 1] if "--key" in words[:-1] else ""
                token = key.rsplit("-", 1)[-1]
                if token in wanted:
                    found[token] = int(proc.name)
    return found


def busy(pool: Path) -> tuple[Request, int]:
    """What running local jobs hold now, and how many jobs wait (for `--dry-run --explain`)."""
    if not pool.is_dir():
        return Request(0, 0, 0), 0
    with _pool_lock(open_pool(pool)):
        live = entries(pool)
    return total(e.req for e in live if e.state == "running"), sum(1 for e in live if e.state == "waiting")


def _write(fd: int, entry: Entry) -> None:
    data = json.dumps(entry.to_json()).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def acquire(pool: Path, node: Node, req: Request, key: str, run: str = "",
            should_stop: Callable[[], bool] = lambda: False, poll_s: float = POLL_S) -> Slot | None:
    """Wait until `req` fits and every job queued before it has started; None if `should_stop()`."""
    refusal = node.refusal(req)
    if refusal:
        raise ValueError(refusal)
    pool = open_pool(pool)
    path = pool / f"{key}-{os.getpid()}.json"
    enqueued = time.time()
    with _pool_lock(pool):  # create and lock under the pool lock: nobody sees it unlocked
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        me = Entry(name=path.stem, state="waiting", req=req, run=run, pid=os.getpid(), since=enqueued)
        _write(fd, me)
    try:
        while True:
            with _pool_lock(pool):
                others = entries(pool, skip=path)
                first = not any(e.state == "waiting" and e.name < me.name for e in others)
                running = [e for e in others if e.state == "running"]
                if first and node.fits(req, total(e.req for e in running)):
                    taken_cores = {c for e in running for c in e.cores}
                    taken_gpus = {g for e in running for g in e.gpu_ids}
                    me.cores = tuple([c for c in node.cores if c not in taken_cores][:req.cpus])
                    me.gpu_ids = tuple([g for g in node.gpus if g not in taken_gpus][:req.gpus])
                    me.state, me.since = "running", time.time()
                    _write(fd, me)
                    return Slot(fd=fd, path=path, cores=me.cores, gpu_ids=me.gpu_ids,
                                queued_s=me.since - enqueued, granted_t=me.since)
            if should_stop():
                release_fd(fd, path)
                return None
            time.sleep(poll_s)
    except BaseException:
        release_fd(fd, path)
        raise


def release_fd(fd: int, path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def job_env(slot: Slot, req: Request, base: dict[str, str]) -> dict[str, str]:
    """The job's environment: thread counts = its cpus, its GPUs only, and when its slot was granted."""
    env = dict(base)
    threads = str(max(1, req.cpus))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = threads
    env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpu_ids)
    env["JOBKIT_LOCAL_CORES"] = ",".join(str(c) for c in slot.cores)
    env["JOBKIT_LOCAL_GRANTED_T"] = f"{slot.granted_t:.3f}"
    env["JOBKIT_LOCAL_QUEUED_S"] = f"{slot.queued_s:.3f}"
    return env


def wrapper_command(pool: Path, node: Node, req: Request, key: str, limit_s: int, run: str) -> list[str]:
    """The argv prefix submitit's local controller runs instead of the bare interpreter."""
    return [sys.executable, "-m", "jobkit.submit.localqueue", "--pool", str(pool), "--key", key, "--run", run,
            "--cpus", str(req.cpus), "--mem-mb", str(req.mem_mb), "--gpus", str(req.gpus),
            "--limit-s", str(limit_s), "--node-cores", ",".join(map(str, node.cores)),
            "--node-mem-mb", str(node.mem_mb), "--node-gpus", ",".join(node.gpus), "--", sys.executable]


def main(argv: Sequence[str] | None = None) -> None:
    """Wait for a slot, pin, then exec the job (argv after `--`). Exits 1 if the controller went away."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        sys.exit("usage: python -m jobkit.submit.localqueue [options] -- COMMAND...")
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="jobkit.submit.localqueue")
    p.add_argument("--pool", type=Path, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--run", default="")
    p.add_argument("--cpus", type=int, required=True)
    p.add_argument("--mem-mb", type=int, required=True)
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--limit-s", type=int, default=0)
    p.add_argument("--node-cores", required=True)
    p.add_argument("--node-mem-mb", type=int, required=True)
    p.add_argument("--node-gpus", default="")
    args = p.parse_args(argv[:split])
    command = argv[split + 1:]
    node = Node(cores=tuple(int(c) for c in args.node_cores.split(",") if c),
                mem_mb=args.node_mem_mb, gpus=tuple(g for g in args.node_gpus.split(",") if g))
    req = Request(args.cpus, args.mem_mb, args.gpus)
    parent = os.getppid()
    # cancelled while queued: `jobkit cancel` kills the controller, and this process is orphaned
    slot = acquire(args.pool, node, req, args.key, args.run, should_stop=lambda: os.getppid() != parent)
    if slot is None:
        sys.exit(1)
    try:
        os.sched_setaffinity(0, slot.cores)  # inherited by the exec'd job and its threads
    except (AttributeError, OSError):
        pass
    os.set_inheritable(slot.fd, True)  # the lock lives as long as the job
    if args.limit_s > 0:
        signal.alarm(args.limit_s)  # a hard stop at the limit, like Slurm's; the runner stops before it
    os.execvpe(command[0], command, job_env(slot, req, dict(os.environ)))


if __name__ == "__main__":
    main()
