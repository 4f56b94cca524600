"""The stall watchdog (issue 23): the timeout rule, its parsing, and stalled runs without Slurm —
a charlm run whose data read blocks, one rank of two, a command script that stops printing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from jobkit import report, testing
from jobkit.observe.runstate import FIRST_STEP_AFTER_S, NO_STEP_AFTER_S, RunSummary, no_step_for, summarize
from jobkit.observe.status_table import _state
from jobkit.plan import siteconfig
from jobkit.plan.slurmtime import format_duration, parse_duration
from jobkit.plan.spec import ResourceError, Resources, parse_resources
from jobkit.run import watchdog
from jobkit.run.watchdog import StallRule, Watchdog
from jobkit.state import Event
from jobkit.store import RunDir

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ the rule, parsed
@pytest.mark.parametrize("text,seconds", [
    ("5m", 300), ("90s", 90), ("1h30m", 5400), ("1.5m", 90), ("00:05:00", 300), ("10", 600), ("1:30", 90),
    (2, 120), ("off", 0), (0, 0), ("2-00:00:00", 172800)])
def test_durations_parse_like_other_time_keys(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "-1", "abc", "", "1h-", True, -3, [5]])
def test_a_bad_duration_is_one_line_naming_the_forms(bad):
    with pytest.raises(ValueError) as err:
        parse_duration(bad)
    assert "'5m'" in str(err.value) and "\n" not in str(err.value)


def test_stall_timeout_is_a_resource_kept_in_the_spec_and_never_in_the_identity():
    res = parse_resources({"stall_timeout": "5m"})
    assert res.stall_timeout_s == 300
    assert Resources.from_json(res.to_json()) == res and res.to_json()["stall_timeout"] == "5m"
    assert "stall_timeout" not in Resources().to_json()  # unset: derived, and old spec.json files read alike
    assert parse_resources({"stall_timeout": "off"}).stall_timeout_s == 0
    with pytest.raises(ResourceError) as err:
        parse_resources({"stall_timeout": "soon"})
    assert str(err.value).startswith("stall_timeout: expected a duration")


def test_a_bad_stall_timeout_in_a_sweep_exits_2_with_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "s.toml").write_text('[[run]]\nworkload = "toy"\nstall_timeout = "5 minutes"\n')
    done = subprocess.run([sys.executable, "-m", "jobkit", "submit", str(tmp_path / "s.toml"), "--root",
                           str(tmp_path / "runs"), "--executor", "local"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "stall_timeout" in lines[0] and "'5m'" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_the_site_default_is_read_and_a_bad_one_names_the_file(tmp_path):
    (tmp_path / "jobkit.toml").write_text('stall_timeout = "15m"\n')
    site = siteconfig.load(tmp_path, env={})
    assert site.stall_timeout_s == 900 and site.stall_timeout == "15m"
    assert site.sources["stall_timeout"] == str(tmp_path / "jobkit.toml")
    from jobkit.submit.submission import with_site_defaults
    assert with_site_defaults(Resources(), site).stall_timeout_s == 900
    assert with_site_defaults(Resources(stall_timeout_s=60), site).stall_timeout_s == 60  # the run's wins
    (tmp_path / "jobkit.toml").write_text('stall_timeout = "later"\n')
    with pytest.raises(siteconfig.ConfigError) as err:
        siteconfig.load(tmp_path, env={})
    assert str(err.value).startswith(f"{tmp_path / 'jobkit.toml'}: stall_timeout: expected a duration")


def test_the_timeout_rule():
    auto = StallRule()
    assert auto.limit("step", 0.01) == watchdog.FLOOR_S  # fast steps: the floor
    assert auto.limit("step", 60.0) == 20 * 60.0  # slow steps: 20x the median
    assert auto.limit("step", None) == watchdog.SLOW_FLOOR_S  # the first step: the long allowance
    for phase in ("start", "evaluate", "sample", "checkpoint"):
        assert auto.limit(phase, 0.01) == watchdog.SLOW_FLOOR_S
        assert auto.limit(phase, 60.0) == 4 * 20 * 60.0
    set_ = StallRule(60.0)
    assert set_.limit("step", 0.01) == 60.0 and set_.limit("step", 30.0) == 60.0  # as set, whatever the steps
    assert set_.limit("evaluate", 0.01) == 240.0 and set_.limit("step", None) == 240.0
    assert StallRule(0).limit("step", 1.0) is None  # off


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_watchdog_learns_the_median_step_and_a_phase_restarts_its_clock():
    clock = Clock()
    dog = Watchdog(StallRule(), on_stall=lambda d, limit: None, now=clock)
    dog.phase("step")
    for step in range(1, 12):
        clock.t += 2.0 if step != 5 else 500.0  # one slow step does not move the median
        dog.feed(step)
    assert dog.median() == 2.0 and dog.limit() == watchdog.FLOOR_S
    clock.t += watchdog.FLOOR_S - 1
    assert dog.overdue() is None
    clock.t += 2
    assert dog.overdue() == watchdog.FLOOR_S
    dog.phase("evaluate")  # a long evaluation gets the slow allowance, from its start
    clock.t += watchdog.FLOOR_S * 2
    assert dog.overdue() is None
    clock.t += watchdog.SLOW_FLOOR_S
    assert dog.overdue() == watchdog.SLOW_FLOOR_S
    dog.phase("step")
    dog.feed(12)  # the interval across a phase is not a step's time
    assert len(dog.durations) == 10


def test_the_stalled_rank_is_the_one_not_waiting_on_the_others():
    records = {0: {"waiting_on_peers": True}, 1: {"waiting_on_peers": False}, 2: {"waiting_on_peers": True}}
    assert watchdog.stalled_ranks(records, 3) == [1]
    assert watchdog.stalled_ranks({0: {"waiting_on_peers": True}}, 2) == [1]  # rank 1 did not answer
    assert watchdog.stalled_ranks({0: {"waiting_on_peers": True}, 1: {"waiting_on_peers": True}}, 2) == [0, 1]


def test_a_second_stall_at_the_same_step_is_found_until_the_next_submit():
    events = [{"event": "submitted"}, {"event": "stalled", "step": 200}, {"event": "requeued", "step": 200}]
    assert watchdog.stalled_before(events, 200) is not None
    assert watchdog.stalled_before(events, 201) is None
    assert watchdog.stalled_before(events + [{"event": "submitted"}], 200) is None  # resumed by hand


def test_status_says_how_long_a_running_run_has_gone_without_a_step():
    now = 10_000.0
    assert no_step_for(now - 30, now - 3600, 10.0, now) is None
    assert no_step_for(now - 14 * 60, now - 3600, 10.0, now) == 14 * 60
    assert no_step_for(now - NO_STEP_AFTER_S - 60, now - 3600, 0.001, now) is None  # 1000 s steps: expected
    assert no_step_for(None, now - 60, None, now) is None  # setting up
    assert no_step_for(now - 7200, now - FIRST_STEP_AFTER_S - 5, None, now) == FIRST_STEP_AFTER_S + 5
    s = RunSummary(run_id="r", sweep="s", workload="toy", path="/x", params={},
                   state="RUNNING", no_step_s=14 * 60 + 10)
    assert _state(s) == "RUNNING (no step for 14m)"
    assert format_duration(45) == "45s" and format_duration(125 * 60) == "2h05m"


def test_report_progress_writes_the_last_skipped_call_when_its_interval_ends(tmp_path):
    r = report.Reporter()
    report.record(r, tmp_path, 1, 1, 100, loss=2.0)
    for step in range(2, 31):
        report.record(r, tmp_path, 1, step, 100, loss=1.0)
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 1  # within the interval
    end = time.time() + report.PROGRESS_EVERY_S + 30
    while json.loads((tmp_path / "progress.json").read_text())["step"] != 30 and time.time() < end:
        time.sleep(0.1)
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 30


def test_a_script_that_reports_and_exits_within_the_interval_leaves_its_last_step(tmp_path):
    env = {**os.environ, "JOBKIT_RUN_DIR": str(tmp_path)}
    code = "from jobkit import report\nreport.progress(1, 100)\nreport.progress(30, 100)\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 30


def test_logs_stacks_prints_the_stacks_files_and_says_when_there_are_none(tmp_path):
    run = testing.make_run(tmp_path / "runs", "toy", {"preset": "tiny", "steps": 3})
    jk = [sys.executable, "-m", "jobkit", "logs", "--root", str(tmp_path / "runs"), run.run_id, "--stacks"]
    none = subprocess.run(jk, capture_output=True, text=True, timeout=60)
    assert none.returncode == 2 and "has no stacks" in none.stderr
    (run.path / "stacks").mkdir()
    (run.path / "stacks" / "attempt2-rank1.txt").write_text("File x.py, line 3 in blocking_read\n")
    (run.path / "stacks" / "attempt1-rank0.txt").write_text("first\n")
    out = subprocess.run(jk, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.index("first") < out.stdout.index("blocking_read")
    only = subprocess.run(jk + ["--attempt", "2"], capture_output=True, text=True, timeout=60)
    assert "blocking_read" in only.stdout and "first" not in only.stdout


# ------------------------------------------------------------------------ stalled runs, without Slurm
CHARLM = {"preset": "tiny", "steps": 40, "eval_every": 20, "checkpoint_every": 10}


def stalling_run(root: Path, stall_s: float) -> RunDir:
    run = testing.make_run(root, "charlm", CHARLM)
    spec = run.spec()
    run.write_spec(replace(spec, resources=replace(spec.resources, stall_timeout_s=stall_s)))
    return run


def jobkit_run(run: RunDir, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobkit", "run", str(run.path)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def of(run: RunDir, kind: str) -> list[dict]:
    return [e for e in run.events() if e.get("event") == kind]


@pytest.mark.slow
def test_a_blocked_data_read_is_stopped_with_its_stacks_then_a_second_stall_at_that_step_fails(tmp_path):
    run = stalling_run(tmp_path, 3.0)
    block = tmp_path / "block"
    block.touch()
    env = {"JOBKIT_TEST_BLOCK_READ": f"25:*:{block}"}
    first = jobkit_run(run, env)
    assert first.returncode == 3, first.stderr[-2000:]
    stalled = of(run, Event.STALLED)
    assert len(stalled) == 1 and stalled[0]["step"] == 25 and stalled[0]["rank"] == 0
    assert stalled[0]["timeout_s"] == 3.0 and "blocking_read" in stalled[0]["frames"]["0"]
    assert of(run, Event.STOPPED)[-1]["step"] == 25
    text = (run.path / "stacks" / "attempt1-rank0.txt").read_text()
    assert "in blocking_read" in text and "MainThread" in text.split("---")[1]  # the main thread first
    second = jobkit_run(run, env)
    assert second.returncode == 1
    failed = of(run, Event.FAILED)
    assert failed and failed[-1]["error"] == f"stalled twice at step 25; stacks in {run.path / 'stacks'}"
    assert summarize(run).state == "FAILED"


@pytest.mark.slow
def test_a_stalled_run_resumes_and_finishes_once_the_block_is_gone(tmp_path):
    run = stalling_run(tmp_path, 3.0)
    block = tmp_path / "block"
    block.touch()
    assert jobkit_run(run, {"JOBKIT_TEST_BLOCK_READ": f"25:*:{block}"}).returncode == 3
    block.unlink()
    done = jobkit_run(run, {"JOBKIT_TEST_BLOCK_READ": f"25:*:{block}"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert of(run, Event.FINISHED) and len(of(run, Event.STALLED)) == 1


@pytest.mark.slow
def test_one_blocked_rank_of_two_is_named_and_both_exit(tmp_path):
    sys.path.insert(0, str(REPO / "tests"))
    from test_distributed import launch, wait_all

    run = stalling_run(tmp_path, 4.0)
    block = tmp_path / "block"
    block.touch()
    os.environ["JOBKIT_TEST_BLOCK_READ"] = f"25:1:{block}"
    try:
        results = wait_all(launch(run, timeout_s=120), timeout=240)
    finally:
        del os.environ["JOBKIT_TEST_BLOCK_READ"]
    assert [rc for rc, _ in results] == [3, 3], results
    stalled = of(run, Event.STALLED)
    assert len(stalled) == 1 and stalled[0]["rank"] == 1 and stalled[0]["step"] == 25
    assert "blocking_read" in (run.path / "stacks" / "attempt1-rank1.txt").read_text()
    rank0 = json.loads((run.path / "stacks" / "attempt1-rank0.json").read_text())
    assert rank0["waiting_on_peers"] is True
    block.unlink()
    assert [rc for rc, _ in wait_all(launch(run, timeout_s=120), timeout=300)] == [0, 0]
    assert of(run, Event.FINISHED)


def silent_script(steps: int, block_at: int, pause_s: float) -> str:
    """A command script that goes silent at `block_at` while the file named by its argument exists (it
    dumps its stacks on SIGUSR1, the `stall_signal` the tests name)."""
    return f"""\
