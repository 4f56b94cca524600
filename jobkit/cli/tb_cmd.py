"""`jobkit tb SWEEP`: TensorBoard on a sweep, every run separate in the selector, bound to localhost."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import click

from jobkit.cli.common import EXIT_OK, UserError, err_console, locate_sweep, root_option
from jobkit.cli.complete import sweeps_only


@click.command("tb")
@click.argument("sweep", shell_complete=sweeps_only)
@root_option
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to serve on (0: any free port) [default: 6006, or the next free one].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Keep it local and reach it with `ssh -L 6006:localhost:6006 HOST`.")
@click.option("--reload-interval", type=click.IntRange(1, 3600), default=30, show_default=True,
              help="Seconds between TensorBoard's re-reads of running runs.")
@click.option("--print-command", "--dry-run", "print_command", is_flag=True,
              help="Print the TensorBoard command that would run, and exit.")
def tb(sweep: str, root: Path | None, port: int | None, host: str, reload_interval: int, print_command: bool) -> None:
    """Start TensorBoard on SWEEP: each run is its own entry in the run selector, named by run id, and
    its hparams (written when a run ends) fill the HPARAMS tab. Runs still running update live. Binds
    to localhost; prints the URL; Ctrl-C stops it. --print-command prints an equivalent stand-alone
    `python -m tensorboard.main --logdir_spec ...` line instead (runs there show as `<id>/.`).

    \b
    Examples:
      jobkit tb charlm-models                        # http://localhost:6006/
      jobkit tb vae-beta --port 6010 --root /scratch/runs
      jobkit tb vae-beta --print-command             # the `python -m tensorboard.main ...` line
      ssh -L 6006:localhost:6006 login-node          # then open http://localhost:6006/ here
    """
    from jobkit.collect import CollectError, sweep_runs
    from jobkit.collect import tensorboard as tbmod

    root, sweep = locate_sweep(sweep, root)
    try:
        runs = sweep_runs(root, sweep)
        plan = tbmod.plan(runs, host=host, port=port, reload_interval=reload_interval)
    except (CollectError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if print_command:
        click.echo(plan.command_line())
        return
    err = err_console()
    if not tbmod.is_loopback(host):
        err.print(f"[yellow]warning:[/] serving on {host}: anyone who can reach this machine sees these runs")
    if plan.without_events:
        err.print(f"[dim]no TensorBoard events yet (they appear when written): {', '.join(plan.without_events)}[/]")
    try:
        url, links = tbmod.launch(plan)
    except Exception as exc:  # TensorBoardPortInUseError and friends: one line, no traceback
        raise UserError(f"TensorBoard did not start: {exc}") from None
    def stop(signum, frame):  # `kill` as well as Ctrl-C: remove the link folder on the way out
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background by a non-interactive shell (a script's `jobkit tb &`)
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt; "Ctrl-C stops it" holds anyway
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        click.echo(url)
        err.print(f"[dim]TensorBoard on {len(plan.runs)} runs of {sweep}; Ctrl-C stops it[/]")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        raise SystemExit(EXIT_OK) from None
    finally:
        tbmod.remove_links(links)
