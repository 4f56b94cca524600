"""A run is its signature: editing the sweep renames runs for people, never moves a folder or an id."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobkit.cli import cli
from jobkit.plan import sweep as sweep_mod
from jobkit.state import Event
from jobkit.store import RunDir, find_runs, folders_by_signature
from jobkit.submit import submission

ONE = {"name": "ext", "defaults": {"time": "00:05:00", "mem": "1G"},
       "run": [{"workload": "toy", "preset": "tiny", "steps": 6, "checkpoint_every": 3, "eval_every": 3}]}


def extended(values: list) -> dict:
    return {**ONE, "run": [{**ONE["run"][0], "lr": values}]}


def plan(data: dict, root: Path) -> list[submission.PlannedRun]:
    return submission.plan(sweep_mod.from_dict(data).specs, root, "local")


def test_a_run_keeps_its_folder_when_the_sweep_gains_a_run(tmp_path):
    [first] = plan(ONE, tmp_path)
    assert first.action == "new"
    RunDir.create(tmp_path, first.spec)
    specs = sweep_mod.from_dict(extended([0.01, 0.001])).specs
    assert first.spec.run_id not in {s.run_id for s in specs}  # the readable names changed...
    planned = plan(extended([0.01, 0.001]), tmp_path)
    old = next(p for p in planned if p.spec.signature == first.spec.signature)
    new = next(p for p in planned if p.spec.signature != first.spec.signature)
    assert old.run_dir == first.run_dir and old.spec.run_id == first.spec.run_id  # ...not its folder, id
    assert old.action == "resume" and new.action == "new"
    assert new.run_dir.parent == first.run_dir.parent and not new.run_dir.exists()
    # reordered and shrunk back: still the same folder
    for data in (extended([0.001, 0.01]), ONE):
        again = next(p for p in plan(data, tmp_path) if p.spec.signature == first.spec.signature)
        assert again.run_dir == first.run_dir


def test_two_folders_of_one_signature_prefer_the_current_name(tmp_path):
    [first] = plan(ONE, tmp_path)
    a = RunDir.create(tmp_path, first.spec)
    renamed = first.spec.__class__(**{**first.spec.__dict__, "name": "toy-old"})
    b = RunDir.create(tmp_path, renamed)
    found = folders_by_signature(tmp_path / "ext", {first.spec.signature: first.spec.run_id})
    assert found[first.spec.signature] == a.path
    assert folders_by_signature(tmp_path / "ext")[first.spec.signature] == min(a.path, b.path)


def test_runs_are_found_by_signature_full_id_or_name(tmp_path):
    [first] = plan(extended([0.01, 0.001]), tmp_path)[:1]
    run = RunDir.create(tmp_path, first.spec)
    name, signature = first.spec.name, first.spec.signature
    for selector in (signature, first.spec.run_id, name, f"ext/{first.spec.run_id}", str(run.path)):
        assert [r.path.resolve() for r in find_runs(tmp_path, [selector])] == [run.path.resolve()], selector
    with pytest.raises(LookupError):
        find_runs(tmp_path, ["0000ffff"])
    result = CliRunner().invoke(cli, ["status", signature, "--json", "--root", str(tmp_path)])
    assert json.loads(result.output)["runs"][0]["run_id"] == first.spec.run_id


def _jobkit(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JOBKIT_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", "jobkit", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_extending_a_finished_sweep_submits_only_the_new_run(tmp_path):
    """Local executor end to end: dry run and real submit after adding one value to a finished sweep."""
    root = tmp_path / "runs"
    sweep_file = tmp_path / "ext.toml"
    sweep_file.write_text(_toml(ONE))
    done = _jobkit("submit", sweep_file, "--executor", "local", "--wait", root=root)
    assert done.returncode == 0, done.stdout + done.stderr
    [old] = find_runs(root)
    before = (old.path.name, old.events_path.read_text(), old.spec_path.read_text())
    sweep_file.write_text(_toml(extended([0.01, 0.001])))
    dry = json.loads(_jobkit("submit", sweep_file, "--executor", "local", "--dry-run", "--json", root=root).stdout)
    actions = {r["run_id"]: r["action"] for r in dry["runs"]}
    assert actions[old.path.name] == "done" and sorted(actions.values()) == ["done", "new"]
    again = _jobkit("submit", sweep_file, "--executor", "local", "--wait", "--json", root=root)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = find_runs(root)
    assert len(runs) == 2 and old.path in [r.path for r in runs]
    assert (old.path.name, old.events_path.read_text(), old.spec_path.read_text()) == before
    [new] = [r for r in runs if r.path != old.path]
    kinds = [e["event"] for e in new.events()]
    assert kinds.count(Event.SUBMITTED) == 1 and kinds[-1] == Event.FINISHED


def _toml(data: dict) -> str:
    """The sweep as TOML (flat tables of numbers, strings and lists only)."""
    lines = [f'name = "{data["name"]}"', "[defaults]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in data["defaults"].items()]
    for run in data["run"]:
        lines += ["[[run]]"] + [f"{k} = {json.dumps(v)}" for k, v in run.items()]
    return "\n".join(lines) + "\n"
