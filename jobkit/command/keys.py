"""A command run's keys that its command line never uses: every key jobkit does not know is a
parameter, so a misspelt `resumeable = true` would silently leave the run non-resumable. One close
to a key jobkit knows is refused with the key it probably meant; the others are named in one warning.
"""
from __future__ import annotations

import difflib
import string
from typing import Any, Iterable, Mapping

from jobkit.command.params import BUILTINS, JOBKIT_KEYS, CommandError
from jobkit.plan.spec import RESOURCE_KEYS, SETTING_KEYS

KNOWN = (*JOBKIT_KEYS, *RESOURCE_KEYS, *SETTING_KEYS, "workload")
_PLACED = ("command", "resume_args", "resume_when", "checkpoint")  # the keys whose text takes placeholders


def used(params: Mapping[str, Any]) -> set[str]:
    """The placeholder names in the command line and the other keys that take placeholders."""
    texts: list[str] = []
    for key in _PLACED:
        value = params.get(key)
        texts.extend(value if isinstance(value, list) else [value] if isinstance(value, str) else [])
    names = set()
    for text in texts:
        try:
            names.update(name for _, name, _, _ in string.Formatter().parse(text) if name)
        except ValueError:
            continue  # reported by the command's own check
    return names - set(BUILTINS)


def unused(params: Mapping[str, Any]) -> list[str]:
    """The run's own keys (not jobkit's) that no placeholder uses: they only name the run."""
    return sorted(set(params) - set(KNOWN) - used(params))


def refuse_misspelt(params: Mapping[str, Any]) -> None:
    """An unused key close to one of jobkit's keys is almost surely a typo (raises CommandError)."""
    for key in unused(params):
        close = difflib.get_close_matches(key, KNOWN, n=1, cutoff=0.8)
        if close:
            raise CommandError(f"{key}: not a key jobkit knows and the command never uses {{{key}}}; did you "
                               f"mean {close[0]}? (rename it, or use {{{key}}} in command if it is the script's)")


def warning(runs: Iterable[Mapping[str, Any]]) -> str | None:
    """One line naming the keys of these runs that the command line never uses, or None."""
    names = sorted({k for params in runs for k in unused(params)})
    if not names:
        return None
    return (f"keys the command line never uses: {', '.join(names)}; they only name the runs (part of their "
            "identity) — use them as {key} in command, or remove them")
