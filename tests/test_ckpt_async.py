"""Asynchronous periodic checkpoints (`jobkit/run/ckptwriter.py`): the loop copies, a thread writes,
one at a time, in order; an error in the background reaches the loop; a kill -9 mid-write leaves the
last complete checkpoint; async and sync runs write the same checkpoints."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from jobkit import diskspace, testing
from jobkit.run import ckptwriter, runner
from jobkit.store import RunDir

REPO = Path(__file__).resolve().parents[1]


def test_snapshot_is_a_deep_copy_on_cpu_that_keeps_types_and_shared_tensors():
    w = torch.arange(6, dtype=torch.float32)
    state = {"model": OrderedDict(w=w, tied=w), "opt": {"state": {0: {"step": torch.tensor(3.0)}},
                                                        "param_groups": [{"lr": 0.1, "params": [0]}]},
             "pos": (1, [2, 3]), "name": "x"}
    copied = ckptwriter.snapshot(state)
    w.add_(100)  # the loop goes on changing its tensors in place
    state["opt"]["param_groups"][0]["lr"] = 9.0
    assert torch.equal(copied["model"]["w"], torch.arange(6, dtype=torch.float32))
    assert copied["model"]["w"] is copied["model"]["tied"]  # shared stays shared (tied weights)
    assert isinstance(copied["model"], OrderedDict)
    assert copied["opt"]["param_groups"][0]["lr"] == 0.1 and copied["pos"] == (1, [2, 3])
    assert copied["model"]["w"].device.type == "cpu"
    pool: dict = {}
    first = ckptwriter.snapshot(state, pool)
    w.add_(1)
    second = ckptwriter.snapshot(state, pool)  # the next snapshot refills the same buffers
    assert second["model"]["w"] is first["model"]["w"] and torch.equal(second["model"]["w"], w)


def test_warm_makes_the_buffers_off_the_loop_and_the_first_snapshot_only_copies_into_them(tmp_path):
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 10})
    w = torch.arange(6, dtype=torch.float32)
    state = {"model": OrderedDict(w=w, tied=w), "opt": {"m": torch.ones(3, 2)}, "step": 4}
    writer = ckptwriter.CheckpointWriter(run, keep=2)
    writer.warm(state)
    writer.wait()
    warmed = {k: b.data_ptr() for k, b in writer._pool.items()}
    assert set(warmed) == {("model", "w"), ("opt", "m")}  # a tied tensor gets one buffer
    w.add_(1)
    writer.save(5, state, "periodic", True)
    writer.wait()
    assert {k: b.data_ptr() for k, b in writer._pool.items()} == warmed  # filled in place, nothing allocated
    loaded, info = run.load_checkpoint()
    assert info.step == 5 and torch.equal(loaded["model"]["w"], w) and torch.equal(loaded["opt"]["m"], torch.ones(3, 2))
    sync = ckptwriter.CheckpointWriter(run, keep=2, background=False)
    sync.warm(state)  # a run that writes in the loop holds no copy
    assert sync._thread is None and not sync._pool


def test_a_run_with_periodic_checkpoints_warms_its_buffers_after_the_first_step(tmp_path, monkeypatch):
    warmed: list[int] = []
    real = ckptwriter.CheckpointWriter.warm
    monkeypatch.setattr(ckptwriter.CheckpointWriter, "warm",
                        lambda self, state: (warmed.append(state["step"]), real(self, state)))
    runner.run(testing.make_run(tmp_path / "a", "toy", {"preset": "tiny", "steps": 6, "checkpoint_every": 3}))
    assert warmed == [1]
    runner.run(testing.make_run(tmp_path / "b", "toy", {"preset": "tiny", "steps": 6, "checkpoint_every": 0,
                                                        "checkpoint_minutes": 0}))
    assert warmed == [1]  # no periodic checkpoint planned: no copy held


class _SlowSaves:
    """Stands in for RunDir.save_checkpoint: records the order and how many writes overlap."""

    def __init__(self, run: RunDir, seconds: float, fail_at: int | None = None) -> None:
        self.real, self.seconds, self.fail_at = run.save_checkpoint, seconds, fail_at
        self.active, self.most, self.order = 0, 0, []
        self.lock = threading.Lock()

    def __call__(self, step, state, keep=2):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            time.sleep(self.seconds)
            if step == self.fail_at:
                raise diskspace.NoSpace(Path("/nowhere"), 10**9)
            self.order.append(step)
            return self.real(step, state, keep)
        finally:
            with self.lock:
                self.active -= 1


def test_writes_happen_in_order_one_at_a_time_and_the_loop_only_pauses_to_copy(tmp_path):
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 10})
    saves = _SlowSaves(run, 0.2)
    run.save_checkpoint = saves
    writer = ckptwriter.CheckpointWriter(run, keep=10)
    pauses = []
    for step in (1, 2, 3):
        pauses.append(writer.save(step, {"step": step, "w": torch.full((4,), float(step))}, "periodic", True))
        assert writer.in_flight  # the loop got control back while its checkpoint is written
    writer.save(4, {"step": 4, "w": torch.zeros(4)}, "final", False)
    assert saves.order == [1, 2, 3, 4] and saves.most == 1
    assert pauses[0] < 0.2 <= min(pauses[1:])  # the next snapshot waits for the write in flight
    events = [e for e in run.events() if e["event"] == "checkpoint"]
    assert [(e["step"], e["mode"]) for e in events] == [(1, "async"), (2, "async"), (3, "async"), (4, "sync")]
    assert all(e["seconds"] >= 0.2 and e["size"] == (run.checkpoint_dir / e["file"]).stat().st_size for e in events)
    assert events[0]["pause_s"] < events[0]["seconds"]
    state, info = run.load_checkpoint()
    assert info.step == 4 and torch.equal(state["w"], torch.zeros(4))


def test_an_error_in_the_background_is_raised_in_the_loop_once(tmp_path):
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 10})
    run.save_checkpoint = _SlowSaves(run, 0.05, fail_at=2)
    writer = ckptwriter.CheckpointWriter(run, keep=2)
    writer.save(1, {"step": 1}, "periodic", True)
    writer.save(2, {"step": 2}, "periodic", True)
    writer._thread.join()
    with pytest.raises(diskspace.NoSpace):
        writer.raise_error()
    writer.raise_error()  # raised once: it is the loop's now
    assert run.checkpoints()[0].step == 1


def test_a_full_disk_in_the_background_fails_the_run_at_the_next_step_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch):
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 40, "checkpoint_every": 5})
    real = RunDir.save_checkpoint
    seen: list[int] = []

    def save(self, step, state, keep=2):
        seen.append(step)
        if step == 10:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, step, state, keep)

    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    with pytest.raises(runner.RunFailed, match="no space left on "):
        runner.run(run)
    failed = [e for e in run.events() if e["event"] == "failed"][-1]
    assert failed["fault"] == "no_space"
    assert run.checkpoints()[0].step == 5 and seen[-1] == 10  # nothing written after the failed one


@pytest.mark.parametrize("workload,raw", [
    ("toy", {"preset": "tiny", "steps": 40, "checkpoint_every": 7}),
])
def test_async_and_sync_runs_write_the_same_checkpoints_and_resume_bit_exactly(tmp_path, workload, raw):
    a = testing.make_run(tmp_path / "a", workload, raw)
    b = testing.make_run(tmp_path / "b", workload, {**raw, "async_checkpoint": False})
    runner.run(a)
    runner.run(b)
    modes = {e["mode"] for e in a.events() if e["event"] == "checkpoint" and e["reason"] == "periodic"}
    assert modes == {"async"}
    assert {e["mode"] for e in b.events() if e["event"] == "checkpoint"} == {"sync"}
    for info in a.checkpoints():
        sa = torch.load(a.checkpoint_dir / info.file, weights_only=True)
        sb = torch.load(b.checkpoint_dir / info.file, weights_only=True)
        testing.assert_same(sa, sb)
    # stopped at several steps and resumed (periodic checkpoints in the background in between)
    testing.check_resume_through_runner(tmp_path / "r", workload, raw, stop_at=[5, 13, 22])


_CHILD = r"""
import sys, torch
from pathlib import Path
from jobkit.run import ckptwriter
from jobkit.store import RunDir
run = RunDir(Path(sys.argv[1]))
writer = ckptwriter.CheckpointWriter(run, keep=2)
w0 = torch.randn(2_000_000)
state = {"w0": w0, "w": w0.clone()}
step = 0
while True:
    step += 1
    state["w"].add_(1.0)
    state["step"] = step
    writer.save(step, state, "periodic", True)
    print(step, flush=True)
"""


def test_kill_9_during_background_writes_leaves_the_last_complete_checkpoint(tmp_path):
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 10})
    for delay in (0.0, 0.05, 0.13, 0.31):  # after the child's third snapshot: writes in flight
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(run.path)], stdout=subprocess.PIPE, text=True,
                                 cwd=REPO)
        for _ in range(3):
            child.stdout.readline()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        loaded = run.load_checkpoint()
        if loaded is None:
            continue
        state, info = loaded  # verified: size and sha256 as recorded, and loads
        assert state["step"] == info.step  # a consistent snapshot: the weights of that very step
        assert torch.allclose(state["w"] - state["w0"], torch.full_like(state["w"], float(info.step)))
        assert not [e for e in run.events() if e["event"] == "checkpoint_rejected"]
    assert run.checkpoints(), "no checkpoint completed in the time given"
    assert not list(run.checkpoint_dir.glob(".*.tmp"))  # load_checkpoint removed what the kill left
