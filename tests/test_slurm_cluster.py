"""The local Slurm cluster of slurm/up.sh, exercised for real through submitit and the Slurm clients."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
REFUSED = "Requested time limit is invalid (missing or exceeds some limit)"


def _executor(folder: Path, partition: str, minutes: int = 2):
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    ex.update_parameters(partition=partition, time=minutes, cpus_per_task=1, mem="256M",
                         job_name=f"jobkit-test-{partition}")
    return ex


def _wait(job, limit: float = 120):
    """job.result(), but never hangs: fails with the job's state and log tail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not job.done():
        if time.monotonic() > deadline:
            state = job.get_info(mode="force").get("State", "?")
            job.cancel(check=False)
            pytest.fail(f"job {job.job_id} not done after {limit:.0f} s (state {state}); "
                        f"stderr: {job.stderr() or ''}"[-2000:])
        time.sleep(0.3)
    return job.result()


def _probe(value):
    """Runs in the job: where am I, and can Slurm's clients find the config from here?"""
    import os
    import subprocess

    jid = os.environ.get("SLURM_JOB_ID", "")
    rc = subprocess.run(["scontrol", "show", "job", jid], capture_output=True).returncode
    return {"value": value * 2, "partition": os.environ.get("SLURM_JOB_PARTITION"), "job_id": jid,
            "scontrol_rc": rc, "slurm_conf": os.environ.get("SLURM_CONF")}


def _by_value(fn):
    """A copy of a module-level function that cloudpickle sends by value (tests/ is not importable in jobs)."""
    import types

    return types.FunctionType(fn.__code__, {"__builtins__": __builtins__}, fn.__name__)


def _run(tmp_path: Path, partition: str):
    job = _executor(tmp_path / partition, partition).submit(_by_value(_probe), 21)
    return job, _wait(job)


@pytest.mark.parametrize("partition", ["test", "submit", "preempt"])
def test_submitit_runs_a_function_on_each_partition(slurm_cluster, tmp_path, partition):
    assert partition in slurm_cluster.partition_names
    job, out = _run(tmp_path, partition)
    assert out["value"] == 42
    assert out["partition"] == partition
    assert out["job_id"] == str(job.job_id)
    assert out["scontrol_rc"] == 0, "scontrol inside the job cannot reach slurmctld (submitit's requeue would fail)"


def test_time_over_test_maxtime_is_refused_at_submission(slurm_cluster, tmp_path):
    proc = subprocess.run(["sbatch", "-p", "test", "-t", "00:30:00", "--wrap", "true"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert REFUSED in proc.stderr
    ex = _executor(tmp_path, "test", minutes=30)
    with pytest.raises(Exception) as exc:
        ex.submit(_by_value(_probe), 1)
    assert REFUSED in str(exc.value)
    # the same time is fine on `submit`
    ok = subprocess.run(["sbatch", "--test-only", "-p", "submit", "-t", "00:30:00", "--wrap", "true"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr


def test_sacct_reports_the_finished_job(slurm_cluster, tmp_path):
    if not slurm_cluster.accounting:
        pytest.skip("this cluster runs without accounting")
    job, out = _run(tmp_path, "test")
    want = [str(job.job_id), "COMPLETED", "0:0", "test"]
    deadline = time.monotonic() + 60
    while True:  # the record reaches slurmdbd a moment after the job ends
        proc = subprocess.run(["sacct", "-n", "-P", "-X", "-j", str(job.job_id), "-o", "JobID,State,ExitCode,Partition"],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        lines = [ln.split("|") for ln in proc.stdout.splitlines() if ln.strip()]
        if lines and lines[0] == want:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"sacct does not report {want}: {proc.stdout!r}")
        time.sleep(0.5)


def _daemon_pids(state: Path) -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in sorted((state / "pids").glob("*.pid"))}


def _runs(pid: str, comm: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.index("(") + 1:stat.rindex(")")] == comm and stat[stat.rindex(")") + 2] != "Z"


def test_up_twice_is_a_quick_noop(slurm_cluster):
    state = slurm_cluster.state_dir
    if state is None:
        pytest.skip("the running cluster was not started by slurm/up.sh of this checkout")
    conf = state / "etc" / "slurm.conf"
    before = (_daemon_pids(state), conf.stat().st_mtime_ns)
    for _ in range(2):
        t0 = time.monotonic()
        proc = subprocess.run(["bash", str(REPO / "slurm" / "up.sh"), str(state)], capture_output=True,
                              text=True, timeout=120)
        took = time.monotonic() - t0
        assert proc.returncode == 0, proc.stderr
        assert "already running" in proc.stderr
        assert took < 5, f"second up.sh took {took:.1f} s"
        assert proc.stdout.strip() == f"export SLURM_CONF={conf}"
    assert (_daemon_pids(state), conf.stat().st_mtime_ns) == before


def test_down_stops_exactly_its_daemons_and_up_restarts(slurm_cluster_noacct):
    """On the throwaway no-accounting cluster: down.sh stops its daemons, up.sh brings them back."""
    c = slurm_cluster_noacct
    pids = _daemon_pids(c.state_dir)
    assert set(pids) == {"munged", "slurmctld", "slurmd-n1", "slurmd-n2", "slurmd-n3"}
    main_state = Path(os.environ["SLURM_CONF"]).parent.parent  # the slurm_cluster's, set by the fixture
    main_pids = _daemon_pids(main_state) if (main_state / "pids").is_dir() else {}
    subprocess.run(["bash", str(REPO / "slurm" / "down.sh"), str(c.state_dir)], check=True, capture_output=True, timeout=120)
    for name, pid in pids.items():  # pids/slurmd-n1.pid holds a slurmd; a zombie (PID 1 reaps late) has stopped
        assert not _runs(pid, name.split("-")[0]), f"{name} (pid {pid}) still runs"
    for name, pid in main_pids.items():  # the main cluster is untouched
        assert Path(f"/proc/{pid}/comm").read_text().strip() == name.split("-")[0]
    proc = subprocess.run(["bash", str(REPO / "slurm" / "up.sh"), "--no-accounting", "--port-base",
                           str(c.port_base), str(c.state_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert subprocess.run(["sinfo", "-h"], env=c.env, capture_output=True, timeout=30).returncode == 0


def test_cluster_without_accounting(slurm_cluster_noacct, tmp_path, monkeypatch):
    c = slurm_cluster_noacct
    assert {"test", "submit", "preempt"} <= set(c.partition_names)
    monkeypatch.setenv("SLURM_CONF", str(c.conf))
    sacct = subprocess.run(["sacct", "-n"], capture_output=True, text=True, timeout=30)
    assert sacct.returncode != 0 or "disabled" in (sacct.stdout + sacct.stderr).lower()
    job, out = _run(tmp_path, "test")
    assert out["value"] == 42 and out["partition"] == "test" and out["scontrol_rc"] == 0
    assert out["slurm_conf"] == str(c.conf)
    sq = subprocess.run(["squeue", "-h", "-j", str(job.job_id)], capture_output=True, text=True, timeout=30)
    assert sq.returncode in (0, 1)  # answers (the finished job may already be gone: MinJobAge=5)
