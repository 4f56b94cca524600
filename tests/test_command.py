"""`workload = "command"` without a cluster: sweep validation, placeholders that cannot inject, the
supervisor's exit-code mapping and stop forwarding, the `jobkit.report` helper, and collect."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobkit.cli import cli
from jobkit.observe.runstate import summarize
from jobkit.command import params as command
from jobkit.plan import sweep
from jobkit.run import runner
from jobkit.store import RunDir

REPO = Path(__file__).resolve().parents[1]


def load(tmp_path: Path, text: str) -> sweep.Sweep:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return sweep.load(path)


def make_command_run(tmp_path: Path, script: str, extra: str = "", name: str = "c",
                     args: tuple[str, ...] = ("{run_dir}",)) -> RunDir:
    (tmp_path / f"{name}.py").write_text(script)
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        cmd = json.dumps(["{python}", f"{name}.py", *args])
        sw = load(tmp_path, f'name = "{name}"\n[[run]]\nworkload = "command"\ncommand = {cmd}\n{extra}')
    finally:
        os.chdir(cwd)
    return RunDir.create(tmp_path / "runs", sw.specs[0])


def test_params_are_typed_expanded_and_identity_and_workdir_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    sw = load(tmp_path, """
name = "b"
[[run]]
workload = "command"
command = ["{python}", "examples/char_script.py", "--lr", "{lr}", "--out", "{run_dir}"]
lr = [1e-3, 3e-4]
steps = 500
""")
    assert len(sw.specs) == 2 and [s.entry for s in sw.specs] == [1, 1]
    a, b = sw.specs
    assert a.params["lr"] == 0.001 and isinstance(a.params["lr"], float)
    assert a.params["resumable"] is False and a.params["stop_signal"] == "USR2" and a.params["steps"] == 500
    assert a.run_id != b.run_id and a.run_id.startswith("command-lr0.001-")
    assert a.workdir == str(REPO) and a.to_json()["workdir"] == str(REPO)
    spelled = load(tmp_path, """
