"""The local executor as a one-node cluster: the machine's size, the FIFO slot queue, and submits that
run only what fits — one run at a time when each asks for the whole machine — pinned to their cores."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobkit.submit import localqueue
from jobkit.submit.localnode import Node, Request, _ranges, _visible_gpus, schedule

NODE = Node(cores=(0, 1, 2, 3), mem_mb=8000, gpus=("0", "1"))


def test_refusal_names_what_is_too_large():
    assert NODE.refusal(Request(4, 8000, 2)) is None
    assert NODE.refusal(Request(5, 100, 0)) == "cpus = 5 but this machine has 4 CPUs"
    assert NODE.refusal(Request(1, 9000, 0)) == "mem = 9000M but this machine has 8000M"
    assert NODE.refusal(Request(1, 100, 3)) == "gpus = 3 but this machine has 2 GPUs"


def test_at_once_is_limited_by_cpus_memory_and_gpus():
    assert NODE.at_once(Request(2, 1000, 0)) == 2
    assert NODE.at_once(Request(1, 3000, 0)) == 2  # memory binds
    assert NODE.at_once(Request(1, 100, 1)) == 2  # GPUs bind
    assert NODE.at_once(Request(1, 100, 0)) == 4


def test_schedule_is_first_in_first_out():
    reqs = [Request(2, 100, 0), Request(3, 100, 0), Request(1, 100, 0)]
    assert schedule(NODE, reqs) == 1  # the 3-CPU run waits, and the 1-CPU run behind it waits too
    assert schedule(NODE, [Request(1, 100, 0)] * 3, busy=Request(2, 0, 0)) == 2


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert _visible_gpus(tmp_path) == ("2", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _visible_gpus(tmp_path) == ()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    for name in ("nvidia0", "nvidia1", "nvidiactl"):
        (tmp_path / name).touch()
    assert _visible_gpus(tmp_path) == ("0", "1")
    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def test_detected_node_is_this_machine():
    node = Node.detect()
    assert node.cores == tuple(sorted(os.sched_getaffinity(0)))
    assert node.mem_mb > 0


def _acquire(pool: Path, req: Request, key: str, wait_s: float = 0.0):
    deadline = time.time() + wait_s
    return localqueue.acquire(pool, NODE, req, key, should_stop=lambda: time.time() >= deadline, poll_s=0.05)


def test_a_slot_is_held_until_released_and_cores_are_not_shared(tmp_path):
    pool = tmp_path / "pool"
    a = _acquire(pool, Request(3, 100, 1), "0001")
    assert a is not None and a.cores == (0, 1, 2) and a.gpu_ids == ("0",)
    assert _acquire(pool, Request(2, 100, 0), "0002", wait_s=0.3) is None  # 1 core left: it waits
    b = _acquire(pool, Request(1, 100, 1), "0003")
    assert b is not None and b.cores == (3,) and b.gpu_ids == ("1",)
    assert localqueue.busy(pool) == (Request(4, 200, 2), 0)
    localqueue.release_fd(a.fd, a.path)
    c = _acquire(pool, Request(2, 100, 0), "0004")
    assert c is not None and c.cores == (0, 1)
    assert not list(pool.glob("0002-*")), "a waiter that gave up leaves no file"


HOLDER = """
import sys, time
from pathlib import Path

