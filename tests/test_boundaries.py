"""One home per concept, checked: the scheduler boundary, the state names, the collector's ignorance
of workloads, and that --show-script is what is sent."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

JOBKIT = Path(__file__).resolve().parents[1] / "jobkit"
SOURCES = {p.relative_to(JOBKIT.parent).as_posix(): p.read_text() for p in JOBKIT.rglob("*.py")}


def _where(pattern: str) -> set[str]:
    return {name for name, text in SOURCES.items() if re.search(pattern, text, flags=re.M)}


def test_only_the_scheduler_adapter_runs_slurm_commands_or_imports_submitit():
    assert _where(r"""\[\s*["'](scontrol|sacct|squeue|scancel|sacctmgr|sbatch)["']\s*,""") == {"jobkit/slurm.py"}
    assert _where(r"^\s*(import submitit|from submitit)") == {"jobkit/slurm.py"}


def test_state_names_live_in_the_state_module():
    names = "PENDING|RUNNING|COMPLETED|FAILED|CANCELLED|TIMEOUT|PREEMPTED|REQUEUED|STOPPED|BOOT_FAIL|DEADLINE"
    users = _where(rf"""["']({names})["']""")
    # the adapter holds Slurm's own words for queued and running jobs; everything else uses jobkit.state
    assert users <= {"jobkit/state.py", "jobkit/slurm.py"}, users


def test_the_collector_names_no_workload():
    collector = {n: t for n, t in SOURCES.items() if n.startswith("jobkit/collect/")}
    for name, text in collector.items():
        assert not re.search(r"\b(charlm|vae|toy|beta|MIG|mig)\b", text), name


def test_no_module_is_long():
    long = {n: t.count("\n") for n, t in SOURCES.items() if t.count("\n") > 450}
    assert not long, long


@pytest.mark.slurm
def test_show_script_is_the_script_that_is_sent(tmp_path, slurm_cluster):
    """`--dry-run --show-script` renders the same parameters that submitting gives submitit."""
    sweep = tmp_path / "show.toml"
    sweep.write_text('name = "showscript"\n[[run]]\nworkload = "toy"\npreset = "tiny"\nsteps = 3\n'
                     'time = "00:03:00"\ncpus = 1\nmem = "500M"\n')
    root = tmp_path / "runs"

    def jobkit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jobkit", *args, "--root", str(root)], capture_output=True,
                              text=True, timeout=300, env=slurm_cluster.env)

    shown = jobkit("submit", str(sweep), "--dry-run", "--show-script", "--json")
    assert shown.returncode == 0, shown.stderr
    script = next(iter(json.loads(shown.stdout)["scripts"].values()))
    sent = jobkit("submit", str(sweep), "--json")
    assert sent.returncode == 0, sent.stderr
    job_id = json.loads(sent.stdout)["runs"][0]["job_id"]
    try:
        submitted = root / "showscript" / ".submitit" / job_id / f"{job_id}_submission.sh"
        sent_script = re.sub(r"--comment=jobkit:[0-9a-f]{12}", "--comment=jobkit:<token>", submitted.read_text())
        assert sent_script.strip() == script.strip()
    finally:
        subprocess.run(["scancel", job_id], env=slurm_cluster.env, capture_output=True)
