"""Nothing of a run left behind, and OOM kills named, on the live local cluster.

Every node's slurmd runs on this machine (UTS namespaces, one PID namespace), so the processes of a job
on any node are found in /proc by the marker jobkit exports (`JOBKIT_RUN_MARKER`). After each ending —
cancel, preemption, time limit, a rank crash, an OOM kill — none of them is left: ranks, the command
script, a plain child, a child in its own session and a double-forked daemon. (No workload of jobs/ has
DataLoader workers (`num_workers`), so the command script's children are the child-process case.)

The OOM kill and the lost node run on a private cluster this session starts (`slurm_cluster_faults`:
memory enforced, a silent node DOWN after 10 s), never on the shared one: one of them kills a slurmd.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurmtools import all_ended, assert_nothing_left, cancel_sweeps, described, jobkit, wait_until

from jobkit.run import leftovers, testhooks
from jobkit.store import RunDir

pytestmark = pytest.mark.slurm
UP = Path(__file__).resolve().parents[1] / "slurm" / "up.sh"
SWEEPS = ("lcancel", "lpre", "ltime", "lcrash", "loom", "lnode")

SPAWNER = """
import subprocess, sys, time
subprocess.Popen(["sleep", "1001"])                                   # a plain child
subprocess.Popen(["sleep", "1002"], start_new_session=True)           # its own session
subprocess.run(["bash", "-c", "setsid sleep 1003 </dev/null >/dev/null 2>&1 &"])  # double fork: orphaned at once
print("spawned", flush=True)
i = 0
while True:
    i += 1
    print(f"step {i}", flush=True)
    time.sleep(0.5)
"""


@pytest.fixture(autouse=True)
def _cancel_leftovers():
    yield
    cancel_sweeps(SWEEPS)


@pytest.fixture
def faults(slurm_cluster_faults, monkeypatch):
    """This test's Slurm commands, jobkit calls and jobs go to the cluster that may be hurt."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster_faults.conf))
    yield slurm_cluster_faults
    cancel_sweeps(SWEEPS)  # still on that cluster (monkeypatch is undone after this)


def marker_prefix(run: RunDir) -> str:
    """`<job id>/`: every attempt of the run's job (the batch script's marker)."""
    job_id = [e for e in run.events() if e["event"] == "started"][-1]["job_id"]
    return f"{job_id}/"


def command_sweep(tmp_path: Path, name: str, extra: str) -> Path:
    (tmp_path / "spawner.py").write_text(SPAWNER)
    sweep = tmp_path / f"{name}.toml"
    sweep.write_text(f'name = "{name}"\n[[run]]\nworkload = "command"\n'
                     f'command = ["{{python}}", "{tmp_path / "spawner.py"}", "{{run_dir}}"]\n'
                     f'cpus = 1\nmem = "1G"\n{extra}')  # the supervisor imports torch: ~550M
    return sweep


def started_and_spawned(root: Path, prefix_of=marker_prefix) -> tuple[RunDir, str]:
    """The run once its script has started its children; the children carry the marker (so the check
    after the ending is not vacuous)."""
    wait_until(root, lambda ss: ss[0].state == "RUNNING" and ss[0].attempts >= 1, 180)
    run = RunDir(Path(json.loads(jobkit("status", "--json", root=root).stdout)["runs"][0]["path"]))
    prefix = prefix_of(run)
    end = time.time() + 60
    while len([p for p in leftovers.marked(prefix.rstrip("/"))
               if "sleep 100" in " ".join(described([p]))]) < 3:
        assert time.time() < end, f"the script's children never showed: {described(leftovers.marked(prefix))}"
        time.sleep(0.5)
    return run, prefix


def test_cancel_leaves_nothing(tmp_path):
    root = tmp_path / "runs"
    jobkit("submit", command_sweep(tmp_path, "lcancel", 'time = "00:05:00"\n'), root=root)
    run, prefix = started_and_spawned(root)
    jobkit("cancel", run.run_id, root=root)
    (s,) = wait_until(root, all_ended, 120)
    assert s.state == "CANCELLED"
    assert_nothing_left(prefix, prefix.split("/")[0])


