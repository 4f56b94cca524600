"""Shared test setup: data location, and the live Slurm cluster for tests marked `slurm`.

- `JOBKIT_DATA` defaults to `<repo>/../shared/data`.
- `slurm_cluster` (session): a running cluster — the one `sinfo` already answers for, else the one
  `slurm/up.sh` brings up (state dir `$JOBKIT_SLURM_STATE` or `<repo>/.slurm`; left running afterwards,
  `make slurm-down` stops it). `SLURM_CONF` is exported for the whole session so that client commands and
  the jobs submitit starts find the config.
- Every test marked `slurm` gets `slurm_cluster` (it need not ask for it). When no cluster can be had,
  these tests are skipped — or fail when `JOBKIT_REQUIRE_SLURM=1` (CI).
- `slurm_cluster_noacct` (session): a second cluster without accounting (no slurmdbd: `sacct` fails,
  squeue/scontrol work), on other ports in a temporary state dir, stopped and deleted at the end. Tests
  use it through its `env` (`monkeypatch.setenv("SLURM_CONF", c.conf)` or `subprocess.run(..., env=c.env)`).
- `slurm_cluster_faults` (session): a third cluster, for tests that hurt it: it kills a step past its
  `--mem` (`--enforce-memory`) and marks a silent node DOWN after 10 s (`--slurmd-timeout 10`), so a test
  may kill one of its slurmd. With accounting (the OOM and NODE_FAIL endings are read from `sacct -D`).
  Started only when a test asks for it (~10 s), stopped and deleted at the end.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("JOBKIT_DATA", str(REPO.parent / "shared" / "data"))

UP = REPO / "slurm" / "up.sh"
DOWN = REPO / "slurm" / "down.sh"
NOACCT_PORT_BASES = range(int(os.environ.get("JOBKIT_SLURM_NOACCT_PORT_BASE", "7817")), 9000, 10)
FAULTS_PORT_BASES = range(int(os.environ.get("JOBKIT_SLURM_FAULTS_PORT_BASE", "8417")), 9900, 10)
FAULTS_SLURMD_TIMEOUT = 10  # seconds: a killed node's jobs NODE_FAIL within about that (Slurm's default: 300)
CLUSTER_PORTS = 10  # slurm/up.sh keeps every port of a cluster within PORT_BASE..PORT_BASE+9


def slurm_required() -> bool:
    return os.environ.get("JOBKIT_REQUIRE_SLURM", "").strip().lower() in ("1", "true", "yes")


@dataclass
class SlurmCluster:
    conf: Path  # the slurm.conf clients and jobs use (SLURM_CONF)
    state_dir: Path | None  # None: a cluster this checkout did not start
    partitions: list = field(default_factory=list)  # jobkit.plan.choose.Partition, as read live by jobkit.slurm
    accounting: bool = True
    started_here: bool = False  # brought up by this test session
    port_base: int = 6817  # slurmctld's port; slurmd of n1 +1, slurmdbd +2, MariaDB +3, n2 +4, n3 +5

    @property
    def partition_names(self) -> list[str]:
        return [p.name for p in self.partitions]

    @property
    def default_partition(self) -> str | None:
        return next((p.name for p in self.partitions if p.is_default), None)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}


def _answers(env: dict[str, str]) -> bool:
    if shutil.which("sinfo") is None:
        return False
    if not Path(env.get("SLURM_CONF") or "/etc/slurm/slurm.conf").exists():
        return False  # Slurm's clients would retry a missing config for 60 s
    try:
        return subprocess.run(["sinfo", "-h", "-o", "%P"], env=env, capture_output=True, text=True,
                              timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _current_conf() -> Path:
    conf = os.environ.get("SLURM_CONF")
    if conf:
        return Path(conf)
    link = Path("/etc/slurm/slurm.conf")
    return link.resolve() if link.exists() else link


def _up(state: Path, *args: str) -> tuple[Path | None, str]:
    """Run slurm/up.sh; (conf, '') on success, (None, why) on failure."""
    if not UP.exists():
        return None, f"{UP} is missing"
    try:
        proc = subprocess.run(["bash", str(UP), *args, str(state)], capture_output=True, text=True,
                              timeout=900, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "slurm/up.sh did not finish in 900 s"
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return None, f"slurm/up.sh failed (exit {proc.returncode}): {tail}"
    for line in proc.stdout.splitlines():
        if line.startswith("export SLURM_CONF="):
            return Path(line.split("=", 1)[1].strip()), ""
    return state / "etc" / "slurm.conf", ""


def _no_cluster(reason: str):
    if slurm_required():
        pytest.fail(f"JOBKIT_REQUIRE_SLURM=1 but no Slurm cluster: {reason}", pytrace=False)
    pytest.skip(f"no Slurm cluster: {reason}")


def _read_partitions(env: dict[str, str]) -> list:
    from jobkit import slurm

    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    try:
        return slurm.read_partitions(timeout=20)
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _accounting(conf: Path) -> bool:
    try:
        text = conf.read_text()
    except OSError:
        return True
    return "accounting_storage/none" not in "\n".join(
        ln for ln in text.splitlines() if ln.strip().startswith("AccountingStorageType"))


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    conf = _current_conf()
    started = False
    state: Path | None = None
    if not _answers({**os.environ, "SLURM_CONF": str(conf)}):
        state = Path(os.environ.get("JOBKIT_SLURM_STATE") or REPO / ".slurm")
        new_conf, why = _up(state)
        if new_conf is None:
            _no_cluster(why)
        conf, started = new_conf, True
        if not _answers({**os.environ, "SLURM_CONF": str(conf)}):
            _no_cluster(f"slurm/up.sh succeeded but sinfo does not answer with SLURM_CONF={conf}")
    elif conf.parent.name == "etc" and (conf.parent.parent / "pids").is_dir():
        state = conf.parent.parent
    os.environ["SLURM_CONF"] = str(conf)  # for submitit, and for the jobs it starts (sbatch exports it)
    cluster = SlurmCluster(conf=conf, state_dir=state, accounting=_accounting(conf), started_here=started)
    try:
        cluster.partitions = _read_partitions(cluster.env)
    except Exception as exc:  # noqa: BLE001 - report, do not crash collection
        _no_cluster(f"cannot read partitions: {exc}")
    return cluster


def _reap_orphans() -> None:
    """Stop throwaway clusters left by test sessions that were killed before their teardown ran."""
    for owner in Path(tempfile.gettempdir()).glob("pytest-of-*/pytest-*/slurm-*/owner"):
        try:
            pid = int(owner.read_text().strip())
            alive = b"pytest" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            alive = False
        if not alive:
            subprocess.run(["bash", str(DOWN), str(owner.parent), "--purge"], capture_output=True, timeout=120)


def _private_cluster(tmp_path_factory, name: str, bases: range, *options: str) -> Iterator[SlurmCluster]:
    """Start a throwaway cluster (slurm/up.sh OPTIONS) in a temporary state dir on the first free port base;
    yields it, then stops and deletes it. `owner` names this session, so a later one reaps it if we die."""
    _reap_orphans()
    state = tmp_path_factory.mktemp(f"slurm-{name}")
    (state / "owner").write_text(f"{os.getpid()}\n")
    why = "no free ports"
    for base in bases:  # another test session may hold a base: take the next free one
        if any(_port_busy(base + i) for i in range(CLUSTER_PORTS)):
            continue
        conf, why = _up(state, *options, "--port-base", str(base))
        if conf is not None:
            break
        subprocess.run(["bash", str(DOWN), str(state), "--purge"], capture_output=True, timeout=120)
        state.mkdir(parents=True, exist_ok=True)
        (state / "owner").write_text(f"{os.getpid()}\n")
        if "in use" not in why:
            break
    else:
        conf = None
    if conf is None:
        _no_cluster(f"{name} cluster: {why}")
    cluster = SlurmCluster(conf=conf, state_dir=state, accounting=_accounting(conf), started_here=True,
                           port_base=base)
    try:
        cluster.partitions = _read_partitions(cluster.env)
        yield cluster
    finally:
        subprocess.run(["bash", str(DOWN), str(state), "--purge"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_cluster_noacct(tmp_path_factory, slurm_cluster) -> SlurmCluster:
    """A second cluster, without accounting, beside the main one; removed at the end of the session."""
    yield from _private_cluster(tmp_path_factory, "noacct", NOACCT_PORT_BASES, "--no-accounting")


@pytest.fixture(scope="session")
def slurm_cluster_faults(tmp_path_factory, slurm_cluster) -> SlurmCluster:
    """A cluster tests may hurt (memory enforced, a silent node DOWN in 10 s); removed at the end."""
    yield from _private_cluster(tmp_path_factory, "faults", FAULTS_PORT_BASES, "--enforce-memory",
                                "--slurmd-timeout", str(FAULTS_SLURMD_TIMEOUT))


@pytest.fixture(autouse=True)
def _slurm_marker(request):
    """Tests marked `slurm` get the cluster (which skips them, or fails them under JOBKIT_REQUIRE_SLURM=1)."""
    if request.node.get_closest_marker("slurm") is not None:
        request.getfixturevalue("slurm_cluster")


@pytest.fixture
def one_thread():
    """Tiny models run fastest (and most predictably on a shared box) on one torch thread; a test
    module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
