"""Find workload classes by name: the `jobkit.workloads` entry points, or `module:Class` paths.

A new workload is one package under `jobs/` plus one line under `[options.entry_points]` in
setup.cfg; the toolkit never imports a model module by name itself. A workload is stepped by the
runner (`protocol.Workload`) or runs itself (`protocol.SelfRunning`, e.g. `jobkit.command`); the few
places that treat its params differently ask `runs_itself`, never its name.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points

from jobkit.plan import params as params_mod
from jobkit.protocol import BaseParams, ReportLayout, Workload

REQUIRED_METHODS = ("setup", "train_step", "evaluate", "artifacts", "state_dict", "load_state_dict")
SELF_RUNNING_METHODS = ("resolve_params", "check_settings", "continues_at_limit", "run")

GROUP = "jobkit.workloads"


class UnknownWorkload(LookupError):
    pass


def available() -> dict[str, str]:
    """Registered workload names -> `module:Class`."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load(name: str, check: bool = True) -> type[Workload]:
    """The workload class for `name` (a registered name, or `package.module:Class`).

    `check=False` skips verifying that it is a whole workload (readers that only want its metadata).
    """
    target = available().get(name)
    if target is None and ":" in name:
        target = name
    if target is None:
        known = ", ".join(sorted(available())) or "none registered (is jobkit installed with pip install -e .?)"
        raise UnknownWorkload(f"unknown workload {name!r}; accepted values: {known}")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # ImportError, AttributeError, or whatever the module raises on import
        raise UnknownWorkload(f"workload {name!r} cannot be loaded from {target}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    missing = missing_members(cls) if check else []
    if missing:
        raise UnknownWorkload(f"workload {name!r}: {target} is not a workload class; it lacks "
                              f"{', '.join(missing)} (see jobkit.protocol.Workload)")
    return cls


def missing_members(cls: object) -> list[str]:
    """What `cls` lacks to be a workload: a class with a `Params` dataclass subclassing BaseParams,
    a `presets` mapping and the methods of `jobkit.protocol.Workload` (or, for one that runs itself,
    the members of `jobkit.protocol.SelfRunning`)."""
    missing = [] if isinstance(cls, type) else [f"being a class (it is a {type(cls).__name__})"]
    if runs_itself(cls):
        missing += [f"{m}()" for m in SELF_RUNNING_METHODS if not callable(getattr(cls, m, None))]
        return missing + [f"{k} (a tuple of keys)" for k in ("own_keys", "list_params")
                          if not isinstance(getattr(cls, k, None), tuple)]
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseParams) and dataclasses.is_dataclass(params)):
        missing.append("Params (a dataclass subclassing jobkit.protocol.BaseParams)")
    if not isinstance(getattr(cls, "presets", None), Mapping):
        missing.append("presets (a mapping of preset name -> overrides)")
    missing += [f"{m}()" for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    return missing


def runs_itself(cls: object) -> bool:
    """Whether a workload runs itself as a supervised process (`protocol.SelfRunning`)."""
    return getattr(cls, "runs_itself", False) is True


def layout(cls: object) -> ReportLayout:
    """The workload's `ReportLayout`, or the defaults when it declares none."""
    declared = getattr(cls, "report", None)
    return declared if isinstance(declared, ReportLayout) else ReportLayout()


def check_settings(cls: type, settings: Mapping) -> dict:
    """Run settings (`resume --set`) checked against the workload; raises `params.ParamError`."""
    if runs_itself(cls):
        return dict(cls.check_settings(settings))  # type: ignore[attr-defined]
    return params_mod.check_values(cls.Params, settings)  # type: ignore[attr-defined]


def instance(cls: type, values: Mapping) -> object:
    """The workload object for a spec's values (params and settings); raises `params.ParamError`."""
    if runs_itself(cls):
        return cls(dict(values))
    return cls(params_mod.from_dict(cls.Params, values))  # type: ignore[attr-defined]
