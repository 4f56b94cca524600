"""The workload protocol decides, not a workload's name: a workload that runs itself (like `command`)
is planned, checked and run through the same paths as one the runner steps, and the names and the
status columns follow each workload's declared key params."""
from __future__ import annotations

import textwrap

import pytest

from jobkit.observe import status_table
from jobkit.observe.runstate import RunSummary, summarize
from jobkit.plan import datacheck, registry, sweep
from jobkit.plan.params import ParamError
from jobkit.run import launch
from jobkit.run.stops import Host
from jobkit.store import RunDir

ECHO = '''
from jobkit.plan.params import ParamError
from jobkit.protocol import ReportLayout
from jobkit.state import Event


class Echo:
    """A self-running workload that only says how many words it was given."""

    runs_itself = True
    own_keys = ("words", "times")
    list_params = ("words",)
    report = ReportLayout(key_params=("times",))

    def __init__(self, params):
        self.params = params

    def check_data(self):
        from jobkit.plan.datacheck import DataProblem
        if "nothing" in self.params["words"]:
            raise DataProblem("words", "-", "says nothing", "some words")

    @staticmethod
    def resolve_params(raw, workdir):
        if not isinstance(raw.get("words"), list):
            raise ValueError("words: expected a list of words")
        return {**raw, "times": raw.get("times", 1)}

    @staticmethod
    def check_settings(settings):
        raise ParamError(next(iter(settings)), "an echo has no settings")

    @staticmethod
    def continues_at_limit(params):
        return params["times"] > 1

    @staticmethod
    def run(run, host, near_limit=None):
        params = run.spec().params
        final = {"said": float(len(params["words"]) * params["times"])}
        run.event(Event.FINISHED, step=0, metrics=final)
        return final
'''

KEYED = '''
from jobs.toy.workload import Toy
from jobkit.protocol import ReportLayout


class Keyed(Toy):
    report = ReportLayout(key_params=("lr",))
'''


@pytest.fixture
def modules(tmp_path, monkeypatch):
    (tmp_path / "echo_mod.py").write_text(textwrap.dedent(ECHO))
    (tmp_path / "keyed_mod.py").write_text(textwrap.dedent(KEYED))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_command_is_registered_like_the_other_workloads():
    assert {"charlm", "vae", "toy", "command"} <= set(registry.available())
    cls = registry.load("command")
    assert registry.runs_itself(cls) and registry.missing_members(cls) == []
    assert not registry.runs_itself(registry.load("toy"))


def test_a_self_running_workload_from_elsewhere_is_planned_checked_and_run_without_its_name(modules):
    sweep_file = modules / "echo.toml"
    sweep_file.write_text('name = "e"\n[[run]]\nworkload = "echo_mod:Echo"\nwords = ["a", "b", "c"]\ntimes = [1, 2]\n')
    specs = sweep.load(sweep_file).specs
    assert [s.params["times"] for s in specs] == [1, 2]  # `times` is an axis, `words` one value
    assert all(s.params["words"] == ["a", "b", "c"] and s.workdir == str(modules) for s in specs)
    assert all(s.key_params == ("times",) for s in specs)
    assert datacheck.check_specs(specs, "echo.toml").skipped == []
    with pytest.raises(ParamError, match="no settings"):
        registry.check_settings(registry.load(specs[0].workload), {"checkpoint_every": 5})
    assert [launch.continues_at_limit(s) for s in specs] == [False, True]

    run = RunDir.create(modules / "runs", specs[1])
    assert launch.run(run, Host()) == {"said": 6.0}
    assert summarize(run).state == "COMPLETED"

    silent = sweep.from_dict({"run": [{"workload": "echo_mod:Echo", "words": ["nothing"]}]}).specs
    with pytest.raises(datacheck.DataCheckFailed, match="says nothing"):
        datacheck.check_specs(silent, "silent.toml")
    with pytest.raises(sweep.SweepError, match=r"run 1 \(echo_mod:Echo\): words: expected a list"):
        sweep.from_dict({"run": [{"workload": "echo_mod:Echo", "words": "a"}]})


def test_a_self_running_class_without_run_is_not_a_workload(modules):
    (modules / "half_mod.py").write_text("class Half:\n    runs_itself = True\n    own_keys = ()\n    list_params = ()\n")
    with pytest.raises(registry.UnknownWorkload, match=r"resolve_params\(\).*run\(\)"):
        registry.load("half_mod:Half")


def test_run_names_lead_with_the_declared_key_params(modules):
    tables = [{"preset": "tiny", "lr": 0.01, "hidden": [4, 8]}, {"preset": "tiny", "lr": 0.02, "hidden": 4}]
    keyed = sweep.from_dict({"run": [{"workload": "keyed_mod:Keyed", **t} for t in tables]}).specs
    plain = sweep.from_dict({"run": [{"workload": "toy", **t} for t in tables]}).specs
    # Keyed declares lr: it leads every name; toy declares nothing: lr only joins to break a tie
    assert [s.name.split("-", 1)[1] for s in keyed] == ["lr0.01-hidden4", "lr0.01-hidden8", "lr0.02-hidden4"]
    assert [s.name for s in plain] == ["toy-hidden4-lr0.01", "toy-hidden8-lr0.01", "toy-hidden4-lr0.02"]


def test_status_columns_follow_the_key_params_spec_json_records(modules):
    tables = [{"preset": "tiny", "lr": 0.01, "hidden": [4, 8]}, {"preset": "tiny", "lr": 0.02, "hidden": 4}]
    specs = sweep.from_dict({"run": [{"workload": "keyed_mod:Keyed", **t} for t in tables]}).specs
    runs = [RunDir.create(modules / "runs", s) for s in specs]
    assert RunDir(runs[0].path).spec().key_params == ("lr",)
    summaries = [summarize(r) for r in runs]
    assert status_table.distinguishing_keys(summaries) == ["lr", "hidden"]  # declared first, not by name
    unrecorded = [RunSummary(run_id=s.run_id, sweep="s", workload="w", path="", params=dict(s.params)) for s in specs]
    assert status_table.distinguishing_keys(unrecorded) == ["hidden", "lr"]
