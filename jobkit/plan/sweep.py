"""Sweep files (TOML) -> validated JobSpecs, every error found before anything is written.

```toml
name = "seed"                 # runs go to <root>/seed/
[defaults]                    # every [[run]] starts from these (resources and workload params)
time = "00:30:00"
[[run]]
workload = "charlm"
model = ["lstm", "tcn", "transformer"]   # a list expands: one run per value (cartesian product)
```
Resource keys (`time`, `total_time`, `cpus`, `mem`, `gpus` (a count or `"a100:1"`), `partition`,
`chunk`, `account`, `qos`, `constraint`, `nodes`, `exclude`, and an `[sbatch]` table of allow-listed
options — top level, in `[defaults]` or in a run) and run settings (`checkpoint_every`,
`eval_every`, ... — `spec.SETTING_KEYS`) and `check_data` never change a run's identity; every
other key is a workload parameter and does. `$VAR` / `${VAR}` in a string value is
replaced by that environment variable when the sweep is read; an unset one is an error.
"""
from __future__ import annotations

import fnmatch
import itertools
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from jobkit.plan import params as params_mod
from jobkit.plan import registry
from jobkit.plan.spec import (
    RESOURCE_KEYS,
    SWEEP_NAME,
    JobSpec,
    differing_keys,
    parse_resources,
    readable_name,
    split_settings,
)

TOP_KEYS = ("name", "defaults", "run", "sbatch")


class SweepError(ValueError):
    """Bad sweep input; the message is one line naming the file, the run and the key."""


@dataclass
class Sweep:
    name: str
    specs: list[JobSpec]
    warnings: list[str] = field(default_factory=list)  # one line each, shown at submit (not errors)


def parse_set(items: list[str] | tuple[str, ...]) -> list[tuple[str | None, str, Any]]:
    """`--set key=value` / `--set workload.key=value`; values are TOML (`[0, 4]`, `true`, `1e-3`),
    anything that is not valid TOML is taken as a string."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepError(f"--set {item!r}: expected key=value, e.g. --set steps=500 or --set 'beta=[0,4]'")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        scope, _, name = key.rpartition(".")
        out.append((scope or None, name, value))
    return out


def load(path: Path, overrides: list[str] | tuple[str, ...] = (), only: str | None = None) -> Sweep:
    """Read, expand and validate a sweep file. Raises SweepError with a one-line message."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file (see jobs/sweeps/ for examples)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SweepError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, source=str(path), default_name=path.stem, overrides=overrides, only=only)


def from_dict(data: Mapping[str, Any], source: str = "<sweep>", default_name: str = "sweep",
              overrides: list[str] | tuple[str, ...] = (), only: str | None = None) -> Sweep:
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise SweepError(f"{source}: unknown top-level key {unknown[0]!r}; accepted: name, [defaults], [sbatch], [[run]]")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not SWEEP_NAME.match(name):
        raise SweepError(f"{source}: name: {name!r} is not a valid sweep name "
                         "(letters, digits, '.', '_', '-'; at most 64 characters)")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise SweepError(f"{source}: [defaults] must be a table of key = value")
    if "sbatch" in data:  # a top-level [sbatch] table: options for every run
        if not isinstance(data["sbatch"], dict):
            raise SweepError(f"{source}: [sbatch] must be a table of option = value")
        defaults = {**defaults, "sbatch": {**data["sbatch"], **defaults.get("sbatch", {})}}
    runs = data.get("run")
    if not runs:
        raise SweepError(f"{source}: no [[run]] tables; add at least one with a workload = \"...\" key")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise SweepError(f"{source}: run must be written as [[run]] tables")
    sets = parse_set(overrides)
    _check_set_scopes(sets, runs, defaults, source)

    specs: list[JobSpec] = []
    varying: list[str] = []
    for index, run in enumerate(runs, start=1):
        specs.extend(_expand_run(index, run, defaults, sets, source, name, varying))
    specs = _name_runs(specs, varying)
    _check_duplicates(specs, source)
    if only:
        chosen = [s for s in specs if fnmatch.fnmatch(s.run_id, only) or only in s.run_id]
        if not chosen:
            raise SweepError(f"{source}: --only {only!r} matches none of the {len(specs)} runs "
                             f"(ids look like {specs[0].run_id})")
        specs = chosen
    return Sweep(name=name, specs=specs, warnings=_unused_keys(specs, source))


