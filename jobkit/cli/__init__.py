"""`jobkit`: the command line. Thin: parses flags, calls the modules, renders tables or JSON."""
from __future__ import annotations

import os
import sys

import click

from jobkit import __version__


class JobkitGroup(click.Group):
    """A click group whose usage errors are one line (`error: ...`, exit 2), like every other error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        try:
            code = super().main(args, prog_name or "jobkit", complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see `jobkit {exc.ctx.info_name} --help`)" if exc.ctx and exc.ctx.parent else " (see `jobkit --help`)"
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=JobkitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="jobkit")
@click.option("--debug-calls", is_flag=True, help="Print every scheduler call (sacct, squeue, sbatch, ...) as it is "
              "made and their counts at the end, on stderr (also: JOBKIT_DEBUG_CALLS=1).")
def cli(debug_calls: bool) -> None:
    """Run deep-learning experiments as Slurm batch jobs that survive time limits and preemption.

    \b
    Example:
      jobkit submit jobs/sweeps/smoke.toml --dry-run --explain
      jobkit submit jobs/sweeps/smoke.toml --wait
      jobkit status smoke
      jobkit collect smoke
    """
    if debug_calls:  # read by jobkit.schedcalls in this process (and the jobs it starts)
        os.environ["JOBKIT_DEBUG_CALLS"] = "1"


def _register() -> None:
    from jobkit.cli.cancel_cmd import cancel
    from jobkit.cli.collect_cmd import collect
    from jobkit.cli.config_cmd import config
    from jobkit.cli.logs_cmd import logs
    from jobkit.cli.partitions_cmd import partitions
    from jobkit.cli.run_cmd import run
    from jobkit.cli.status_cmd import status
    from jobkit.cli.submit_cmd import resume, submit
    from jobkit.cli.tb_cmd import tb

    for command in (submit, status, resume, cancel, logs, partitions, config, run, collect, tb):
        cli.add_command(command)


_register()


def main() -> None:
    """Console entry point: user errors are one line (exit 2); unexpected ones too, unless JOBKIT_DEBUG=1."""
    try:
        cli.main()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug or an environment problem: no traceback unless asked
        if os.environ.get("JOBKIT_DEBUG"):
            raise
        click.echo(f"error: {type(exc).__name__}: {exc} (set JOBKIT_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
