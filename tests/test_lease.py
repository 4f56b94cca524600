"""One writer per run folder: the lease refuses a second writer, survives a kill -9, and is taken over."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobkit import testing
from jobkit.cli import cli
from jobkit.run import lease
from jobkit.state import Event
from jobkit.store import RunDir


def make_run(root: Path, **overrides) -> RunDir:
    return testing.make_run(root, "toy", {"preset": "tiny", **overrides})


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and mtime: what 'changed nothing' is checked against."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_a_second_writer_refuses_naming_the_holder_and_changes_nothing(tmp_path):
    run = make_run(tmp_path)
    with lease.Lease.take(run.path, job_id="1234") as held:
        before = snapshot(run.path)
        with pytest.raises(lease.LeaseHeld) as refused:
            lease.Lease.take(run.path, job_id="999")
        assert snapshot(run.path) == before
        text = str(refused.value)
        assert "job 1234 on" in text and "since" in text and f"jobkit cancel {run.path.name}" in text
        assert lease.live_holder(run.path).job_id == "1234"
        assert held.holder.attempt == 1
    assert lease.read(run.path) is None  # released: the record is gone
    with lease.Lease.take(run.path):  # and the next writer gets it
        pass


def test_jobkit_run_refuses_with_exit_4_and_writes_nothing(tmp_path):
    run = make_run(tmp_path)
    with lease.Lease.take(run.path, job_id="77"):
        before = snapshot(run.path)
        result = CliRunner().invoke(cli, ["run", str(run.path)])
        assert result.exit_code == lease.EXIT_LEASE_HELD, result.output
        assert "being trained by job 77" in result.output and len(result.output.strip().splitlines()) == 1
        assert snapshot(run.path) == before
    assert not run.events() and not run.progress()


def test_each_rank_has_its_own_lease(tmp_path):
    run = make_run(tmp_path)
    with lease.Lease.take(run.path, job_id="5", rank=0), lease.Lease.take(run.path, job_id="5", rank=1):
        with pytest.raises(lease.LeaseHeld):
            lease.Lease.take(run.path, job_id="6", rank=1)
        assert lease.read(run.path, 1).rank == 1


HOLDER = textwrap.dedent("""
    import sys, time
    from jobkit.run import lease
    held = lease.Lease.take(sys.argv[1], job_id="4242")
    print("held", flush=True)
    time.sleep(600)
""")


def _hold_in_subprocess(run: RunDir, timeout_s: float) -> subprocess.Popen:
    env = {**os.environ, lease.TIMEOUT_ENV: str(timeout_s)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run.path)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lease_left_by_a_killed_process_on_this_host_is_taken_over_at_once(tmp_path):
    run = make_run(tmp_path)
    proc = _hold_in_subprocess(run, timeout_s=600)
    with pytest.raises(lease.LeaseHeld):
        lease.Lease.take(run.path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lease.read(run.path).pid == proc.pid  # the record is still there: nobody removed it
    with lease.Lease.take(run.path, job_id="5000", limit_s=600):
        taken = [e for e in run.events() if e["event"] == Event.LEASE_TAKEN_OVER]
        assert len(taken) == 1 and taken[0]["previous"]["job_id"] == "4242"
        assert "process is gone" in taken[0]["message"]


def test_where_locks_are_unreliable_a_silent_lease_is_taken_over_after_its_timeout(tmp_path, monkeypatch):
    """Another host, with a lock that says nothing across hosts: only the heartbeat's age decides."""
    run = make_run(tmp_path)
    proc = _hold_in_subprocess(run, timeout_s=0.4)  # beats every 0.08 s
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)  # its OS lock goes with it, as on a file system that ignores locks
    proc.wait()
    killed_at = time.time()
    monkeypatch.setattr(lease, "_hostname", lambda: "othernode")
    with pytest.raises(lease.LeaseHeld):  # heartbeat still fresh: the writer may be alive over there
        lease.Lease.take(run.path, limit_s=2.0)
    assert not run.events()
    time.sleep(max(0.0, killed_at + 2.2 - time.time()))
    with lease.Lease.take(run.path, limit_s=2.0) as held:
        taken = [e for e in run.events() if e["event"] == Event.LEASE_TAKEN_OVER]
        assert len(taken) == 1 and "no heartbeat for" in taken[0]["message"]
        assert held.holder.host == "othernode"


def test_the_heartbeat_refreshes_the_record_and_a_takeover_is_noticed(tmp_path):
    run = make_run(tmp_path)
    held = lease.Lease.take(run.path, limit_s=0.25)
    first = lease.read(run.path).heartbeat
    time.sleep(0.2)
    assert lease.read(run.path).heartbeat > first
    held.release()


# --- two runners on one folder within the same second, many times -------------------------------

def _run_cli(path: str, go: "multiprocessing.synchronize.Event") -> None:
    """`jobkit run PATH` in a forked child once `go` is set; the child's exit code is the command's."""
    import torch
    torch.set_num_threads(1)
    go.wait()
    try:
        cli.main(["run", path], standalone_mode=False)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    os._exit(code)


def test_two_runners_started_together_one_trains_one_refuses_50_times(tmp_path):
    ctx = multiprocessing.get_context("fork")
    params = {"steps": 8, "checkpoint_every": 4, "eval_every": 4, "step_sleep": 0.01}
    ref = make_run(tmp_path / "ref", **params)
    go = ctx.Event()
    go.set()
    p = ctx.Process(target=_run_cli, args=(str(ref.path), go))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    expected = ref.load_checkpoint()[0]
    for i in range(50):
        run = make_run(tmp_path / f"r{i}", **params)
        go = ctx.Event()
        procs = [ctx.Process(target=_run_cli, args=(str(run.path), go)) for _ in range(2)]
        for proc in procs:
            proc.start()
        go.set()
        for proc in procs:
            proc.join(120)
        got = sorted(proc.exitcode for proc in procs)
        assert got == [0, lease.EXIT_LEASE_HELD], f"iteration {i}: exit codes {got}"
        kinds = [e["event"] for e in run.events()]
        assert kinds.count(Event.STARTED) == 1 and kinds.count(Event.FINISHED) == 1, kinds
        assert Event.FAILED not in kinds
        testing.assert_same(run.load_checkpoint()[0]["workload"], expected["workload"])
        assert lease.read(run.path) is None


def test_status_shows_the_holder(tmp_path):
    run = make_run(tmp_path)
    with lease.Lease.take(run.path, job_id="31337"):
        shown = CliRunner().invoke(cli, ["status", "--root", str(tmp_path), "--json"])
        assert json.loads(shown.output)["runs"][0]["lease"]["job_id"] == "31337"
        table = CliRunner().invoke(cli, ["status", "--root", str(tmp_path)])
        assert "trained by job 31337 on" in table.output
    shown = CliRunner().invoke(cli, ["status", "--root", str(tmp_path), "--json"])
    assert json.loads(shown.output)["runs"][0]["lease"] is None


def test_a_rank_refuses_beside_another_jobs_rank_0(tmp_path):
    run = make_run(tmp_path)
    with lease.Lease.take(run.path, job_id="10", rank=0):
        with lease.Lease.take(run.path, job_id="10", rank=1):
            pass
        with pytest.raises(lease.LeaseHeld, match="job 10"):
            lease.Lease.take(run.path, job_id="11", rank=1)
        assert lease.read(run.path, 1) is None
