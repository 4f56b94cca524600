"""Issue 24, live: a sweep larger than the QoS's MaxSubmitPU completes through feeder jobs alone, in arrays
under MaxArraySize, never over the limit, no run submitted twice, and a slurmctld restart mid-sweep
loses nothing.

MaxArraySize is global to a cluster, so this runs on a private one (`slurm/up.sh --max-array-size 9
--port-base 7917`, QoS `feed` with MaxSubmitPU 12), started here and removed at the end; or on a
running one named by JOBKIT_FEED_SLURM_CONF (kept). The scaled-down shape of the issue's 1000 runs /
MaxSubmitPU 300 / MaxArraySize 101 (a toy array task costs ~10 s of this machine's two shared cores);
`bench/bench_feeder.py` runs any size and prints its figures.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DOWN, _port_busy, _up
from slurmtools import feeder_sweep

pytestmark = pytest.mark.slurm

PORT_BASE, MAX_ARRAY, LIMIT, RUNS = 7917, 9, 12, 30
QOS = "feed"

SWEEP = """
name = "feeder"
[defaults]
time = "00:05:00"
cpus = 1
mem = "300M"
qos = "{qos}"
[[run]]
workload = "toy"
preset = "tiny"
steps = 2
eval_every = 2
checkpoint_every = 2
seed = {seeds}
"""


def add_feed_qos(env: dict, limit: int) -> None:
    """QoS `feed` with MaxSubmitPU `limit`, granted to this user's association (idempotent)."""
    def sam(*args: str) -> None:
        subprocess.run(["sacctmgr", "-i", *args], env=env, capture_output=True, text=True, timeout=60)

    sam("add", "qos", QOS)
    sam("modify", "qos", QOS, "set", f"MaxSubmitJobsPerUser={limit}")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    sam("modify", "user", user, "set", f"QOS+={QOS}")


def restart_controller(state: Path, env: dict) -> None:
    """Stop slurmctld (its pid file) and start it again as slurm/up.sh does (not up.sh itself: it would
    reset the association's QoS list), then wait until it answers."""
    pid = int((state / "pids" / "slurmctld.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    for _ in range(60):
        if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.5)
    time.sleep(3)  # down for a few seconds: the feeders and status see no controller
    conf = state / "etc" / "slurm.conf"
    with open(state / "log" / "slurmctld.log", "ab") as log:
        subprocess.run(["slurmctld", "-f", str(conf)], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                       timeout=60, check=True)
    for _ in range(60):
        if subprocess.run(["scontrol", "ping"], env=env, capture_output=True, timeout=20).returncode == 0:
            return
        time.sleep(1)
    raise AssertionError("slurmctld did not come back")


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory):
    """(env, state dir) of a cluster with MaxArraySize 9 and QoS feed (MaxSubmitPU 12)."""
    named = os.environ.get("JOBKIT_FEED_SLURM_CONF")
    if named:
        env = {**os.environ, "SLURM_CONF": named}
        add_feed_qos(env, LIMIT)
        yield env, Path(named).parent.parent
        return
    if any(_port_busy(PORT_BASE + i) for i in range(10)):
        pytest.skip(f"ports {PORT_BASE}.. are in use (another private cluster: set JOBKIT_FEED_SLURM_CONF to use it)")
    state = tmp_path_factory.mktemp("slurm-feeder")
    conf, why = _up(state, "--port-base", str(PORT_BASE), "--no-symlink", "--max-array-size", str(MAX_ARRAY))
    try:
        if conf is None:
            pytest.skip(f"private cluster: {why}")
        env = {**os.environ, "SLURM_CONF": str(conf)}
        add_feed_qos(env, LIMIT)
        yield env, state
    finally:
        subprocess.run(["bash", str(DOWN), str(state), "--purge"], capture_output=True, timeout=120)


def test_a_sweep_over_max_submit_pu_completes_through_feeders_alone(tmp_path, small_cluster):
    env, state = small_cluster
    limits = subprocess.run(["sacctmgr", "-nP", "show", "qos", QOS, "format=MaxSubmitPU"], env=env,
                            capture_output=True, text=True, timeout=60).stdout.split()
    limit = int(limits[0])
    sweep = tmp_path / "feeder.toml"
    sweep.write_text(SWEEP.format(qos=QOS, seeds=list(range(RUNS))))
    env = {**env, "JOBKIT_ROOT": str(tmp_path / "runs")}
    figures = feeder_sweep(tmp_path / "runs", sweep, QOS, env, timeout=1500,
                           restart=lambda: restart_controller(state, env))
    summary = {k: v for k, v in figures.items() if k != "first_submit"}
    print(f"feeder sweep figures: {summary}")
    assert figures["completed"] == RUNS, summary
    assert figures["restarted"], summary
    assert 0 < figures["peak_queued"] <= limit, summary  # sampled every 2 s
    assert figures["duplicates"] == 0 and figures["never_submitted"] == 0, summary
    assert figures["feeders"] >= 2, summary  # the first wave holds at most limit - 1 runs
    assert figures["arrays"] >= -(-RUNS // (MAX_ARRAY)), summary  # no array over MaxArraySize