def test_preemption_leaves_nothing_of_the_stopped_attempt(tmp_path):
    root = tmp_path / "runs"
    sweep = command_sweep(tmp_path, "lpre", 'resumable = true\npreemptible = true\npartition = "test"\n'
                                            'time = "00:05:00"\n')
    jobkit("submit", sweep, root=root)
    run, prefix = started_and_spawned(root)
    hog = subprocess.run(["sbatch", "--parsable", "-J", "jobkit-lpre", "-p", "preempt", "-c", "2", "--mem", "500M",
                          "-t", "1", "-o", "/dev/null", "--wrap", "sleep 3"],
                         capture_output=True, text=True, check=True)
    assert hog.stdout.strip()
    wait_until(root, lambda ss: [e["event"] for e in run.events()].count("started") == 2, 240)
    assert [e["reason"] for e in run.events() if e["event"] == "requeued"] == ["preemption"]
    first_attempt = prefix + "0"  # SLURM_RESTART_COUNT 0; the running attempt is .../1
    assert not leftovers.marked(first_attempt), described(leftovers.marked(first_attempt))
    assert leftovers.marked(prefix + "1")
    jobkit("cancel", run.run_id, root=root)
    assert_nothing_left(prefix, prefix.split("/")[0])


def test_time_limit_leaves_nothing(tmp_path):
    root = tmp_path / "runs"
    jobkit("submit", command_sweep(tmp_path, "ltime", 'time = "00:01:00"\n'), root=root)
    run, prefix = started_and_spawned(root)
    (s,) = wait_until(root, all_ended, 240)
    assert s.state == "TIMEOUT", s.error
    assert_nothing_left(prefix, prefix.split("/")[0])


TOY = """
name = "{name}"
[[run]]
workload = "toy"
preset = "tiny"
steps = {steps}
step_sleep = 0.1
checkpoint_every = 1000
eval_every = 1000
time = "00:05:00"
cpus = 1
mem = "{mem}"
{extra}
"""


def test_a_rank_crash_ends_every_rank_on_every_node(tmp_path, slurm_cluster):
    if "cpu" not in slurm_cluster.partition_names:
        pytest.skip("needs the two-node partition `cpu` (slurm/up.sh's university layout)")
    root = tmp_path / "runs"
    sweep = tmp_path / "lcrash.toml"
    sweep.write_text(TOY.format(name="lcrash", steps=400, mem="1G",
                                extra='nodes = 2\ntasks_per_node = 1\npartition = "cpu"'))
    jobkit("submit", sweep, root=root, env={**os.environ, testhooks.RAISE_ENV: "20:1"})
    wait_until(root, lambda ss: ss[0].state == "RUNNING" and ss[0].attempts >= 1, 180)
    run = RunDir(Path(json.loads(jobkit("status", "--json", root=root).stdout)["runs"][0]["path"]))
    prefix = marker_prefix(run)
    (s,) = wait_until(root, all_ended, 200)  # not the 5-minute limit: the crashed rank ends the step
    assert s.state == "FAILED", s.error
    assert_nothing_left(prefix, prefix.split("/")[0])


def test_an_oom_kill_is_named_left_alone_at_the_same_mem_and_resumed_with_more(tmp_path, faults):
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    assert "OverMemoryKill" in config, f"{faults.conf} enforces no memory limit (slurm/up.sh --enforce-memory)"
    root = tmp_path / "runs"
    sweep = tmp_path / "loom.toml"
    sweep.write_text(TOY.format(name="loom", steps=60, mem="1G", extra=""))  # torch alone holds ~550M
    jobkit("submit", sweep, root=root, env={**os.environ, testhooks.ALLOCATE_ENV: "30:800"})
    wait_until(root, lambda ss: ss[0].state == "RUNNING" and ss[0].attempts >= 1, 180)
    run = RunDir(Path(json.loads(jobkit("status", "--json", root=root).stdout)["runs"][0]["path"]))
    prefix = marker_prefix(run)
    (s,) = wait_until(root, all_ended, 240)
    assert s.state == "OUT_OF_MEMORY", (s.state, s.error)
    assert re.fullmatch(rf"out of memory at step \d+ \(mem 1G\): `jobkit resume {run.run_id} --set mem=2G`",
                        s.error), s.error
    status = jobkit("status", root=root, check=False)
    assert "out of memory at step" in status.stdout
    assert_nothing_left(prefix, prefix.split("/")[0])
    # the same memory again would die at the same step: resume leaves it alone, saying why
    same = json.loads(jobkit("resume", run.run_id, "--json", root=root).stdout)
    assert [r["action"] for r in same["runs"]] == ["oom"] and "--set mem=2G" in same["runs"][0]["reason"]
    more = json.loads(jobkit("resume", run.run_id, "--set", "mem=3G", "--json", root=root,
                             env={**os.environ, testhooks.ALLOCATE_ENV: "30:800"}).stdout)
    assert [r["action"] for r in more["runs"]] == ["resume"]
    (s,) = wait_until(root, all_ended, 300)
    assert s.state == "COMPLETED", s.error


