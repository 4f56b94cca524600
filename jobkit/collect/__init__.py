"""Collect a sweep into one report a person reads: runs table, loss curves, samples side by side, image grids compared side by side.

`collect(root, sweep, out=None)` writes `index.html` (self-contained), `summary.json` and `summary.md`
into `out` (default `<root>/<sweep>/report/`) and returns a `Report`; `CollectError` for an unknown sweep.
"""
from jobkit.collect.report import CollectError, Report, collect, default_out, gather, list_sweeps, sweep_runs, write

__all__ = ["CollectError", "Report", "collect", "default_out", "gather", "list_sweeps", "sweep_runs", "write"]
