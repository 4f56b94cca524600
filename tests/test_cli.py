"""The CLI without a cluster: bad input is one line and exit 2, leaving nothing behind; the local
executor runs a sweep end to end with the same resume semantics."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobkit.cli import cli

SWEEP = """
name = "cli"
[defaults]
time = "00:05:00"
cpus = 1
mem = "1G"
[[run]]
workload = "toy"
preset = "tiny"
hidden = [8, 16]
"""


@pytest.fixture
def sweep_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(SWEEP)
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


BAD_SWEEPS = {
    "unknown_workload": '[[run]]\nworkload = "nope"\n',
    "unknown_param": '[[run]]\nworkload = "toy"\nbogus = 1\n',
    "wrong_type": '[[run]]\nworkload = "toy"\nsteps = "many"\n',
    "out_of_range": '[[run]]\nworkload = "toy"\ndropout = 2.0\n',
    "bad_preset": '[[run]]\nworkload = "toy"\npreset = "xl"\n',
    "bad_time": '[[run]]\nworkload = "toy"\ntime = "forever"\n',
    "bad_mem": '[[run]]\nworkload = "toy"\nmem = "plenty"\n',
    "shell_in_partition": '[[run]]\nworkload = "toy"\npartition = "test; rm -rf ~"\n',
    "list_resource": '[[run]]\nworkload = "toy"\ncpus = [1, 2]\n',
    "no_runs": 'name = "x"\n',
    "bad_name": 'name = "../escape"\n[[run]]\nworkload = "toy"\n',
    "not_toml": '[[run]\nworkload = "toy"\n',
    "duplicate": '[[run]]\nworkload = "toy"\n[[run]]\nworkload = "toy"\n',
    "cross_field": '[[run]]\nworkload = "toy"\nsteps = 5\nfail_at = 9\n',
    "missing_workload": '[[run]]\nsteps = 5\n',
    "bad_top_key": 'runs = 1\n[[run]]\nworkload = "toy"\n',
    # numbers: non-finite floats and absurd counts
    "lr_nan": '[[run]]\nworkload = "toy"\nlr = nan\n',
    "lr_inf": '[[run]]\nworkload = "toy"\nlr = inf\n',
    "dropout_neg_inf": '[[run]]\nworkload = "toy"\ndropout = -inf\n',
    "huge_steps": '[[run]]\nworkload = "toy"\nsteps = 100000000000000000000\n',
    "huge_steps_float": '[[run]]\nworkload = "toy"\nsteps = 1e20\n',
    "huge_batch": '[[run]]\nworkload = "toy"\nbatch_size = 1000000000\n',
    "huge_keep": '[[run]]\nworkload = "toy"\nkeep_checkpoints = 100000\n',
    "charlm_lr_nan_in_list": '[[run]]\nworkload = "charlm"\nlr = [1e-3, nan]\n',
    # workloads that are not workloads
    "not_a_class": '[[run]]\nworkload = "os:system"\n',
    "class_without_params": '[[run]]\nworkload = "jobkit.plan.spec:Resources"\n',
    "module_missing": '[[run]]\nworkload = "no_such_module_xyz:Thing"\n',
    # environment
    "unset_env_var": '[[run]]\nworkload = "charlm"\ndata = "${JOBKIT_TEST_UNSET_VAR}/corpus.txt"\n',
    "unset_env_var_bare": '[[run]]\nworkload = "vae"\ndataset = "npy:$JOBKIT_TEST_UNSET_VAR/x.npy"\n',
    "bad_env_reference": '[[run]]\nworkload = "charlm"\ndata = "${not a name}/x.txt"\n',
    # data, checked at submit
    "charlm_missing_data": '[[run]]\nworkload = "charlm"\ndata = "/no/such/corpus.txt"\n',
    "charlm_data_is_a_dir": '[[run]]\nworkload = "charlm"\ndata = "/"\n',
    "charlm_empty_data": '[[run]]\nworkload = "charlm"\ndata = "{tmp}/empty.txt"\n',
    "charlm_not_utf8": '[[run]]\nworkload = "charlm"\ndata = "{tmp}/latin1.txt"\n',
    "charlm_too_short": '[[run]]\nworkload = "charlm"\ndata = "{tmp}/short.txt"\ncontext = 256\n',
    "vae_celeba_missing": '[[run]]\nworkload = "vae"\ndataset = "celeba"\ndata_dir = "{tmp}/nodata"\n',
    "vae_npy_missing": '[[run]]\nworkload = "vae"\ndataset = "npy:/no/such/faces.npy"\n',
    "vae_npy_bad_shape": '[[run]]\nworkload = "vae"\ndataset = "npy:{tmp}/flat.npy"\n',
    "vae_folder_missing": '[[run]]\nworkload = "vae"\ndataset = "folder:/no/such/folder"\n',
    "check_data_not_bool": '[[run]]\nworkload = "toy"\ncheck_data = "no"\n',
}


def _data_files(tmp: Path) -> None:
    """The files the data cases of BAD_SWEEPS name."""
    import numpy as np

    (tmp / "empty.txt").write_bytes(b"")
    (tmp / "latin1.txt").write_bytes("caf\u00e9 au lait ".encode("latin-1") * 10)
    (tmp / "short.txt").write_text("too short for a context of 256\n")
    np.save(tmp / "flat.npy", np.zeros((4, 8), np.uint8))


@pytest.mark.parametrize("name", sorted(BAD_SWEEPS))
def test_bad_sweep_files_exit_2_with_one_line_and_write_nothing(tmp_path, monkeypatch, name):
    monkeypatch.delenv("JOBKIT_TEST_UNSET_VAR", raising=False)
    _data_files(tmp_path)
    path = tmp_path / f"{name}.toml"
    path.write_text(BAD_SWEEPS[name].replace("{tmp}", str(tmp_path)))
    root = tmp_path / "runs"
    result = invoke("submit", path, "--executor", "local", "--root", root)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    assert str(path) in result.stderr or name == "bad_name"
    assert not root.exists(), "nothing may be written"


def test_bad_input_errors_name_the_problem(tmp_path, monkeypatch):
    """The messages say what is wrong and where: the run, the key, the path, the variable."""
    monkeypatch.delenv("JOBKIT_TEST_UNSET_VAR", raising=False)
    _data_files(tmp_path)
    expect = {
        "lr_nan": "lr: got nan; must be a finite number",
        "huge_steps": "steps: got 100000000000000000000; must be <= 1000000000",
        "not_a_class": "'os:system'",
        "class_without_params": "lacks Params",
        "unset_env_var": "environment variable JOBKIT_TEST_UNSET_VAR is not set",
        "charlm_missing_data": "data: /no/such/corpus.txt: no such file; expected a readable UTF-8 text file",
        "charlm_not_utf8": "not UTF-8 text (byte 3",
        "vae_npy_bad_shape": "shape (4, 8)",
        "vae_celeba_missing": "img_align_celeba: no such directory",
    }
    for name, text in expect.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(BAD_SWEEPS[name].replace("{tmp}", str(tmp_path)))
        result = invoke("submit", path, "--executor", "local", "--dry-run", "--root", tmp_path / "runs")
        assert result.exit_code == 2 and text in result.stderr, (name, result.stderr)
        if name.startswith(("charlm_", "vae_")):
            assert "run charlm-" in result.stderr or "run vae-" in result.stderr, result.stderr
    missing = invoke("submit", tmp_path / "not_a_class.toml", "--dry-run", "--root", tmp_path / "runs")
    assert "setup()" in missing.stderr and "Params" in missing.stderr


@pytest.mark.parametrize("args", [
    ["submit", "{sweep}", "--set", "steps"],
    ["submit", "{sweep}", "--set", "nosuch=3"],
    ["submit", "{sweep}", "--set", "toy.nosuch=3"],
    ["submit", "{sweep}", "--set", "hidden=[]"],
    ["submit", "{sweep}", "--only", "zzz"],
    ["submit", "{tmp}/missing.toml"],
    ["submit", "{sweep}", "--executor", "cloud"],
    ["status", "no-such-run"],
    ["resume", "no-such-sweep"],
    ["cancel", "no-such-sweep"],
    ["logs", "no-such-run"],
    ["run", "{tmp}/not-a-run"],
    ["collect", "no-such-sweep"],
    ["submit", "{sweep}", "--set", "lr=nan"],
    ["submit", "{sweep}", "--set", "steps=1e30"],
    ["submit", "{sweep}", "--set", "check_data=maybe"],
    ["submit", "{sweep}", "--set", "time=-5"],
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, sweep_file, args):
    root = tmp_path / "runs"
    args = [a.format(sweep=sweep_file, tmp=tmp_path) for a in args]
    result = invoke(*args, "--root", root) if args[0] != "run" else invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0 and result.stderr.strip(), result.stderr
    assert "Traceback" not in result.output
    assert not root.exists() or not any(root.rglob("spec.json"))


def test_dry_run_json_plans_and_writes_nothing(tmp_path, sweep_file):
    root = tmp_path / "runs"
    result = invoke("submit", sweep_file, "--executor", "local", "--dry-run", "--json", "--root", root)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [r["action"] for r in plan["runs"]] == ["new", "new"]
    assert {r["run_id"].rsplit("-", 1)[0] for r in plan["runs"]} == {"toy-hidden8", "toy-hidden16"}
    assert not root.exists()


def _jobkit(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JOBKIT_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", "jobkit", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_local_executor_end_to_end_then_resubmit_is_a_no_op(tmp_path, sweep_file):
    root = tmp_path / "runs"
    done = _jobkit("submit", sweep_file, "--executor", "local", "--wait", root=root)
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads(_jobkit("status", "cli", "--json", root=root).stdout)
    assert [r["state"] for r in status["runs"]] == ["COMPLETED", "COMPLETED"]
    assert all(r["step"] == r["total"] == 40 for r in status["runs"])
    assert status["slurm_calls"] == 0
    again = json.loads(_jobkit("submit", sweep_file, "--executor", "local", "--json", root=root).stdout)
    assert [r["action"] for r in again["runs"]] == ["done", "done"]
    for run in status["runs"]:
        events = [json.loads(l)["event"] for l in (Path(run["path"]) / "events.jsonl").read_text().splitlines()]
        assert events.count("submitted") == 1 and events[-1] == "finished"
    logs = _jobkit("logs", status["runs"][0]["run_id"], root=root)
    assert logs.returncode == 0 and "Job completed successfully" in logs.stdout


def test_failed_run_shows_its_error_and_status_exits_1(tmp_path):
    path = tmp_path / "nan.toml"
    path.write_text('[[run]]\nworkload = "toy"\npreset = "tiny"\nfail_at = 15\ncpus = 1\n')
    root = tmp_path / "runs"
    done = _jobkit("submit", path, "--executor", "local", "--wait", root=root)
    assert done.returncode == 1
    status = _jobkit("status", "--json", root=root)
    assert status.returncode == 1
    (run,) = json.loads(status.stdout)["runs"]
    assert run["state"] == "FAILED" and "loss is nan at step 16" in run["error"]
    table = _jobkit("status", root=root)
    assert "FAILED" in table.stdout and "loss is nan" in table.stdout


def test_help_of_every_command_has_an_example():
    for name, command in cli.commands.items():
        result = invoke(name, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output, f"`jobkit {name} --help` lacks an example"


def test_submit_warns_when_the_signal_delay_is_too_short_for_a_step():
    from jobkit.observe.runstate import RunSummary
    from jobkit.plan.spec import Resources
    from jobkit.submit.submission import _signal_warning

    slow = RunSummary(run_id="r", sweep="s", workload="toy", path="/x", params={}, step_seconds=12.0,
                      checkpoint_seconds=3.0)
    assert "too short" in _signal_warning(slow, Resources(time_min=1))  # 15 s warning for a 12 s step
    assert _signal_warning(slow, Resources(time_min=60)) is None  # 90 s is enough


def test_resume_set_changes_settings_not_identity(tmp_path, sweep_file):
    """`resume --set checkpoint_every=...` changes how a run is run; a param cannot be changed."""
    from jobkit.store import find_runs

    root = tmp_path / "runs"
    planned = invoke("submit", sweep_file, "--executor", "local", "--dry-run", "--json", "--root", root)
    ids = [r["run_id"] for r in json.loads(planned.stdout)["runs"]]
    # two runs of the sweep, created without starting them
    from jobkit.plan import sweep as sweep_mod
    from jobkit.store import RunDir
    for spec in sweep_mod.load(sweep_file).specs:
        RunDir.create(root, spec)
    bad = invoke("resume", "cli", "--set", "hidden=4", "--executor", "local", "--dry-run", "--root", root)
    assert bad.exit_code == 2 and "submit a new run" in bad.stderr and bad.stderr.count("\n") == 1
    bad = invoke("resume", "cli", "--set", "checkpoint_every=-1", "--executor", "local", "--dry-run", "--root", root)
    assert bad.exit_code == 2 and "checkpoint_every" in bad.stderr and ">= 0" in bad.stderr
    bad = invoke("resume", "cli", "--set", "mem=lots", "--executor", "local", "--dry-run", "--root", root)
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --set mem:"), bad.stderr
    ok = invoke("resume", "cli", "--set", "checkpoint_every=3", "--set", "mem=2G", "--executor", "local",
                "--root", root, "--wait")
    assert ok.exit_code == 0, ok.output
    runs = find_runs(root, ["cli"])
    assert sorted(r.run_id for r in runs) == sorted(ids)
    for run in runs:
        spec = run.spec()
        assert spec.settings["checkpoint_every"] == 3 and spec.resources.mem_mb == 2048
        steps = [json.loads(l).get("step") for l in (run.path / "events.jsonl").read_text().splitlines()
                 if json.loads(l)["event"] == "checkpoint"]
        assert steps[:3] == [3, 6, 9]


def test_shell_completion_offers_sweeps_and_run_ids(tmp_path):
    """click's own completion (`_JOBKIT_COMPLETE=bash_complete`) completes names under --root."""
    from jobkit.plan.spec import JobSpec
    from jobkit.store import RunDir

    root = tmp_path / "runs"
    for sweep, name in (("smoke", "toy-a"), ("smoke", "toy-b"), ("seed", "vae-c")):
        RunDir.create(root, JobSpec(sweep=sweep, workload="toy", params={"n": name}, name=name))

    def complete(*words: str) -> list[str]:
        env = {**os.environ, "_JOBKIT_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(["jobkit", *words]),
               "COMP_CWORD": str(len(words)), "JOBKIT_ROOT": str(root)}
        out = subprocess.run([sys.executable, "-m", "jobkit"], env=env, capture_output=True, text=True, timeout=60)
        return [line.split(",", 1)[1] for line in out.stdout.splitlines() if "," in line]

    assert complete("status", "s") == ["seed", "smoke"]
    assert sorted(complete("logs", "toy")) == sorted(r.name for r in (root / "smoke").iterdir() if r.is_dir())
    assert complete("collect", "se") == ["seed"]
    assert complete("status", "--root", str(root), "vae")[0].startswith("vae-c-")
