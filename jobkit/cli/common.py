"""Shared pieces of the CLI: the --root option, error exits, consoles. No command logic here."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

import click
from rich.console import Console

from jobkit.store import RunDir, find_runs

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def default_root() -> Path:
    return Path(os.environ.get("JOBKIT_ROOT") or "runs")


root_option = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder holding the sweeps' run directories [default: $JOBKIT_ROOT, else ./runs].")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")


def resolve_root(root: Path | None) -> Path:
    return (root or default_root()).expanduser()


def _width() -> int | None:
    """Rich's own width on a terminal; wide enough for the status table when piped or logged."""
    return None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))


def console() -> Console:
    return Console(highlight=False, width=_width())


def err_console() -> Console:
    return Console(stderr=True, highlight=False, width=_width())


class UserError(click.ClickException):
    """A one-line error for bad input; exits 2 and never shows a traceback."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err = UserError(message)
    err.exit_code = code
    raise err


def find(root: Path, selectors: Sequence[str]) -> list[RunDir]:
    """The runs named by `selectors` under `root`; a selector that matches nothing is a usage error."""
    try:
        return find_runs(root, selectors)
    except LookupError as exc:
        fail(str(exc))


def locate_sweep(sweep: str, root: Path | None) -> tuple[Path, str]:
    """`SWEEP` as a name under --root, or (without --root) as the path of a sweep folder."""
    if root is None and ("/" in sweep or sweep.startswith(".")):
        p = Path(sweep).expanduser()
        if p.is_dir() and any(p.glob("*/spec.json")):
            return p.resolve().parent, p.resolve().name
    if "/" in sweep:
        raise UserError(f"no sweep folder {sweep!r} (give a sweep name with --root, or the folder of a sweep)")
    return resolve_root(root), sweep


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
