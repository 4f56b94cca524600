"""Issue 24 items 1-3 without a cluster: room under the job limits, the feeder's bookkeeping, the call
budget (counted against fake sacct/squeue/sbatch), and the rule that no answer is "unknown"."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from jobkit import slurm
from jobkit.observe.lifecycle import has_ended
from jobkit.observe.status import collect_status
from jobkit.plan import room as room_mod
from jobkit.plan import siteconfig
from jobkit.plan import sweep as sweep_mod
from jobkit.plan.clusterfacts import Association, ClusterFacts, Qos
from jobkit.plan.spec import ResourceError, parse_resources
from jobkit.schedcalls import CALLS, CallLog, poll_interval
from jobkit.state import Event, State
from jobkit.store import RunDir
from jobkit.submit import feeder as feeder_mod
from jobkit.submit import submission as submit_mod


def _facts(submit_pu=None, jobs_pu=None, queued=0, assoc_submit=None, assoc_queued=0) -> ClusterFacts:
    f = ClusterFacts(partitions=[])
    f.qos = {"normal": Qos(name="normal", max_submit_pu=submit_pu, max_jobs_pu=jobs_pu)}
    f.associations = [Association(account="physics", user="me", partition="", qos=("normal",),
                                  default_qos="normal", max_submit=assoc_submit)]
    f.queued_jobs = {"normal": queued}
    f.queued_by_account = {"physics": assoc_queued}
    return f


# --------------------------------------------------------------------------------------------- room

def test_room_is_the_tightest_limit_less_what_is_queued_and_one_for_the_feeder():
    room = room_mod.room_of(_facts(submit_pu=30, jobs_pu=50, queued=5))
    ok, why = room_mod.admit(room, [("normal", "physics")] * 40)
    assert sum(ok) == 30 - 5 - 1 and ok[:24] == [True] * 24  # sweep order; one slot kept for the feeder
    assert "MaxSubmitPU 30" in why and "5 of yours" in why
    ok, _ = room_mod.admit(room, [("normal", "physics")] * 40, feeder=False)
    assert sum(ok) == 25
    ok, _ = room_mod.admit(room, [("normal", "physics")] * 25)  # all fit: no feeder, no slot kept
    assert all(ok)
    tighter = room_mod.room_of(_facts(submit_pu=30, jobs_pu=12, queued=2))
    ok, why = room_mod.admit(tighter, [("normal", "physics")] * 40)
    assert sum(ok) == 12 - 2 - 1 and "MaxJobsPU 12" in why


def test_room_counts_the_association_limit_too_and_nothing_without_limits():
    room = room_mod.room_of(_facts(submit_pu=100, assoc_submit=10, assoc_queued=4))
    ok, why = room_mod.admit(room, [("normal", "physics")] * 20)
    assert sum(ok) == 10 - 4 - 1 and "association physics MaxSubmit 10" in why
    assert all(room_mod.admit(room_mod.room_of(_facts()), [("normal", "physics")] * 5000)[0])
    full = room_mod.room_of(_facts(submit_pu=30, queued=30))
    assert not any(room_mod.admit(full, [("normal", None)] * 3)[0])


def test_arrays_of_the_admitted_runs_stay_under_max_array_size(tmp_path):
    sweep = sweep_mod.from_dict({"name": "big", "run": [{"workload": "toy", "preset": "tiny", "steps": 2,
                                                         "seed": list(range(45))}]})
    planned = [submit_mod.PlannedRun(spec=s, run_dir=tmp_path / s.run_id, action="new", reason="")
               for s in sweep.specs]
    for p in planned[40:]:
        p.action = "waiting"
    sizes = [len(a) for a in submit_mod.arrays(planned, 21)]
    assert sizes == [21, 19] and sum(sizes) == 40


def test_max_running_is_the_array_throttle_and_is_validated():
    res = parse_resources({"max_running": 5})
    assert submit_mod.slurm_parameters(res, "test", "s")["array_parallelism"] == 5
    assert "array_parallelism" not in submit_mod.slurm_parameters(parse_resources({}), "test", "s")
    assert "array-parallelism" not in slurm.render_script(submit_mod.slurm_parameters(res, "test", "s"),
                                                          Path("/tmp/x"), "python")
    for bad in (0, -1, "5", True):
        with pytest.raises(ResourceError, match="max_running"):
            parse_resources({"max_running": bad})


# ------------------------------------------------------------------------------------------- feeder

def test_a_feeder_that_a_later_submit_replaced_is_superseded(tmp_path):
    assert not feeder_mod.superseded(tmp_path, None)  # a user's submit is never superseded
    feeder_mod.write_record(tmp_path, job_id="101", after="100")
    assert not feeder_mod.superseded(tmp_path, "101")
    feeder_mod.write_record(tmp_path, job_id="205", after="200")
    assert feeder_mod.superseded(tmp_path, "101")


def test_the_feeder_script_quotes_the_sweep_folder_and_names_its_dependency(tmp_path):
    script = feeder_mod.batch_script(tmp_path / "a b", "/usr/bin/python3",
                                     {"dependency": "afterany:12", "time": "10", "partition": "test"})
    assert "#SBATCH --dependency=afterany:12" in script and "#SBATCH --partition=test" in script
    assert f"-m jobkit.submit.feed_job '{tmp_path / 'a b'}'" in script


def test_the_recipe_round_trips(tmp_path):
    recipe = feeder_mod.Recipe(sweep_text="name = 'x'\n", source="/s/x.toml", stem="x", sets=["steps=3"],
                               only="toy-*", chunk=True, executor="slurm", root=str(tmp_path), cwd="/", config_start="/s")
    feeder_mod.save_recipe(tmp_path / "x", recipe)
    assert feeder_mod.load_recipe(tmp_path / "x") == recipe


# -------------------------------------------------------------------------------------- call budget

def _fake_slurm(tmp_path: Path, monkeypatch, sacct: str | None, squeue: str | None) -> Path:
    """Fake `sacct` / `squeue` on PATH: print the given text, or fail when it is None; each logs its call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name, text in (("sacct", sacct), ("squeue", squeue)):
        body = f"cat <<'EOF'\n{text}EOF\n" if text is not None else f"echo '{name}: error: Unable to contact slurm controller' >&2; exit 1\n"
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\necho {name} >> '{log}'\n{body}")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    conf = tmp_path / "slurm.conf"
    conf.write_text("AccountingStorageType=accounting_storage/slurmdbd\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    return log


def _submitted_runs(root: Path, n: int) -> list[RunDir]:
    sweep = sweep_mod.from_dict({"name": "budget", "run": [{"workload": "toy", "preset": "tiny", "steps": 4,
                                                            "seed": list(range(n))}]})
    runs = []
    for i, spec in enumerate(sweep.specs):
        run = RunDir.create(root, spec, sync=False)
        run.event(Event.SUBMITTED, sync=False, job_id=f"4000_{i}", executor="slurm", partition="test")
        runs.append(run)
    return runs


@pytest.mark.parametrize("n", [3, 300])
def test_one_status_poll_costs_at_most_two_scheduler_calls_whatever_the_number_of_runs(tmp_path, monkeypatch, n):
    runs = _submitted_runs(tmp_path / "runs", n)
    pending = "".join(f"4000_{i}|PENDING|test\n" for i in range(n))
    log = _fake_slurm(tmp_path, monkeypatch, sacct=pending, squeue=pending)
    before = CALLS.counts.copy()
    report = collect_status(runs)
    assert CALLS.since(before) == 1 == len(log.read_text().split())
    assert {s.state for s in report.summaries} == {State.PENDING}
    log.unlink()
    monkeypatch.setenv("PATH", os.environ["PATH"])  # same fakes; now sacct fails and squeue answers
    (tmp_path / "bin" / "sacct").write_text(f"#!/bin/sh\necho sacct >> '{log}'\nexit 1\n")
    before = CALLS.counts.copy()
    report = collect_status(runs)
    assert CALLS.since(before) == 2 == len(log.read_text().split())
    assert report.slurm.source == "squeue" and {s.state for s in report.summaries} == {State.PENDING}


@pytest.mark.parametrize("squeue", [None, ""])  # failed, or an empty queue (slurmctld restarting)
def test_no_answer_is_unknown_never_a_lost_failed_or_resubmitted_run(tmp_path, monkeypatch, squeue):
    root = tmp_path / "runs"
    runs = _submitted_runs(root, 4)
    runs[1].event(Event.STARTED, sync=False, job_id="4000_1", executor="slurm", step=0)
    _fake_slurm(tmp_path, monkeypatch, sacct=None if squeue is None else "", squeue=squeue)
    report = collect_status(runs)
    assert report.slurm.source == "unknown" and report.slurm.error
    assert [s.state for s in report.summaries] == [State.PENDING, State.RUNNING, State.PENDING, State.PENDING]
    assert not any(has_ended(s.state) for s in report.summaries)  # --wait/--watch keep waiting
    planned = submit_mod.plan([r.spec() for r in runs], root, "slurm", None)  # what a submit would do now
    assert {p.action for p in planned} <= {"queued", "running"} and not any(p.submits for p in planned)


def test_a_queue_that_lists_jobs_still_says_a_missing_one_has_left(tmp_path, monkeypatch):
    runs = _submitted_runs(tmp_path / "runs", 2)
    _fake_slurm(tmp_path, monkeypatch, sacct=None, squeue="4000_0|PENDING|test\n")
    states = [s.state for s in collect_status(runs).summaries]
    assert states == [State.PENDING, State.FAILED]


def test_waiting_runs_are_active_and_left_to_the_folder(tmp_path, monkeypatch):
    runs = _submitted_runs(tmp_path / "runs", 2)
    runs[1].event(Event.WAITING, sync=False, reason="waiting for room")
    _fake_slurm(tmp_path, monkeypatch, sacct="4000_0|PENDING|test\n4000_1|COMPLETED|test\n", squeue="")
    states = [s.state for s in collect_status(runs).summaries]
    assert states == [State.PENDING, State.WAITING] and not has_ended(State.WAITING)


def test_every_scheduler_call_is_counted_and_printed_with_the_debug_flag(tmp_path, monkeypatch, capsys):
    log = CallLog()
    monkeypatch.setenv("JOBKIT_DEBUG_CALLS", "1")
    monkeypatch.setattr("atexit.register", lambda fn: None)
    log.record(["sacct", "-X", "-j", "1"])
    log.record(["scontrol", "show", "partition", "-o"])
    log.record(["sbatch"])
    err = capsys.readouterr().err
    assert "scheduler call 1 (sacct #1)" in err and "scheduler call 2 (scontrol show #1)" in err
    log.report()
    assert "3 scheduler calls: sacct 1, sbatch 1, scontrol show 1" in capsys.readouterr().err


def test_sbatch_calls_are_spaced_to_the_site_rate(monkeypatch):
    log = CallLog()
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    assert log.pace_sbatch(10) == 0.0  # the first sbatch goes at once
    log.last_sbatch = __import__("time").monotonic()
    log.pace_sbatch(10)
    assert slept and 5.0 < slept[0] <= 6.0  # 10 a minute: 6 s apart
    assert log.pace_sbatch(None) == 0.0


def test_the_poll_interval_grows_with_the_sweep_within_the_site_bounds(tmp_path):
    assert poll_interval(4) == 3.0 and poll_interval(100) >= 30 and poll_interval(500) >= 30
    assert poll_interval(10_000) == 60.0 and poll_interval(10_000, most_s=120) == 120
    (tmp_path / "jobkit.toml").write_text("poll_min_s = 10\npoll_max_s = 90\nsbatch_per_minute = 12\n")
    site = siteconfig.load(tmp_path, env={})
    assert (site.poll_min_s, site.poll_max_s, site.sbatch_per_minute) == (10, 90, 12)
    (tmp_path / "jobkit.toml").write_text("poll_min_s = 0\n")
    with pytest.raises(siteconfig.ConfigError, match="poll_min_s: expected a positive number"):
        siteconfig.load(tmp_path, env={})


def test_status_names_the_feeder_in_the_same_scheduler_call(tmp_path, monkeypatch):
    runs = _submitted_runs(tmp_path / "runs", 3)
    runs[2].event(Event.WAITING, sync=False, reason="waiting for room")
    feeder_mod.write_record(runs[0].path.parent, job_id="4999", after="4000")
    log = _fake_slurm(tmp_path, monkeypatch, sacct="4000_0|RUNNING|test\n4000_1|PENDING|test\n4999|PENDING|test\n",
                      squeue=None)
    before = CALLS.counts.copy()
    report = collect_status(runs)
    assert CALLS.since(before) == 1 and "4999" in log.read_text() + " ".join(report.slurm.states)
    assert report.feeders == ["feeder of budget: job 4999 PENDING, after job 4000 (sends the next wave; 1 run waits)"]
    feeder_mod.write_record(runs[0].path.parent, job_id="4999", ended="nothing waits")
    assert collect_status(runs).feeders == ["feeder of budget: job 4999 ended (nothing waits)"]


def test_cancel_stops_the_feeder_and_the_waiting_runs(tmp_path, monkeypatch):
    from jobkit.submit.cancel import cancel_runs

    runs = _submitted_runs(tmp_path / "runs", 2)
    runs[1].event(Event.WAITING, sync=False, reason="waiting for room")
    sweep_dir = runs[0].path.parent
    feeder_mod.write_record(sweep_dir, job_id="4999", after="4000")
    asked: list[list[str]] = []
    monkeypatch.setattr("jobkit.submit.cancel.scancel", lambda ids: asked.append(list(ids)))
    _fake_slurm(tmp_path, monkeypatch, sacct="4000_0|PENDING|test\n4999|PENDING|test\n", squeue=None)
    outcome = cancel_runs(collect_status(runs).summaries)
    assert len(outcome.cancelled) == 2 and asked == [["4000_0", "4999"]]  # the waiting run has no job to cancel
    assert feeder_mod.superseded(sweep_dir, "4999")  # a feeder already running submits nothing
    assert [s.state for s in collect_status(runs, use_slurm=False).summaries] == [State.CANCELLED] * 2
