"""Read a cluster's facts from Slurm, once per command: 3 scontrol calls and 2 sacctmgr calls.

The parsing and the choice live elsewhere (`clusterfacts`, `placement`) so they can be tested with
canned text. Without accounting (sacctmgr missing or failing), the facts say so once in `notes` and
the choice uses the partitions alone.
"""
from __future__ import annotations

import os
import pwd
import subprocess

from .cluster import ClusterError, _scontrol
from .clusterfacts import ClusterFacts, facts_from_text

ASSOC_FORMAT = "Cluster,Account,User,Partition,QOS,DefaultQOS,MaxWall,MaxJobs,MaxSubmit,MaxTRES"
QOS_FORMAT = "Name,Priority,MaxWall,MaxTRES,MaxTRESPU,MaxJobsPU,MaxSubmitPU,Flags"


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", str(os.getuid()))


def _sacctmgr(args: list[str], timeout: float) -> str:
    """`sacctmgr -nP ...` output; raises ClusterError with Slurm's last line when it fails."""
    argv = ["sacctmgr", "-nP", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ClusterError("sacctmgr not found") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"sacctmgr did not answer in {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise ClusterError(lines[-1] if lines else f"sacctmgr exit code {proc.returncode}")
    return proc.stdout


def read_facts(timeout: float = 10, accounting: bool = True) -> ClusterFacts:
    """Partitions, nodes, MaxArraySize, and (when accounting answers) the user's associations and QoS."""
    parts = _scontrol(["show", "partition", "-o"], timeout)
    try:
        nodes = _scontrol(["show", "node", "-o"], timeout)
    except ClusterError:
        nodes = None
    try:
        config = _scontrol(["show", "config"], timeout)
    except ClusterError:
        config = None
    assoc = qos = None
    note = None
    if accounting:
        try:
            assoc = _sacctmgr(["show", "assoc", f"user={_user()}", f"format={ASSOC_FORMAT}"], timeout)
            qos = _sacctmgr(["show", "qos", f"format={QOS_FORMAT}"], timeout)
        except ClusterError as exc:
            assoc = qos = None
            note = (f"no accounting ({exc}): accounts and QoS are not checked; "
                    "choosing from the partitions' limits alone")
    facts = facts_from_text(parts, nodes, qos, assoc, config)
    if not facts.partitions:
        raise ClusterError("Slurm reports no partitions (`scontrol show partition -o` printed none)")
    if note:
        facts.notes.append(note)
    return facts
