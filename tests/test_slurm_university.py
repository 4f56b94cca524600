"""jobkit on the local "university" cluster (issue 11, layout in slurm/ — see LOCAL-CLUSTER-SPEC):
accounts, QoS, typed GPUs, node features and site setup lines, end to end through sbatch.

Runs only when the running cluster has that layout (partitions gpu/bio/express, node n3 with
gpu:a100, root's association with account physics, QoS short with MaxWall 5 minutes); otherwise
every test here is skipped with the reason.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurmtools import all_ended, wait_until

from jobkit import slurm
from jobkit.plan import placement
from jobkit.plan.choose import NoFit
from jobkit.plan.spec import parse_resources

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def facts(slurm_cluster):
    """The live facts; skip unless the cluster is the agreed university layout."""
    try:
        f = slurm.read_facts()
    except Exception as exc:  # noqa: BLE001 - a skip reason, not a failure of this module
        pytest.skip(f"cannot read the cluster's facts: {exc}")
    names = {p.name for p in f.partitions}
    missing = {"cpu", "gpu", "bio", "express"} - names
    why = []
    if missing:
        why.append(f"no partition {', '.join(sorted(missing))}")
    if "a100" not in f.gpu_types():
        why.append("no node with gpu:a100 GRES")
    if not f.accounting:
        why.append("no accounting")
    elif "physics" not in f.accounts():
        why.append("the user has no association with account physics")
    if f.accounting and (f.qos.get("short") is None or f.qos["short"].max_wall_min != 5):
        why.append("no QoS short with MaxWall 00:05:00")
    if why:
        pytest.skip("not the university layout of slurm/up.sh (LOCAL-CLUSTER-SPEC): " + "; ".join(why))
    return f


@pytest.fixture
def submitted():
    """Job ids a test submitted: cancelled at its end (only those: by id, never by name)."""
    ids: list[str] = []
    yield ids
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def jobkit(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "jobkit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "JOBKIT_ROOT": str(cwd / "runs")}, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def wait_job(job_id: str, timeout: float) -> dict[str, str]:
    """Poll until the job leaves the queue (scontrol forgets it MinJobAge after; sacct then)."""
    end = time.time() + timeout
    last: dict[str, str] = {}
    while time.time() < end:
        info = scontrol_job(job_id)
        if not info:
            return last
        last = info
        if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return info
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {last.get('JobState')} after {timeout} s ({last.get('Reason')})")


def test_chooser_never_picks_a_partition_or_qos_root_may_not_use(facts):
    shapes = [dict(time="00:04:00"), dict(time="00:30:00"), dict(time="02:00:00", cpus=2),
              dict(time="00:10:00", total_time="01:00:00", chunk=True), dict(time="00:04:00", gpus="a100:1")]
    for shape in shapes:
        p = placement.place(facts, parse_resources(shape))
        assert p.partition not in ("bio", "express"), (shape, p.choice.reason)
        assert p.qos in ("normal", "short"), (shape, p.qos)
        reasons = {v.partition.name: v.reason for v in p.choice.verdicts}
        assert "AllowAccounts=bio" in reasons["bio"]
    # express only when QoS short is asked for, and never with account bio
    p = placement.place(facts, parse_resources({"time": "00:04:00", "qos": "short", "partition": "express"}))
    assert (p.partition, p.qos) == ("express", "short")
    with pytest.raises(NoFit, match="your accounts: physics"):
        placement.place(facts, parse_resources({"account": "bio"}))
    with pytest.raises(NoFit, match="AllowAccounts=bio"):
        placement.place(facts, parse_resources({"partition": "bio"}))


def test_gpu_run_gets_account_qos_gres_constraint_lands_on_n3_and_runs_setup(tmp_path, facts, submitted):
    """sbatch receives --account/--qos/--gpus-per-node/--constraint; the job runs on n3 with GPU
    variables set; the site config's setup lines run in the job before Python."""
    (tmp_path / "jobkit.toml").write_text(
        'account = "physics"\n'
        'setup = ["echo JOBKIT_SETUP_RAN on $(hostname)", '
        '"echo GPUS job=${SLURM_JOB_GPUS:-none} cuda=${CUDA_VISIBLE_DEVICES:-none}"]\n')
    sweep = tmp_path / "uni-gpu.toml"
    sweep.write_text('name = "uni-gpu"\n[defaults]\ntime = "00:05:00"\ncpus = 1\nmem = "500M"\n'
                     'gpus = "a100:1"\nconstraint = "a100"\nqos = "normal"\n'
                     '[[run]]\nworkload = "toy"\nsteps = 20\neval_every = 0\n')
    out = jobkit("submit", sweep, "--json", "--executor", "slurm", cwd=tmp_path)
    run = json.loads(out.stdout)["runs"][0]
    submitted.append(run["job_id"])
    assert (run["partition"], run["account"], run["qos"], run["gpus"]) == ("gpu", "physics", "normal", "a100:1")
    job = scontrol_job(run["job_id"])
    assert job["Account"] == "physics" and job["QOS"] == "normal" and job["Partition"] == "gpu"
    assert job.get("Features") == "a100"
    assert "gpu:a100:1" in (job.get("TresPerNode", "") + job.get("TresPerJob", "") + job.get("TRES", ""))
    info = wait_job(run["job_id"], 240)
    assert info.get("NodeList") == "n3", info
    logs = list((tmp_path / "runs" / "uni-gpu" / ".submitit").glob(f"{run['job_id']}*/*_log.out"))
    text = "".join(p.read_text() for p in logs)
    assert "JOBKIT_SETUP_RAN on n3" in text, text[-2000:]
    m = re.search(r"GPUS job=(\S+) cuda=(\S+)", text)
    assert m and m.group(1) != "none" and m.group(2) != "none", text[-2000:]
    status = json.loads(jobkit("status", "uni-gpu", "--json", cwd=tmp_path, check=False).stdout)
    assert status["runs"][0]["state"] == "COMPLETED", status["runs"][0]


