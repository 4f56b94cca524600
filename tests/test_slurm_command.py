"""Command runs (`workload = "command"`) on the live local Slurm cluster: the example script in
one-minute segments and preempted ends with the same loss and weights as a run straight through; a
script that is not resumable times out as TIMEOUT with its last lines; exit 1 is FAILED with its
stderr tail; a parameter cannot inject shell syntax."""
from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from slurmtools import all_ended, cancel_sweeps, jobkit, wait_until

from jobkit.observe.runstate import summarize
from jobkit.command import supervise as command_run
from jobkit.store import RunDir

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[1]
SWEEPS = ("cmdpre", "cmdend")


@pytest.fixture(autouse=True)
def _cancel_leftovers():
    yield
    cancel_sweeps(SWEEPS)








EXAMPLE = """
name = "cmdpre"
[[run]]
workload = "command"
command = ["{python}", "examples/char_script.py", "--lr", "{lr}", "--steps", "{steps}", "--hidden", "32",
           "--context", "32", "--eval-every", "20", "--ckpt-every", "1000", "--sleep", "{sleep}", "--out", "{run_dir}"]
lr = 3e-3
steps = 420                 # ~130 s of 0.3 s steps: more than one 2-minute segment after any preemption
sleep = 0.3
resumable = true
preemptible = true          # it resumes: it may go to test, which `preempt` preempts
time = "00:02:00"
total_time = "00:06:00"
cpus = 1
mem = "1G"
"""


def test_the_example_in_segments_and_preempted_ends_like_a_run_straight_through(tmp_path):
    root = tmp_path / "runs"
    (tmp_path / "s.toml").write_text(EXAMPLE)
    plan = json.loads(jobkit("submit", tmp_path / "s.toml", "--json", root=root).stdout)
    (item,) = plan["runs"]
    assert item["segments"] == 3 and item["time"] == "00:02:00" and item["partition"] == "test"
    run = RunDir(Path(item["path"]))
    wait_until(root, lambda ss: ss[0].state == "RUNNING" and ss[0].step >= 20, 180, every=0.5)
    hog = subprocess.run(["sbatch", "--parsable", "-p", "preempt", "-c", "2", "--mem", "500M", "-t", "1",
                          "-o", "/dev/null", "--wrap", "sleep 5"], capture_output=True, text=True, check=True)
    assert hog.stdout.strip()
    (s,) = wait_until(root, all_ended, 480)
    assert s.state == "COMPLETED", s.error
    reasons = [e["reason"] for e in run.events() if e["event"] == "requeued"]
    assert reasons[0] == "preemption" and "segment" in reasons, reasons
    starts = [e for e in run.events() if e["event"] == "started"]
    assert len(starts) == len(reasons) + 1 and all(b["step"] > a["step"] for a, b in zip(starts, starts[1:]))
    finished = [e for e in run.events() if e["event"] == "finished"][-1]
    # the same run straight through, here (same spec, same supervisor, no stops)
    spec = run.spec()
    ref = RunDir.create(tmp_path / "ref", replace(spec, params={**spec.params, "sleep": 0}))
    final = command_run.run(ref)
    assert final == finished["metrics"] and set(final) == {"train_loss", "val_loss"}
    mine = torch.load(run.path / "ckpt.pt", weights_only=True)
    theirs = torch.load(ref.path / "ckpt.pt", weights_only=True)
    assert mine["step"] == theirs["step"] == 420
    for key, tensor in theirs["model"].items():
        assert torch.equal(tensor, mine["model"][key]), key


def test_timeout_without_resume_exit_1_and_injection(tmp_path):
    slow = tmp_path / "slow.sh"
    slow.write_text("echo 'epoch 1 of 100' >&2\necho 'epoch 2 of 100, still going' >&2\nsleep 600\n")
    fail = tmp_path / "fail.sh"
    fail.write_text("echo 'loading data' >&2\necho 'Error: cannot open /nope/data.bin' >&2\nexit 1\n")
    dump = tmp_path / "argv.py"
    dump.write_text("import json, sys\njson.dump(sys.argv[1:], open(sys.argv[-1] + '/argv.json', 'w'))\n")
    (tmp_path / "s.toml").write_text(f"""
name = "cmdend"
[defaults]
workload = "command"
time = "00:01:00"
cpus = 1
mem = "300M"
[[run]]
command = ["bash", "{slow}"]
[[run]]
command = ["bash", "{fail}"]
[[run]]
command = ["{{python}}", "{dump}", "{{value}}", "{{run_dir}}"]
value = "; rm -rf ~"
""")
    root = tmp_path / "runs"
    plan = json.loads(jobkit("submit", tmp_path / "s.toml", "--json", root=root).stdout)
    paths = [Path(r["path"]) for r in plan["runs"]]
    wait_until(root, all_ended, 240)
    slow_s, fail_s, dump_s = (summarize(RunDir(p)) for p in paths)
    assert slow_s.state == "TIMEOUT" and "epoch 2 of 100, still going" in slow_s.error, slow_s.error
    (timeout,) = [e for e in RunDir(paths[0]).events() if e["event"] == "timeout"]
    assert timeout["stderr_tail"][:2] == ["epoch 1 of 100", "epoch 2 of 100, still going"]  # then maybe bash on the signal
    assert fail_s.state == "FAILED" and fail_s.error == "command exited with code 1: Error: cannot open /nope/data.bin"
    (failed,) = [e for e in RunDir(paths[1]).events() if e["event"] == "failed"]
    assert failed["stderr_tail"] == ["loading data", "Error: cannot open /nope/data.bin"]
    assert dump_s.state == "COMPLETED"
    assert json.loads((paths[2] / "argv.json").read_text()) == ["; rm -rf ~", str(paths[2].resolve())]
