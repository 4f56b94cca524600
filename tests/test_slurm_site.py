"""The local "university" cluster of slurm/up.sh, proven with plain sbatch/srun/sacctmgr (no jobkit code):
three nodes with their own hostnames that resolve each other, typed GPUs through GRES on n3, node
features, accounts physics/bio and QoS normal/short enforced at submission, a two-node job on `cpu`.

Skipped, with the reason, when the cluster that answers is not this layout (e.g. a single-node cluster of
an older slurm/up.sh); the account and QoS tests also need accounting (slurmdbd).
"""
from __future__ import annotations

import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]

NODES = {"n1": {"cpu", "intel"}, "n2": {"cpu", "amd"}, "n3": {"gpu", "a100"}}
PARTITIONS = {"test", "submit", "preempt", "cpu", "gpu", "bio", "express"}
BAD_ACCOUNT = "Invalid account or account/partition combination specified"
BAD_QOS = "Invalid qos specification"
NO_NODE = "Requested node configuration is not available"


def _fields(line: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def _layout_problem(env: dict[str, str], partitions: set[str]) -> str | None:
    """Why the answering cluster is not slurm/up.sh's three-node layout, or None when it is."""
    out = subprocess.run(["scontrol", "show", "node", "-o"], env=env, capture_output=True, text=True, timeout=30)
    nodes = {f["NodeName"]: f for f in map(_fields, out.stdout.splitlines()) if "NodeName" in f}
    missing = [p for p in sorted(PARTITIONS) if p not in partitions]
    if set(NODES) - set(nodes) or missing:
        return (f"the running cluster is not slurm/up.sh's three-node layout (nodes: {', '.join(sorted(nodes)) or '?'};"
                f" partitions missing: {', '.join(missing) or 'none'}): restart it with slurm/down.sh && slurm/up.sh")
    for name, features in NODES.items():
        have = set(nodes[name].get("AvailableFeatures", "").split(","))
        if not features <= have:
            return f"node {name} lacks features {sorted(features - have)} (has {sorted(have)}): an older slurm/up.sh?"
    if "gpu:a100:2" not in nodes["n3"].get("Gres", ""):
        return f"node n3 has Gres={nodes['n3'].get('Gres')}, not gpu:a100:2: an older slurm/up.sh?"
    return None


@pytest.fixture(scope="module")
def site(slurm_cluster):
    why = _layout_problem(slurm_cluster.env, set(slurm_cluster.partition_names))
    if why:
        pytest.skip(why)
    return slurm_cluster


@pytest.fixture(scope="module")
def accounting(site):
    if not site.accounting:
        pytest.skip("the running cluster has no accounting (slurm/up.sh --no-accounting): no accounts or QoS")
    qos = subprocess.run(["sacctmgr", "-nP", "show", "qos", "format=Name,MaxWall,Flags"], env=site.env,
                         capture_output=True, text=True, timeout=30).stdout.split()
    if "short|00:05:00|DenyOnLimit" not in qos:
        pytest.skip(f"QoS short (MaxWall 00:05:00, DenyOnLimit) is not registered (QoS: {qos}): an older slurm/up.sh?")
    return site


def sbatch(cluster, tmp_path: Path, *args: str, script: str = "true", wait: bool = True,
           name: str = "site") -> tuple[subprocess.CompletedProcess, str]:
    """sbatch ARGS --wrap SCRIPT from tmp_path (with --wait: until it ends); (the sbatch call, the job's output)."""
    out = tmp_path / f"{name}.out"
    argv = ["sbatch", "--parsable", "-J", f"jobkit-site-{name}", "-o", str(out), *args]
    if wait:
        argv.append("--wait")
    proc = subprocess.run([*argv, "--wrap", script], env=cluster.env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)
    return proc, (out.read_text() if out.exists() else "")


def refused(cluster, tmp_path: Path, *args: str) -> str:
    """Submit a no-op job that Slurm must refuse; returns sbatch's error text (fails if it was accepted).

    Not --hold: Slurm does not check a held job against the nodes (a wrong GPU type would be accepted)."""
    proc, _ = sbatch(cluster, tmp_path, *args, wait=False, name="refused")
    if proc.returncode == 0:
        subprocess.run(["scancel", proc.stdout.strip().split(";")[0]], env=cluster.env, timeout=30)
        pytest.fail(f"sbatch {' '.join(args)} was accepted (job {proc.stdout.strip()}), expected a refusal")
    return proc.stderr


def accepted(cluster, tmp_path: Path, *args: str) -> None:
    """Submit a no-op job that Slurm must accept, then cancel it."""
    proc, _ = sbatch(cluster, tmp_path, *args, wait=False, name="accepted")
    assert proc.returncode == 0, f"sbatch {' '.join(args)} refused: {proc.stderr.strip()}"
    subprocess.run(["scancel", proc.stdout.strip().split(";")[0]], env=cluster.env, timeout=30, check=True)


PROBE = ('echo "host=$(hostname) account=$SLURM_JOB_ACCOUNT qos=$SLURM_JOB_QOS"; '
         'for n in n1 n2 n3; do getent hosts $n >/dev/null && echo "resolves=$n"; done')


def test_each_node_has_its_own_hostname_and_resolves_the_others(site, tmp_path):
    where = {"n1": "cpu", "n2": "cpu", "n3": "gpu"}
    with ThreadPoolExecutor(len(where)) as pool:  # the three jobs run at once
        done = dict(zip(where, pool.map(lambda n: sbatch(site, tmp_path, "-p", where[n], "-w", n, "-t", "1",
                                                         script=PROBE, name=n), where)))
    for node, (proc, out) in done.items():
        assert proc.returncode == 0, proc.stderr
        assert f"host={node} " in out, out
        assert sorted(ln for ln in out.split() if ln.startswith("resolves=")) == [
            "resolves=n1", "resolves=n2", "resolves=n3"], out
    # the machine itself keeps its hostname and /etc/hosts: the nodes' names live only in their namespaces
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() not in NODES
    assert not set(NODES) & set(Path("/etc/hosts").read_text().split())


def test_a_job_without_account_runs_under_physics_with_qos_normal(accounting, tmp_path):
    proc, out = sbatch(accounting, tmp_path, "-t", "1", script=PROBE)  # default partition: test, on n1
    assert proc.returncode == 0, proc.stderr
    assert "host=n1 account=physics qos=normal" in out, out


def test_root_is_associated_with_physics_only(accounting):
    rows = subprocess.run(["sacctmgr", "-nP", "show", "assoc", "user=root", "format=Account,QOS,DefaultQOS"],
                          env=accounting.env, capture_output=True, text=True, timeout=30, check=True).stdout.split()
    assert rows == ["physics|normal,short|normal"]


def test_typed_gpu_lands_on_n3_and_sees_its_device(site, tmp_path):
    script = 'echo "host=$(hostname) jobgpus=$SLURM_JOB_GPUS cvd=$CUDA_VISIBLE_DEVICES"'
    proc, out = sbatch(site, tmp_path, "-p", "cpu,gpu", "--gres=gpu:a100:1", "-t", "1", script=script)
    assert proc.returncode == 0, proc.stderr
    fields = _fields(out)
    assert fields["host"] == "n3", out
    assert fields["jobgpus"] in ("0", "1") and fields["cvd"] in ("0", "1"), out  # one of n3's two GPUs


def test_gpus_that_do_not_exist_are_refused(site, tmp_path):
    assert NO_NODE in refused(site, tmp_path, "-p", "gpu", "--gres=gpu:v100:1", "-t", "1")
    assert NO_NODE in refused(site, tmp_path, "-p", "gpu", "--gres=gpu:a100:3", "-t", "1")
    assert NO_NODE in refused(site, tmp_path, "-p", "cpu", "--gres=gpu:1", "-t", "1")


def test_constraint_picks_the_node_with_the_feature(site, tmp_path):
    proc, out = sbatch(site, tmp_path, "-p", "cpu", "-C", "amd", "-t", "1", script=PROBE)
    assert proc.returncode == 0, proc.stderr
    assert "host=n2 " in out, out
    assert NO_NODE in refused(site, tmp_path, "-p", "cpu", "-C", "gpu", "-t", "1")


def test_two_node_job_on_cpu_runs_one_task_per_node(site, tmp_path):
    proc, out = sbatch(site, tmp_path, "-p", "cpu", "-N", "2", "--ntasks-per-node=1", "-t", "1",
                       script='srun bash -c \'echo "task=$SLURM_PROCID host=$(hostname)"\'')
    assert proc.returncode == 0, proc.stderr
    tasks = sorted(ln for ln in out.splitlines() if ln.startswith("task="))
    assert len(tasks) == 2, out
    assert sorted(ln.split("host=")[1] for ln in tasks) == ["n1", "n2"], out


def test_root_may_not_use_the_bio_partition_or_account(accounting, tmp_path):
    assert BAD_ACCOUNT in refused(accounting, tmp_path, "-p", "bio", "-t", "1")
    assert BAD_ACCOUNT in refused(accounting, tmp_path, "-p", "cpu", "--account=bio", "-t", "1")
    accepted(accounting, tmp_path, "-p", "cpu", "--account=physics", "-t", "1")


def test_express_admits_only_qos_short(accounting, tmp_path):
    assert BAD_QOS in refused(accounting, tmp_path, "-p", "express", "-t", "1")
    assert BAD_QOS in refused(accounting, tmp_path, "-p", "express", "--qos=normal", "-t", "1")
    accepted(accounting, tmp_path, "-p", "express", "--qos=short", "-t", "1")


def test_qos_short_refuses_more_than_five_minutes(accounting, tmp_path):
    err = refused(accounting, tmp_path, "-p", "cpu", "--qos=short", "-t", "6")
    assert "QOSMaxWallDurationPerJobLimit" in err, err  # DenyOnLimit: refused now, not pending forever
    accepted(accounting, tmp_path, "-p", "cpu", "--qos=short", "-t", "5")
    assert BAD_QOS in refused(accounting, tmp_path, "-p", "cpu", "--qos=long", "-t", "1")  # no such QoS


def test_up_resumes_a_drained_node_and_each_slurmd_has_its_port(slurm_cluster_noacct):
    """On the throwaway no-accounting cluster: a drained node is idle again after up.sh; ports as documented."""
    c = slurm_cluster_noacct
    why = _layout_problem(c.env, set(c.partition_names))
    if why:
        pytest.skip(why)
    for offset in (1, 4, 5):  # slurmd of n1, n2, n3 at PORT_BASE+1, +4, +5 (slurm/README.md)
        with socket.create_connection(("127.0.0.1", c.port_base + offset), timeout=5):
            pass
    subprocess.run(["scontrol", "update", "NodeName=n2", "State=DRAIN", "Reason=site-test"], env=c.env,
                   check=True, timeout=30)

    def state() -> list[str]:
        return subprocess.run(["sinfo", "-h", "-n", "n2", "-o", "%T"], env=c.env, capture_output=True, text=True,
                              timeout=30).stdout.split()

    assert state()[0].startswith("drain"), state()
    up = subprocess.run(["bash", str(REPO / "slurm" / "up.sh"), str(c.state_dir)], env=c.env, capture_output=True,
                        text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert "resumed node n2" in up.stderr
    assert state()[0] == "idle", state()
