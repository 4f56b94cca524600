"""The plateau stop: one definition of converged, exact across resumes, validated, shown by status and collect."""
from __future__ import annotations

import math

import pytest
from click.testing import CliRunner
from rich.console import Console

from jobkit import testing
from jobkit.cli import cli
from jobkit.cli.status_cmd import status_table
from jobkit.collect import report
from jobkit.observe.runstate import summarize
from jobkit.observe.status import collect_status
from jobkit.plan import sweep
from jobkit.run import runner
from jobkit.run.convergence import Plateau

# toy, evaluated every 10 steps: val_loss stops improving by 5 % after a couple of hundred steps
PLATEAU = {"preset": "tiny", "steps": 2000, "stop": "plateau", "patience": 3, "min_delta": 0.05,
           "checkpoint_every": 50}


def converged_event(run) -> dict:
    (event,) = [e for e in run.events() if e["event"] == "converged"]
    return event


def test_plateau_verdicts_are_relative_and_patience_counts_evaluations():
    p = Plateau(patience=2, min_delta=0.1)
    assert p.update(10, 1.0) == "better"
    assert p.update(20, 0.95) == "level"  # 5 % better: not enough to count
    assert p.best == 1.0 and p.since_best == 1 and not p.converged
    assert p.update(30, 0.85) == "better"  # 15 % better: the count starts again
    assert p.update(40, 0.9) == "level"
    assert p.update(50, 2.0) == "worse"  # worse also counts as no improvement
    assert p.converged and p.converged_step == 50 and p.best_step == 30
    higher = Plateau(patience=1, min_delta=0.0, lower_is_better=False)
    higher.update(1, 0.2)
    assert higher.update(2, 0.3) == "better" and higher.update(3, 0.1) == "worse"


def test_noise_widens_the_band_but_not_what_counts_as_improvement():
    p = Plateau(patience=5, min_delta=0.01)
    p.update(1, 1.0)
    assert p.judge(1.2) == "worse" and p.judge(1.2, noise=0.3) == "level"
    assert p.judge(0.98, noise=0.3) == "better"


def test_a_plateau_stop_is_exact_across_two_resumes(tmp_path):
    """Stopped once between evaluations and once after the best but before patience ran out."""
    straight = testing.make_run(tmp_path / "a", "toy", PLATEAU)
    runner.run(straight)
    first = converged_event(straight)
    assert first["best_step"] < first["step"] < 2000
    assert first["step"] - first["best_step"] >= 3 * 10
    stops = (105, first["best_step"] + 15)
    _, interrupted = testing.check_resume_through_runner(tmp_path / "b", "toy", PLATEAU, stop_at=stops)
    again = converged_event(interrupted)
    assert {k: again[k] for k in ("step", "best_step", "best")} == {k: first[k] for k in ("step", "best_step", "best")}
    assert interrupted.load_checkpoint()[0]["step"] == first["step"]
    assert [e["event"] for e in interrupted.events()].count("started") == 3
    runner.run(interrupted)  # a converged, finished run started again changes nothing
    assert [e["event"] for e in interrupted.events()].count("finished") == 1


def test_stop_steps_ignores_plateaus(tmp_path):
    run = testing.make_run(tmp_path, "toy", {**PLATEAU, "stop": "steps", "steps": 300})
    runner.run(run)
    assert not [e for e in run.events() if e["event"] == "converged"]
    assert run.load_checkpoint()[0]["step"] == 300


@pytest.mark.parametrize("text, expect", [
    ('stop = "plateau"\neval_every = 0\n', "eval_every: got 0; stop = 'plateau' decides on evaluations"),
    ('stop = "early"\n', "stop: got 'early'; accepted values: steps, plateau"),
    ('stop = "plateau"\npatience = 0\n', "patience: got 0; must be >= 1"),
    ('stop = "plateau"\nmin_delta = -0.1\n', "min_delta: got -0.1; must be >= 0"),
    ('stop = "plateau"\nmin_delta = 0.9\n', "min_delta: got 0.9; must be <= 0.5"),
    ('stop = "plateau"\nsteps = 100\neval_every = 50\npatience = 2\n', "patience: got 2; with eval_every=50 a plateau needs 150 steps"),
])
def test_stop_patience_and_min_delta_are_validated(tmp_path, text, expect):
    path = tmp_path / "s.toml"
    path.write_text('[[run]]\nworkload = "toy"\n' + text)
    with pytest.raises(sweep.SweepError) as err:
        sweep.load(path)
    assert expect in str(err.value) and "\n" not in str(err.value)
    result = CliRunner().invoke(cli, ["submit", str(path), "--executor", "local", "--root", str(tmp_path / "runs")])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and expect in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("spec.json"))


def test_status_and_collect_show_convergence(tmp_path):
    run = testing.make_run(tmp_path, "toy", PLATEAU)
    runner.run(run)
    event = converged_event(run)
    s = summarize(run)
    assert s.state == "COMPLETED" and s.step == event["step"]
    note = f"converged at step {event['best_step']}"
    assert s.convergence_note.startswith(note) and f"stopped at step {event['step']}" in s.convergence_note
    console = Console(width=250, record=True)
    console.print(status_table(collect_status([run], use_slurm=False)))
    text = console.export_text()
    assert "COMPLETED" in text and note in text
    assert s.to_json()["converged"]["best_step"] == event["best_step"]
    rep = report.collect(tmp_path, "t", out=tmp_path / "report")
    (rec,) = rep.summary["runs"]
    assert rec["converged"]["best_step"] == event["best_step"] and rec["state"] == "COMPLETED"
    assert note in (rep.out / "index.html").read_text() and note in (rep.out / "summary.md").read_text()


def test_charlm_constant_schedule_needs_no_end():
    from jobs.charlm.workload import WarmupCosine

    cosine = WarmupCosine(1e-3, 1e-4, warmup=10, total=100)
    constant = WarmupCosine(1e-3, 1e-4, warmup=10, total=100, constant=True)
    assert constant(4) == cosine(4) == 0.5
    assert [constant(s) for s in (10, 99, 5000)] == [1.0, 1.0, 1.0]
    assert math.isclose(cosine(100), 0.1) and cosine(55) < 1.0


def test_the_judged_metric_is_the_reports_first_headline_metric():
    """One home for "what a workload is judged by": the plateau stop and the report agree."""
    from jobkit.protocol import Metric, ReportLayout
    from jobkit.run.convergence import judged_by

    class Scored:
        report = ReportLayout(headline=(Metric("accuracy", higher_is_better=True), Metric("val_loss")))

    assert judged_by(Scored) == Metric("accuracy", higher_is_better=True)
    assert judged_by(object) == Metric("val_loss")
