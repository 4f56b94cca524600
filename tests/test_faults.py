"""Faults named as such: a full disk (a real tmpfs), a failing write anywhere, a rejected checkpoint,
a run folder removed while queued, a malformed events.jsonl — and a short kill -9 soak."""
from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobkit import testing
from jobkit.cli import cli
from jobkit.observe.runstate import summarize
from jobkit.run import faults, runner
from jobkit.store import RunDir

REPO = Path(__file__).resolve().parents[1]
BIG = {"preset": "tiny", "steps": 20, "checkpoint_every": 5, "eval_every": 5, "keep_checkpoints": 1,
       "dim": 256, "hidden": 1024}


def _checkpoint_bytes(params: dict) -> int:
    """What one checkpoint of this toy run takes on disk, measured (not guessed)."""
    import torch

    from jobkit.plan import params as params_mod
    from jobs.toy.workload import Toy

    toy = Toy(params_mod.resolve(Toy.Params, Toy.presets, params))
    toy.setup(Path("."), torch.device("cpu"))
    toy.train_step(0)  # Adam's moments exist after the first step
    buf = io.BytesIO()
    torch.save({"workload": toy.state_dict()}, buf)
    return buf.tell()


@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of its own (needs root and mount permission; skipped with the reason otherwise)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    size = 4 * _checkpoint_bytes(BIG) + 2_000_000
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True,
                       capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {detail.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path, leave: int) -> Path:
    """A filler file that leaves `leave` bytes free on the file system of `mnt`."""
    filler = mnt / "filler"
    free = faults.free_bytes(mnt)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.parametrize("precheck", [True, False], ids=["room-checked-first", "write-fails-mid-file"])
def test_full_disk_names_the_fault_keeps_the_checkpoint_and_resumes_once_there_is_room(small_fs, monkeypatch,
                                                                                         precheck):
    if not precheck:  # let torch.save hit the full disk itself (its "unexpected pos" RuntimeError)
        monkeypatch.setattr(faults, "has_room", lambda path, needed: True)
    size = _checkpoint_bytes(BIG)
    run = testing.make_run(small_fs / "runs", "toy", BIG)
    filler = _fill(small_fs, leave=int(1.5 * size) + faults.RESERVE_BYTES)
    with pytest.raises(runner.RunFailed, match=r"no space left on .*\(free .*, needed ~.*\)"):
        runner.run(run)
    failed = [e for e in run.events() if e["event"] == "failed"][-1]
    assert failed["error"].startswith(f"no space left on {small_fs} (free ") and failed["fault"] == "no_space"
    assert run.checkpoints()[0].step == 5  # the last verified checkpoint is still the latest
    assert not list(run.path.rglob(".*.tmp"))
    status = CliRunner().invoke(cli, ["status", "--json", "--root", str(small_fs / "runs")])
    (row,) = json.loads(status.stdout)["runs"]
    assert row["state"] == "FAILED" and row["error"].startswith("no space left on ")
    table = CliRunner().invoke(cli, ["status", "--root", str(small_fs / "runs")])
    assert "no space left on" in table.stdout
    filler.unlink()  # room again: the same command continues from step 5 to the end
    runner.run(run)
    assert run.checkpoints()[0].step == 20 and run.events()[-1]["event"] == "finished"
    assert not (run.path / faults.RESERVE_NAME).exists()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["progress", "event", "samples", "tensorboard", "quota"])
def test_a_full_disk_anywhere_the_run_writes_is_named(tmp_path, monkeypatch, where):
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 12, "checkpoint_every": 4,
                                             "sample_every": 6})
    if where == "progress":
        monkeypatch.setattr(RunDir, "write_progress", _enospc)
    elif where == "event":
        real = RunDir.event

        def event(self, name, /, **fields):
            if name == "checkpoint":
                _enospc()
            return real(self, name, **fields)
        monkeypatch.setattr(RunDir, "event", event)
    elif where == "samples":
        monkeypatch.setattr("jobs.toy.workload.Toy.artifacts", lambda self, step, writer, out: _enospc())
    elif where == "tensorboard":
        monkeypatch.setattr("torch.utils.tensorboard.SummaryWriter.add_scalar", _enospc)
    else:
        def quota(*args, **kwargs):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        monkeypatch.setattr(RunDir, "write_metrics", quota)
    with pytest.raises(runner.RunFailed, match="no space left on "):
        runner.run(run)
    assert summarize(run).error.startswith("no space left on ")
    assert summarize(run).state == "FAILED"


