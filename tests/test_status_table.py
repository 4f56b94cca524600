"""The status table for the smoke sweep's nine runs, as a terminal of 80 and 160 columns and as plain
lines without a terminal: whole run ids, sweep order with numbers in numeric order, final figures for
finished runs; and `status --watch` ending by itself."""
from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from jobkit.cli import cli
from jobkit.observe import status_table, status_watch
from jobkit.observe.runstate import summarize
from jobkit.plan.sweep import load
from jobkit.store import RunDir

REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0
ERROR = ("RuntimeError: loss is nan at step 17 (lr 0.01): lower lr or raise grad_clip; "
         "the last good checkpoint step-000010.pt is kept")


def _event(run: RunDir, t: float, kind: str, **fields) -> None:
    with open(run.events_path, "a") as f:
        f.write(json.dumps({"t": t, "event": kind, **fields}) + "\n")


def smoke_runs(root: Path, monkeypatch, states: dict[str, str] | None = None) -> list[RunDir]:
    """The smoke sweep's nine run folders, as the runner leaves them; created in REVERSE sweep order so
    that nothing can pass by relying on creation order. `states`: run id prefix -> RUNNING / FAILED."""
    data = root.parent / "scratch" / "group" / "shared" / "data"  # a long absolute path, as on a cluster
    data.mkdir(parents=True, exist_ok=True)
    (data / "lfw_faces_25px.npy").touch()  # only its path matters here
    monkeypatch.setenv("JOBKIT_DATA", str(data))
    specs = load(REPO / "jobs" / "sweeps" / "smoke.toml").specs
    runs = []
    for i, spec in reversed(list(enumerate(specs))):
        run = RunDir.create(root, spec)
        total = int(spec.params["steps"])
        state = next((v for k, v in (states or {}).items() if spec.run_id.startswith(k)), "COMPLETED")
        t = T0 + i
        _event(run, t, "submitted", job_id=f"4242_{i}", partition="test", executor="slurm")
        _event(run, t + 5, "started", job_id=f"4242_{i}", step=0, executor="slurm", host="node1", pid=1)
        val = 1.5 + i / 100
        if state == "COMPLETED":
            _event(run, t + 5 + 60 + i, "finished", step=total, metrics={"val_loss": val, "train_loss": 2 + i / 10})
            run.write_progress({"step": total, "total": total, "t": t + 65 + i, "loss": 2 + i / 10, "val_loss": 9.9,
                                "steps_per_s": 5.0})
        elif state == "FAILED":
            _event(run, t + 30, "failed", step=17, error=f"Traceback ...\n{ERROR}")
        else:
            # a step just now: a healthy running run (an old one would say "no step for ...")
            run.write_progress({"step": total // 2, "total": total, "t": time.time(), "loss": 2.5, "val_loss": 2.6,
                                "steps_per_s": 4.0})
        runs.append(run)
    return runs


def expected_order(root: Path) -> list[str]:
    ids = [p.name for p in (root / "smoke").iterdir() if (p / "spec.json").exists()]
    charlm = sorted(i for i in ids if i.startswith("charlm-"))
    sprites = [next(i for i in ids if i.startswith(f"vae-sprites-beta{b}-")) for b in (0, 1, 4, 20)]
    faces = [next(i for i in ids if i.startswith(f"vae-lfw-faces-25px-beta{b}-")) for b in (0, 20)]
    return charlm + sprites + faces