import faulthandler, os, signal, sys, time
from jobkit import report
faulthandler.register(signal.SIGUSR1, all_threads=True)
block = sys.argv[1]

def wait_for_input():
    while os.path.exists(block):
        time.sleep(0.2)

for step in range(1, {steps + 1}):
    if step == {block_at}:
        wait_for_input()
    print(f"step {{step}}", flush=True)
    report.progress(step, {steps}, loss=1.0)
    time.sleep({pause_s})
"""


SILENT = silent_script(30, 11, 0.02)


@pytest.mark.slow
def test_a_command_script_that_stops_printing_is_signalled_dumped_and_stopped(tmp_path):
    from test_command import make_command_run

    block = tmp_path / "block"
    block.touch()
    run = make_command_run(tmp_path, SILENT, extra='stall_signal = "USR1"\nstall_timeout = "8s"\n', name="silent",
                           args=(str(block),))
    assert run.spec().params["stall_signal"] == "USR1" and run.spec().resources.stall_timeout_s == 8
    first = jobkit_run(run, {})
    assert first.returncode == 3, first.stderr[-2000:]
    stalled = of(run, Event.STALLED)
    assert len(stalled) == 1 and stalled[0]["step"] == 10 and stalled[0]["timeout_s"] == 8.0
    text = (run.path / "stacks" / "attempt1-command.txt").read_text()
    assert "wait_for_input" in text  # the script's own faulthandler dump, on USR1
    assert of(run, Event.STOPPED)[-1]["reason"].startswith("stalled")
    block.unlink()
    done = jobkit_run(run, {})
    assert done.returncode == 0, done.stderr[-2000:]
    assert summarize(run).state == "COMPLETED"


def test_a_command_stall_runs_py_spy_on_each_process_when_it_is_on_path(tmp_path):
    from jobkit.command import stall

    spy = tmp_path / "bin" / "py-spy"
    spy.parent.mkdir()
    spy.write_text("#!/bin/sh\necho \"py-spy $*\"\n")
    spy.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        run = testing.make_run(tmp_path / "runs", "toy", {"preset": "tiny", "steps": 3})
        old = os.environ["PATH"]
        os.environ["PATH"] = f"{spy.parent}{os.pathsep}{old}"
        try:
            path = stall.dump(run, 1, proc.pid, 60.0, 61.0, 7, None, ["last line"])
        finally:
            os.environ["PATH"] = old
    finally:
        proc.kill()
        proc.wait()
    text = path.read_text()
    assert f"py-spy dump --pid {proc.pid}" in text and "last line" in text


def test_a_stalled_process_dumps_its_children_with_py_spy_when_it_is_on_path(tmp_path, monkeypatch):
    spy = tmp_path / "bin" / "py-spy"
    spy.parent.mkdir()
    spy.write_text("#!/bin/sh\necho \"py-spy $*\"\n")
    spy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{spy.parent}{os.pathsep}{os.environ['PATH']}")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path, main = watchdog.write_stacks(tmp_path / "stacks", "attempt1-rank0", "header")
    finally:
        child.kill()
        child.wait()
    text = path.read_text()
    assert f"py-spy dump --pid {child.pid}" in text and main is not None


class FakeLoop:
    """What `watchdog.watch` needs of a `runner.Loop`; each method records the phase it ran in."""

    def __init__(self, stall_timeout_s):
        from jobkit.run.stops import Host

        self.host = Host(stall_timeout_s=stall_timeout_s)
        self.spec = type("Spec", (), {"resources": Resources()})()
        self.step, self.seen = 0, []
        self.dog: Watchdog | None = None

    def _note(self, name):
        self.seen.append((name, self.dog.current if self.dog else None))

    def start(self, writer):
        self._note("start")
        return True

    def train_step(self):
        self._note("train_step")
        self.step += 1

    def evaluate(self):
        self._note("evaluate")

    def sample(self):
        self._note("sample")

    def checkpoint(self, reason):
        self._note("checkpoint")


def test_the_loop_feeds_after_each_step_and_names_its_slow_phases():
    loop = FakeLoop(3600.0)
    dog = watchdog.watch(loop)
    loop.dog = dog
    try:
        assert loop.start(None) is True and dog.current == "step"
        loop.train_step()
        loop.train_step()
        assert dog.step == 2 and len(dog.durations) == 1
        loop.evaluate()
        loop.sample()
        loop.checkpoint("periodic")
        assert dog.current == "step" and not dog.fed  # the next interval spans a phase: not a step's time
    finally:
        dog.stop()
    assert loop.seen == [("start", "start"), ("train_step", "step"), ("train_step", "step"),
                         ("evaluate", "evaluate"), ("sample", "sample"), ("checkpoint", "checkpoint")]


def test_an_off_watchdog_leaves_the_loop_as_it_is():
    loop = FakeLoop(0)
    methods = {name: getattr(loop, name) for name in ("start", "train_step", "evaluate", "sample", "checkpoint")}
    dog = watchdog.watch(loop)
    assert all(getattr(loop, name) == m for name, m in methods.items()) and dog._thread is None


def test_the_process_group_waits_longer_than_the_watchdog_unless_told_otherwise():
    from jobkit.run.stops import Host

    res = Resources()
    assert watchdog.collective_timeout(Host(collective_timeout_s=600), res, {}) == watchdog.SLOW_FLOOR_S + 120
    assert watchdog.collective_timeout(Host(collective_timeout_s=600, stall_timeout_s=60), res, {}) == 600
    assert watchdog.collective_timeout(Host(collective_timeout_s=600), Resources(stall_timeout_s=1800), {}) \
        == 4 * 1800 + 120
    assert watchdog.collective_timeout(Host(collective_timeout_s=30), res, {"JOBKIT_COLLECTIVE_TIMEOUT_S": "30"}) == 30
