"""`jobkit collect SWEEP`: one page per sweep — runs table, loss curves, samples and images side by side."""
from __future__ import annotations

from pathlib import Path

import click

from jobkit.cli.common import UserError, console, json_option, locate_sweep, print_json, root_option
from jobkit.cli.complete import sweeps_only
from jobkit.store import find_runs


@click.command("collect")
@click.argument("sweep", shell_complete=sweeps_only)
@root_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the report [default: <root>/<sweep>/report/].")
@json_option
def collect(sweep: str, root: Path | None, out: Path | None, as_json: bool) -> None:
    """Collect SWEEP into one self-contained report page.

    Writes index.html (inline CSS and SVG charts, images copied beside it under img/, nothing
    fetched from the network), summary.json and summary.md: a runs table (key values, state, steps,
    best and final metrics, time, segments, requeues), every run's train and validation loss on one
    plot per workload (read from the TensorBoard files), text samples side by side with the true
    continuation, and each workload's images compared as it describes them (β-VAE grids per β with MIG). A sweep that is still running gives a report of what
    exists plus a list of what is missing. SWEEP may also be the sweep's folder, or one of its runs
    (signature, id or name). Above 50 runs the page is a table that pages, sorts and filters, the best
    run of each group and the curves of the runs you pick, with one page per run under runs/.

    \b
    Examples:
      jobkit collect charlm-models                  # -> runs/charlm-models/report/index.html
      jobkit collect vae-beta --root /scratch/runs --out ~/public_html/vae
      jobkit collect charlm-models --json | jq '.runs[] | {run_id, state, final}'
    """
    from jobkit.collect import CollectError
    from jobkit.collect import collect as collect_sweep

    root, sweep = locate_sweep(sweep, root)
    if not (root / sweep).is_dir():  # a run's signature, id or name: its sweep
        try:
            sweeps = {r.path.parent.name for r in find_runs(root, [sweep])}
        except LookupError:
            sweeps = set()
        sweep = sweeps.pop() if len(sweeps) == 1 else sweep
    try:
        report = collect_sweep(root, sweep, out)
    except CollectError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        print_json(report.summary)
        return
    s = report.summary
    states = ", ".join(f"{n} {state.lower()}" for state, n in sorted(s["counts"]["states"].items()))
    con = console()
    con.print(f"{s['counts']['runs']} runs ({states})"
              + (f"; {len(s['missing'])} item(s) missing or in progress" if s["missing"] else "; complete"))
    click.echo(str(report.index))
