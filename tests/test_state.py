"""The run lifecycle has one home: every command agrees on what "ended" means, and Slurm's words are
read explicitly (a held job is active; an unknown word is UNKNOWN, never a jobkit state by its name)."""
from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from rich.console import Console

from jobkit import slurm
from jobkit.cli import cli, live, logs_cmd
from jobkit.observe import lifecycle, status_watch
from jobkit.observe.lifecycle import settle
from jobkit.observe.runstate import RunSummary, summarize
from jobkit.observe.status import SlurmView, StatusReport
from jobkit.plan.spec import JobSpec
from jobkit.state import ACTIVE, FAILED, QUEUED, TERMINAL, Event, Phase, State
from jobkit.store import RunDir


def test_groups_are_consistent() -> None:
    assert QUEUED < ACTIVE
    assert not ACTIVE & TERMINAL
    assert FAILED < TERMINAL
    assert State.COMPLETED in TERMINAL and State.COMPLETED not in FAILED
    # every state the scheduler can end a job with counts as ended
    for name in ("BOOT_FAIL", "DEADLINE", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "CANCELLED"):
        assert State(name) in TERMINAL
    assert State.SUSPENDED in ACTIVE and State.UNKNOWN not in ACTIVE | TERMINAL
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
        return StatusReport(summaries=[settle(summarize(r), view) for r in runs], slurm=view)

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


def test_an_unknown_scheduler_word_is_unknown_and_named(tmp_path: Path) -> None:
    run = _submitted_run(tmp_path)
    view = SlurmView(states={"4242": "SPECIAL_EXIT"}, source="sacct")
    s = settle(summarize(run), view)
    assert s.state == State.UNKNOWN and s.state not in TERMINAL
    assert "SPECIAL_EXIT" in s.error  # the word itself is shown, never taken for a jobkit state
    assert lifecycle.phase(s.state) == Phase.ATTENTION and lifecycle.has_ended(s.state)


@pytest.mark.parametrize("word", ["STOPPED", "SUSPENDED"])
def test_a_job_held_by_slurm_is_active_never_jobkits_stopped(tmp_path: Path, word: str) -> None:
    """Slurm's STOPPED (SIGSTOP, allocation kept) and SUSPENDED go on when released: not terminal."""
    assert slurm.job_state(word) == State.SUSPENDED
    run = _submitted_run(tmp_path)
    run.event(Event.STARTED, step=3, job_id="4242", executor="slurm")
    s = settle(summarize(run), SlurmView(states={"4242": word}, source="sacct"))
    assert s.state == State.SUSPENDED and s.state != State.STOPPED
    assert lifecycle.is_active(s.state) and not lifecycle.has_ended(s.state)


def test_slurm_words_are_mapped_explicitly() -> None:
    assert slurm.job_state("CANCELLED by 0") == State.CANCELLED
    assert slurm.job_state("REQUEUE_HOLD") == State.PENDING and slurm.job_state("COMPLETING") == State.RUNNING
    for word in ("SPECIAL_EXIT", "REVOKED", "NEW_WORD_OF_SLURM_25", "", None):
        assert slurm.job_state(word) == State.UNKNOWN
    # every word is read as a jobkit state, and every end only the scheduler can report is among them
    assert set(slurm.SLURM_WORDS.values()) <= set(State)
    assert FAILED <= set(slurm.SLURM_WORDS.values())


def test_a_new_run_is_not_active(tmp_path: Path, monkeypatch) -> None:
    """A folder without a submission: nothing happens to it by itself, so nothing waits for it."""
    def no_second_look(seconds: float) -> None:
        raise AssertionError("submit --wait waited for a run that was never submitted")

    monkeypatch.setattr(live, "time", SimpleNamespace(sleep=no_second_look, strftime=time.strftime))
    run = RunDir.create(tmp_path, JobSpec(sweep="s", workload="toy", params={"steps": 10}))
    s = summarize(run)
    assert s.state == State.NEW and lifecycle.phase(s.state) == Phase.ATTENTION
    assert live.wait_for(tmp_path, [run.path], interval=0) == 1  # returns at once: not all completed


def _summary(state: State | str) -> RunSummary:
    return RunSummary(run_id="r-1", sweep="s", workload="toy", path="/nowhere", params={}, state=state)


@pytest.mark.parametrize("first", [*State, "SOME_WORD"])
def test_submit_wait_and_status_watch_agree_on_ended(tmp_path: Path, monkeypatch, first) -> None:
    """Both look again exactly while the run is active: the first look says `first`, later ones COMPLETED."""
    def looks() -> tuple[list[int], object]:
        calls: list[int] = []

        def fetch(*args, **kwargs) -> StatusReport:
            calls.append(1)
            return StatusReport(summaries=[_summary(first if len(calls) == 1 else State.COMPLETED)], slurm=SlurmView())
        return calls, fetch

    run = RunDir.create(tmp_path, JobSpec(sweep="s", workload="toy", params={"steps": 10}))
    wait_calls, fetch = looks()
    monkeypatch.setattr(live, "collect_status", fetch)
    live.wait_for(tmp_path, [run.path], interval=0)
    watch_calls, fetch = looks()
    status_watch.watch(fetch, Console(file=io.StringIO(), force_terminal=False), interval=0)
    expected = 2 if lifecycle.is_active(first) else 1
    assert len(wait_calls) - 1 == len(watch_calls) == expected  # wait_for reads once more for its table


def test_a_run_whose_job_slurm_reports_in_an_unknown_word_is_not_resubmitted():
    """UNKNOWN means Slurm still holds the job: submit/resume leave it alone rather than train it twice."""
    from jobkit.observe.runstate import RunSummary
    from jobkit.submit.submission import _action

    unknown = RunSummary(run_id="r-1", sweep="s", workload="toy", path="/x", params={}, state=State.UNKNOWN,
                         job_id="42")
    action, reason = _action(unknown)
    assert action == "running" and "42" in reason and "jobkit cancel r-1" in reason
    stopped = RunSummary(run_id="r-1", sweep="s", workload="toy", path="/x", params={}, state=State.STOPPED,
                         job_id="42")
    assert _action(stopped)[0] == "resume"
