"""jobkit on the live local Slurm cluster: arrays, idempotent resubmission, status with and without
accounting, timeouts moved to another partition, real preemption, segments, scontrol requeue."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from slurmtools import all_ended, cancel_sweeps, jobkit, sacct_job_ids, wait_until

from jobkit.run import runner
from jobkit.store import RunDir, find_runs

pytestmark = pytest.mark.slurm
SWEEPS = ("arr", "tmo", "pre", "seg", "race")  # the sweep names these tests submit


@pytest.fixture(autouse=True)
def _cancel_leftovers():
    """A failed test must not leave jobs queued on the shared cluster for the next one."""
    yield
    cancel_sweeps(SWEEPS)




def write_sweep(tmp_path: Path, text: str, name: str = "sweep") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path






def weights(run: RunDir) -> dict:
    state, _ = run.load_checkpoint()
    return state["workload"]["model"]


def test_three_runs_go_in_as_one_array_complete_and_are_not_resubmitted(tmp_path):
    root = tmp_path / "runs"
    sweep = write_sweep(tmp_path, """
name = "arr"
[defaults]
preemptible = true  # test/submit lie under `preempt` (PriorityTier 10): these runs resume, so they may go there
time = "00:05:00"
cpus = 1
mem = "500M"
[[run]]
workload = "toy"
preset = "tiny"
hidden = [8, 16, 32]
""")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    plan = json.loads(jobkit("submit", sweep, "--json", root=root).stdout)
    ids = [r["job_id"] for r in plan["runs"]]
    assert len({i.split("_")[0] for i in ids}) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1", "2"]
    assert all(r["partition"] == "test" for r in plan["runs"])
    summaries = wait_until(root, all_ended, 180)
    assert [s.state for s in summaries] == ["COMPLETED"] * 3
    status = json.loads(jobkit("status", "--json", root=root).stdout)
    assert status["scheduler"] == "sacct" and status["slurm_calls"] == 1
    assert all(r["state"] == "COMPLETED" and r["partition"] == "test" for r in status["runs"])
    again = json.loads(jobkit("submit", sweep, "--json", root=root).stdout)
    assert [r["action"] for r in again["runs"]] == ["done"] * 3
    assert [r["job_id"] for r in again["runs"]] == ids
    parent = ids[0].split("_")[0]
    sacct = sacct_job_ids("-j", parent, expect=ids)
    assert sorted(sacct) == sorted(ids)  # the array holds these three tasks and nothing else
    mine = sacct_job_ids("--name", "jobkit-arr", "-S", started, expect=ids)
    assert sorted(mine) == sorted(ids)  # no other job was submitted for this sweep


def test_time_over_every_partition_is_refused_naming_the_limits(tmp_path):
    """`preempt` (UNLIMITED) is an ordinary choice since issue 21, so the unnamed 3-day run fits there;
    a run that names a partition, or one that may be preempted and is kept off `preempt`, is refused."""
    root = tmp_path / "runs"
    sweep = write_sweep(tmp_path, '[[run]]\nworkload = "toy"\ntime = "3-00:00:00"\npartition = "submit"\n')
    done = jobkit("submit", sweep, root=root, check=False)
    assert done.returncode == 2
    assert "MaxTime 2-00:00:00 < 3-00:00:00 asked" in done.stderr and "--chunk" in done.stderr
    assert done.stderr.count("\n") == 1 and not root.exists()


def test_status_without_accounting_answers_from_squeue_and_events(slurm_cluster_noacct, tmp_path):
    root = tmp_path / "runs"
    env = slurm_cluster_noacct.env
    sweep = write_sweep(tmp_path, """
name = "noacct"
[[run]]
workload = "toy"
preset = "tiny"
steps = 200
step_sleep = 0.05
cpus = 1
mem = "500M"
time = "00:05:00"
""")
    jobkit("submit", sweep, root=root, env=env)
    seen, sources = set(), set()
    end = time.time() + 180
    while time.time() < end:
        status = json.loads(jobkit("status", "--json", root=root, env=env, check=False).stdout)
        # one squeue a poll; once the job has left, the user's queue is empty: no answer ("unknown"),
        # and the run's own events say it completed
        assert status["scheduler"] in ("squeue", "unknown") and status["slurm_calls"] == 1
        (run,) = status["runs"]
        seen.add(run["state"])
        sources.add(status["scheduler"])
        if run["state"] == "COMPLETED":
            break
        time.sleep(1)
    assert run["state"] == "COMPLETED" and run["step"] == 200
    assert "RUNNING" in seen and "squeue" in sources


def test_timeout_on_test_then_resume_on_submit(tmp_path):
    """The report's story: a job too long for `test` stops at its limit (checkpointed); resume moves it."""
    root = tmp_path / "runs"
    sweep = write_sweep(tmp_path, """
name = "tmo"
[[run]]
preemptible = true  # test/submit lie under `preempt` (PriorityTier 10): these runs resume, so they may go there
workload = "toy"
preset = "tiny"
steps = 160
step_sleep = 0.5
checkpoint_every = 20
time = "00:01:00"
cpus = 1
mem = "500M"
""")
    jobkit("submit", sweep, root=root)
    (s,) = wait_until(root, all_ended, 150)
    assert s.state == "TIMEOUT" and 20 <= s.step < 160
    stopped_at = s.step
    plan = json.loads(jobkit("resume", "tmo", "--partition", "submit", "--time", "00:05:00", "--json",
                             root=root).stdout)
    assert plan["runs"][0]["action"] == "resume" and plan["runs"][0]["partition"] == "submit"
    again = json.loads(jobkit("resume", "tmo", "--json", root=root).stdout)  # idempotent
    assert again["runs"][0]["action"] in ("queued", "running")
    (s,) = wait_until(root, all_ended, 240)
    assert s.state == "COMPLETED" and s.partition == "submit"
    run = RunDir(Path(s.path))
    starts = [e for e in run.events() if e["event"] == "started"]
    assert len(starts) == 2 and starts[1]["step"] == stopped_at


