"""Helpers the live-Slurm tests share: run the CLI, wait for runs, cancel what a test left queued."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from jobkit.observe import lifecycle
from jobkit.observe.status import collect_status
from jobkit.run import leftovers
from jobkit.store import RunDir, find_runs

REPO = Path(__file__).resolve().parents[1]


def jobkit(*args, root: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m jobkit ARGS` with JOBKIT_ROOT=root, from the repository (examples/ paths resolve)."""
    full_env = {**(env or os.environ), "JOBKIT_ROOT": str(root)}
    done = subprocess.run([sys.executable, "-m", "jobkit", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def wait_until(root: Path, pred: Callable, timeout: float, every: float = 0.5):
    """The runs' summaries once `pred(summaries)` holds; AssertionError naming every state on timeout.

    A look is one sacct (or squeue) call, a few milliseconds of the controller's time: looking twice a
    second loses at most half a second per wait, where a fixed sleep would lose its whole length."""
    end = time.time() + timeout
    while True:
        summaries = collect_status(find_runs(root)).summaries
        if pred(summaries):
            return summaries
        if time.time() > end:
            raise AssertionError(f"timed out; states: {[(s.run_id, s.state, s.step, s.error) for s in summaries]}")
        time.sleep(every)


def all_ended(summaries) -> bool:
    return lifecycle.all_ended(summaries)  # the meaning `submit --wait` and `status --watch` use


def sacct_job_ids(*args: str, expect: Iterable[str], timeout: float = 60) -> list[str]:
    """`sacct -X -n -P -o JobID ARGS`, asked again until it lists every id in `expect`: a run's own
    `finished` event can come before slurmdbd has recorded its job, so accounting may trail the end."""
    end = time.time() + timeout
    while True:
        ids = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID", *args], capture_output=True, text=True,
                             check=True).stdout.split()
        if set(expect) <= set(ids) or time.time() > end:
            return ids
        time.sleep(0.5)


def cancel_sweeps(names: Iterable[str]) -> None:
    """Cancel this test file's jobs by their job names (`jobkit-<sweep>`), so none waits for the next test."""
    for name in names:
        subprocess.run(["scancel", "--name", f"jobkit-{name}"], capture_output=True)


def feeder_sweep(root: Path, sweep_file: Path, qos: str, env: dict, timeout: float, every: float = 2.0,
                 restart: Callable[[], None] | None = None) -> dict:
    """Submit a sweep once and then only watch (issue 24): no jobkit process is kept; the user's jobs
    under `qos` are sampled with squeue, the runs read from their folders. `restart` (a slurmctld
    restart) is called once a third of the runs have finished. Returns the figures."""
    t0 = time.time()
    first = jobkit("submit", sweep_file, "--json", root=root, env=env, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    peak, samples, unanswered, restarted, summaries = 0, 0, 0, False, []
    while True:
        q = subprocess.run(["squeue", "-h", "-r", "-u", user, "-q", qos, "-o", "%i"], capture_output=True,
                           text=True, env=env, timeout=60)
        if q.returncode == 0:
            samples += 1
            peak = max(peak, len([line for line in q.stdout.splitlines() if line.strip()]))
        else:
            unanswered += 1
        summaries = collect_status(find_runs(root), use_slurm=False).summaries  # the folders alone
        done = sum(s.state == "COMPLETED" for s in summaries)
        if restart is not None and not restarted and done >= len(summaries) / 3:
            restart()
            restarted = True
        if summaries and done == len(summaries):
            break
        if time.time() - t0 > timeout:
            break
        time.sleep(every)
    submitted: dict[str, int] = {}
    arrays: set[str] = set()
    for s in summaries:
        for ev in RunDir(Path(s.path)).events():
            if ev.get("event") == "submitted":
                submitted[s.run_id] = submitted.get(s.run_id, 0) + 1
                arrays.add(str(ev.get("job_id", "")).split("_")[0])
    sweep_dir = Path(summaries[0].path).parent if summaries else root
    return {"seconds": time.time() - t0, "runs": len(summaries),
            "completed": sum(s.state == "COMPLETED" for s in summaries),
            "states": sorted({str(s.state) for s in summaries}), "peak_queued": peak, "samples": samples,
            "squeue_unanswered": unanswered, "duplicates": sum(n - 1 for n in submitted.values() if n > 1),
            "never_submitted": len(summaries) - len(submitted), "arrays": len(arrays),
            "feeders": len(list((sweep_dir / ".submitit").glob("feeder-*.out"))), "restarted": restarted,
            "first_submit": first.stdout}


def described(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            cmd = "?"
        out.append(f"{pid} [{leftovers.marker_of(pid)}] {cmd}")
    return out


def assert_nothing_left(prefix: str, job_id: str, wait_s: float = 90) -> None:
    """Once Slurm has let go of the job (not in squeue), no process carrying its marker may remain.
    Slurm's own teardown (KillWait) may still be under way when the queue drops the job, so the scan
    is repeated until it is empty or `wait_s` has passed."""
    end = time.time() + wait_s
    while subprocess.run(["squeue", "-h", "-j", job_id.split("_")[0]], capture_output=True, text=True).stdout.strip():
        assert time.time() < end, f"job {job_id} still in the queue"
        time.sleep(0.5)
    while (left := leftovers.marked(prefix.rstrip("/"))) and time.time() < end:
        time.sleep(0.5)
    assert not left, "left behind:\n" + "\n".join(described(left))
