"""Slurm's time and memory notations, parsed once so every module agrees on them."""
from __future__ import annotations

import re

_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
_MEM = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<u>[KMGT]?)B?$", re.IGNORECASE)


def parse_time(text: str) -> int | None:
    """Minutes in a Slurm time string; None for UNLIMITED/INFINITE.

    Accepts Slurm's forms: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
    Seconds round up, so a limit is never understated. Raises ValueError on anything else.
    """
    t = str(text).strip()
    if t.upper() in ("UNLIMITED", "INFINITE"):
        return None
    m = _TIME.match(t)
    if not m:
        raise ValueError(f"not a Slurm time: {text!r} (use HH:MM:SS, D-HH:MM:SS or minutes)")
    d, a, b, c = (m.group(k) for k in "dabc")
    days = int(d) if d else 0
    if d:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = int(a), int(b or 0), int(c or 0)
    elif c is not None:  # HH:MM:SS
        hours, minutes, seconds = int(a), int(b), int(c)
    elif b is not None:  # MM:SS
        hours, minutes, seconds = 0, int(a), int(b)
    else:  # MM
        hours, minutes, seconds = 0, int(a), 0
    if minutes >= 60 and (d or c is not None) or seconds >= 60:
        raise ValueError(f"not a Slurm time: {text!r} (minutes and seconds must be < 60)")
    total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    return total


def format_time(minutes: int | None) -> str:
    """`D-HH:MM:SS` or `HH:MM:SS` (what sbatch accepts), `UNLIMITED` for None."""
    if minutes is None:
        return "UNLIMITED"
    days, rest = divmod(int(minutes), 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def parse_mem(text: str | int) -> int:
    """Megabytes in a Slurm memory string (`4G`, `500M`, `4096`; a bare number is MB)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _MEM.match(str(text).strip())
    if not m:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 500M, 4G)")
    factor = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group("u").upper()]
    return max(1, int(round(float(m.group("n")) * factor)))