def _unused_keys(specs: list[JobSpec], source: str) -> list[str]:
    """A workload that runs itself may name keys its runs never use (`unused_keys`): one line each."""
    lines = []
    for workload in dict.fromkeys(s.workload for s in specs):
        check = getattr(registry.load(workload, check=False), "unused_keys", None)
        line = check([s.params for s in specs if s.workload == workload]) if check else None
        if line:
            lines.append(f"{source}: {line}")
    return lines


def _check_set_scopes(sets: list[tuple[str | None, str, Any]], runs: list[dict], defaults: dict, source: str) -> None:
    """Every --set must reach at least one run: a known workload scope, a resource or a known param."""
    known = {r.get("workload", defaults.get("workload")) for r in runs}
    keys: set[str] = set(RESOURCE_KEYS)
    for name in known:
        try:
            cls = registry.load(str(name))
        except registry.UnknownWorkload:
            continue  # reported with its run
        if registry.runs_itself(cls):  # its runs' keys are its own: any key they have may be set
            keys |= set(cls.own_keys) | set(defaults) | {k for r in runs for k in r}
        else:
            keys |= set(params_mod.fields_of(cls.Params))
    for scope, key, _ in sets:
        if scope is not None and scope not in known:
            raise SweepError(f"--set {scope}.{key}: no run of workload {scope!r} in {source} "
                             f"(workloads here: {', '.join(sorted(map(str, known)))})")
        if scope is None and key not in keys:
            raise SweepError(f"--set {key}: no workload in {source} has a parameter {key!r}; "
                             f"accepted keys: {', '.join(sorted(keys))}")


def _expand_run(index: int, run: dict, defaults: dict, sets: list, source: str, sweep_name: str,
                varying: list[str]) -> list[JobSpec]:
    where = f"{source}: run {index}"
    merged = {**defaults, **run}
    workload_name = merged.pop("workload", None)
    if not isinstance(workload_name, str) or not workload_name:
        avail = ", ".join(sorted(registry.available()))
        raise SweepError(f"{where}: workload: missing; accepted values: {avail}")
    try:
        cls = registry.load(workload_name)
    except registry.UnknownWorkload as exc:
        raise SweepError(f"{where}: workload: {exc}") from None
    where = f"{source}: run {index} ({workload_name})"
    own = registry.runs_itself(cls)  # its params are the run's own keys, resolved by the workload
    param_keys = set(cls.own_keys) if own else set(params_mod.fields_of(cls.Params))
    for scope, key, value in sets:
        if scope == workload_name or (scope is None and (key in param_keys or key in RESOURCE_KEYS
                                                         or (own and key in merged))):
            merged[key] = value
    if not own:
        _check_set_known(sets, where, workload_name, param_keys)

    resources = _pop_resources(merged, where)

    list_keys = [k for k, v in merged.items() if isinstance(v, list) and not _list_typed(cls, k)]
    _note_axes(merged, list_keys, where, varying)
    workdir = Path.cwd() if own else None  # a workload that runs itself runs where you submit
    specs = []
    for combo, raw in _expansions(merged, list_keys, where):
        try:
            if own:
                params, settings = cls.resolve_params(raw, workdir), {}
            else:
                resolved = params_mod.resolve(cls.Params, cls.presets, raw)
                params, settings = split_settings(params_mod.identity_dict(resolved))
        except (ValueError if own else params_mod.ParamError) as exc:
            extra = f" (in the expansion {dict(zip(list_keys, combo))})" if list_keys and not own else ""
            raise SweepError(f"{where}: {exc}{extra}") from None
        specs.append(JobSpec(sweep=sweep_name, workload=workload_name, params=params, settings=settings,
                             resources=resources, name=workload_name, entry=index,
                             workdir=None if workdir is None else str(workdir),
                             key_params=registry.layout(cls).key_params))
    return specs


