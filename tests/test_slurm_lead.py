"""The warning time from measurement, live: a run whose checkpoint is slow on purpose (the test hook
$JOBKIT_TEST_SLOW_CHECKPOINT_S slows the writer) asks for a longer --signal when resumed, is told at
submit that the partition's GraceTime is short for it, and is preempted without losing its segment."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from slurmtools import all_ended, cancel_sweeps, jobkit, wait_until

from jobkit.plan import lead
from jobkit.run.ckptwriter import SLOW_ENV
from jobkit.store import RunDir

pytestmark = pytest.mark.slurm
SLOW_S = 11.0


@pytest.fixture(autouse=True)
def _cancel_leftovers():
    yield
    cancel_sweeps(["slowck"])


def test_a_slow_checkpoint_gets_a_longer_warning_and_a_preemption_loses_nothing(tmp_path):
    root = tmp_path / "runs"
    sweep = tmp_path / "slowck.toml"
    sweep.write_text("""
name = "slowck"
[[run]]
preemptible = true
partition = "test"
workload = "toy"
preset = "tiny"
steps = 300
step_sleep = 0.1
checkpoint_every = 100
time = "00:02:00"
cpus = 2
mem = "1G"
""")
    env = {**os.environ, SLOW_ENV: str(SLOW_S)}  # sbatch passes the submitter's environment to the job
    first = json.loads(jobkit("submit", sweep, "--json", root=root, env=env).stdout)["runs"][0]
    assert first["signal_s"] == lead.default_lead_s(2) == 30  # nothing measured yet: the default
    run = RunDir(Path(first["path"]))
    wait_until(root, lambda ss: (ss[0].last_checkpoint_step or 0) >= 100, 180)
    jobkit("cancel", "slowck", root=root)
    wait_until(root, all_ended, 60)
    measured = [e for e in run.events() if e["event"] == "checkpoint"]
    assert measured and measured[-1]["seconds"] >= SLOW_S and "async" in {e["mode"] for e in measured}

    resumed = jobkit("resume", "slowck", "--json", root=root, env=env)
    item = json.loads(resumed.stdout)["runs"][0]
    need = 2 * measured[-1]["seconds"] + 2 * measured[-1]["step_seconds"] + lead.MARGIN_S
    assert item["signal_s"] >= need > 30 and "checkpoint took" in item["signal_why"]
    assert "GraceTime" in (item["warning"] or "")  # told: a preemption gives only 30 s on `test`
    script = subprocess.run(["scontrol", "write", "batch_script", item["job_id"], "-"], capture_output=True,
                            text=True, check=True).stdout
    assert f"--signal=USR2@{item['signal_s']}" in script

    def training_again(ss) -> bool:  # the resumed job's own attempt, some steps in (its handler is set)
        started = [e for e in run.events() if e["event"] == "started" and e.get("job_id") == item["job_id"]]
        return bool(started) and run.progress().get("step", 0) >= started[-1]["step"] + 20

    wait_until(root, training_again, 180)
    at = run.progress()["step"]
    hog = subprocess.run(["sbatch", "--parsable", "-p", "preempt", "-c", "2", "--mem", "500M", "-t", "1",
                          "-o", "/dev/null", "--wrap", "sleep 5"], capture_output=True, text=True, check=True)
    assert hog.stdout.strip()
    (s,) = wait_until(root, all_ended, 300)
    assert s.state == "COMPLETED", s.error
    events = run.events()
    requeues = [e for e in events if e["event"] == "requeued" and e["t"] > measured[-1]["t"]]
    assert requeues and all(e["reason"] == "preemption" for e in requeues)  # ours (and any other test's)
    for requeued in requeues:
        stop = [e for e in events if e["event"] == "checkpoint" and e["reason"] == "stop" and e["t"] <= requeued["t"]]
        assert stop[-1]["step"] == requeued["step"]  # saved at the step the signal stopped
        after = [e for e in events if e["event"] == "started" and e["t"] > requeued["t"]]
        assert after[0]["step"] == requeued["step"]  # the next attempt went on from there: nothing lost
