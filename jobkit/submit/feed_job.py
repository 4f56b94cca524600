"""The feeder job's entry point (`python -m jobkit.submit.feed_job SWEEP_FOLDER`, see jobkit.submit.feeder):
submit the sweep again from its stored recipe, which sends the next wave and, while runs wait, the next feeder."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from jobkit.plan import sweep as sweep_mod
from jobkit.submit.feeder import RECIPE, load_recipe, write_record
from jobkit.submit.submit_runs import SubmitProblem, submit_sweep_again

ATTEMPTS, RETRY_EVERY_S = 8, 30  # within the feeder's 10 minutes: a slurmctld restart, a busy slurmdbd


def main(argv: list[str] | None = None) -> int:
    """Inside the feeder job: submit the sweep again from its recipe (sends the next wave and feeder)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m jobkit.submit.feed_job SWEEP_FOLDER", file=sys.stderr)
        return 2
    sweep_dir = Path(args[0])
    try:
        recipe = load_recipe(sweep_dir)
    except (OSError, ValueError, TypeError) as exc:
        print(f"jobkit feeder: cannot read {sweep_dir / RECIPE}: {exc}", file=sys.stderr)
        return 2
    me = os.environ.get("SLURM_JOB_ID")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            done = submit_sweep_again(recipe, sweep_dir, feeder_job=me)
        except sweep_mod.SweepError as exc:  # the sweep file itself: no retry helps
            return _failed(sweep_dir, me, str(exc))
        except SubmitProblem as exc:  # a controller restarting, a timeout: try again within the job's time
            print(f"jobkit feeder {me}: attempt {attempt}/{ATTEMPTS}: {exc}", file=sys.stderr, flush=True)
            if attempt == ATTEMPTS:
                return _failed(sweep_dir, me, str(exc))
            time.sleep(RETRY_EVERY_S)
            continue
        print(f"jobkit feeder {me}: {done}")
        return 0
    return 1


def _failed(sweep_dir: Path, me: str | None, error: str) -> int:
    print(f"jobkit feeder {me}: {error}; `jobkit submit` the sweep again to go on", file=sys.stderr)
    write_record(sweep_dir, job_id=me, ended="failed", error=error)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
