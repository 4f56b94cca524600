"""Each workload's own description of how its runs compare (`ReportLayout`), as the report reads it.

The collector names no workload: what tells runs apart, which metrics matter and which way, and
which images to put side by side all come from the workload class. A workload that cannot be
imported where `collect` runs (a `module:Class` from elsewhere) is compared by the defaults.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from jobkit.plan import registry
from jobkit.protocol import ReportLayout


def layout_of(workload: str) -> ReportLayout:
    try:
        cls = registry.load(workload, check=False)  # only its `report` is read here
    except Exception:  # unknown here, or fails to import: still report its runs
        return ReportLayout()
    return registry.layout(cls)


def to_json(layout: ReportLayout) -> dict[str, Any]:
    """The layout as summary.json carries it (the pages render from summary.json alone)."""
    data = asdict(layout)
    data["headline"] = [{**m, "title": m["label"] or m["name"]} for m in data["headline"]]
    return data
