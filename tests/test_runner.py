"""The runner: any number of signals and kills, and the run ends with bit-identical weights."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobkit import testing
from jobkit.run import runner
from jobkit.store import RunDir


def make_run(root: Path, **overrides) -> RunDir:
    return testing.make_run(root, "toy", {"preset": "tiny", **overrides})


def final_state(run: RunDir) -> dict:
    state, info = run.load_checkpoint()
    assert info.step == state["step"]
    return state


assert_same_tensors = testing.assert_same


def train_losses(run: RunDir) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run.tb_dir))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars("train/loss")}


def test_in_process_signal_stops_at_a_step_boundary_and_resumes_bit_exact(tmp_path):
    ref = make_run(tmp_path / "a", steps=30)
    runner.run(ref)
    run = make_run(tmp_path / "b", steps=30)
    for stop_at in (7, 13, 21):
        with pytest.raises(runner.Stopped) as stopped:
            runner.run(run, on_step=testing.stop_at_steps([stop_at]))
        assert stopped.value.step == stop_at
    runner.run(run)
    assert_same_tensors(final_state(ref)["workload"], final_state(run)["workload"])
    assert_same_tensors(final_state(ref)["rng"], final_state(run)["rng"])
    assert train_losses(ref) == train_losses(run)
    kinds = [e["event"] for e in run.events()]
    assert kinds.count("started") == 4 and kinds[-1] == "finished"


def _jobkit_run(run: RunDir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobkit", "run", str(run.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(pred, timeout: float = 60.0, every: float = 0.002) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def _started_step(run: RunDir, attempt: int) -> bool:
    return sum(e.get("event") == "started" for e in run.events()) >= attempt


@pytest.mark.slow
def test_sigusr2_and_kill9_any_number_of_times_bit_identical(tmp_path):
    """K=4 interruptions at random steps: SIGUSR2 twice, kill -9 twice (one of them mid checkpoint write)."""
    rnd = random.Random(1234)
    big = dict(steps=60, dim=256, hidden=2048, checkpoint_every=1, log_every=1, eval_every=20)
    ref = make_run(tmp_path / "a", **big)
    runner.run(ref)
    run = make_run(tmp_path / "b", **big)

    attempt = 0
    for how in ("usr2", "kill-during-write", "usr2", "kill"):
        attempt += 1
        proc = _jobkit_run(run)
        _wait_for(lambda: _started_step(run, attempt))
        start = run.events()[-1]["step"]
        target = start + rnd.randint(2, 8)
        _wait_for(lambda: any(e.get("event") == "checkpoint" and e["step"] >= target for e in run.events()))
        if how == "usr2":
            proc.send_signal(signal.SIGUSR2)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == runner.EXIT_STOPPED, out
            assert run.events()[-1]["event"] == "stopped"
        elif how == "kill-during-write":
            tmp_glob = lambda: list(run.checkpoint_dir.glob(".step-*.tmp"))  # noqa: E731
            _wait_for(lambda: bool(tmp_glob()), every=0.0005)
            proc.kill()
            proc.communicate(timeout=60)
            assert tmp_glob(), "the kill was meant to land during a checkpoint write"
        else:
            proc.kill()
            proc.communicate(timeout=60)
    proc = _jobkit_run(run)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert not list(run.checkpoint_dir.glob(".*.tmp"))
    assert_same_tensors(final_state(ref)["workload"], final_state(run)["workload"])
    assert train_losses(ref) == train_losses(run)
    assert sum(e.get("event") == "started" for e in run.events()) == 5
    assert len(list(run.checkpoint_dir.glob("step-*.pt"))) == 2  # keep_checkpoints


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    run = make_run(tmp_path, steps=20, checkpoint_every=5, keep_checkpoints=3)
    runner.run(run)
    newest, previous = run.checkpoints()[:2]
    path = run.checkpoint_dir / newest.file
    path.write_bytes(path.read_bytes()[: newest.size // 2])  # truncated, as by a full disk
    state, info = run.load_checkpoint()
    assert info.step == previous.step == state["step"]
    rejected = [e for e in run.events() if e["event"] == "checkpoint_rejected"]
    assert rejected[-1]["file"] == newest.file and "size" in rejected[-1]["problem"]
    from jobkit.observe.runstate import summarize
    assert any(newest.file in w and "rejected" in w for w in summarize(run).warnings)
    # corrupted in place with the same size: the sha256 catches it
    data = bytearray((run.checkpoint_dir / previous.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (run.checkpoint_dir / previous.file).write_bytes(bytes(data))
    state, info = run.load_checkpoint()
    assert info.step == run.checkpoints()[2].step
    assert "sha256" in run.events()[-1]["message"]


def test_nan_loss_fails_clearly_and_keeps_the_last_good_checkpoint(tmp_path):
    run = make_run(tmp_path, steps=30, checkpoint_every=10, fail_at=25)
    with pytest.raises(runner.RunFailed, match="loss is nan at step 26.*step 20\\) is kept"):
        runner.run(run)
    assert run.checkpoints()[0].step == 20
    assert run.events()[-1]["event"] == "failed"


def test_a_run_that_never_progresses_stops_instead_of_looping(tmp_path):
    run = make_run(tmp_path, steps=10)
    for _ in range(3):
        run.event("requeued", step=0, reason="timeout")
    with pytest.raises(runner.RunFailed, match="no progress"):
        runner.run(run)


def test_finished_run_started_again_changes_nothing(tmp_path):
    run = make_run(tmp_path, steps=10)
    first = runner.run(run)
    before = run.checkpoints()
    assert runner.run(run) == run.metrics()
    assert run.checkpoints() == before and first["val_loss"] == run.metrics()["val_loss"]


def test_segment_deadline_stops_before_the_time_limit(tmp_path):
    run = make_run(tmp_path, steps=40, step_sleep=0.05)
    host = runner.Host(executor="local", time_limit_s=1.5, margin_s=0.5)
    with pytest.raises(runner.Stopped, match="time limit"):
        runner.run(run, host)
    step = run.checkpoints()[0].step
    assert 5 <= step < 40
    runner.run(run)
    assert run.events()[-1]["event"] == "finished"


def test_run_folder_is_private(tmp_path):
    run = make_run(tmp_path, steps=5)
    runner.run(run)
    for path in [run.path, run.checkpoint_dir, run.spec_path, run.checkpoint_dir / run.checkpoints()[0].file]:
        assert not path.stat().st_mode & 0o002, f"{path} is world-writable"


def test_an_early_time_limit_warning_is_used_up_but_a_preemption_is_not():
    host = runner.Host(executor="slurm", time_limit_s=60, margin_s=15, started=1000.0)  # deadline 1045
    assert host.stop_now(signal_at=1005.0, now=1005.0)  # far from the limit: preemption, stop now
    assert not host.stop_now(signal_at=1015.0, now=1020.0)  # the warning, 30 s early: keep training
    assert host.stop_now(signal_at=1015.0, now=1035.0)  # ...for defer_s at most
    assert host.stop_now(signal_at=1040.0, now=1045.0)  # and never past the deadline
    assert runner.Host().stop_now(signal_at=5.0, now=5.0)  # foreground: no deadline, stop at once