def test_chunked_run_under_qos_short_is_cut_into_its_maxwall_and_finishes(tmp_path, facts, submitted):
    """QoS short's MaxWall (5 min) caps every partition: a 10-minute chunked run becomes 5-minute jobs
    that requeue themselves until done. Slow by nature (about 7 minutes)."""
    sweep = tmp_path / "uni-short.toml"
    sweep.write_text('name = "uni-short"\n[defaults]\ntime = "00:10:00"\nchunk = true\ncpus = 1\nmem = "500M"\n'
                     'qos = "short"\n[[run]]\nworkload = "toy"\nsteps = 270\nstep_sleep = 1.0\neval_every = 0\n'
                     'checkpoint_every = 10\n')
    out = jobkit("submit", sweep, "--json", "--executor", "slurm", cwd=tmp_path)
    run = json.loads(out.stdout)["runs"][0]
    submitted.append(run["job_id"])
    assert run["qos"] == "short" and run["time"] == "00:05:00" and run["segments"] == 2, run
    assert run["partition"] not in ("bio", "express")
    job = scontrol_job(run["job_id"])
    assert job["QOS"] == "short" and job["TimeLimit"] == "00:05:00"
    wait_until(tmp_path / "runs", all_ended, 900)  # in this process: one sacct call per look
    row = json.loads(jobkit("status", "uni-short", "--json", cwd=tmp_path, check=False).stdout)["runs"][0]
    assert row["state"] == "COMPLETED", row
    events = [json.loads(line) for line in
              (tmp_path / "runs" / "uni-short" / run["run_id"] / "events.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "requeued" and e.get("reason") == "segment" for e in events), events


def test_saved_profile_plans_like_the_live_cluster(tmp_path, facts):
    """`jobkit partitions --save` then `submit --dry-run --cluster` gives the live plan, without Slurm."""
    profile = tmp_path / "local.json"
    jobkit("partitions", "--save", profile, cwd=tmp_path)
    sweep = tmp_path / "uni-gpu.toml"
    sweep.write_text('name = "uni-gpu"\n[defaults]\ntime = "00:20:00"\ngpus = "a100:1"\n'
                     '[[run]]\nworkload = "toy"\nseed = [1, 2]\n[[run]]\nworkload = "toy"\ngpus = 0\nqos = "short"\n'
                     'time = "00:04:00"\n')
    live = json.loads(jobkit("submit", sweep, "--dry-run", "--json", "--executor", "slurm", cwd=tmp_path).stdout)
    env_free = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    offline = subprocess.run([sys.executable, "-m", "jobkit", "submit", str(sweep), "--dry-run", "--json", "--cluster",
                              str(profile), "--root", str(tmp_path / "runs")], capture_output=True, text=True,
                             cwd=tmp_path, env={**env_free, "PATH": "/usr/bin/false-dir"}, timeout=120)
    assert offline.returncode == 0, offline.stderr
    key = ("run_id", "partition", "qos", "account", "time", "segments", "gpus")
    assert [[r[k] for k in key] for r in live["runs"]] == [[r[k] for k in key] for r in json.loads(offline.stdout)["runs"]]
    assert [(r["gpus"], r["partition"], r["qos"]) for r in live["runs"]] == [
        ("a100:1", "gpu", "normal"), ("a100:1", "gpu", "normal"), (0, "preempt", "short")]
    # test, submit and cpu share n1 with `preempt` (PriorityTier 10): a run that does not allow preemption
    # goes to `preempt` itself (QoS short's 5 minutes bind everywhere; the higher tier wins the tie)
