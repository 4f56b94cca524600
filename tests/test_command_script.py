"""A script written before jobkit, run unchanged as a command run (no cluster): resume arguments on
later starts, progress read from its prints, checkpoint files noticed, tracker ids that survive a
requeue, and the bad-input lines at submit."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from jobkit.cli import cli
from jobkit.collect.scalars import read_scalars
from jobkit.command import supervise
from jobkit.observe.runstate import summarize
from jobkit.run import runner
from test_command import load, make_command_run

# A nanoGPT-like script: `--init_from=resume` fails without a checkpoint; prints `iter N: loss X`;
# saves ckpt.json every 5 iters (with WAIT_SEEN, waits until jobkit recorded it); stops (exit 3)
# after 12 iters on its first two attempts.
TRAINER = """
import json, os, sys, time
out = sys.argv[1]
args = sys.argv[2:]
ckpt = os.path.join(out, 'ckpt.json')
open(os.path.join(out, 'argv.log'), 'a').write(json.dumps(args) + '\\n')
start = 0
if '--init_from=resume' in args:
    if not os.path.exists(ckpt):
        print('FileNotFoundError: no checkpoint to resume from', file=sys.stderr)
        sys.exit(1)
    start = json.load(open(ckpt))['iter']
attempt = int(os.environ['JOBKIT_ATTEMPT'])
end = start + 12 if attempt < 3 else 30
for it in range(start + 1, min(end, 30) + 1):
    print(f'iter {it}: loss {3.0 / it:.4f}', file=sys.stderr if it % 2 else sys.stdout)
    if it % 5 == 0:
        time.sleep(0.3)  # the printed line is read before the file is written (the step is read by mtime)
        json.dump({'iter': it}, open(ckpt, 'w'))
        seen = time.time() + 30 if os.environ.get('WAIT_SEEN') else 0  # until jobkit noticed the file
        while time.time() < seen and f'"step": {it}' not in open(os.path.join(out, 'events.jsonl')).read():
            time.sleep(0.05)
if end < 30:
    sys.exit(3)
