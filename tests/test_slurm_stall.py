"""Live: a hung run is found within its stall timeout, leaves its stacks, is requeued by Slurm and
finishes once the hang is gone — a charlm run whose data read blocks, one rank of a 2-rank run, and a
command script that stops printing (issue 23, items 1-2)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from slurmtools import all_ended, assert_nothing_left, cancel_sweeps, jobkit, wait_until
from test_watchdog import silent_script

from jobkit.state import Event
from jobkit.store import RunDir

pytestmark = pytest.mark.slurm
SWEEPS = ("stall1", "stall2", "stallcmd")


@pytest.fixture(autouse=True)
def _cancel_leftovers():
    yield
    cancel_sweeps(SWEEPS)


CHARLM = """
name = "{name}"
[[run]]
workload = "charlm"
preset = "tiny"
steps = 260
eval_every = 130
checkpoint_every = 100
stall_timeout = "1m"
time = "00:10:00"
cpus = 1
mem = "1G"
{extra}
"""


def of(run: RunDir, kind: str) -> list[dict]:
    return [e for e in run.events() if e.get("event") == kind]


def stalled_then_unblocked(root: Path, block: Path) -> RunDir:
    """Wait for the stalled attempt's `requeued` event, remove the block, wait for the end; the run.
    (A script unblocked while the supervisor waits for it to stop could still finish in that attempt.)"""
    wait_until(root, lambda ss: bool(ss) and any(stall_requeues(RunDir(Path(s.path))) for s in ss), 420)
    block.unlink()
    (s,) = wait_until(root, all_ended, 420)
    assert s.state == "COMPLETED", s.error
    run = RunDir(Path(s.path))
    job = of(run, Event.STARTED)[0]["job_id"]
    assert_nothing_left(f"{job}/", job)  # nothing of the stalled attempt (nor of the last) on any node
    return run


def stall_requeues(run: RunDir) -> list[int]:
    """The steps of the requeues for a stall (the shared cluster may also preempt a test's job)."""
    return [e["step"] for e in of(run, Event.REQUEUED) if e["reason"] == "stall"]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_charlm_run_whose_data_read_blocks_is_requeued_with_its_stacks_and_finishes(tmp_path):
    block = tmp_path / "block"
    block.touch()
    sweep = tmp_path / "stall1.toml"
    sweep.write_text(CHARLM.format(name="stall1", extra=""))
    env = {**os.environ, "JOBKIT_TEST_BLOCK_READ": f"200:*:{block}"}
    jobkit("submit", sweep, root=tmp_path / "runs", env=env)
    run = stalled_then_unblocked(tmp_path / "runs", block)
    (stalled,) = of(run, Event.STALLED)
    assert stalled["step"] == 200 and stalled["rank"] == 0 and stalled["timeout_s"] == 60.0
    assert "blocking_read" in stalled["frames"]["0"]
    print(f"stalled after {stalled['t'] - stalled['last_progress_t']:.1f} s without a step (timeout 60 s)")
    assert stall_requeues(run) == [200]
    assert "in blocking_read" in (run.path / "stacks" / "attempt1-rank0.txt").read_text()
    starts = of(run, Event.STARTED)
    assert starts[0]["step"] == 0 and 200 in [e["step"] for e in starts[1:]]  # resumed from the stalled step
    assert len({e["job_id"] for e in starts}) == 1  # requeued: the same job
    assert not alive(starts[0]["pid"])
    shown = jobkit("logs", run.run_id, "--stacks", root=tmp_path / "runs").stdout
    assert "blocking_read" in shown


def test_one_rank_of_two_that_blocks_is_named_and_every_rank_exits(tmp_path, slurm_cluster):
    if "cpu" not in slurm_cluster.partition_names:
        pytest.skip("needs the two-node partition `cpu` (slurm/up.sh's university layout)")
    block = tmp_path / "block"
    block.touch()
    sweep = tmp_path / "stall2.toml"
    sweep.write_text(CHARLM.format(name="stall2", extra='nodes = 2\ntasks_per_node = 1\npartition = "cpu"\n'))
    env = {**os.environ, "JOBKIT_TEST_BLOCK_READ": f"200:1:{block}"}
    jobkit("submit", sweep, root=tmp_path / "runs", env=env)
    run = stalled_then_unblocked(tmp_path / "runs", block)
    (stalled,) = of(run, Event.STALLED)
    assert stalled["step"] == 200 and stalled["rank"] == 1, stalled
    assert json.loads((run.path / "stacks" / "attempt1-rank0.json").read_text())["waiting_on_peers"] is True
    assert "in blocking_read" in (run.path / "stacks" / "attempt1-rank1.txt").read_text()
    assert stall_requeues(run) == [200]
    first = of(run, Event.STARTED)[0]
    assert first["tasks"] == 2 and not [pid for _, pid in first["ranks"] if alive(pid)]


SILENT = silent_script(40, 21, 0.05)


def test_a_command_script_that_stops_printing_is_requeued_with_its_stacks_and_finishes(tmp_path):
    block = tmp_path / "block"
    block.touch()
    (tmp_path / "silent.py").write_text(SILENT)
    sweep = tmp_path / "stallcmd.toml"
    sweep.write_text(f'name = "stallcmd"\n[[run]]\nworkload = "command"\n'
                     f'command = ["{{python}}", "{tmp_path / "silent.py"}", "{block}"]\n'
                     'stall_timeout = "1m"\nstall_signal = "USR1"\ntime = "00:10:00"\ncpus = 1\nmem = "500M"\n')
    jobkit("submit", sweep, root=tmp_path / "runs")
    run = stalled_then_unblocked(tmp_path / "runs", block)
    (stalled,) = of(run, Event.STALLED)
    assert stalled["step"] == 20 and stalled["timeout_s"] == 60.0
    assert "wait_for_input" in (run.path / "stacks" / "attempt1-command.txt").read_text()
    assert len(stall_requeues(run)) == 1  # (its step: where a script that is not resumable starts again, 0)
