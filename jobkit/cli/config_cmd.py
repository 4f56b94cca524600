"""`jobkit config`: the merged site configuration and the file each value came from."""
from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from jobkit.cli.common import console, fail, json_option, print_json
from jobkit.plan import siteconfig


@click.command("config")
@click.argument("where", required=False, type=click.Path(path_type=Path))
@json_option
def config(where: Path | None, as_json: bool) -> None:
    """Show the site configuration jobs get (account, qos, python, setup lines, never_partitions).

    Read from jobkit.toml in WHERE (a sweep file or folder; default: the current folder) or the
    nearest folder above, then $JOBKIT_CONFIG, then ~/.config/jobkit/config.toml; nearer files win.
    `setup` lines run as written in every job before Python starts.

    \b
    Examples:
      jobkit config
      jobkit config jobs/sweeps/seed.toml --json
    """
    try:
        cfg = siteconfig.load(where)
    except siteconfig.ConfigError as exc:
        fail(str(exc))
    if as_json:
        print_json(cfg.to_json())
        return
    table = Table(title="jobkit configuration" + ("" if cfg.files else " (no configuration file found)"),
                  title_justify="left")
    for col in ("key", "value", "from"):
        table.add_column(col, overflow="fold")
    for key in siteconfig.KEYS:
        value = getattr(cfg, key)
        if isinstance(value, tuple):
            text = "\n".join(value) if key == "setup" else ", ".join(value)
        else:
            text = "" if value is None else str(value)
        table.add_row(key, text or "-", cfg.sources.get(key, "default"))
    console().print(table)
    if cfg.files:
        console().print("files read, nearest first: " + ", ".join(cfg.files))
