"""Find workload classes by name: the `jobkit.workloads` entry points, or `module:Class` paths.

A new workload is one package under `jobs/` plus one line under `[options.entry_points]` in
setup.cfg; the toolkit never imports a model module by name itself.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .protocol import Workload

GROUP = "jobkit.workloads"


class UnknownWorkload(LookupError):
    pass


def available() -> dict[str, str]:
    """Registered workload names -> `module:Class`."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load(name: str) -> type[Workload]:
    """The workload class for `name` (a registered name, or `package.module:Class`)."""
    target = available().get(name)
    if target is None and ":" in name:
        target = name
    if target is None:
        known = ", ".join(sorted(available())) or "none registered (is jobkit installed with pip install -e .?)"
        raise UnknownWorkload(f"unknown workload {name!r}; accepted values: {known}")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownWorkload(f"workload {name!r} cannot be loaded from {target}: {exc}") from None
    return cls
