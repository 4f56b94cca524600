"""TensorBoard on a sweep: every run a separate run in TensorBoard's selector, bound to localhost.

`jobkit tb` gives TensorBoard a private folder of links `<run-id> -> <run>/tb`, so each run is listed
under its bare id (the hparams summary the runner writes at the end fills the HPARAMS tab) and runs
that start logging later appear on TensorBoard's next reload. `--print-command` prints the equivalent
stand-alone command with `--logdir_spec id:path,...` (TensorBoard then lists the runs as `<id>/.`).
"""
from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jobkit.store import RunDir

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class TBPlan:
    runs: dict[str, Path]  # run id -> its tb/ folder (absolute)
    without_events: list[str]  # runs with no event files yet (they appear once they log)
    options: list[str]  # --host/--port/--reload_interval

    def logdir_spec(self) -> str:
        """`id:path,id:path`; TensorBoard splits on ',' and on the first ':', so neither may be ambiguous."""
        for rid, path in self.runs.items():
            if "," in str(path) or "," in rid or ":" in rid:
                raise ValueError(f"TensorBoard's --logdir_spec cannot express {rid}:{path} (',' or ':' in it)")
        return ",".join(f"{rid}:{path}" for rid, path in self.runs.items())

    def command(self) -> list[str]:
        """A stand-alone command (no link folder needed)."""
        return [sys.executable, "-m", "tensorboard.main", "--logdir_spec", self.logdir_spec(), *self.options]

    def command_line(self) -> str:
        return shlex.join(self.command())


def is_loopback(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan(runs: list[RunDir], *, host: str = "127.0.0.1", port: int | None = None,
         reload_interval: int = 30) -> TBPlan:
    from jobkit.collect.scalars import event_files

    options = ["--host", host, "--port", "default" if port is None else str(port),
               "--reload_interval", str(reload_interval)]
    return TBPlan(runs={r.run_id: r.tb_dir.resolve() for r in runs},
                  without_events=[r.run_id for r in runs if not event_files(r.tb_dir)], options=options)


def link_dir(p: TBPlan) -> Path:
    """A new private folder holding one link per run, named by run id (the caller removes it)."""
    folder = Path(tempfile.mkdtemp(prefix="jobkit-tb-"))
    for rid, path in p.runs.items():
        os.symlink(path, folder / rid, target_is_directory=True)
    return folder


def launch(p: TBPlan) -> tuple[str, Path | None]:
    """Start TensorBoard in this process (a background thread). Returns its URL and the link folder
    to remove when done (None if links were impossible and `--logdir_spec` is used instead)."""
    import logging

    from tensorboard import program

    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    try:
        links: Path | None = link_dir(p)
        logdir = ["--logdir", str(links)]
    except OSError:  # no symlinks here: fall back to --logdir_spec (runs then show as '<id>/.')
        links, logdir = None, ["--logdir_spec", p.logdir_spec()]
    board = program.TensorBoard()
    try:
        board.configure(argv=[None, *logdir, *p.options])
        return board.launch(), links
    except BaseException:
        remove_links(links)
        raise


def remove_links(folder: Path | None) -> None:
    """Remove the link folder (the links only; never what they point to)."""
    if folder is not None and folder.name.startswith("jobkit-tb-"):
        for link in folder.iterdir():
            if link.is_symlink():
                link.unlink()
        shutil.rmtree(folder, ignore_errors=True)