def _pids_of_job_step_daemons(job_id: str) -> list[int]:
    """slurmstepd processes of a job (their command line names `[<job id>.<step>]`)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmd.startswith(f"slurmstepd: [{job_id}."):
            found.append(int(entry.name))
    return found


def test_a_lost_node_is_named_and_avoided(tmp_path, faults):
    """A node dies under a running job (its slurmd and every process of the job on it killed, as in a
    power loss); Slurm marks it down, the job NODE_FAIL and requeues it: the next attempt names the node,
    and a resume excludes it. Kills a node's daemon: only on the private cluster of `faults`, whose
    SlurmdTimeout is short."""
    state = str(faults.state_dir)
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    timeout = re.search(r"SlurmdTimeout\s*=\s*(\d+)", config)
    assert timeout and int(timeout.group(1)) <= 30, f"{faults.conf}: SlurmdTimeout over 30 s (--slurmd-timeout)"
    root = tmp_path / "runs"
    # the lost node's lease holder cannot be asked whether it lives: the next attempt waits out the
    # lease timeout (jobkit.run.lease), shortened here
    jobkit("submit", command_sweep(tmp_path, "lnode", 'resumable = true\npartition = "cpu"\ntime = "00:05:00"\n'),
           root=root, env={**os.environ, "JOBKIT_LEASE_TIMEOUT_S": "20"})
    run, prefix = started_and_spawned(root)
    first = [e for e in run.events() if e["event"] == "started"][-1]
    node, job_id = first["host"], first["job_id"]
    try:
        slurmd = int((Path(state) / "pids" / f"slurmd-{node}.pid").read_text())
        for pid in [slurmd, *_pids_of_job_step_daemons(job_id), *leftovers.marked(prefix.rstrip("/"))]:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        wait_until(root, lambda ss: any(e["event"] == "node_failed" for e in run.events()), 240)
        lost = [e for e in run.events() if e["event"] == "node_failed"]
        assert [e["nodes"] for e in lost] == [[node]]
        again = [e for e in run.events() if e["event"] == "started"][-1]
        assert again["host"] != node
        shown = json.loads(jobkit("status", "--json", root=root).stdout)["runs"][0]
        assert shown["failed_nodes"] == [node] and any(f"node {node} failed" in w for w in shown["warnings"])
        # the node comes back; the next requeue jobkit makes keeps the job off it all the same
        subprocess.run([str(UP), "--no-symlink", state], capture_output=True, text=True, check=True)
        assert "SlurmdTimeout=" in faults.conf.read_text()  # up.sh kept the state dir's options (its `mode`)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # as a preemption does
        wait_until(root, lambda ss: [e["event"] for e in run.events()].count("started") == 3, 240)
        assert f"ExcNodeList={node}" in subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                                                       text=True).stdout
        assert [e for e in run.events() if e["event"] == "started"][-1]["host"] != node
        jobkit("cancel", run.run_id, root=root)
        wait_until(root, all_ended, 120)
        plan = json.loads(jobkit("resume", run.run_id, "--dry-run", "--json", root=root).stdout)
        assert f"avoiding node {node}" in plan["runs"][0]["reason"]
    finally:
        subprocess.run(["scancel", "--name", "jobkit-lnode"], capture_output=True)
        subprocess.run([str(UP), "--no-symlink", state], capture_output=True, text=True)  # the node's slurmd back