name = "b"
[[run]]
workload = "command"
command = ["{python}", "examples/char_script.py", "--lr", "{lr}", "--out", "{run_dir}"]
lr = 1e-3
steps = 500
resumable = false
stop_signal = "SIGUSR2"
""").specs[0]
    assert spelled.signature == a.signature  # defaults spelled or not: the same run
    argv = command.expand(a.params["command"], a.params, tmp_path)
    assert argv == [sys.executable, "examples/char_script.py", "--lr", "0.001", "--out", str(tmp_path.resolve())]


BAD = {
    "string_command": ('command = "python train.py --lr 1"', "is a string; give a list"),
    "unknown_placeholder": ('command = ["{python}", "ok.py", "{lr}"]', "unknown placeholder {lr}"),
    "missing_program": ('command = ["no-such-program-xyz", "1"]', "program 'no-such-program-xyz' not found"),
    "missing_script": ('command = ["{python}", "missing.py"]', "script 'missing.py' not found"),
    "missing_command": ('lr = 1', "command: missing"),
    "bad_signal": ('command = ["{python}", "ok.py"]\nstop_signal = "NOPE"', "stop_signal"),
    "bad_resumable": ('command = ["{python}", "ok.py"]\nresumable = "yes"', "resumable"),
    "table_param": ('command = ["{python}", "ok.py"]\nopt = {a = 1}', "opt:"),
    "format_spec": ('command = ["{python}", "ok.py", "{x:>4}"]\nx = 1', "plain names"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_command_runs_exit_2_with_one_line_and_write_nothing(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.py").write_text("print('ok')\n")
    text, expected = BAD[name]
    path = tmp_path / "bad.toml"
    path.write_text(f'[[run]]\nworkload = "command"\n{text}\n')
    root = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["submit", str(path), "--executor", "local", "--root", str(root)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr and str(path) in result.stderr
    assert not root.exists() or not any(root.rglob("spec.json"))


def test_set_reaches_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.py").write_text("")
    path = tmp_path / "s.toml"
    path.write_text('[[run]]\nworkload = "command"\ncommand = ["{python}", "ok.py", "{lr}"]\nlr = 1.0\n')
    specs = sweep.load(path, overrides=["lr=[0.5, 0.25]", "command.resumable=true"]).specs
    assert [s.params["lr"] for s in specs] == [0.5, 0.25] and all(s.params["resumable"] for s in specs)


def test_a_parameter_cannot_inject_shell_syntax(tmp_path):
    evil = "; rm -rf ~"
    run = make_command_run(tmp_path, "import json, sys\n"
                                     "json.dump(sys.argv[1:], open(sys.argv[-1] + '/argv.json', 'w'))\n",
                           extra=f'arg = "{evil}"\nquote = "$(touch pwned) `id` \\" \'"\n', name="inj",
                           args=("{arg}", "{quote}", "{run_dir}"))
    command_run_mod().run(run)
    argv = json.loads((run.path / "argv.json").read_text())
    assert argv == [evil, "$(touch pwned) `id` \" '", str(run.path.resolve())]
    assert not (tmp_path / "pwned").exists()


def command_run_mod():
    from jobkit.command import supervise as command_run

    return command_run


def test_exit_0_finishes_with_the_helpers_metrics(tmp_path):
    run = make_command_run(tmp_path, (
        "from jobkit import report\n"
        "for step in range(1, 21):\n"
        "    report.progress(step, 20, loss=3.0 / step, val_loss=(4.0 / step) if step % 10 == 0 else None)\n"
        "report.checkpoint_saved(20, report.run_dir() / 'ckpt.pt')\n"), extra="steps = 20\n")
    final = command_run_mod().run(run)
    assert final == {"val_loss": 0.2, "train_loss": 0.15}
    s = summarize(run)
    assert s.state == "COMPLETED" and s.step == 20 and s.total == 20 and s.loss == 0.15 and s.val_loss == 0.2
    assert [e["event"] for e in run.events()] == ["started", "checkpoint", "finished"]


def test_exit_1_is_failed_with_the_stderr_tail(tmp_path):
    run = make_command_run(tmp_path, (
        "import sys\n"
        "for i in range(30): print(f'line {i}', file=sys.stderr)\n"
        "print('ValueError: the data is gone', file=sys.stderr)\n"
        "sys.exit(1)\n"))
    with pytest.raises(runner.RunFailed, match="exited with code 1: ValueError: the data is gone"):
        command_run_mod().run(run)
    (failed,) = [e for e in run.events() if e["event"] == "failed"]
    assert failed["exit_code"] == 1 and failed["stderr_tail"][-2:] == ["line 29", "ValueError: the data is gone"]
    assert len(failed["stderr_tail"]) == command_run_mod().TAIL_LINES
    s = summarize(run)
    assert s.state == "FAILED" and s.error == "command exited with code 1: ValueError: the data is gone"


STOPPABLE = """
import os, sys, time
from jobkit import report
d = report.run_dir()
start = int(open(d / 'at').read()) if (d / 'at').exists() else 0
open(d / 'attempts', 'a').write(os.environ['JOBKIT_ATTEMPT'] + ' ' + os.environ['JOBKIT_RUN_ID'] + '\\n')
for step in range(start + 1, 1000):
    time.sleep(0.05)
    report.progress(step, 1000, loss=1.0)
    if report.stop_requested():
        open(d / 'at', 'w').write(str(step))
        report.checkpoint_saved(step, d / 'at')
        sys.exit(report.EXIT_STOPPED)
    if step >= start + 40 and start:
        sys.exit(0)
