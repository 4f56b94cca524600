"""Data-parallel runs on the live local cluster: two tasks on two nodes (gloo), a real preemption of
both, every process of the stopped job gone, and weights bit-identical to the uninterrupted run."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from slurmtools import all_ended, cancel_sweeps, jobkit, wait_until

from jobkit import testing
from jobkit.store import RunDir, find_runs

pytestmark = pytest.mark.slurm
SWEEPS = ("ddp", "ddpre")


@pytest.fixture(autouse=True)
def _cancel_leftovers():
    yield
    cancel_sweeps(SWEEPS)


@pytest.fixture(autouse=True)
def _two_node_partition(slurm_cluster):
    if "cpu" not in slurm_cluster.partition_names:
        pytest.skip("needs the two-node partition `cpu` (slurm/up.sh's university layout)")








SWEEP = """
name = "{name}"
[[run]]
workload = "toy"
preset = "tiny"
steps = {steps}
step_sleep = 0.1
checkpoint_every = 1000
eval_every = 20
time = "00:05:00"
cpus = 1
mem = "500M"
nodes = 2
tasks_per_node = 1
partition = "cpu"
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_two_tasks_on_two_nodes_then_a_preempted_copy_ends_bit_identical(tmp_path):
    # 1. uninterrupted: two tasks, one on each node, talking over gloo
    ref_sweep = tmp_path / "ddp.toml"
    ref_sweep.write_text(SWEEP.format(name="ddp", steps=120))
    jobkit("submit", ref_sweep, root=tmp_path / "ref")
    (s,) = wait_until(tmp_path / "ref", all_ended, 300)
    assert s.state == "COMPLETED", s.error
    ref = RunDir(Path(s.path))
    started = [e for e in ref.events() if e["event"] == "started"]
    assert started[0]["tasks"] == 2 and started[0]["nodes"] == 2
    assert sorted(host for host, _ in started[0]["ranks"]) == ["n1", "n2"]
    status = json.loads(jobkit("status", "--json", root=tmp_path / "ref").stdout)
    assert status["runs"][0]["tasks"] == "2×1"  # nodes × tasks per node

    # 2. the same run, preempted by a job on `preempt` (n1) mid-run: USR2 reaches both tasks
    sweep = tmp_path / "ddpre.toml"
    sweep.write_text(SWEEP.format(name="ddp", steps=120))
    jobkit("submit", sweep, root=tmp_path / "pre")
    wait_until(tmp_path / "pre", lambda ss: ss[0].state == "RUNNING" and ss[0].step >= 25, 240, every=0.5)
    run = RunDir(Path(find_runs(tmp_path / "pre")[0].path))
    first = [e for e in run.events() if e["event"] == "started"][0]
    hog = subprocess.run(["sbatch", "--parsable", "-J", "jobkit-ddpre", "-p", "preempt", "-c", "2", "--mem", "500M",
                          "-t", "1", "-o", "/dev/null", "--wrap", "sleep 3"], capture_output=True, text=True, check=True)
    assert hog.stdout.strip()
    (s,) = wait_until(tmp_path / "pre", all_ended, 400)
    assert s.state == "COMPLETED", s.error
    events = run.events()
    requeued = [e for e in events if e["event"] == "requeued"]
    assert len(requeued) == 1 and requeued[0]["reason"] == "preemption", requeued
    stop = [e for e in events if e["event"] == "checkpoint" and e["reason"] == "stop"]
    assert stop and stop[0]["step"] == requeued[0]["step"]
    # every process of the stopped attempt is gone (they share this machine's PID namespace)
    assert not [pid for _, pid in first["ranks"] if alive(pid)]
    a, b = ref.load_checkpoint()[0], run.load_checkpoint()[0]
    testing.assert_same(a["workload"], b["workload"], "workload")
    testing.assert_same(a["rng_ranks"], b["rng_ranks"], "rng_ranks")
    # each task's own output
    logs = jobkit("logs", run.run_id, "--task", "1", root=tmp_path / "pre").stdout
    assert "Starting with JobEnvironment" in logs
