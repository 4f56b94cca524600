"""`jobkit run RUN_DIR`: run or continue one run in the foreground, through the same runner as jobs."""
from __future__ import annotations

from pathlib import Path

import click

from jobkit.cli.common import EXIT_FAILED, console, fail
from jobkit.store import RunDir


@click.command("run")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def run(run_dir: Path) -> None:
    """Run or continue RUN_DIR in this shell, from its latest checkpoint.

    SIGINT, SIGTERM or SIGUSR2 checkpoint at the next step boundary and exit with code 3;
    running the same command again continues from there. While another process trains RUN_DIR
    (a job, or another `jobkit run`) it refuses, naming the holder, and exits with code 4.
    Started by torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set), each process is one
    data-parallel rank of the run.

    \b
    Example:
      jobkit run runs/smoke/charlm-lstm-3f9a1c2e
    """
    from jobkit.plan import registry
    from jobkit.run import distributed, launch, lease, runner

    rd = RunDir(run_dir)
    if not rd.exists():
        fail(f"{run_dir}: not a run directory (no spec.json); create runs with `jobkit submit SWEEP`")
    out = console()
    topology = distributed.Topology.from_environ() or distributed.Topology()
    try:  # one writer per run: refuse, having written nothing, while another process trains it
        held = lease.Lease.take(rd.path, rank=topology.rank)
    except lease.LeaseHeld as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(lease.EXIT_LEASE_HELD)
    try:
        final = launch.run(rd, runner.Host(topology=topology))
    except runner.Stopped as stop:
        if not topology.is_main:
            raise SystemExit(runner.EXIT_STOPPED)
        rd.record_stopped(stop.step, stop.reason)
        out.print(f"[yellow]stopped[/] at step {stop.step} ({stop.reason}); checkpoint saved — "
                  f"continue with: jobkit run {run_dir}")
        raise SystemExit(runner.EXIT_STOPPED)
    except runner.RunFailed as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_FAILED)
    except registry.UnknownWorkload as exc:
        fail(str(exc))
    finally:
        held.release()
    if not topology.is_main:
        return
    shown = ", ".join(f"{k}={v:.4g}" for k, v in final.items())
    out.print(f"[green]finished[/] {rd.run_id}: {shown}")
