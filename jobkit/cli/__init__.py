"""`jobkit`: the command line. Thin: parses flags, calls the modules, renders tables or JSON."""
from __future__ import annotations

import os
import sys

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="jobkit")
def cli() -> None:
    """Run deep-learning experiments as Slurm batch jobs that survive time limits and preemption.

    \b
    Example:
      jobkit submit jobs/sweeps/smoke.toml --dry-run --explain
      jobkit submit jobs/sweeps/smoke.toml --wait
      jobkit status smoke
      jobkit collect smoke
    """


def _register() -> None:
    from .collect_cmd import collect
    from .partitions_cmd import partitions
    from .run_cmd import run
    from .status_cmd import cancel, logs, status
    from .submit_cmd import resume, submit
    from .tb_cmd import tb

    for command in (submit, status, resume, cancel, logs, partitions, run, collect, tb):
        cli.add_command(command)


_register()


def main() -> None:
    """Console entry point: user errors are one line (exit 2); unexpected ones too, unless JOBKIT_DEBUG=1."""
    try:
        cli.main(standalone_mode=True)
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