import pytest
from jobkit.submit import localqueue
from jobkit.submit.localnode import Node, Request
node = Node(cores=(0, 1, 2, 3), mem_mb=8000, gpus=())
slot = localqueue.acquire(Path(sys.argv[1]), node, Request(int(sys.argv[2]), 100, 0), sys.argv[3])
print("held", flush=True)
time.sleep(600)
"""


def test_a_waiting_job_blocks_later_ones_and_a_killed_holder_frees_its_share(tmp_path):
    pool = tmp_path / "pool"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(pool), "4", "0001"], stdout=subprocess.PIPE, text=True)
    waiter = None
    try:
        assert holder.stdout.readline().strip() == "held"
        waiter = subprocess.Popen([sys.executable, "-c", HOLDER, str(pool), "3", "0002"], stdout=subprocess.PIPE,
                                  text=True)
        for _ in range(200):  # the waiter has queued
            if list(pool.glob("0002-*.json")):
                break
            time.sleep(0.05)
        # 0003 would fit beside 0002 later, but 0002 queued first: first in, first out
        assert _acquire(pool, Request(1, 100, 0), "0003", wait_s=0.3) is None
        holder.send_signal(signal.SIGKILL)  # the flock dies with the process: no stale share
        holder.wait()
        assert waiter.stdout.readline().strip() == "held"
        assert _acquire(pool, Request(1, 100, 0), "0004") is not None
        assert localqueue.busy(pool)[0].cpus == 4
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _jobkit(*args, root: Path, pool: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "JOBKIT_ROOT": str(root), "JOBKIT_LOCAL_POOL": str(pool)}
    return subprocess.run([sys.executable, "-m", "jobkit", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _events(run_path: str) -> list[dict]:
    return [json.loads(line) for line in (Path(run_path) / "events.jsonl").read_text().splitlines()]


def _sweep(tmp_path: Path, cpus: int, hidden: str = "[8, 16, 32]", steps: int = 30, sleep: float = 0.0) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'name = "node"\n[defaults]\ntime = "00:05:00"\ncpus = {cpus}\nmem = "512M"\n'
                    f'[[run]]\nworkload = "toy"\npreset = "tiny"\nsteps = {steps}\ncheckpoint_every = 0\n'
                    f'step_sleep = {sleep}\nhidden = {hidden}\n')
    return path


@pytest.mark.slow
def test_runs_that_each_need_the_whole_machine_run_one_at_a_time_pinned(tmp_path):
    cpus = Node.detect().cpus
    root, pool = tmp_path / "runs", tmp_path / "pool"
    sweep = _sweep(tmp_path, cpus)
    plan = _jobkit("submit", sweep, "--executor", "local", "--dry-run", "--explain", root=root, pool=pool)
    assert plan.returncode == 0, plan.stderr
    assert f"one node with {cpus} CPU" in plan.stdout and "1 at a time" in plan.stdout
    assert "1 would start now, 2 would wait" in plan.stdout
    done = _jobkit("submit", sweep, "--executor", "local", "--wait", root=root, pool=pool)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 starts now, 2 wait in the local queue" in done.stdout
    status = json.loads(_jobkit("status", "node", "--json", root=root, pool=pool).stdout)
    intervals = []
    for run in status["runs"]:
        assert run["state"] == "COMPLETED"
        events = _events(run["path"])
        (started,) = [e for e in events if e["event"] == "started"]
        (finished,) = [e for e in events if e["event"] == "finished"]
        assert started["threads"] == cpus and started["cores"] == sorted(os.sched_getaffinity(0))
        intervals.append((started["t"], finished["t"], started["queued_s"]))
    intervals.sort()
    for (_, end, _), (start, _, _) in zip(intervals, intervals[1:]):
        assert start > end, f"runs overlapped: {intervals}"
    assert sorted(q for _, _, q in intervals)[-1] > 0  # the last one waited for its turn


def test_a_run_larger_than_the_machine_is_refused_at_submit(tmp_path):
    root, pool = tmp_path / "runs", tmp_path / "pool"
    sweep = _sweep(tmp_path, Node.detect().cpus + 1, hidden="[8]")
    for extra in ([], ["--dry-run"]):
        result = _jobkit("submit", sweep, "--executor", "local", *extra, root=root, pool=pool)
        assert result.returncode == 2
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "but this machine has" in result.stderr and "Traceback" not in result.stderr
    assert not root.exists() or not any(root.rglob("spec.json"))
    assert not pool.exists() or not list(pool.glob("*.json"))


@pytest.mark.slow
def test_a_queued_run_shows_pending_cancels_and_resumes(tmp_path):
    cpus = Node.detect().cpus
    root, pool = tmp_path / "runs", tmp_path / "pool"
    sweep = _sweep(tmp_path, cpus, hidden="[8, 16]", steps=40, sleep=0.25)
    sub = _jobkit("submit", sweep, "--executor", "local", "--json", root=root, pool=pool, timeout=60)
    assert sub.returncode == 0, sub.stderr  # returns at once: the local jobs do not hold its stdout
    assert json.loads(sub.stdout)["local"]["queued"] == 1
    states = {}
    for _ in range(240):
        states = {r["run_id"]: r["state"] for r in json.loads(
            _jobkit("status", "node", "--json", root=root, pool=pool).stdout)["runs"]}
        if sorted(states.values()) == ["PENDING", "RUNNING"]:
            break
        time.sleep(0.5)
    assert sorted(states.values()) == ["PENDING", "RUNNING"], states
    queued = next(r for r, s in states.items() if s == "PENDING")
    cancel = _jobkit("cancel", queued, root=root, pool=pool)
    assert cancel.returncode == 0, cancel.stderr
    time.sleep(2.0)  # the orphaned waiter notices within a poll and leaves the queue
    status = {r["run_id"]: r for r in json.loads(_jobkit("status", "node", "--json", root=root, pool=pool).stdout)["runs"]}
    assert status[queued]["state"] == "CANCELLED"
    assert [e["event"] for e in _events(status[queued]["path"])] == ["submit_intent", "submitted", "cancelled"]
    with localqueue._pool_lock(pool):
        assert status[queued]["path"] not in [e.run for e in localqueue.entries(pool)]
    resumed = _jobkit("resume", "node", "--executor", "local", "--wait", root=root, pool=pool)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = json.loads(_jobkit("status", "node", "--json", root=root, pool=pool).stdout)["runs"]
    assert [r["state"] for r in final] == ["COMPLETED", "COMPLETED"]
    assert [e["event"] for e in _events(status[queued]["path"])][-1] == "finished"


PROBE = "import os, json; print(json.dumps([sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'], " \
        "os.environ['CUDA_VISIBLE_DEVICES'], float(os.environ['JOBKIT_LOCAL_QUEUED_S'])]))"


def _wrapped(pool: Path, cpus: int, limit_s: int, command: list[str]) -> subprocess.CompletedProcess:
    node = Node.detect()
    argv = localqueue.wrapper_command(pool, node, Request(cpus, 10, 0), "0001", limit_s, "probe")
    return subprocess.run(argv[:-1] + command, capture_output=True, text=True, timeout=60)


def test_the_wrapper_pins_the_job_to_its_cores_and_threads_then_execs_it(tmp_path):
    done = _wrapped(tmp_path / "pool", 1, 0, [sys.executable, "-c", PROBE])
    assert done.returncode == 0, done.stderr
    cores, omp, cuda, queued_s = json.loads(done.stdout)
    assert cores == [min(os.sched_getaffinity(0))] and omp == "1" and cuda == "" and queued_s >= 0


def test_the_wrapper_kills_the_job_at_its_time_limit(tmp_path):
    done = _wrapped(tmp_path / "pool", 1, 1, [sys.executable, "-c", "import time; time.sleep(30)"])
    assert done.returncode == -signal.SIGALRM