def test_checkpoint_with_a_wrong_hash_is_rejected_and_status_warns(tmp_path):
    run = testing.make_run(tmp_path, "toy", {"preset": "tiny", "steps": 20, "checkpoint_every": 5,
                                             "keep_checkpoints": 2})
    runner.run(run)
    newest, previous = run.checkpoints()[:2]
    data = bytearray((run.checkpoint_dir / newest.file).read_bytes())
    data[len(data) // 3] ^= 0x01  # same size, one bit flipped
    (run.checkpoint_dir / newest.file).write_bytes(bytes(data))
    state, info = run.load_checkpoint()
    assert info.step == previous.step
    (rejected,) = [e for e in run.events() if e["event"] == "checkpoint_rejected"]
    assert rejected["file"] == newest.file and rejected["problem"] == "sha256 mismatch"
    assert "rejected" in summarize(run).warnings[-1]
    table = CliRunner().invoke(cli, ["status", "--root", str(tmp_path)])
    assert "warning: checkpoint" in table.stdout


def test_a_run_folder_removed_while_queued_ends_the_job_with_one_line_and_touches_nothing(tmp_path, capfd):
    from jobkit.run.job import TrainJob

    run = testing.make_run(tmp_path, "toy", {"preset": "tiny"})
    job = TrainJob(run.path)
    import shutil
    shutil.rmtree(run.path)
    before = sorted(tmp_path.rglob("*"))
    assert job() == {}
    assert sorted(tmp_path.rglob("*")) == before
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0 and "no longer exists" in err and str(run.path) in err


def test_malformed_and_truncated_event_lines_are_skipped_with_a_warning(tmp_path):
    run = testing.make_run(tmp_path / "runs", "toy", {"preset": "tiny", "steps": 10, "checkpoint_every": 5})
    runner.run(run)
    good = run.events_path.read_bytes()
    lines = good.splitlines(keepends=True)
    bad = (lines[0] + b'{"event": "checkpoint", "step": \n' + b"not json at all\n" + b"[1, 2]\n"
           + b'{"event": "started", "step": "many", "t": 1}\n' + b"\x00\x00\x00\n" + b"".join(lines[1:])
           + b'{"t": 1, "event": "alar')  # torn last line, no newline
    run.events_path.write_bytes(bad)
    s = summarize(run)
    assert s.state == "COMPLETED" and s.step == 10
    assert sum("malformed or truncated" in w for w in s.warnings) == 5 and any("unusable" in w for w in s.warnings)
    status = CliRunner().invoke(cli, ["status", "--json", "--root", str(tmp_path / "runs")])
    assert status.exit_code == 0, status.output
    collect = CliRunner().invoke(cli, ["collect", "t", "--root", str(tmp_path / "runs"),
                                       "--out", str(tmp_path / "report")])
    assert collect.exit_code == 0 and "Traceback" not in collect.output, collect.output
    run.event("note")  # the torn line stays one skippable line: the next append is not swallowed
    assert run.events()[-1]["event"] == "note"


def test_windows_line_endings_are_one_newline_and_non_utf8_names_the_byte(tmp_path):
    from jobs.charlm.data import DataError, check_corpus, read_text

    crlf = tmp_path / "novel.txt"
    crlf.write_bytes(b"It was a dark night.\r\nThe end.\r\n")
    assert read_text(crlf) == "It was a dark night.\nThe end.\n"
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"abc caf\xe9")
    for fn in (read_text, check_corpus):
        with pytest.raises(DataError, match="byte 7"):
            fn(latin)


def test_check_data_false_skips_the_check_warns_and_keeps_the_run_id(tmp_path):
    sweep = tmp_path / "s.toml"
    base = '[[run]]\nworkload = "charlm"\ndata = "/only/on/compute/nodes.txt"\n'
    sweep.write_text(base + "check_data = false\n")
    result = CliRunner().invoke(cli, ["submit", str(sweep), "--executor", "local", "--dry-run", "--json",
                                      "--root", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (planned,) = json.loads(result.stdout)["runs"]
    assert "check_data = false" in planned["warning"]
    table = CliRunner().invoke(cli, ["submit", str(sweep), "--executor", "local", "--dry-run",
                                     "--root", str(tmp_path / "runs")])
    assert "warning" in table.stderr and "check_data = false" in table.stderr
    sweep.write_text(base)
    checked = CliRunner().invoke(cli, ["submit", str(sweep), "--executor", "local", "--dry-run",
                                       "--root", str(tmp_path / "runs")])
    assert checked.exit_code == 2 and planned["run_id"] in checked.stderr  # same identity either way
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_short_soak_kill_9_at_random_instants_ends_bit_identical(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--kills", "4", "--seed", "1",
                          "--root", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["kills"] == 4 and result["bit_identical"] and result["temp_files_left"] == 0


@pytest.mark.slurm
def test_scancel_kill_then_resume_ends_bit_identical(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--kills", "0", "--slurm-kills", "1",
                          "--root", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["slurm_kills"] == 1 and result["slurm_bit_identical"]


def test_a_stop_near_the_time_limit_is_a_preemption_when_slurm_says_it_preempted_the_job(monkeypatch):
    """Near the limit the USR2 is ambiguous; Slurm's PreemptTime decides. Far from it, or on jobkit's
    own deadline, Slurm is not asked."""
    import time

    from jobkit import slurm
    from jobkit.run import job

    asked: list[str] = []
    answer = {"preempted": True}
    monkeypatch.setattr(slurm, "preempted", lambda job_id, timeout=10: asked.append(job_id) or answer["preempted"])
    near = runner.Host(executor="slurm", job_id="85_5", time_limit_s=300, margin_s=60, started=time.time() - 250)
    far = runner.Host(executor="slurm", job_id="85_6", time_limit_s=300, margin_s=60, started=time.time() - 60)
    signal_stop = runner.Stopped(10, "signal SIGUSR2")
    assert job._classify(signal_stop, near, chunked=True) == "preemption"
    answer["preempted"] = False
    assert job._classify(signal_stop, near, chunked=True) == "segment"
    assert job._classify(signal_stop, near, chunked=False) == "timeout"
    assert asked == ["85_5"] * 3
    assert job._classify(signal_stop, far, chunked=True) == "preemption"
    assert job._classify(runner.Stopped(10, "time limit of this segment"), near, chunked=True) == "segment"
    assert asked == ["85_5"] * 3  # neither far from the limit nor on jobkit's own deadline
