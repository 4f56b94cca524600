"""`jobkit cancel`: stop the jobs of runs; their checkpoints stay for `jobkit resume`."""
from __future__ import annotations

from pathlib import Path

import click

from jobkit.cli.common import EXIT_FAILED, console, find, json_option, print_json, resolve_root, root_option
from jobkit.cli.complete import sweeps_and_runs
from jobkit.observe.status import collect_status
from jobkit.submit.cancel import cancel_runs


@click.command("cancel")
@click.argument("selectors", nargs=-1, required=True, metavar="SWEEP|RUN...", shell_complete=sweeps_and_runs)
@json_option
@root_option
def cancel(selectors: tuple[str, ...], as_json: bool, root: Path | None) -> None:
    """Cancel the queued or running jobs of these runs (one scancel call). Checkpoints stay; `resume` continues.

    \b
    Example:
      jobkit cancel smoke
    """
    root = resolve_root(root)
    outcome = cancel_runs(collect_status(find(root, selectors)).summaries)
    if as_json:
        print_json({"cancelled": [s.run_id for s in outcome.cancelled], "errors": outcome.errors})
    else:
        for s in outcome.cancelled:
            console().print(f"cancelled {s.run_id} (job {s.job_id})")
        if not outcome.cancelled:
            console().print("nothing to cancel: no run is queued or running")
    if outcome.errors:
        click.echo(f"error: {outcome.errors[0]}", err=True)
        raise SystemExit(EXIT_FAILED)