def test_real_preemption_ends_with_the_same_weights(tmp_path):
    root = tmp_path / "runs"
    sweep = write_sweep(tmp_path, """
name = "pre"
[[run]]
preemptible = true  # test/submit lie under `preempt` (PriorityTier 10): these runs resume, so they may go there
workload = "toy"
preset = "tiny"
steps = 150
step_sleep = 0.15
checkpoint_every = 1000
time = "00:05:00"
cpus = 2
mem = "1G"
""")
    plan = json.loads(jobkit("submit", sweep, "--json", root=root).stdout)
    run = RunDir(Path(plan["runs"][0]["path"]))
    wait_until(root, lambda ss: ss[0].state == "RUNNING" and ss[0].step >= 30, 120, every=0.5)
    hog = subprocess.run(["sbatch", "--parsable", "-p", "preempt", "-c", "2", "--mem", "500M", "-t", "1",
                          "-o", "/dev/null", "--wrap", "sleep 5"], capture_output=True, text=True, check=True)
    assert hog.stdout.strip()
    (s,) = wait_until(root, all_ended, 240)
    assert s.state == "COMPLETED"
    requeues = [e for e in run.events() if e["event"] == "requeued"]
    assert requeues and requeues[0]["reason"] == "preemption" and 30 <= requeues[0]["step"] < 150
    # the same spec run straight through, here
    ref = RunDir.create(tmp_path / "ref", run.spec())
    runner.run(ref)
    for key, tensor in weights(ref).items():
        assert torch.equal(tensor, weights(run)[key]), key


def test_three_segments_of_a_one_minute_limit_and_scontrol_requeue(tmp_path):
    root = tmp_path / "runs"
    sweep = write_sweep(tmp_path, """
name = "seg"
[defaults]
preemptible = true  # test/submit lie under `preempt` (PriorityTier 10): these runs resume, so they may go there
workload = "toy"
preset = "tiny"
cpus = 1
mem = "500M"
[[run]]
steps = 180
step_sleep = 0.5
checkpoint_every = 1000
time = "00:01:00"
total_time = "00:03:00"
[[run]]
steps = 300
step_sleep = 0.1
checkpoint_every = 10
time = "00:05:00"
""")
    plan = json.loads(jobkit("submit", sweep, "--json", "--chunk", root=root).stdout)
    seg, req = sorted(plan["runs"], key=lambda r: r["time"])
    assert seg["segments"] == 3 and seg["time"] == "00:01:00"
    req_run = RunDir(Path(req["path"]))
    wait_until(root, lambda ss: any(s.run_id == req["run_id"] and (s.last_checkpoint_step or 0) >= 50 for s in ss),
               120, every=0.5)
    subprocess.run(["scontrol", "requeue", req["job_id"]], check=True)
    summaries = wait_until(root, all_ended, 420)
    assert [s.state for s in summaries] == ["COMPLETED", "COMPLETED"]
    seg_run = RunDir(Path(seg["path"]))
    seg_starts = [e for e in seg_run.events() if e["event"] == "started"]
    assert len(seg_starts) >= 3
    assert all(e["reason"] == "segment" for e in seg_run.events() if e["event"] == "requeued")
    req_starts = [e for e in req_run.events() if e["event"] == "started"]
    assert len(req_starts) == 2 and req_starts[1]["step"] >= 50 and req_starts[1]["step"] % 10 == 0
    assert not [e for e in req_run.events() if e["event"] == "requeued"]  # no signal: nothing checkpointed then


def test_two_concurrent_submits_of_one_sweep_create_no_duplicate_jobs(tmp_path):
    root = tmp_path / "runs"
    sweep = write_sweep(tmp_path, """
name = "race"
[[run]]
workload = "toy"
preset = "tiny"
steps = 5
hidden = [8, 16]
cpus = 1
mem = "500M"
time = "00:05:00"
""")
    env = {**os.environ, "JOBKIT_ROOT": str(root)}
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    procs = [subprocess.Popen([sys.executable, "-m", "jobkit", "submit", str(sweep), "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    plans = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        plans.append({r["run_id"]: r["action"] for r in json.loads(out)["runs"]})
    actions = sorted(a for plan in plans for a in plan.values())
    assert actions.count("new") == 2 and not actions.count("resume")  # one submit won, the other saw it
    ids = [s.job_id for s in wait_until(root, all_ended, 120)]
    sacct = sacct_job_ids("--name", "jobkit-race", "-S", started, expect=ids)
    assert len(sacct) == 2 and sorted(sacct) == sorted(ids)
    for run in find_runs(root):
        assert sum(e["event"] == "submitted" for e in run.events()) == 1



def test_a_root_that_sbatch_lines_cannot_carry_is_refused(tmp_path):
    root = tmp_path / "my runs"
    sweep = write_sweep(tmp_path, '[[run]]\nworkload = "toy"\npreset = "tiny"\n')
    done = jobkit("submit", sweep, root=root, check=False)
    assert done.returncode == 2 and "spaces or shell characters" in done.stderr
    assert done.stderr.count("\n") == 1 and not root.exists()
