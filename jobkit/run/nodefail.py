"""A lost node is not tried again: after Slurm requeues a job for NODE_FAIL, the next attempt names the
node (a `node_failed` event, written by `jobkit.run.job`), keeps the job off it for every later
requeue, and leaves at once if Slurm placed it on that node again.

Slurm itself requeues a batch job whose node failed (`JobRequeue=1`), before any jobkit code runs, and
a running job's `ExcNodeList` cannot be changed. So the restarted attempt reads the job's history
(`sacct -D`, only when `SLURM_RESTART_COUNT` says it is a restart) and each requeue jobkit makes adds
`ExcNodeList` once the job is pending again (`jobkit.slurm.requeue`).
"""
from __future__ import annotations

import os
import socket

from jobkit import slurm
from jobkit.plan.endings import read_history
from jobkit.state import Event
from jobkit.store import RunDir


def lost_nodes(run: RunDir) -> list[str]:
    """The nodes this run's `node_failed` events name, first first."""
    nodes: list[str] = []
    for ev in run.events():
        if ev.get("event") == Event.NODE_FAILED:
            nodes += [n for n in ev.get("nodes") or [] if n not in nodes]
    return nodes


def after_restart(run: RunDir, env: slurm.JobEnvironment, history: str | None = None,
                  here: str | None = None) -> tuple[list[str], bool]:
    """At the start of a restarted Slurm attempt (main rank): the nodes the job's history lost that the
    run has not recorded yet (the job records them: `message`), and whether this attempt runs on a
    node that failed (then it requeues at once, excluding them)."""
    if history is None:
        if env.executor != "slurm" or int(os.environ.get("SLURM_RESTART_COUNT") or 0) <= 0:
            return [], False
        history = slurm.job_history([env.job_id])
    ending = read_history(history or "").get(env.job_id)
    if ending is None or not ending.failed_nodes:
        return [], False
    known = lost_nodes(run)
    here = here or socket.gethostname().split(".")[0]
    return [n for n in ending.failed_nodes if n not in known], here in ending.failed_nodes


def message(node: str) -> str:
    return f"node {node} failed under an earlier attempt (NODE_FAIL); later attempts of this job exclude it"
