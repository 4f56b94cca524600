"""The common preemption layout on the live local cluster (issue 21): `scavenger`, PriorityTier 0 over every
node with PreemptMode=REQUEUE. jobkit keeps runs off it unless they allow preemption or name it; a run
there is preempted by a job of another partition on its node and resumes from its checkpoint. Slurm
judges every plan first (`sbatch --test-only`): its expected start times show in `--explain`, and a plan
it refuses stops before anything is written."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from slurmtools import all_ended, cancel_sweeps, jobkit, wait_until

from jobkit import slurm
from jobkit.plan import placement
from jobkit.plan.spec import parse_resources
from jobkit.store import RunDir

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def facts(slurm_cluster):
    f = slurm.read_facts()
    if "scavenger" not in {p.name for p in f.partitions}:
        pytest.skip("the running cluster has no `scavenger` partition: restart it from this slurm.conf.in "
                    "(slurm/down.sh && slurm/up.sh)")
    return f


@pytest.fixture(autouse=True)
def _cancel_leftovers():
    yield
    cancel_sweeps(("scav", "scavplan", "scavbad"))


def test_runs_stay_off_scavenger_unless_they_allow_preemption(facts):
    plain = placement.place(facts, parse_resources({"time": "02:00:00", "cpus": 1, "mem": "500M"}))
    assert plain.partition != "scavenger"
    why = {v.partition.name: v.reason for v in plain.choice.verdicts}["scavenger"]
    assert "its jobs can be preempted (PreemptMode=REQUEUE, PriorityTier 0 below" in why
    gpu = placement.place(facts, parse_resources({"time": "02:00:00", "gpus": "a100:1", "mem": "500M"}))
    assert gpu.partition == "gpu"  # gpu is above scavenger on n3: not at risk
    # consenting runs may use it, but among equal limits (cpu and scavenger: 1 day) the safe one wins
    ok = placement.place(facts, parse_resources({"time": "02:00:00", "mem": "500M", "preemptible": True}))
    assert ok.partition == "cpu"


def test_explain_shows_slurms_expected_start_per_fitting_partition(tmp_path, facts):
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "scavplan"\n[[run]]\nworkload = "toy"\npreset = "tiny"\ntime = "00:05:00"\n'
                     'cpus = 1\nmem = "500M"\npreemptible = true\n')
    out = jobkit("submit", sweep, "--dry-run", "--json", "--explain", root=tmp_path / "runs")
    run = json.loads(out.stdout)["runs"][0]
    fitting = [v for v in run["verdicts"] if v["fits"]]
    assert len(fitting) >= 3 and all("Slurm: start 20" in v["reason"] for v in fitting), fitting
    assert set(run["starts"]) >= {v["partition"] for v in fitting}
    assert not (tmp_path / "runs").exists()


def test_a_plan_slurm_refuses_is_stopped_by_test_only_before_anything_is_written(tmp_path, facts):
    sweep = tmp_path / "s.toml"  # no license `matlab` on this cluster: jobkit's rules cannot know, Slurm does
    sweep.write_text('name = "scavbad"\n[[run]]\nworkload = "toy"\npreset = "tiny"\ntime = "00:05:00"\n'
                     'cpus = 1\nmem = "500M"\nsbatch = { licenses = "matlab:1" }\n')
    done = jobkit("submit", sweep, root=tmp_path / "runs", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sbatch --test-only" in done.stderr and "nothing was submitted" in done.stderr
    assert done.stderr.strip().count("\n") == 0 and not (tmp_path / "runs").exists()


def test_a_run_on_scavenger_is_preempted_by_another_partition_and_resumes(tmp_path, facts):
    root = tmp_path / "runs"
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "scav"\n[[run]]\nworkload = "toy"\npreset = "tiny"\nsteps = 150\nstep_sleep = 0.15\n'
                     'checkpoint_every = 1000\ntime = "00:05:00"\ncpus = 2\nmem = "1G"\npartition = "scavenger"\n')
    plan = json.loads(jobkit("submit", sweep, "--json", root=root).stdout)
    (item,) = plan["runs"]
    assert item["partition"] == "scavenger"
    run = RunDir(Path(item["path"]))
    wait_until(root, lambda ss: ss[0].state == "RUNNING" and ss[0].step >= 30, 120, every=0.5)
    node = subprocess.run(["squeue", "-h", "-j", item["job_id"], "-o", "%N"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert node in ("n1", "n2", "n3"), node
    other = "gpu" if node == "n3" else "cpu"  # any partition above scavenger on that node
    hog = subprocess.run(["sbatch", "--parsable", "-J", "jobkit-scav", "-p", other, "-w", node, "-c", "2",
                          "--mem", "500M", "-t", "1", "-o", "/dev/null", "--wrap", "sleep 5"],
                         capture_output=True, text=True, check=True)
    assert hog.stdout.strip()
    (s,) = wait_until(root, all_ended, 300)
    assert s.state == "COMPLETED", s.error
    requeues = [e for e in run.events() if e["event"] == "requeued"]
    assert requeues and requeues[0]["reason"] == "preemption" and 30 <= requeues[0]["step"] < 150, requeues
    starts = [e for e in run.events() if e["event"] == "started"]
    assert len(starts) == 2 and starts[1]["step"] >= requeues[0]["step"] - 1