def render(summaries, width: int | None) -> str:
    """The status table as printed at `width` columns of a terminal, or without one (None)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width or 80, force_terminal=width is not None, color_system=None)
    status_table.show(summaries, console, scheduler="sacct")
    return buf.getvalue()


def assert_whole_ids_in_order(text: str, order: list[str]) -> list[str]:
    lines = text.splitlines()
    where = []
    for run_id in order:
        hits = [n for n, line in enumerate(lines) if run_id in line]
        assert len(hits) == 1, f"{run_id} not on exactly one line:\n{text}"
        where.append(hits[0])
    assert where == sorted(where), f"rows not in sweep order with numeric beta:\n{text}"
    return [lines[n] for n in where]


@pytest.mark.parametrize("width", [80, 160, None])
def test_smoke_table_keeps_ids_whole_in_sweep_order_with_final_figures(tmp_path, monkeypatch, width):
    runs = smoke_runs(tmp_path, monkeypatch)
    text = render([summarize(r) for r in runs], width)
    order = expected_order(tmp_path)
    rows = assert_whole_ids_in_order(text, order)
    lines = text.splitlines()
    heading = " ".join(lines[:next(n for n, line in enumerate(lines) if line.startswith("run "))])
    assert "smoke" in heading and "partition test" in heading and "9 runs" in heading
    assert "state COMPLETED" in heading  # the same for every run: named once, not a column
    if width is not None:
        assert all(len(line) <= width for line in text.splitlines()), text
    for n, row in enumerate(rows):
        # smoke_runs gives the n-th run in sweep order final val 1.5 + n/100 and 60 + n s of run time
        assert "ETA" not in row and "9.9" not in row, row
        assert f"{1.5 + n / 100:.4g}" in row, row  # the final validation loss, not the last progress value
        if width != 80:
            assert f"{60 + n}s" in row, row  # run time
    if width != 80:
        assert "npy:…/lfw_faces_25px.npy" in text and "/scratch/group" not in text
    if width is None:
        lines = text.splitlines()
        assert len(lines) == 2 + 9  # heading, header, one line per run
        header = lines[1]
        end = header.index("val") + len("val")  # numbers end under the end of their header
        for n, row in enumerate(rows):
            assert row[:end].endswith(f" {1.5 + n / 100:.4g}") and row[end:end + 1] in ("", " "), (header, row)


def test_mixed_states_running_shows_speed_and_eta_failed_its_error(tmp_path, monkeypatch):
    runs = smoke_runs(tmp_path, monkeypatch, states={"charlm-tcn": "RUNNING", "vae-sprites-beta4-": "FAILED"})
    summaries = [summarize(r) for r in runs]
    plain = render(summaries, None)
    running = next(l for l in plain.splitlines() if "charlm-tcn" in l)
    assert "RUNNING" in running and "4/s" in running and "ETA 38s" in running  # 150 steps left at 4/s
    failed = next(l for l in plain.splitlines() if "vae-sprites-beta4-" in l)
    assert "FAILED" in failed and ERROR in failed  # in full: a log is as wide as it needs to be
    for width in (80, 160):
        text = render(summaries, width)
        assert_whole_ids_in_order(text, expected_order(tmp_path))
        assert all(len(line) <= width for line in text.splitlines()), text
        failed = next(l for l in text.splitlines() if "vae-sprites-beta4-" in l)
        assert "RuntimeErr" in failed and "…" in failed and failed.endswith("is kept")  # cut in the middle
        assert "ETA 38s" in next(l for l in text.splitlines() if "charlm-tcn" in l)


def test_sort_is_sweep_order_then_numeric_values():
    from jobkit.plan.sweep import from_dict

    sweep = from_dict({"name": "o", "run": [
        {"workload": "toy", "preset": "tiny", "hidden": [32, 8, 16, 128]},
        {"workload": "toy", "preset": "tiny", "hidden": 4, "seed": [10, 9, 100]}]})
    from jobkit.observe.runstate import RunSummary

    shuffled = [RunSummary(run_id=s.run_id, sweep="o", workload="toy", path="", params=dict(s.params), entry=s.entry)
                for s in reversed(sweep.specs)]
    got = [(s.entry, s.params["hidden"], s.params["seed"]) for s in status_table.ordered(shuffled)]
    seed = sweep.specs[0].params["seed"]
    assert got == [(1, 8, seed), (1, 16, seed), (1, 32, seed), (1, 128, seed), (2, 4, 9), (2, 4, 10), (2, 4, 100)]


def test_shorten_cuts_in_the_middle():
    assert status_table.shorten("npy:/scratch/group/shared/data/lfw_faces_25px.npy", 24) == "npy:…/lfw_faces_25px.npy"
    assert status_table.shorten("abcdefghij", 5) == "ab…ij"
    assert status_table.shorten("short", 24) == "short"
    assert status_table.natural_key("beta4") < status_table.natural_key("beta20")


def test_watch_on_a_terminal_redraws_until_every_run_has_ended(tmp_path, monkeypatch):
    runs = smoke_runs(tmp_path, monkeypatch, states={"charlm-tcn": "RUNNING"})
    calls = []

    class Report:
        def __init__(self, summaries):
            self.summaries = summaries

    def fetch():
        calls.append(1)
        if len(calls) == 3:  # the running run finishes between the 2nd and 3rd look
            tcn = next(r for r in runs if r.run_id.startswith("charlm-tcn"))
            _event(tcn, T0 + 200, "finished", step=300, metrics={"val_loss": 1.7})
        return Report([summarize(r) for r in runs])

    buf = io.StringIO()
    out = Console(file=buf, width=120, force_terminal=True, color_system=None)
    report = status_watch.watch(fetch, out, interval=0.01)
    assert len(calls) == 3 and status_watch.all_ended(report.summaries)
    assert "all 9 runs have ended: 9 COMPLETED" in buf.getvalue()


def test_status_watch_command_ends_by_itself_with_status_exit_code(tmp_path, monkeypatch):
    """A local run that finishes while `status --watch` looks: the command returns on its own."""
    root = tmp_path / "runs"
    runs = smoke_runs(root, monkeypatch, states={"charlm-tcn": "RUNNING", "vae-sprites-beta4-": "FAILED"})
    tcn = next(r for r in runs if r.run_id.startswith("charlm-tcn"))
    # alive here: a local run whose process is this test's
    _event(tcn, T0 + 40, "started", step=150, executor="local", host=socket.gethostname(), pid=os.getpid())
    for run in runs:  # no Slurm call: every run ran on the local executor
        lines = run.events_path.read_text().replace('"executor": "slurm"', '"executor": "local"')
        run.events_path.write_text(lines)
    finisher = threading.Timer(1.0, lambda: _event(tcn, time.time(), "finished", step=300, metrics={"val_loss": 1.6}))
    finisher.start()
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["status", "smoke", "--watch", "--interval", "0.2", "--root", str(root)])
    finisher.join()
    assert time.monotonic() - started < 30
    assert result.exit_code == 1, result.output  # one run failed: the exit code plain `status` gives
    assert "all 9 runs have ended: 8 COMPLETED, 1 FAILED" in result.output
    assert "RUNNING" in result.output  # it showed the table while the run was going