def _name_runs(specs: list[JobSpec], varying: list[str]) -> list[JobSpec]:
    """Readable names from the params that tell a workload's runs apart in this sweep: its key params
    but the one runs are compared by (`ReportLayout`: charlm's `model`, vae's `dataset`), then the
    listed keys (e.g. `vae-sprites-beta4` beside `vae-lfw-faces-25px-beta4`), then other differing keys
    only while names would still collide; at most three keys."""
    by_workload: dict[str, list[JobSpec]] = {}
    for spec in specs:
        by_workload.setdefault(spec.workload, []).append(spec)
    named = {}
    for workload, group in by_workload.items():
        differing = list(differing_keys([s.params for s in group]))
        layout = registry.layout(registry.load(workload, check=False))  # loaded already: no import cost
        grouping = [k for k in layout.key_params if k != layout.compare_by]
        core = [k for k in grouping if k in differing] + [k for k in varying if k in differing]
        core = list(dict.fromkeys(core))
        extra = sorted(k for k in differing if k not in core)
        keys = core
        for k in extra:
            if len({tuple(repr(s.params[c]) for c in keys) for s in group}) == len(group):
                break
            keys = keys + [k]
        for spec in group:
            named[id(spec)] = replace(spec, name=readable_name(workload, {k: spec.params[k] for k in keys[:3]}))
    return [named[id(s)] for s in specs]


_ENV_REF = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _pop_resources(merged: dict, where: str):
    """Take the resource keys out of a run's merged keys and parse them (one value each, never a list)."""
    raw = {k: merged.pop(k) for k in list(merged) if k in RESOURCE_KEYS}
    for key, value in raw.items():
        if isinstance(value, list):
            raise SweepError(f"{where}: {key}: resource keys take one value, not a list (got {value!r})")
    try:
        return parse_resources(raw)
    except ValueError as exc:
        raise SweepError(f"{where}: {exc}") from None


def _expansions(merged: dict, list_keys: list[str], where: str) -> Iterator[tuple[tuple, dict]]:
    """Each combination of the list axes, with the run's values for it (`$VAR`s expanded)."""
    for combo in (itertools.product(*(merged[k] for k in list_keys)) if list_keys else [()]):
        try:
            raw = {k: _expand_env(k, v) for k, v in merged.items()}
            raw.update((k, _expand_env(k, v)) for k, v in zip(list_keys, combo))
        except ValueError as exc:
            raise SweepError(f"{where}: {exc}") from None
        yield combo, raw


def _note_axes(merged: dict, list_keys: list[str], where: str, varying: list[str]) -> None:
    """Lists expand into runs: an empty one is an error; each axis is remembered for the run names."""
    for key in list_keys:
        if not merged[key]:
            raise SweepError(f"{where}: {key}: an empty list expands to no runs; give at least one value")
        if key not in varying:
            varying.append(key)


def _expand_env(key: str, value: Any) -> Any:
    """`$VAR` / `${VAR}` in string values (e.g. `npy:${JOBKIT_DATA}/faces.npy`).

    An unset variable raises ValueError naming it (a path with the literal `${VAR}` in it would
    only surface later as a baffling missing file).
    """
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(match: re.Match) -> str:
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{key}: {match.group(0)!r} in {value!r} is not a valid variable reference")
        if name not in os.environ:
            raise ValueError(f"{key}: environment variable {name} is not set (used in {value!r}); "
                             f"export {name}=... before submitting, or write the value out")
        return os.environ[name]

    return _ENV_REF.sub(sub, value)


def _list_typed(cls: Any, key: str) -> bool:
    """A param whose value is a list (one value, not a sweep axis)."""
    if registry.runs_itself(cls):
        return key in cls.list_params
    return typing.get_origin(params_mod.hints_of(cls.Params).get(key)) is list


def _check_set_known(sets: list, where: str, workload_name: str, param_keys: set[str]) -> None:
    for scope, key, _ in sets:
        if scope == workload_name and key not in param_keys and key not in RESOURCE_KEYS:
            raise SweepError(f"{where}: --set {scope}.{key}: unknown parameter; accepted keys: "
                             f"{', '.join(sorted(param_keys))}")


def _check_duplicates(specs: list[JobSpec], source: str) -> None:
    seen: dict[str, int] = {}
    for spec in specs:
        if spec.run_id in seen:
            raise SweepError(f"{source}: two runs resolve to the same parameters ({spec.run_id}); "
                             "remove the duplicate or change a parameter")
        seen[spec.run_id] = 1
