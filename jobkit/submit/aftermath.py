"""What submitting again does after an OOM kill or a lost node: never the same memory blindly, never
the node that failed.

A run killed for memory would be killed again with the same `mem` at the same step: `submit`/`resume`
leave it alone (action `oom`, with the sentence that names the fix) until the run asks for more. A run
whose node failed (NODE_FAIL) is resumed with that node excluded (`--exclude`), and says so.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from jobkit.observe.runstate import RunSummary
from jobkit.plan.spec import JobSpec, Resources
from jobkit.run.memory import oom_message
from jobkit.state import State
from jobkit.store import RunDir

OOM_ACTION = "oom"  # left alone: killed for memory, asked again with no more of it


def memory_guard(spec: JobSpec, run_dir: Path, current: RunSummary | None, action: str,
                 reason: str) -> tuple[str, str]:
    """(`oom`, the sentence) for a resume of a run killed for memory that asks for no more memory than
    the attempt that was killed; else the action unchanged."""
    if action != "resume" or current is None or current.state != State.OUT_OF_MEMORY:
        return action, reason
    try:
        had = RunDir(run_dir).spec().resources.mem_mb
    except Exception:  # an unreadable spec is reported elsewhere; do not block on it here
        return action, reason
    if spec.resources.mem_mb > had:
        return action, f"{reason}; mem {had}M → {spec.resources.mem_mb}M after an out-of-memory kill"
    return OOM_ACTION, oom_message(current.step, had, current.run_id)


def avoid_failed_nodes(res: Resources, current: RunSummary | None) -> tuple[Resources, str | None]:
    """The job's resources with the nodes its run lost added to `exclude`, and the note saying so."""
    if current is None or not current.failed_nodes:
        return res, None
    have = [n for n in (res.exclude or "").split(",") if n]
    new = [n for n in current.failed_nodes if n not in have]
    if not new:
        return res, None
    return replace(res, exclude=",".join(have + new)), f"avoiding node {','.join(new)}, which failed under an attempt"
