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


_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration: `"90s"`, `"5m"`, `"1h30m"`, a Slurm time (`"00:05:00"`; a bare number is
    minutes, as `--time` reads it), or `"off"` / `0` (0: the watch is off). Raises ValueError."""
    bad = f"expected a duration like '5m', '90s', '1h30m' or '00:05:00' (or 'off'), got {value!r}"
    if isinstance(value, bool):
        raise ValueError(bad)
    if isinstance(value, (int, float)):
        if not value >= 0:
            raise ValueError(bad)
        return float(value) * 60.0
    text = str(value).strip().lower()
    if text in ("off", "none"):
        return 0.0
    m = _DURATION.match(text)
    if m and any(m.groupdict().values()):
        return sum(float(m.group(k) or 0) * f for k, f in (("h", 3600), ("m", 60), ("s", 1)))
    slurm_form = _TIME.match(text)
    if slurm_form is None:
        raise ValueError(bad)
    d, a, b, c = (int(slurm_form.group(k) or 0) for k in "dabc")
    if slurm_form.group("d"):
        return float(d * 86400 + a * 3600 + b * 60 + c)
    if slurm_form.group("c") is not None:
        return float(a * 3600 + b * 60 + c)
    return float(a * 60 + b)


def format_duration(seconds: float) -> str:
    """`45s`, `5m`, `1m30s`, `14m`, `2h05m`: short, for status lines and events."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes}m" if not rest or minutes >= 10 else f"{minutes}m{rest:02d}s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"