"""


def test_a_stop_is_forwarded_to_the_script_which_exits_3_and_continues(tmp_path):
    run = make_command_run(tmp_path, STOPPABLE, extra="resumable = true\n", name="stop")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "jobkit", "run", str(run.path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 60
    while (run.progress().get("step") or 0) < 5 and time.time() < end:
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == runner.EXIT_STOPPED, out + err
    stopped_at = int((run.path / "at").read_text())
    assert summarize(run).state == "STOPPED" and summarize(run).step == stopped_at
    again = subprocess.run([sys.executable, "-m", "jobkit", "run", str(run.path)], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert (run.path / "attempts").read_text().split("\n")[:2] == [f"1 {run.run_id}", f"2 {run.run_id}"]
    starts = [e for e in run.events() if e["event"] == "started"]
    assert [e["step"] for e in starts] == [0, stopped_at]
    assert summarize(run).state == "COMPLETED"


def test_a_script_that_ignores_the_stop_is_killed_after_the_wait(tmp_path):
    run = make_command_run(tmp_path, "import signal, time\nsignal.signal(signal.SIGUSR2, signal.SIG_IGN)\n"
                                     "time.sleep(120)\n", extra="resumable = true\n", name="deaf")
    host = runner.Host(time_limit_s=3.0, margin_s=1.0)  # its deadline is 2 s after the start
    t0 = time.time()
    with pytest.raises(runner.Stopped, match="killed after the wait"):
        command_run_mod().run(run, host)
    assert time.time() - t0 < 2 + command_run_mod().stop_wait_s(host) + 5


def test_a_script_that_is_not_resumable_reaches_its_limit_as_timeout_with_its_last_lines(tmp_path):
    run = make_command_run(tmp_path, "import sys, time\nprint('epoch 1 done', file=sys.stderr)\n"
                                     "sys.stderr.flush()\ntime.sleep(120)\n", name="slow")
    host = runner.Host(time_limit_s=3.0, margin_s=1.0)
    command_run_mod().run(run, host, near_limit=lambda stop: True)
    s = summarize(run)
    assert s.state == "TIMEOUT" and "epoch 1 done" in s.error


def test_report_imports_without_torch_and_does_nothing_outside_jobkit(tmp_path):
    code = ("import sys; from jobkit import report; report.progress(1, 2, loss=1.0); "
            "report.checkpoint_saved(1, 'x'); assert not report.stop_requested(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBKIT_RUN")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_raises_the_divergence_alarm_like_the_runner(tmp_path):
    run = make_command_run(tmp_path, (
        "from jobkit import report\n"
        "for step in range(1, 121):\n"
        "    report.progress(step, 120, loss=10.0 if step == 100 else 1.0)\n"), name="spike")
    command_run_mod().run(run)
    alarms = [e for e in run.events() if e["event"] == "alarm"]
    assert [(a["kind"], a["step"]) for a in alarms] == [("spike", 100)]
    assert summarize(run).alarms


def test_submit_help_shows_the_contract():
    result = CliRunner().invoke(cli, ["submit", "--help"])
    assert result.exit_code == 0
    for text in ("workload = \"command\"", "JOBKIT_RUN_DIR", "exit 3", "report.progress", "stop_signal"):
        assert text in result.output, text


def test_only_jobkits_forwarded_signal_counts_as_a_stop_request(tmp_path):
    """Slurm's own early warning may reach the script directly; jobkit decides when to stop."""
    code = ("import os, signal, sys; from pathlib import Path; from jobkit import report\n"
            "os.kill(os.getpid(), signal.SIGUSR2)\n"
            "assert not report.stop_requested(), 'a bare signal counted'\n"
            "(Path(sys.argv[1]) / '.jobkit-stop').write_text('1')\n"
            "assert report.stop_requested(); print('ok')\n")
    env = {**os.environ, "JOBKIT_RUN_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_collect_shows_command_runs_curves_beside_workload_runs(tmp_path, monkeypatch):
    from jobkit.collect.report import collect
    from jobkit.testing import make_run

    root = tmp_path / "runs"
    toy = make_run(root, "toy", {"preset": "tiny", "steps": 30}, sweep="mix")
    runner.run(toy)
    monkeypatch.chdir(REPO)
    (tmp_path / "s.toml").write_text("""
name = "mix"
[[run]]
workload = "command"
command = ["{python}", "examples/char_script.py", "--steps", "{steps}", "--hidden", "16", "--context", "16",
           "--eval-every", "10", "--out", "{run_dir}"]
steps = 30
resumable = true
""")
    run = RunDir.create(root, sweep.load(tmp_path / "s.toml").specs[0])
    final = command_run_mod().run(run)
    assert set(final) == {"train_loss", "val_loss"}
    report = collect(root, "mix", tmp_path / "report")
    workloads = report.summary["workloads"]
    assert set(workloads) == {"toy", "command"}
    assert {"train/loss", "val/val_loss"} <= set(workloads["command"]["tags"])
    (rec,) = [r for r in report.summary["runs"] if r["workload"] == "command"]
    assert rec["state"] == "COMPLETED" and rec["curves"]["train/loss"]["points"] == 30
    assert rec["curves"]["val/val_loss"]["last_step"] == 30 and rec["final"]["val_loss"] == final["val_loss"]
    html = (tmp_path / "report" / "index.html").read_text()
    assert run.run_id in html and toy.run_id in html and html.count("<svg") >= 2


def test_resume_set_of_a_setting_on_a_command_run_is_one_clear_line(tmp_path):
    """A command run has no run settings (its script owns its cadence); resources still change."""
    run = make_command_run(tmp_path, "import sys\n")
    root = str(tmp_path / "runs")
    bad = CliRunner().invoke(cli, ["resume", run.run_id, "--set", "checkpoint_every=5", "--executor", "local",
                                   "--dry-run", "--root", root])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1, bad.output
    assert "runs your own command" in bad.stderr and "Traceback" not in bad.output
    ok = CliRunner().invoke(cli, ["resume", run.run_id, "--set", "mem=1G", "--executor", "local", "--dry-run",
                                  "--json", "--root", root])
    assert ok.exit_code == 0, ok.output
