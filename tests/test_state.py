"""The run lifecycle has one home: every command agrees on what "ended" means."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobkit.cli import cli, logs_cmd
from jobkit.observe.runstate import summarize
from jobkit.observe.status import SlurmView, StatusReport, overlay
from jobkit.plan.spec import JobSpec
from jobkit.state import ACTIVE, FAILED, QUEUED, TERMINAL, Event, State
from jobkit.store import RunDir


def test_groups_are_consistent() -> None:
    assert QUEUED < ACTIVE
    assert not ACTIVE & TERMINAL
    assert FAILED < TERMINAL
    assert State.COMPLETED in TERMINAL and State.COMPLETED not in FAILED
    # every state the scheduler can end a job with counts as ended
    for name in ("BOOT_FAIL", "DEADLINE", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "CANCELLED"):
        assert State(name) in TERMINAL
    assert json.dumps({"s": State.RUNNING, "e": Event.STARTED}) == '{"s": "RUNNING", "e": "started"}'


def _submitted_run(tmp_path: Path, job_id: str = "4242") -> RunDir:
    spec = JobSpec(sweep="s", workload="toy", params={"steps": 10})
    run = RunDir.create(tmp_path, spec)
    run.event(Event.SUBMITTED, job_id=job_id, partition="test", executor="slurm")
    folder = tmp_path / "s" / ".submitit" / job_id
    folder.mkdir(parents=True)
    (folder / f"{job_id}_0_log.out").write_text("Starting with JobEnvironment\nhello\n")
    (folder / f"{job_id}_0_log.err").write_text("")
    return run


@pytest.mark.parametrize("slurm_state", ["BOOT_FAIL", "DEADLINE", "NODE_FAIL", "COMPLETED", "CANCELLED"])
def test_logs_follow_ends_on_every_terminal_state(tmp_path: Path, monkeypatch, slurm_state: str) -> None:
    run = _submitted_run(tmp_path)
    if slurm_state == "COMPLETED":
        run.event(Event.FINISHED, step=10)
    view = SlurmView(states={"4242": slurm_state}, partitions={"4242": "test"}, source="sacct")

    def fake_status(runs, use_slurm=True):
        return StatusReport(summaries=[overlay(summarize(r), view) for r in runs], slurm=view)

    monkeypatch.setattr(logs_cmd, "collect_status", fake_status)
    result: dict = {}

    def invoke() -> None:
        result["r"] = CliRunner().invoke(cli, ["logs", run.run_id, "-f", "--root", str(tmp_path)])

    worker = threading.Thread(target=invoke, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), f"logs -f did not end on {slurm_state}"
    assert result["r"].exit_code == 0, result["r"].output
    assert "hello" in result["r"].output


def test_overlay_keeps_unknown_scheduler_words(tmp_path: Path) -> None:
    run = _submitted_run(tmp_path)
    view = SlurmView(states={"4242": "SPECIAL_EXIT"}, source="sacct")
    s = overlay(summarize(run), view)
    assert s.state == "SPECIAL_EXIT" and s.state not in TERMINAL
