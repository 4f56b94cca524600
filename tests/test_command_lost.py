"""A script that ignores the stop signal (no cluster): it dies of the forwarded signal or is killed after
the wait; a resumable run goes back to its last checkpoint and says how much work was lost, a run that
is not resumable is reported as restarted from scratch, and the next start begins where it says."""
from __future__ import annotations

import json

import pytest

from jobkit.command import supervise
from jobkit.observe.runstate import summarize
from jobkit.observe.status_table import _note
from jobkit.run import runner
from test_command import make_command_run

# Prints `iter N: loss X` every 50 ms, saves ckpt.json every 10 iters, never handles a signal;
# with --resume it continues from ckpt.json. DEAF=1: ignores SIGUSR2, 100 ms a step (killed after the wait).
SCRIPT = """
import json, os, signal, sys, time
out = sys.argv[1]
ckpt = os.path.join(out, 'ckpt.json')
start = json.load(open(ckpt))['iter'] if '--resume' in sys.argv else 0
open(os.path.join(out, 'starts.log'), 'a').write(f'{start}\\n')
if os.environ.get('DEAF'):
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
for it in range(start + 1, 81):
    print(f'iter {it}: loss {1 / it:.4f}', flush=True)
    if it % 10 == 0:
        time.sleep(0.2)  # its line is read before the file is written: the checkpoint's step is exact
        json.dump({'iter': it}, open(ckpt + '.tmp', 'w'))
        os.replace(ckpt + '.tmp', ckpt)
    time.sleep(0.1 if os.environ.get('DEAF') else 0.05)
"""
KEYS = ("steps = 80\nprogress = 'iter (?P<step>\\d+): loss (?P<loss>[\\d.]+)'\n"
        'resume_args = ["--resume"]\nresume_when = "{run_dir}/ckpt.json"\n')


def stop_early(run) -> runner.Stopped:
    """One start that jobkit stops 2 s in (its own deadline: time limit 3 s, margin 1 s)."""
    with pytest.raises(runner.Stopped) as caught:
        supervise.run(run, runner.Host(time_limit_s=3.0, margin_s=1.0))
    return caught.value


def lost_events(run) -> list[dict]:
    return [e for e in run.events() if e["event"] == "work_lost"]


def starts(run) -> list[int]:
    return [int(x) for x in (run.path / "starts.log").read_text().split()]


@pytest.mark.parametrize("deaf", [False, True], ids=["dies_of_the_signal", "killed_after_the_wait"])
def test_a_resumable_script_goes_back_to_its_checkpoint_and_says_what_was_lost(tmp_path, monkeypatch, deaf):
    if deaf:
        monkeypatch.setenv("DEAF", "1")
    run = make_command_run(tmp_path, SCRIPT, name="deaf" if deaf else "plain", extra=(
        'resumable = true\ncheckpoint = "{run_dir}/ckpt.json"\n' + KEYS))
    stop = stop_early(run)
    (lost,) = lost_events(run)
    saved = json.loads((run.path / "ckpt.json").read_text())["iter"]  # what the script will resume from
    ckpts = [e for e in run.events() if e["event"] == "checkpoint"]
    assert ckpts and lost["step"] == ckpts[-1]["step"] and lost["checkpoint"] == "ckpt.json"
    assert lost["step"] == saved <= lost["reached"]  # the step printed before the file was written
    assert lost["lost_steps"] == lost["reached"] - lost["step"] and lost["lost_s"] > 0
    assert lost["cause"] == ("the script killed after the wait" if deaf else "the script died of SIGUSR2")
    assert stop.step == lost["step"] and f"begins at step {lost['step']}" in stop.reason
    s = summarize(run)
    assert s.step == lost["step"]  # not the step of the lost work
    assert s.work_lost == (f"{lost['cause']} at step {lost['reached']}: resumes from the checkpoint at step "
                           f"{lost['step']}, {lost['lost_steps']} steps ({lost['lost_s']:.0f} s) lost")
    assert s.work_lost in _note(s)  # the status table's note column
    monkeypatch.delenv("DEAF", raising=False)
    supervise.run(run)
    assert starts(run) == [0, saved]
    started = [e for e in run.events() if e["event"] == "started"]
    assert started[-1]["step"] == lost["step"] and started[-1]["command"][-1] == "--resume"
    s = summarize(run)
    assert s.state == "COMPLETED" and s.step == 80


def test_a_script_that_is_not_resumable_is_reported_as_restarted_from_scratch(tmp_path):
    run = make_command_run(tmp_path, SCRIPT, name="scratch", extra="resumable = false\n" + KEYS.split("resume_")[0])
    stop = stop_early(run)
    (lost,) = lost_events(run)
    assert lost["from_scratch"] is True and lost["step"] == 0 and lost["lost_steps"] == lost["reached"] > 0
    assert stop.step == 0
    s = summarize(run)
    assert s.step == 0 and s.work_lost.startswith("restarted from scratch (resumable = false): "
                                                  f"the script died of SIGUSR2 at step {lost['reached']}")
    supervise.run(run)
    assert starts(run) == [0, 0]
    assert [e["step"] for e in run.events() if e["event"] == "started"] == [0, 0]
    assert summarize(run).state == "COMPLETED"


def test_without_a_watched_checkpoint_the_loss_is_unknown_and_said_so(tmp_path):
    run = make_command_run(tmp_path, SCRIPT, name="blind", extra="resumable = true\n" + KEYS)
    stop_early(run)
    (lost,) = lost_events(run)
    assert lost["lost_steps"] is None and lost["step"] == lost["reached"]
    assert "resumes from the script's own last checkpoint" in summarize(run).work_lost


def test_a_script_that_exits_3_loses_nothing(tmp_path):
    script = SCRIPT.replace("import json,", "import json, signal,").replace(
        "if os.environ.get('DEAF'):", "signal.signal(signal.SIGUSR2, lambda *a: sys.exit(3))\nif False:")
    run = make_command_run(tmp_path, script, name="clean", extra=(
        'resumable = true\ncheckpoint = "{run_dir}/ckpt.json"\n' + KEYS))
    stop_early(run)
    assert lost_events(run) == [] and summarize(run).work_lost is None


@pytest.mark.parametrize("reached", [35, 0], ids=["past_its_checkpoint", "never_past_it"])
def test_the_requeue_loop_guard_counts_work_done_past_the_checkpoint(tmp_path, reached):
    run = make_command_run(tmp_path, SCRIPT, name="loop", extra=(
        'resumable = true\ncheckpoint = "{run_dir}/ckpt.json"\n' + KEYS))
    for _ in range(3):  # three starts killed by preemptions, each back to step 0 (no checkpoint yet)
        run.event("started", step=0)
        run.event("work_lost", step=0, reached=reached, lost_steps=reached, lost_s=1.0, from_scratch=False,
                  cause="the script died of SIGUSR2", checkpoint=None)
        run.event("requeued", step=0, reason="preemption")
    if reached:
        supervise.run(run)  # each got somewhere: not a loop
        assert summarize(run).state == "COMPLETED"
    else:
        with pytest.raises(runner.RunFailed, match="no progress: requeued 3 times at step 0"):
            supervise.run(run)
