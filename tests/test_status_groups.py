"""`jobkit status` of a large sweep: counts per state and per value of each varying parameter by
default, the full table with --all, every run with --json (the synthetic toy sweep, no scheduler)."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from synthetic_runs import make_sweep

from jobkit.cli import cli
from jobkit.observe import status as status_mod
from jobkit.observe import status_groups
from jobkit.observe.runstate import summarize
from jobkit.slurm import SlurmView

RUNS = 120  # above GROUP_ABOVE


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = make_sweep(root, RUNS, sweep="big")
    return root, runs


@pytest.fixture(autouse=True)
def no_scheduler(monkeypatch):
    monkeypatch.setattr(status_mod, "query_states", lambda ids: SlurmView())


def _status(root, *args):
    return CliRunner().invoke(cli, ["status", "--root", str(root), *args])


def test_large_sweep_prints_counts_that_add_up_to_every_run(sweep):
    root, runs = sweep
    assert RUNS > status_groups.GROUP_ABOVE
    truth: dict[str, int] = {}
    for r in runs:
        state = summarize(r).state
        truth[state] = truth.get(state, 0) + 1
    res = _status(root)
    assert res.exit_code == 1  # some runs failed, as for the table
    lines = res.output.splitlines()
    assert lines[0].startswith(f"big · {RUNS} runs")
    shown = dict((m[0], int(m[1])) for m in re.findall(r"([A-Z_]+) (\d+)", lines[1]))
    assert shown == truth
    # per value of lr: one line per value, its run count, and the counts add up to every run
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["lr", "runs"])
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith("…"):
            break
        rows.append(line.split())
    assert len(rows) == min(20, status_groups.MAX_VALUES)
    lrs = [float(r[0]) for r in rows]
    assert lrs == sorted(lrs)  # numeric order
    for row in rows:
        counts = [0 if c == "-" else int(c) for c in row[2:]]
        assert sum(counts) == int(row[1]) == RUNS // 20  # lr takes 20 values, evenly
    failed_col = header.index("FAILED")
    assert sum(0 if r[failed_col] == "-" else int(r[failed_col]) for r in rows) <= truth["FAILED"]
    assert "runs need attention" in res.output and "loss is nan" in res.output
    assert not any(r.run_id in res.output for r in runs if summarize(r).state == "COMPLETED")


def test_all_gives_the_table_and_json_gives_every_run(sweep):
    root, runs = sweep
    table = _status(root, "--all")
    assert all(r.run_id in table.output for r in runs)
    data = json.loads(_status(root, "--json").output)
    assert sorted(r["run_id"] for r in data["runs"]) == sorted(r.run_id for r in runs)


def test_small_sweep_keeps_the_table(tmp_path):
    runs = make_sweep(tmp_path, status_groups.GROUP_ABOVE, sweep="small")
    res = _status(tmp_path)
    assert all(r.run_id in res.output for r in runs)
    assert "need attention" not in res.output


def test_a_key_with_one_value_per_run_is_named_not_counted(tmp_path):
    runs = make_sweep(tmp_path, 60, sweep="s")  # lr 20 values x hidden 3: no key unique per run
    summaries = [summarize(r) for r in runs]
    for i, s in enumerate(summaries):
        s.params = {**s.params, "tag": f"t{i}"}
    g = status_groups.group(summaries)
    assert "tag" in g.unique and "tag" not in [k.key for k in g.keys]
    assert {k.key for k in g.keys} == {"lr", "hidden"}


def test_watch_of_a_large_sweep_shows_the_counts_until_every_run_has_ended(sweep, monkeypatch):
    """`status --watch` of a large sweep redraws the counts (not 120 rows) and ends by itself."""
    from jobkit.observe import status_watch
    from jobkit.state import State

    root, runs = sweep
    active = [summarize(r) for r in runs]
    rounds = iter(range(3))

    def fetch():  # two rounds with the active runs still going, then everything ended
        n = next(rounds, 2)
        out = [summarize(r) for r in runs]
        if n < 2:
            return status_mod.StatusReport(summaries=out, slurm=SlurmView())
        for s in out:
            s.state = State.COMPLETED if s.state in (State.RUNNING, State.PENDING) else s.state
        return status_mod.StatusReport(summaries=out, slurm=SlurmView())

    import io

    from rich.console import Console

    buf = io.StringIO()
    status_watch.watch(fetch, Console(file=buf, width=120), interval=0.01, grouped=True)
    text = buf.getvalue()
    assert text.count(f"big · {RUNS} runs") == 2  # printed again only when it changed
    assert "RUNNING" in text and not any(s.run_id in text for s in active if s.state == "COMPLETED")
    assert f"all {RUNS} runs have ended" in text
