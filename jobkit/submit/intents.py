"""Submission happens exactly once, even when the submitter dies between sbatch and its own record.

Before a job array is sent, every run of it records an intent (`submit_intent`: a token, the run's
index in the array); the token travels with the job (Slurm: `--comment=jobkit:<token>`; the local
executor: the queue key its controller carries). After the scheduler answers, the receipt is the
`submitted` event. A later submit or resume that finds an intent with neither a receipt nor a start
after it asks the scheduler once for every such token (one `squeue`; locally one look at this
machine's processes) and adopts the jobs found (writing their receipt) instead of submitting again;
only tokens the scheduler does not know are submitted anew.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from jobkit import slurm
from jobkit.state import Event
from jobkit.store import RunDir
from jobkit.submit import localqueue

COMMENT_PREFIX = "jobkit:"
TOKEN_PLACEHOLDER = "<token>"  # what `--dry-run --show-script` shows: each submission draws its own
DIE_AFTER_SBATCH_ENV = "JOBKIT_TEST_DIE_AFTER_SBATCH"  # tests: kill -9 this submitter right after sbatch
_SETTLED = (Event.SUBMITTED, Event.SUBMIT_ABORTED, Event.STARTED)


def new_token() -> str:
    return secrets.token_hex(6)


def comment(token: str) -> str:
    """What `--comment` carries (hex: nothing to quote)."""
    return f"{COMMENT_PREFIX}{token}"


def record(runs: Sequence[RunDir], token: str, executor: str) -> None:
    """The intent in each run folder (made durable by the caller's one `os.sync()` before sbatch)."""
    for index, run in enumerate(runs):
        run.event(Event.SUBMIT_INTENT, sync=False, token=token, index=index, array_size=len(runs),
                  executor=executor)


def die_here_for_tests() -> None:
    """Fault injection, off unless $JOBKIT_TEST_DIE_AFTER_SBATCH is set: the worst moment to die."""
    if os.environ.get(DIE_AFTER_SBATCH_ENV):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Intent:
    token: str
    index: int
    array_size: int
    executor: str


def unreceipted(run: RunDir) -> Intent | None:
    """The run's last intent if nothing settled it (no receipt, abort or start after it)."""
    for ev in reversed(run.events()):
        kind = ev.get("event")
        if kind in _SETTLED:
            return None
        if kind == Event.SUBMIT_INTENT and isinstance(ev.get("token"), str):
            return Intent(token=ev["token"], index=int(ev.get("index") or 0),
                          array_size=int(ev.get("array_size") or 1), executor=str(ev.get("executor") or "slurm"))
    return None


def find_jobs(intents: dict[Path, Intent], executor: str) -> tuple[dict[Path, str], str | None]:
    """{run folder: job id} of the intents the scheduler knows (one query for all); and its error, if any."""
    if not intents:
        return {}, None
    tokens = {i.token for i in intents.values()}
    if executor == "slurm":
        by_comment, error = slurm.jobs_by_comment([comment(t) for t in tokens])
        found = {}
        for path, intent in intents.items():
            ids = by_comment.get(comment(intent.token), [])
            if intent.array_size == 1 and len(ids) == 1:
                found[path] = ids[0]
            else:
                found.update({path: j for j in ids if j.rsplit("_", 1)[-1] == str(intent.index)})
        return found, error
    by_token = localqueue.controllers_by_token(tokens)
    return {path: str(by_token[i.token]) for path, i in intents.items() if i.token in by_token}, None


def adopt(planned: Sequence[Any], executor: str, write: bool = True) -> str | None:
    """Runs about to be submitted whose last intent has no receipt: adopt the job the scheduler has
    for them (its receipt written unless `write` is false, as for a dry run) instead of submitting
    again. Returns the scheduler's error when it could not be asked (then nothing is submitted anew:
    a job may exist)."""
    pending = {}
    for item in planned:
        if item.submits and item.run_dir.is_dir():
            intent = unreceipted(RunDir(item.run_dir))
            if intent is not None:
                pending[item.run_dir] = (item, intent)
    if not pending:
        return None
    by_executor: dict[str, dict[Path, Intent]] = {}
    for path, (_, intent) in pending.items():
        by_executor.setdefault(intent.executor, {})[path] = intent
    for ex, intents in by_executor.items():
        found, error = find_jobs(intents, ex)
        if error:
            return error
        for path, job_id in found.items():
            item, intent = pending[path]
            item.action, item.job_id = "queued", job_id
            item.reason = f"job {job_id} was submitted by a submit that died before recording it; adopted"
            if write:
                where = {"host": socket.gethostname()} if ex == "local" else {}  # whose pid it is
                RunDir(path).event(Event.SUBMITTED, job_id=job_id, executor=ex, adopted=True, token=intent.token,
                                   partition=item.partition, time=item.job_res.time, segments=item.segments,
                                   **where)
    return None
