"""Submission happens exactly once: a submitter killed -9 between sbatch and its record, then a second
submit, leaves one job per run, and every run trains once (local executor here, Slurm when live)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobkit.observe.status import collect_status
from jobkit.state import TERMINAL, Event, State
from jobkit.store import RunDir, find_runs
from jobkit.submit import intents

SWEEP = """
name = "{name}"
[defaults]
time = "00:05:00"
cpus = 1
mem = "500M"
[[run]]
workload = "toy"
preset = "tiny"
steps = 6
checkpoint_every = 3
eval_every = 3
hidden = [8, 16]
"""


def _jobkit(*args: str, root: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**(env or os.environ), "JOBKIT_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", "jobkit", *map(str, args)], capture_output=True, text=True,
                          env=full, timeout=300)


def _wait_ended(root: Path, timeout: float) -> list:
    end = time.time() + timeout
    while True:
        summaries = collect_status(find_runs(root)).summaries
        if summaries and all(s.state in TERMINAL for s in summaries):
            return summaries
        assert time.time() < end, [(s.run_id, s.state) for s in summaries]
        time.sleep(1)


def _kinds(run: RunDir) -> list[str]:
    return [e["event"] for e in run.events()]


def _killed_then_resubmitted(tmp_path: Path, executor: str, name: str, env: dict | None = None) -> list[RunDir]:
    sweep = tmp_path / f"{name}.toml"
    sweep.write_text(SWEEP.format(name=name))
    root = tmp_path / "runs"
    base = dict(env or os.environ)
    died = _jobkit("submit", sweep, "--executor", executor, root=root,
                   env={**base, intents.DIE_AFTER_SBATCH_ENV: "1"})
    assert died.returncode == -signal.SIGKILL, died.stdout + died.stderr
    runs = find_runs(root)
    assert len(runs) == 2 and all(intents.unreceipted(r) is not None for r in runs)
    again = _jobkit("submit", sweep, "--executor", executor, "--json", root=root, env=base)
    assert again.returncode == 0, again.stdout + again.stderr
    planned = {r["run_id"]: r for r in json.loads(again.stdout)["runs"]}
    _wait_ended(root, 240)
    for run in runs:
        kinds = _kinds(run)
        assert kinds.count(Event.SUBMITTED) == 1, kinds  # one job per run: adopted or sent once
        assert kinds.count(Event.STARTED) == 1 and kinds[-1] == Event.FINISHED, kinds  # trained once
    return runs, planned


def test_local_submitter_killed_after_sbatch_then_submit_again_runs_each_once(tmp_path):
    runs, planned = _killed_then_resubmitted(tmp_path, "local", "eonce")
    # locally one job per run: the first was sent before the kill and is adopted, the second is sent now
    adopted = [r for r in runs if any(e.get("adopted") for e in r.events())]
    assert len(adopted) == 1
    assert "adopted" in planned[adopted[0].run_id]["reason"]


def test_an_intent_the_scheduler_does_not_know_is_submitted_anew(tmp_path):
    from jobkit.plan import sweep as sweep_mod
    from jobkit.submit import submission
    specs = sweep_mod.from_dict({"name": "x", "run": [{"workload": "toy", "preset": "tiny"}]}).specs
    run = RunDir.create(tmp_path, specs[0])
    intents.record([run], intents.new_token(), "local")
    planned = submission.plan(specs, tmp_path, "local", None)
    assert intents.adopt(planned, "local") is None
    assert planned[0].action == "resume" and Event.SUBMITTED not in _kinds(run)
    run.event(Event.SUBMITTED, job_id="1")
    assert intents.unreceipted(run) is None


@pytest.mark.slurm
def test_slurm_submitter_killed_after_sbatch_then_submit_again_runs_each_once(tmp_path, slurm_cluster):
    runs, planned = _killed_then_resubmitted(tmp_path, "slurm", "eonce-slurm", env=slurm_cluster.env)
    # one array for both runs: both adopted, nothing sent again
    assert all(any(e.get("adopted") for e in r.events()) for r in runs)
    assert all(p["action"] == "queued" for p in planned.values())
    job_ids = {next(e["job_id"] for e in r.events() if e["event"] == Event.SUBMITTED) for r in runs}
    assert len({j.split("_")[0] for j in job_ids}) == 1 and len(job_ids) == 2
