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
    planned = submission.plan(specs, tmp_path, "local")
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


def _planned_with_intent(tmp_path: Path, executor: str, runs: int = 2):
    from jobkit.plan import sweep as sweep_mod
    from jobkit.submit import submission
    data = {"name": "x", "run": [{"workload": "toy", "preset": "tiny", "hidden": [8, 16][:runs]}]}
    specs = sweep_mod.from_dict(data).specs
    folders = [RunDir.create(tmp_path, s) for s in specs]
    token = intents.new_token()
    intents.record(folders, token, executor)
    return folders, token, submission.plan(specs, tmp_path, executor)


def test_slurm_jobs_carrying_the_token_are_adopted_one_query_for_all(tmp_path, monkeypatch):
    folders, token, planned = _planned_with_intent(tmp_path, "slurm")
    asked = []

    def squeue(comments):
        asked.append(sorted(comments))
        return {intents.comment(token): ["77_1", "77_0"], "jobkit:other": ["5"]}, None

    monkeypatch.setattr("jobkit.slurm.jobs_by_comment", squeue)
    assert intents.adopt(planned, "slurm") is None
    assert asked == [[intents.comment(token)]]
    assert [(p.action, p.job_id) for p in planned] == [("queued", "77_0"), ("queued", "77_1")]
    for run, job in zip(folders, ("77_0", "77_1")):
        receipt = run.events()[-1]
        assert receipt["event"] == Event.SUBMITTED and receipt["job_id"] == job and receipt["adopted"]
        assert intents.unreceipted(run) is None


def test_a_scheduler_that_cannot_be_asked_submits_nothing(tmp_path, monkeypatch):
    folders, _, planned = _planned_with_intent(tmp_path, "slurm", runs=1)
    monkeypatch.setattr("jobkit.slurm.jobs_by_comment", lambda comments: ({}, "squeue: timed out"))
    assert intents.adopt(planned, "slurm") == "squeue: timed out"
    assert Event.SUBMITTED not in _kinds(folders[0])


def test_a_local_controller_carrying_the_token_is_adopted(tmp_path):
    """The local executor's job is its submitit controller: found by the queue key in its environment."""
    folders, token, planned = _planned_with_intent(tmp_path, "local", runs=1)
    command = f"python -m jobkit.submit.localqueue --pool /p --key 0001-00000-{token} --run r -- python -u"
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "submitit.local._local"],
                            env={**os.environ, "SUBMITIT_LOCAL_COMMAND": command})
    end = time.time() + 10  # /proc shows the new command line a moment after Popen returns
    while not Path(f"/proc/{fake.pid}/cmdline").read_bytes() and time.time() < end:
        time.sleep(0.01)
    try:
        assert intents.adopt(planned, "local") is None
        assert planned[0].action == "queued" and planned[0].job_id == str(fake.pid)
        receipt = folders[0].events()[-1]
        assert receipt["adopted"] and receipt["host"] and receipt["job_id"] == str(fake.pid)
    finally:
        fake.kill()
        fake.wait()


def test_a_users_own_comment_travels_behind_the_token_and_the_job_is_still_found(monkeypatch):
    """`[sbatch] comment` is kept (after jobkit's token), and adoption still finds the job by its token."""
    from jobkit import slurm
    from jobkit.plan.spec import parse_resources
    from jobkit.submit.submission import slurm_parameters

    res = parse_resources({"time": "00:05:00", "cpus": 1, "mem": "500M", "sbatch": {"comment": "exp42"}})
    params = slurm_parameters(res, "test", "s", token="abc123")
    assert params["additional_parameters"]["comment"] == "jobkit:abc123,exp42"
    squeue = subprocess.CompletedProcess([], 0, stdout="7_0|jobkit:abc123,exp42\n8|jobkit:ffff\n9|exp42\n", stderr="")
    monkeypatch.setattr(slurm, "_run", lambda cmd: squeue)
    monkeypatch.setattr(slurm, "_user", lambda: "me")
    found, error = slurm.jobs_by_comment([intents.comment("abc123")])
    assert error is None and found == {"jobkit:abc123": ["7_0"]}