"""
PROGRESS = "progress = 'iter (?P<step>\\d+): loss (?P<loss>[\\d.]+)'\n"


def starts(run) -> list[list[str]]:
    return [json.loads(line) for line in (run.path / "argv.log").read_text().splitlines()]


def test_resume_args_are_added_from_the_second_start_and_progress_drives_status(tmp_path):
    run = make_command_run(tmp_path, TRAINER, name="nano", extra=(
        'resumable = true\nsteps = 30\nresume_args = ["--init_from=resume"]\n' + PROGRESS))
    with pytest.raises(runner.Stopped):
        supervise.run(run)
    s = summarize(run)
    assert s.step == 12 and s.loss == pytest.approx(0.25) and s.total == 30
    assert not [e for e in run.events() if e["event"] == "warning"]
    with pytest.raises(runner.Stopped):
        supervise.run(run)
    assert summarize(run).step == 22  # resumed from iter 10, ran 12 more
    final = supervise.run(run)
    assert starts(run) == [[], ["--init_from=resume"], ["--init_from=resume"]]
    s = summarize(run)
    assert s.state == "COMPLETED" and s.step == 30 and final["train_loss"] == pytest.approx(0.1)
    curve = read_scalars(run.tb_dir)["train/loss"]  # the printed losses as TensorBoard scalars
    assert [step for step, _ in curve] == list(range(1, 31)) and curve[-1][1] == pytest.approx(0.1)


def test_resume_when_adds_the_args_only_while_the_checkpoint_exists(tmp_path):
    script = ("import json, os, sys\nout = sys.argv[1]\n"
              "open(os.path.join(out, 'argv.log'), 'a').write(json.dumps(sys.argv[2:]) + '\\n')\n"
              "n = int(os.environ['JOBKIT_ATTEMPT'])\n"
              "if n == 2: open(os.path.join(out, 'ckpt.pt'), 'w').write('w')\n"
              "sys.exit(0 if n == 3 else 3)\n")
    run = make_command_run(tmp_path, script, name="when", extra=(
        'resumable = true\nresume_args = ["--resume", "{run_dir}/ckpt.pt"]\nresume_when = "{run_dir}/ckpt.pt"\n'))
    for _ in range(2):
        with pytest.raises(runner.Stopped):
            supervise.run(run)
    supervise.run(run)
    assert starts(run) == [[], [], ["--resume", str((run.path / "ckpt.pt").resolve())]]


def test_a_changed_checkpoint_file_is_a_checkpoint_event_at_the_printed_step(tmp_path, monkeypatch):
    monkeypatch.setenv("WAIT_SEEN", "1")
    run = make_command_run(tmp_path, TRAINER, name="ck", extra=(
        'resumable = true\nsteps = 30\nresume_args = ["--init_from=resume"]\n'
        'checkpoint = "{run_dir}/ckpt.*"\n' + PROGRESS))
    with pytest.raises(runner.Stopped):
        supervise.run(run)
    ckpts = [e for e in run.events() if e["event"] == "checkpoint"]
    assert [e["step"] for e in ckpts] == [5, 10] and {e["file"] for e in ckpts} == {"ckpt.json"}
    s = summarize(run)
    assert s.last_checkpoint_step == 10 and s.last_checkpoint_t is not None
    with pytest.raises(runner.Stopped):
        supervise.run(run)  # the file that was there at the start is no news; its rewrites are
    assert [e["step"] for e in run.events() if e["event"] == "checkpoint"] == [5, 10, 15, 20]


def test_a_pattern_that_never_matches_is_reported_once(tmp_path):
    script = "import sys\nfor i in range(50): print(f'step={i} l={1/(i+1)}'); print('x', file=sys.stderr)\n"
    run = make_command_run(tmp_path, script, name="nomatch", extra=PROGRESS)
    supervise.run(run)
    warnings = [e for e in run.events() if e["event"] == "warning"]
    assert len(warnings) == 1 and "matched no line" in warnings[0]["message"]
    assert summarize(run).state == "COMPLETED" and summarize(run).step == 0


def test_stdout_is_still_copied_through(tmp_path, capfd):
    run = make_command_run(tmp_path, "print('hello from the script')\nprint('iter 3: loss 1.5')\n",
                           name="out", extra=PROGRESS)
    supervise.run(run)
    assert "hello from the script" in capfd.readouterr().out
    assert summarize(run).step == 3 and summarize(run).loss == 1.5


ENV_DUMP = ("import json, os, sys\n"
            "keys = [k for k in os.environ if k.startswith(('WANDB_', 'MLFLOW_', 'TENSORBOARD_'))]\n"
            "line = json.dumps({k: os.environ[k] for k in keys})\n"
            "open(os.path.join(sys.argv[1], 'env.log'), 'a').write(line + '\\n')\n"
            "sys.exit(0 if os.environ['JOBKIT_ATTEMPT'] == '2' else 3)\n")


def in_dir(path, *args, **kw):
    path.mkdir(parents=True, exist_ok=True)
    return make_command_run(path, *args, **kw)


def envs(run) -> list[dict[str, str]]:
    return [json.loads(line) for line in (run.path / "env.log").read_text().splitlines()]


def two_attempts(run) -> list[dict[str, str]]:
    with pytest.raises(runner.Stopped):
        supervise.run(run)
    supervise.run(run)
    return envs(run)


def test_tracker_variables_are_stable_across_attempts(tmp_path, monkeypatch):
    for key in ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_DIR", "WANDB_NAME", "MLFLOW_RUN_NAME", "TENSORBOARD_LOGDIR"):
        monkeypatch.delenv(key, raising=False)
    run = make_command_run(tmp_path, ENV_DUMP, name="trk", extra="resumable = true\n")
    first, second = two_attempts(run)
    assert first == second
    folder = run.path.resolve()
    assert first["WANDB_RESUME"] == "allow" and first["WANDB_DIR"] == str(folder / "wandb")
    assert first["TENSORBOARD_LOGDIR"] == str(folder / "tb") and first["MLFLOW_RUN_NAME"] == run.run_id
    assert first["WANDB_RUN_ID"].isalnum() and run.run_id not in first["WANDB_RUN_ID"]
    other = in_dir(tmp_path / "o", ENV_DUMP, name="trk2", extra="resumable = true\nx = 2\n")
    assert two_attempts(other)[0]["WANDB_RUN_ID"] != first["WANDB_RUN_ID"]  # one tracker run per run


def test_the_users_variables_win_and_trackers_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_RUN_ID", "mine")
    for key in ("WANDB_DIR", "MLFLOW_RUN_NAME", "TENSORBOARD_LOGDIR"):
        monkeypatch.delenv(key, raising=False)
    some = in_dir(tmp_path / "a", ENV_DUMP, name="a", extra='resumable = true\ntrackers = ["wandb"]\n')
    env = two_attempts(some)[1]
    assert env["WANDB_RUN_ID"] == "mine" and "WANDB_DIR" in env
    assert "MLFLOW_RUN_NAME" not in env and "TENSORBOARD_LOGDIR" not in env
    off = in_dir(tmp_path / "b", ENV_DUMP, name="b", extra="resumable = true\ntrackers = false\n")
    assert two_attempts(off)[1] == {"WANDB_RUN_ID": "mine"}


def test_new_keys_are_optional_and_change_no_existing_id(tmp_path, monkeypatch):
    (tmp_path / "t.py").write_text("")
    monkeypatch.chdir(tmp_path)
    base = 'name = "i"\n[[run]]\nworkload = "command"\ncommand = ["{python}", "t.py", "{lr}"]\nlr = [1, 2]\n'
    plain = load(tmp_path, base).specs
    assert all(not set(s.params) & {"resume_args", "progress", "checkpoint", "trackers"} for s in plain)
    extended = load(tmp_path, base + 'resume_args = ["--resume"]\ntrackers = ["wandb", "mlflow"]\n').specs
    assert len(extended) == 2  # lists of these keys are one value, not a sweep axis
    assert extended[0].params["resume_args"] == ["--resume"] and extended[0].run_id != plain[0].run_id


BAD = {
    "no_step_group": ("progress = 'loss (?P<loss>[\\d.]+)'", "has no (?P<step>...) group"),
    "does_not_compile": ("progress = 'iter (?P<step>\\d+'", "is not a regular expression"),
    "resume_args_not_list": ('resume_args = "--resume"', "resume_args: expected a list"),
    "resume_args_placeholder": ('resume_args = ["--from={nope}"]', "resume_args: unknown placeholder {nope}"),
    "checkpoint_outside": ('checkpoint = "/tmp/ckpt.pt"', "outside the run folder"),
    "bad_tracker": ('trackers = ["neptune"]', "trackers: expected"),
    "resume_when_alone": ('resume_when = "{run_dir}/ckpt.pt"', "resume_when: given without resume_args"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_script_keys_exit_2_with_one_line(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.py").write_text("")
    text, expected = BAD[name]
    path = tmp_path / "bad.toml"
    path.write_text(f'[[run]]\nworkload = "command"\ncommand = ["{{python}}", "ok.py"]\n{text}\n')
    root = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["submit", str(path), "--executor", "local", "--root", str(root)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr
    assert not root.exists() or not any(root.rglob("spec.json"))



def test_a_failing_progress_reader_never_stops_the_output_pump(tmp_path):
    import io

    def broken(line: str) -> None:
        raise OSError("disk full")

    sink = io.TextIOWrapper(io.BytesIO())
    source = io.BytesIO(b"".join(b"iter %d: loss 1.0\n" % i for i in range(10)))
    tail = supervise._Tail(source, out=sink, feed=broken)
    lines = tail.join()
    assert sink.buffer.getvalue().count(b"\n") == 10  # every line still copied through
    assert any("progress reading stopped" in line for line in lines) and lines[-1] == "iter 9: loss 1.0"
