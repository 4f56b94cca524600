"""Nothing of a run left behind, without a cluster: the marker every batch script exports, a rank's
narrowed marker, finding and killing marked processes (a double-forked daemon included), and the command
supervisor ending its script's children on every exit path."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from jobkit.command import supervise
from jobkit.plan.batchscript import MARKER_SETUP, render_script
from jobkit.run import leftovers
from jobkit.run.stops import RunFailed
from test_command import make_command_run


def _marker_from_bash(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != leftovers.MARKER_ENV}
    done = subprocess.run(["bash", "-c", f'{MARKER_SETUP}; printf %s "$JOBKIT_RUN_MARKER"'],
                          env={**clean, **env}, capture_output=True, text=True, check=True)
    return done.stdout


def test_the_batch_script_marks_the_job_and_its_attempt():
    assert _marker_from_bash(SLURM_JOB_ID="17") == "17/0"
    assert _marker_from_bash(SLURM_JOB_ID="19", SLURM_ARRAY_JOB_ID="12", SLURM_ARRAY_TASK_ID="3",
                             SLURM_RESTART_COUNT="2") == "12_3/2"  # as submitit names an array task


def test_the_rendered_script_exports_the_marker_before_srun_and_ends_a_crashed_ranks_peers(tmp_path):
    one = render_script({"time": 5, "setup": ["module load x"]}, tmp_path, "python")
    lines = one.splitlines()
    srun = next(i for i, l in enumerate(lines) if l.startswith("srun"))
    assert lines.index("module load x") < lines.index(MARKER_SETUP) < srun
    assert "--kill-on-bad-exit" not in one
    two = render_script({"time": 5, "nodes": 2, "ntasks_per_node": 1}, tmp_path, "python")
    assert "--kill-on-bad-exit=1" in next(l for l in two.splitlines() if l.startswith("srun"))


def test_a_rank_narrows_the_marker_for_what_it_starts():
    env = {leftovers.MARKER_ENV: "12_3/2"}
    assert leftovers.mark_rank("12_3", 1, "slurm", env) == "12_3/2/rank1" == env[leftovers.MARKER_ENV]
    assert leftovers.mark_rank("12_3", 0, "slurm", env) == "12_3/2/rank0"  # re-narrowed, not stacked
    assert leftovers.mark_rank("40", 0, "slurm", {}) == "40/0/rank0"
    # the local executor's job inherits the submitter's environment: its own id, whatever that says
    assert leftovers.mark_rank("555", 0, "local", {leftovers.MARKER_ENV: "9/0/rank0"}) == "555/local/rank0"


def _spawn_detached(marker: str) -> int:
    """A double-forked, new-session `sleep` carrying `marker`: what linuxproc loses (re-parented away)."""
    read, write = os.pipe()
    code = ("import os,subprocess,sys\n"
            "p=subprocess.Popen(['sleep','300'],start_new_session=True,stdout=subprocess.DEVNULL)\n"
            f"os.write({write},str(p.pid).encode()); os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, leftovers.MARKER_ENV: marker},
                   pass_fds=(write,), check=True)
    os.close(write)
    pid = int(os.read(read, 64))
    os.close(read)
    return pid


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_marked_processes_are_found_and_killed_but_not_the_caller():
    base = f"t{uuid.uuid4().hex[:8]}/0"
    pid = _spawn_detached(f"{base}/rank0")
    other = _spawn_detached(f"{base}/rank1")  # another rank's: not this rank's to kill
    try:
        assert leftovers.marker_of(pid) == f"{base}/rank0"
        assert leftovers.marked(base) == sorted([pid, other])
        assert leftovers.marked(f"{base}/rank0") == [pid]
        assert leftovers.kill_marked(f"{base}/rank0") == [pid]
        for _ in range(100):
            if _gone(pid):
                break
            time.sleep(0.05)
        assert _gone(pid) and not _gone(other)
        assert leftovers.kill_marked(None) == []
    finally:
        for p in (pid, other):
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass


SPAWNS = """
import os, subprocess, sys
subprocess.Popen(["sleep", "300"])                                 # a plain child, in the script's group
subprocess.Popen(["sleep", "301"], start_new_session=True)         # its own session: out of the group
print("spawned", flush=True)
sys.exit(int(sys.argv[2]))
"""


@pytest.mark.parametrize("code", [0, 1])
def test_the_supervisor_ends_what_its_script_left_on_every_exit(tmp_path, monkeypatch, code):
    marker = f"t{uuid.uuid4().hex[:8]}/0/rank0"
    monkeypatch.setenv(leftovers.MARKER_ENV, marker)
    run = make_command_run(tmp_path, SPAWNS, args=("{run_dir}", str(code)))
    try:
        if code:
            with pytest.raises(RunFailed):
                supervise.run(run)
        else:
            supervise.run(run)
        # the group is killed by the supervisor; what left the group is the job's sweep by marker
        left = leftovers.marked(marker)
        assert all("301" in Path(f"/proc/{p}/cmdline").read_text() for p in left), left
        leftovers.kill_marked(marker)
        for _ in range(100):
            if not leftovers.marked(marker):
                break
            time.sleep(0.05)
        assert leftovers.marked(marker) == []
    finally:
        for p in leftovers.marked(marker):
            os.kill(p, 9)
