"""`checkpoint_every = "auto"` (Young/Daly, `jobkit/run/cadence.py`) and the warning time from
measurement (`jobkit/plan/lead.py`, used by `jobkit submit`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobkit import testing
from jobkit.cli import cli
from jobkit.observe.runstate import RunSummary
from jobkit.plan import lead
from jobkit.plan.spec import Resources
from jobkit.run import cadence, runner
from jobkit.submit import submission


# --- Young/Daly ----------------------------------------------------------------------------------
@pytest.mark.parametrize("c,m", [(2.0, 3600.0), (0.37, 4 * 3600.0), (30.0, 600.0)])
def test_young_daly_is_the_interval_that_minimises_lost_time(c, m):
    t = cadence.young_daly_s(c, m)
    lost = lambda t: c / t + t / (2 * m)  # checkpoint cost per second + expected rework per second
    assert lost(t) <= min(lost(t * 0.9), lost(t * 1.1))
    assert t == pytest.approx(math.sqrt(2 * c * m))


def _ev(t, kind, **f):
    return {"t": t, "event": kind, **f}


def test_interruptions_count_preemptions_and_vanished_attempts_not_segment_ends():
    events = [_ev(0, "submitted"), _ev(10, "started"), _ev(110, "requeued", reason="segment"),
              _ev(200, "started"), _ev(300, "requeued", reason="preemption"),
              _ev(400, "started"), _ev(450, "checkpoint"),  # then killed without a word
              _ev(600, "started")]
    seen = cadence.interruptions(events, now=700)
    assert seen.count == 2  # the preemption and the vanished attempt
    assert seen.running_s == pytest.approx(100 + 100 + 50 + 100)
    assert seen.mtbi_s(14400) == pytest.approx((350 + 14400) / 3)
    assert cadence.interruptions([], now=5).mtbi_s(14400) == 14400  # nothing observed: the stated default


def test_auto_cadence_plans_steps_from_the_measured_times_and_replans_after_each_checkpoint():
    c = cadence.Cadence("auto", mtbi_s=3600, estimate_s=2.0)
    assert not c.due_auto(5, None)  # no step time yet: nothing to plan with
    assert not c.due_auto(1, 0.5)
    assert c.steps == round(120 / 0.5) and c.interval_s == pytest.approx(120)
    assert not c.due_auto(239, 0.5) and c.due_auto(240, 0.5)
    c.checkpointed(240, checkpoint_s=8.0, step_s=1.0)  # a slower write: a longer interval, in steps of 1 s
    assert c.steps == 240 and c.due_auto(480, 1.0) and not c.due_auto(479, 1.0)
    assert c.describe()["checkpoint_auto"]["interval_s"] == 240.0
    c.checkpointed(480, checkpoint_s=None, step_s=1.0)  # an async checkpoint: its write is not measured yet
    assert c.steps == 240
    assert not c.due_auto(480 + 59, 1.0, checkpoint_s=2.0)  # measured later, in the background: re-planned
    assert c.steps == 120 and c.due_auto(480 + 120, 1.0, checkpoint_s=2.0)
    fixed = cadence.Cadence(50)
    assert fixed.due(100) and not fixed.due(101) and not fixed.due_auto(100, 1.0)
    assert not cadence.Cadence(0).due(100)


def test_auto_cadence_of_a_run_uses_its_events(monkeypatch):
    monkeypatch.delenv(cadence.MTBI_ENV, raising=False)
    events = [_ev(0, "started"), _ev(3600, "requeued", reason="preemption"), _ev(3700, "started"),
              _ev(3800, "checkpoint", seconds=4.5, size=450_000_000), _ev(3900, "requeued", reason="segment")]
    c = cadence.Cadence.for_run("auto", events, state_bytes=10**9, step=300, now=4000)
    assert c.checkpoint_s == 4.5 and c.since == 300
    assert c.mtbi_s == pytest.approx((3800 + cadence.DEFAULT_MTBI_S) / 2)
    killed = cadence.Cadence.for_run("auto", events[:2] + [_ev(3700, "started")], 0, 300, now=4000)
    # the open attempt vanished: an interruption; it counts as running until its last event
    assert killed.mtbi_s == pytest.approx((3600 + cadence.DEFAULT_MTBI_S) / 3)
    fresh = cadence.Cadence.for_run("auto", [], state_bytes=10**9, step=0, now=0)
    assert fresh.checkpoint_s == pytest.approx(10**9 / lead.DEFAULT_BANDWIDTH)  # estimated before any write
    monkeypatch.setenv(cadence.MTBI_ENV, "600")
    assert cadence.Cadence.for_run("auto", [], 0, 0, 0).mtbi_s == 600


def test_a_run_at_auto_checkpoints_on_the_planned_interval_and_shows_it(tmp_path, monkeypatch):
    monkeypatch.setenv(cadence.MTBI_ENV, "2")  # a very unreliable partition: checkpoint often
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 200, "checkpoint_every": "auto",
                                             "step_sleep": 0.002})
    runner.run(run)
    periodic = [e for e in run.events() if e["event"] == "checkpoint" and e["reason"] == "periodic"]
    assert periodic, "auto planned no checkpoint"
    progress = run.progress()
    assert progress["checkpoint_auto"]["mtbi_s"] == pytest.approx(2, rel=0.5)
    assert progress["checkpoint_every"] >= 1
    status = CliRunner().invoke(cli, ["status", "--json", "--root", str(tmp_path)])
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.stdout)["runs"]
    assert row["checkpoint_every"] == progress["checkpoint_every"] and row["checkpoint_auto"]["mtbi_s"] > 0


@pytest.mark.parametrize("value,ok", [("auto", True), (100, True), (0, True), ("fast", False), (-1, False),
                                      (True, False)])
def test_checkpoint_every_accepts_an_int_or_auto_and_refuses_anything_else_in_one_line(tmp_path, value, ok):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'name = "s"\n[[run]]\nworkload = "toy"\npreset = "tiny"\ncheckpoint_every = {json.dumps(value)}\n')
    out = CliRunner().invoke(cli, ["submit", str(sweep), "--dry-run", "--executor", "local",
                                   "--root", str(tmp_path / "runs")])
    if ok:
        assert out.exit_code == 0, out.output
    else:
        assert out.exit_code == 2
        assert "checkpoint_every" in out.stderr and len(out.stderr.strip().splitlines()) == 1


# --- the warning time ----------------------------------------------------------------------------
def test_the_lead_without_measurements_is_the_fixed_default():
    assert lead.lead_for(60, lead.Figures()).seconds == 90
    assert lead.lead_for(2, lead.Figures()).seconds == 30
    assert "nothing measured" in lead.lead_for(2, lead.Figures()).why


def test_the_lead_covers_two_checkpoints_two_steps_and_a_margin_within_a_fraction_of_the_job():
    slow = lead.lead_for(60, lead.Figures(step_s=1.0, checkpoint_s=100.0))
    assert slow.seconds == math.ceil(2 * 100 + 2 * 1 + lead.MARGIN_S) and slow.problem is None
    assert "checkpoint took 100.0s" in slow.why
    fast = lead.lead_for(60, lead.Figures(step_s=0.1, checkpoint_s=0.5))
    assert fast.seconds == 90  # never below the default (slurmctld checks limits every 30 s)
    capped = lead.lead_for(10, lead.Figures(step_s=1.0, checkpoint_s=400.0))
    assert capped.seconds == 10 * 60 * lead.CAP_FRACTION and "too short to checkpoint" in capped.problem
    graced = lead.lead_for(60, lead.Figures(step_s=1.0, checkpoint_s=20.0), grace_s=30, partition="test")
    assert "GraceTime" in graced.problem and "test" in graced.problem


def test_before_the_first_checkpoint_the_write_is_estimated_from_the_state_size_and_bandwidth():
    f = lead.Figures(step_s=0.5, state_bytes=6_000_000_000)
    assumed = lead.lead_for(60, f)
    assert assumed.need_s == pytest.approx(2 * 6e9 / lead.DEFAULT_BANDWIDTH + 1 + lead.MARGIN_S)
    measured = lead.lead_for(60, f, bandwidth=1e9)  # another run on this file system wrote at 1 GB/s
    assert measured.need_s == pytest.approx(2 * 6 + 1 + lead.MARGIN_S) and "measured" in measured.why


def test_submit_asks_for_the_measured_lead_and_explains_it(tmp_path):
    root = tmp_path / "runs"
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "ld"\n[[run]]\nworkload = "toy"\npreset = "tiny"\nsteps = 20\ntime = "01:00:00"\n')
    specs = _specs(sweep)
    run = submission.RunDir.create(root, specs[0])
    run.event("started", step=0, state_bytes=1000)
    run.event("checkpoint", step=10, file="step-000010.pt", seconds=70.0, size=1000, step_seconds=0.5)
    run.event("stopped", step=10, reason="signal")
    (item,) = submission.plan(specs, root, "local", None)
    assert item.action == "resume" and item.signal_s == math.ceil(140 + 1 + lead.MARGIN_S)
    assert item.to_json()["signal_s"] == item.signal_s
    out = CliRunner().invoke(cli, ["submit", str(sweep), "--dry-run", "--explain", "--executor", "local",
                                   "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert f"--signal USR2@{item.signal_s}" in out.output and "checkpoint took 70.0s" in out.output


def test_the_batch_script_carries_the_measured_lead():
    spec_item = submission.PlannedRun(spec=_spec(), run_dir=Path("/r/x"), action="resume", reason="",
                                      lead=lead.Lead(321, "measured"))
    params = submission.slurm_parameters(spec_item.job_res, None, "s", signal_s=spec_item.signal_s)
    assert params["signal_delay_s"] == 321


def test_the_old_warning_still_names_a_step_too_long_for_a_short_job():
    slow = RunSummary(run_id="r", sweep="s", workload="toy", path="/x", params={}, step_seconds=12.0,
                      checkpoint_seconds=3.0)
    assert "too short" in submission._signal_warning(slow, Resources(time_min=1))
    assert submission._signal_warning(slow, Resources(time_min=60)) is None


def _specs(sweep: Path):
    from jobkit.plan import sweep as sweep_mod
    return sweep_mod.load(sweep).specs


def _spec():
    from jobkit.plan.spec import JobSpec
    return JobSpec(sweep="s", workload="toy", params={"steps": 1}, name="x", resources=Resources(time_min=60))


def test_status_names_the_auto_interval_of_a_running_run():
    from types import SimpleNamespace

    from rich.console import Console

    from jobkit.cli.status_cmd import show_auto_cadence

    running = RunSummary(run_id="r-1", sweep="s", workload="toy", path="/x", params={}, state="RUNNING",
                         checkpoint_every=412, checkpoint_auto={"interval_s": 107.3, "checkpoint_s": 0.4,
                                                                "mtbi_s": 14400.0})
    done = RunSummary(run_id="r-2", sweep="s", workload="toy", path="/y", params={}, state="COMPLETED",
                      checkpoint_every=5, checkpoint_auto={"interval_s": 1.0})
    out = Console(record=True, width=200)
    show_auto_cadence(SimpleNamespace(summaries=[running, done]), out)
    text = out.export_text()
    assert "r-1: checkpoint every 412 steps" in text and "107.3s" in text and "r-2" not in text


def test_the_runs_of_one_array_share_the_longest_lead():
    a, b, c = lead.Lead(40, "a"), lead.Lead(95, "b"), lead.Lead(30, "c")
    out = lead.shared(["x", "x", "y"], [a, b, c])
    assert [o.seconds for o in out] == [95, 95, 30] and "longest its array needs" in out[0].why
    assert out[1] is b and out[2] is c
