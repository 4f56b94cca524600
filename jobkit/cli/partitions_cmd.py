"""`jobkit partitions`: the cluster's partitions and their real limits, read live from Slurm (or a saved
profile), with who may use them; `--save FILE` writes the cluster profile that `submit --cluster` plans on."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.table import Table

from jobkit import slurm
from jobkit.cli.common import console, err_console, fail, json_option, print_json
from jobkit.plan import choose as cluster_mod
from jobkit.plan import clusterfacts
from jobkit.plan.preemption import preemption_risk
from jobkit.plan.slurmtime import format_time


@click.command("partitions")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write a cluster profile (JSON: partitions, node types, QoS, your associations, MaxArraySize) "
                   "for `jobkit submit SWEEP --dry-run --cluster FILE`.")
@click.option("--cluster", "profile", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Show a saved cluster profile instead of asking Slurm.")
@json_option
def partitions(save: Path | None, profile: Path | None, as_json: bool) -> None:
    """List the partitions with their limits, GPU types and access rules; the QoS and your accounts.

    These facts decide where `jobkit submit` sends each run.

    \b
    Examples:
      jobkit partitions
      jobkit partitions --json | jq '.[] | {name, max_time_min}'
      jobkit partitions --save mycluster.json     # then plan anywhere:
      jobkit submit jobs/sweeps/seed.toml --dry-run --explain --cluster mycluster.json
    """
    try:
        facts = clusterfacts.load_profile(profile) if profile else slurm.read_facts()
    except (cluster_mod.ClusterError, ValueError) as exc:
        fail(str(exc))
    if save is not None:
        try:
            clusterfacts.save_profile(facts, save)
        except OSError as exc:
            fail(f"--save {save}: cannot write ({exc.strerror or exc})")
    if as_json:
        print_json([dataclasses.asdict(p) | {k: v for k, v in dataclasses.asdict(facts.access_of(p.name)).items()
                                             if k not in ("allow_accounts", "allow_qos", "allow_groups")}
                    for p in facts.partitions])
        return
    for note in facts.notes:
        err_console().print(f"[yellow]note[/] {note}")
    table = Table(title=f"Slurm partitions ({facts.source})", title_justify="left")
    for col in ("partition", "state", "MaxTime", "nodes", "cpus/node", "mem/node", "gpus/node", "GPU types",
                "accounts", "QoS", "tier", "preempt"):
        table.add_column(col, overflow="fold")
    for p in facts.partitions:
        acc = facts.access_of(p.name)
        name = f"{p.name}{' (default)' if p.is_default else ''}"
        mem = "-" if p.mem_per_node_mb is None else f"{p.mem_per_node_mb}M"
        kinds = sorted({f"{k}:{n}" if k else str(n) for t in facts.nodes_of(p.name) for k, n in t.gpus})
        accounts = acc.allow_accounts + (f" (deny {acc.deny_accounts})" if acc.deny_accounts else "")
        qos = acc.allow_qos + (f" (deny {acc.deny_qos})" if acc.deny_qos else "") + (f"; partition QoS {acc.qos}"
                                                                                       if acc.qos else "")
        table.add_row(name, p.state, format_time(p.max_time_min), str(p.nodes), str(p.max_cpus_per_node), mem,
                      str(p.gpus_per_node), ", ".join(kinds) or "-", accounts, qos, str(p.priority_tier),
                      p.preempt_mode + (" (its jobs can be preempted)" if preemption_risk(facts, p, None) else ""))
    out = console()
    out.print(table)
    if facts.qos:
        out.print("QoS: " + "; ".join(f"{q.name} MaxWall {format_time(q.max_wall_min)}" for q in facts.qos.values()))
    if facts.associations:
        out.print("your associations: " + "; ".join(
            f"{a.account}{'/' + a.partition if a.partition else ''} QoS {','.join(a.qos) or '-'}"
            f"{' (default ' + a.default_qos + ')' if a.default_qos else ''}" for a in facts.associations))
    if facts.max_array_size:
        out.print(f"MaxArraySize {facts.max_array_size}")
    out.print(f"PreemptType {facts.preempt_type}" + (f"; your default account {facts.default_account}"
                                                    if facts.default_account else ""))
    if save is not None:
        out.print(f"saved the cluster profile to {save}")
