"""Shell completion of sweep names and run ids under --root (click's own completion mechanism).

Enable it once per shell (README): `eval "$(_JOBKIT_COMPLETE=bash_source jobkit)"` for bash,
`eval "$(_JOBKIT_COMPLETE=zsh_source jobkit)"` for zsh.
"""
from __future__ import annotations

from pathlib import Path

import click
from click.shell_completion import CompletionItem

from jobkit.cli.common import resolve_root


def _root(ctx: click.Context) -> Path:
    root = ctx.params.get("root")
    return resolve_root(Path(root) if root else None)


def _names(root: Path) -> tuple[list[str], list[str]]:
    """(sweep names, run ids) under root, read from the folder layout only (no spec is parsed)."""
    sweeps, runs = set(), []
    for spec in sorted(root.glob("*/*/spec.json")):
        sweeps.add(spec.parent.parent.name)
        runs.append(spec.parent.name)
    return sorted(sweeps), runs


def sweeps_and_runs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    sweeps, runs = _names(_root(ctx))
    return ([CompletionItem(s, help="sweep") for s in sweeps if s.startswith(incomplete)]
            + [CompletionItem(r, help="run") for r in runs if r.startswith(incomplete)])


def runs_only(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(r) for r in _names(_root(ctx))[1] if r.startswith(incomplete)]


def sweeps_only(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(s) for s in _names(_root(ctx))[0] if s.startswith(incomplete)]
