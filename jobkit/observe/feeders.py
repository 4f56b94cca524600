"""A sweep's feeder job as `status` names it: its record in the sweep folder and Slurm's word for it.

The feeder (jobkit.submit.feeder) records itself in `<sweep>/.feeder.json`; its state is asked in the
same scheduler call as the runs' (jobkit.observe.status), so naming it costs no call.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

RECORD = ".feeder.json"


def record(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's current feeder: job id, when sent, after which job; None if it never had one."""
    try:
        data = json.loads((Path(sweep_dir) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def records(run_paths: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """Sweep name -> its feeder record, for the sweeps of these runs that have one."""
    out: dict[str, dict[str, Any]] = {}
    for sweep_dir in {Path(p).parent for p in run_paths}:
        found = record(sweep_dir)
        if found and found.get("job_id"):
            out[sweep_dir.name] = found
    return out


def describe(sweep: str, rec: dict[str, Any], word: str | None, waiting: int) -> str:
    """`feeder of seed: job 123 PENDING, after job 120 (sends the next wave; 40 runs wait)`."""
    job = rec.get("job_id")
    if rec.get("ended"):
        return f"feeder of {sweep}: job {job} ended ({rec['ended']}{': ' + rec['error'] if rec.get('error') else ''})"
    state = word or "unknown (the scheduler did not say)"
    after = f", after job {rec['after']}" if rec.get("after") else ", retrying on a timer"
    tail = f"; {waiting} run{'s' * (waiting != 1)} wait{'s' * (waiting == 1)}" if waiting else ""
    return f"feeder of {sweep}: job {job} {state}{after} (sends the next wave{tail})"
