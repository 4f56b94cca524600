"""Site configuration: what every job on this cluster needs and a sweep should not repeat.

Files, nearest first (a value from a nearer file wins; each value remembers its file):
1. `jobkit.toml` in the sweep's folder or the nearest folder above it (the current folder when no
   sweep is involved);
2. the file named by `$JOBKIT_CONFIG`;
3. `~/.config/jobkit/config.toml`.

```toml
account = "physics"                 # default --account (a sweep's or --set's account wins)
qos = "normal"                      # default --qos
python = "/home/me/venvs/dl/bin/python"   # interpreter that runs jobs (submitit's `python`)
setup = ["module load cuda/12.1", "source ~/venvs/dl/bin/activate"]  # run as-is before Python
never_partitions = ["interactive"]  # never chosen unless a run names them
sbatch_per_minute = 10              # space sbatch calls (a site's "N allocations a minute"); default: no spacing
poll_min_s = 3                      # --wait/--watch poll every 0.3 s per run, within these bounds
poll_max_s = 60
stall_timeout = "15m"               # no step for this long is a stall (default: from the run's step time)
```
`setup` lines are the user's own shell lines, run as written at the top of every job script (that is
their purpose: `module load`, `source`); only NUL and line breaks inside a line are refused, so one
line stays one line. `python` is put on the job's command line as written, too.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobkit.plan.slurmtime import format_duration, parse_duration
from jobkit.plan.slurmvalues import check_name

KEYS = ("account", "qos", "python", "setup", "never_partitions", "sbatch_per_minute", "poll_min_s", "poll_max_s",
        "stall_timeout")
NUMBERS = ("sbatch_per_minute", "poll_min_s", "poll_max_s")
PROJECT_FILE = "jobkit.toml"


class ConfigError(ValueError):
    """A bad configuration file; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class SiteConfig:
    account: str | None = None
    qos: str | None = None
    python: str | None = None
    setup: tuple[str, ...] = ()
    never_partitions: tuple[str, ...] = ()
    sbatch_per_minute: float | None = None  # None: sbatch calls are not spaced
    poll_min_s: float = 3.0
    poll_max_s: float = 60.0
    stall_timeout_s: float | None = None  # a run's default `stall_timeout` (run/watchdog.py)
    sources: dict[str, str] = field(default_factory=dict)  # key -> file it came from
    files: tuple[str, ...] = ()  # every file read, nearest first

    @property
    def stall_timeout(self) -> str | None:
        """As written back: `15m`, `off`; None when the file sets none."""
        if self.stall_timeout_s is None:
            return None
        return "off" if not self.stall_timeout_s else format_duration(self.stall_timeout_s)

    def to_json(self) -> dict[str, Any]:
        return {"values": {k: (list(v) if isinstance(v, tuple) else v) for k, v in
                           ((k, getattr(self, k)) for k in KEYS)},
                "sources": dict(self.sources), "files": list(self.files)}


def candidate_files(start: Path | None = None, env: dict[str, str] | None = None) -> list[Path]:
    """The configuration files that exist, nearest first."""
    env = os.environ if env is None else env
    out: list[Path] = []
    folder = Path(start or Path.cwd()).resolve()
    if folder.is_file():
        folder = folder.parent
    for d in (folder, *folder.parents):
        f = d / PROJECT_FILE
        if f.is_file():
            out.append(f)
            break
    if env.get("JOBKIT_CONFIG"):
        f = Path(env["JOBKIT_CONFIG"]).expanduser()
        if not f.is_file():
            raise ConfigError(f"JOBKIT_CONFIG={env['JOBKIT_CONFIG']}: no such file")
        out.append(f)
    home = env.get("HOME")
    user = Path(home).expanduser() / ".config" / "jobkit" / "config.toml" if home else None
    if user is not None and user.is_file() and user.resolve() not in {p.resolve() for p in out}:
        out.append(user)
    return out


def _line(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {key}: expected a non-empty string, got {value!r}")
    if "\x00" in value or "\n" in value or "\r" in value:
        raise ConfigError(f"{path}: {key}: {value!r} holds a NUL or a line break; give one line per list item")
    return value


def _validate(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; accepted: {', '.join(KEYS)}")
    out: dict[str, Any] = {}
    for key in NUMBERS:
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{path}: {key}: expected a positive number, got {value!r}")
            out[key] = float(value)
    if out.get("poll_min_s", 0) > out.get("poll_max_s", float("inf")):
        raise ConfigError(f"{path}: poll_min_s {out['poll_min_s']:g} > poll_max_s {out['poll_max_s']:g}; "
                          "make the least interval the smaller")
    try:
        for key in ("account", "qos"):
            if key in data:
                out[key] = check_name("an account" if key == "account" else "a QoS", data[key])
        if "python" in data:
            out["python"] = _line(path, "python", data["python"])
        if "setup" in data:
            lines = data["setup"]
            if isinstance(lines, str):
                lines = [lines]
            if not isinstance(lines, list):
                raise ConfigError(f"{path}: setup: expected a list of shell lines, got {lines!r}")
            out["setup"] = tuple(_line(path, "setup", x) for x in lines)
        if "never_partitions" in data:
            names = data["never_partitions"]
            if not isinstance(names, list):
                raise ConfigError(f"{path}: never_partitions: expected a list of partition names, got {names!r}")
            out["never_partitions"] = tuple(check_name("a partition", n) for n in names)
        if "stall_timeout" in data:
            try:
                out["stall_timeout_s"] = parse_duration(data["stall_timeout"])
            except ValueError as exc:
                raise ConfigError(f"{path}: stall_timeout: {exc}") from None
    except ConfigError:
        raise
    except ValueError as exc:
        bad = next(k for k in ("account", "qos", "never_partitions") if k in data and k not in out)
        raise ConfigError(f"{path}: {bad}: {exc}") from None
    return out


def load(start: Path | None = None, env: dict[str, str] | None = None) -> SiteConfig:
    """The merged configuration for a sweep in (or a command run from) `start`. Raises ConfigError."""
    files = candidate_files(start, env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in reversed(files):  # farthest first, nearer files override
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for key, value in _validate(path, data).items():
            values[key] = value
            sources[key.removesuffix("_s")] = str(path)
    return SiteConfig(**values, sources=sources, files=tuple(str(p) for p in files))
