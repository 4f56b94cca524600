"""`jobkit partitions`: the cluster's partitions and their real limits, read live from Slurm."""
from __future__ import annotations

import dataclasses

import click
from rich.table import Table

from .. import cluster as cluster_mod
from ..slurmtime import format_time
from .common import console, fail, json_option, print_json


@click.command("partitions")
@json_option
def partitions(as_json: bool) -> None:
    """List the live partitions (scontrol show partition) with their limits.

    These limits decide where `jobkit submit` sends each run.

    \b
    Example:
      jobkit partitions
      jobkit partitions --json | jq '.[] | {name, max_time_min}'
    """
    try:
        parts = cluster_mod.read_partitions()
    except cluster_mod.ClusterError as exc:
        fail(str(exc))
    if as_json:
        print_json([dataclasses.asdict(p) for p in parts])
        return
    table = Table(title="Slurm partitions", title_justify="left")
    for col in ("partition", "state", "MaxTime", "DefaultTime", "nodes", "cpus/node", "mem/node", "gpus/node",
                "priority tier", "preempt mode"):
        table.add_column(col)
    for p in parts:
        name = f"{p.name}{' (default)' if p.is_default else ''}"
        mem = "-" if p.mem_per_node_mb is None else f"{p.mem_per_node_mb}M"
        table.add_row(name, p.state, format_time(p.max_time_min), format_time(p.default_time_min)
                      if p.default_time_min is not None else "-", str(p.nodes), str(p.max_cpus_per_node), mem,
                      str(p.gpus_per_node), str(p.priority_tier), p.preempt_mode)
    console().print(table)
