"""`jobkit submit` and `jobkit resume`: plan (validate, choose partitions), show, then submit."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
from rich.table import Table

from jobkit.cli.common import (
    console,
    err_console,
    fail,
    json_option,
    print_json,
    resolve_root,
    root_option,
)
from jobkit.cli.complete import sweeps_and_runs
from jobkit.cli.live import wait_for
from jobkit.command import params as command_params
from jobkit.plan import sweep as sweep_mod
from jobkit.plan.spec import RESOURCE_KEYS, SETTING_KEYS, JobSpec
from jobkit.store import find_runs
from jobkit.submit import feeder as feeder_mod
from jobkit.submit import submission as submit_mod
from jobkit.submit.submit_runs import SubmitProblem, resumed_spec, submit_runs

ACTION_STYLE = {"new": "green", "resume": "cyan", "queued": "yellow", "running": "yellow", "done": "dim",
                "oom": "red", "waiting": "magenta"}

executor_option = click.option(
    "--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", show_default=True,
    help="auto: Slurm when its controller answers, else submitit's local executor (same runner, same resume). "
         "local: this machine as one node; runs wait until their cpus, mem and gpus are free.")
dry_run_option = click.option("--dry-run", is_flag=True, help="Show what would be submitted and why; write nothing.")
wait_option = click.option("--wait", is_flag=True, help="Show live progress until every run has ended.")


def _verb(verb: str, n: int, dry_run: bool) -> str:
    return f"would {verb}" if dry_run else verb + "s" * (n == 1)


def _render_local(outlook: dict, explain: bool, dry_run: bool) -> None:
    out = console()
    start, wait = outlook["start_now"], outlook["queued"]
    if explain:
        out.print(f"Local executor: this machine is one node with {outlook['describe']}. A run starts only when "
                  "its cpus, mem and gpus are free (first in, first out, shared by every local jobkit run of "
                  "yours); its threads are pinned to its own cores; a run larger than the machine is refused.")
        for shape in outlook["at_once"]:
            out.print(f"  runs with cpus {shape['cpus']}, mem {shape['mem_mb']}M, gpus {shape['gpus']}: "
                      f"{shape['runs']} at a time on the empty machine")
        busy = outlook["busy"]
        if busy["cpus"] or outlook["waiting_before"]:
            out.print(f"  now in use by other local runs: {busy['cpus']} CPUs, {busy['mem_mb']}M, {busy['gpus']} GPUs; "
                      f"{outlook['waiting_before']} waiting before these")
    if start or wait:
        line = f"On this machine: {start} {_verb('start', start, dry_run)} now"
        if wait:
            line += f", {wait} {_verb('wait', wait, dry_run)} in the local queue"
        out.print(line)


def _render(planned: list[submit_mod.PlannedRun], executor: str, explain: bool, dry_run: bool) -> None:
    out = console()
    verb = "Would submit" if dry_run else "Submitted"
    title = f"{verb} with the {executor} executor" if any(p.submits for p in planned) else "Nothing to submit"
    table = Table(title=title, title_justify="left")
    qos_col = any(p.job_res.qos or p.job_res.account for p in planned)
    for col in ("run", "action", "why", "partition", *(("account", "qos") if qos_col else ()), "time", "segments",
                "job"):
        table.add_column(col, overflow="fold")
    for p in planned:
        style = ACTION_STYLE.get(p.action, "")
        part = p.partition or ("-" if executor != "slurm" else "?")
        if explain and p.partition_reason:
            reason = p.partition_reason
            part = reason if reason.startswith(f"{part}:") else f"{part}: {reason}"
        extra = (p.job_res.account or "-", p.job_res.qos or "-") if qos_col else ()
        table.add_row(p.spec.run_id, f"[{style}]{p.action}[/]", p.reason, part, *extra, p.job_res.time,
                      str(p.segments), p.job_id or "-")
    out.print(table)
    if explain and executor == "slurm":
        seen = set()
        for p in planned:
            key = (p.job_res.shape(), tuple(v.reason for v in p.verdicts))
            if key in seen or not p.verdicts:
                continue
            seen.add(key)
            r = p.job_res
            asked = [f"time {r.time}", f"cpus {r.cpus}", f"mem {r.mem_mb}M", f"gpus {r.gpus_text}"]
            asked += [f"{k} {getattr(r, k)}" for k in ("account", "qos", "constraint", "exclude") if getattr(r, k)]
            if r.nodes > 1:
                asked.append(f"nodes {r.nodes}")
            vt = Table(title="Partitions for " + ", ".join(asked), title_justify="left")
            for col in ("partition", "fits", "reason"):
                vt.add_column(col)
            for v in p.verdicts:
                mark = "[green]yes[/]" if v.fits else "[red]no[/]"
                chosen = " [bold](chosen)[/]" if v.partition.name == p.partition else ""
                vt.add_row(v.partition.name + chosen, mark, v.reason)
            out.print(vt)
    if explain:  # the warning time each job asks for (#SBATCH --signal), and why (jobkit.plan.lead)
        leads: dict[tuple[int, str], list[str]] = {}
        for p in planned:
            if p.submits and p.lead:
                leads.setdefault((p.signal_s, p.lead.why), []).append(p.spec.run_id)
        for (seconds, why), ids in leads.items():
            who = ids[0] if len(ids) == 1 else f"{len(ids)} runs"
            out.print(f"Warning time {seconds}s before the limit (--signal USR2@{seconds}) for {who}: {why}")
    for p in planned:
        if p.warning:
            err_console().print(f"[yellow]warning[/] {p.spec.run_id}: {p.warning}")
    counts: dict[str, int] = {}
    for p in planned:
        counts[p.action] = counts.get(p.action, 0) + 1
    out.print(", ".join(f"{n} {a}" for a, n in counts.items()))


def _render_waiting(sub, dry_run: bool) -> None:
    """One line for the runs left waiting for room, and who sends them."""
    if not sub.waiting:
        return
    why = sub.waiting[0].reason.removeprefix("waiting for room: ")
    line = f"{len(sub.waiting)} run{'s' * (len(sub.waiting) != 1)} {'would wait' if dry_run else 'wait'} for room ({why}); "
    if sub.feeder_job:
        line += f"feeder job {sub.feeder_job} sends the next wave when room appears (`jobkit status` names it)"
    elif dry_run:
        line += "a feeder job would send them as room appears" if sub.feeder else "the same command again sends them"
    else:
        line += "run the same command again to send the next wave"
    console().print(line)


def _go(specs: list[JobSpec], root: Path, executor_name: str, dry_run: bool, explain: bool,
        show_script: bool, as_json: bool, wait: bool, profile: Path | None = None,
        config_start: Path | None = None, source: str = "", feeder: bool = True,
        recipe: feeder_mod.Recipe | None = None) -> None:
    try:
        sub = submit_runs(specs, root, executor_name, dry_run, profile=profile, config_start=config_start,
                          source=source, explain=explain, feeder=feeder, recipe=recipe)
    except SubmitProblem as exc:
        fail(str(exc), code=exc.code)
    planned, executor = sub.planned, sub.executor
    if sub.notes and not as_json:
        for note in sub.notes:
            err_console().print(f"[yellow]note[/] {note}")
    if as_json:
        data = {"executor": executor, "dry_run": dry_run, "notes": sub.notes,
                "cluster": sub.facts.source if sub.facts is not None else None,
                "arrays": [{"runs": len(a), "partition": a[0].partition, "account": a[0].job_res.account,
                            "qos": a[0].job_res.qos, "time": a[0].job_res.time, "segments": a[0].segments}
                           for a in submit_mod.arrays(planned, sub.max_array)],
                "waiting": len(sub.waiting), "feeder_job": sub.feeder_job,
                "runs": [p.to_json() for p in planned]}
        if sub.outlook is not None:
            data["local"] = {k: v for k, v in sub.outlook.items() if k != "describe"}
        if show_script and executor == "slurm":
            data["scripts"] = {p.spec.run_id: submit_mod.sbatch_script(p, root, sub.site)
                               for p in planned if p.submits}
        print_json(data)
    else:
        _render(planned, executor, explain, dry_run)
        _render_waiting(sub, dry_run)
        if sub.outlook is not None:
            _render_local(sub.outlook, explain, dry_run)
        if show_script and executor == "slurm":
            for p in planned:
                if p.submits:
                    console().rule(f"sbatch script for {p.spec.run_id}")
                    click.echo(submit_mod.sbatch_script(p, root, sub.site))
    if wait and not dry_run:
        code = wait_for(root, [p.run_dir for p in planned], site=sub.site)
        raise SystemExit(code)


@click.command("submit", epilog="\b\n" + command_params.CONTRACT)
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a key for every run that has it (repeatable); lists expand: --set 'beta=[0,4]'; "
                   "scope to a workload with --set vae.beta=4.")
@click.option("--only", metavar="PATTERN", help="Only runs whose id matches this glob or substring.")
@click.option("--chunk", is_flag=True, help="Split runs longer than any partition allows into segments that fit.")
@click.option("--no-feeder", is_flag=True, help="Runs beyond your job limits (MaxSubmitPU, MaxJobsPU) wait for you to "
              "run `jobkit submit` again, instead of a small feeder job sending them as room appears.")
@executor_option
@dry_run_option
@click.option("--explain", is_flag=True, help="With the plan, show every partition and why it fits or not.")
@click.option("--show-script", is_flag=True, help="Also print the sbatch script that would be sent.")
@click.option("--cluster", "profile", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="With --dry-run: plan against a cluster profile (`jobkit partitions --save FILE`), no Slurm needed.")
@json_option
@wait_option
@root_option
def submit(sweep_file: Path, sets: tuple[str, ...], only: str | None, chunk: bool, no_feeder: bool, executor: str,
           dry_run: bool,
           explain: bool, show_script: bool, profile: Path | None, as_json: bool, wait: bool,
           root: Path | None) -> None:
    """Submit every run of SWEEP_FILE: new runs start, unfinished ones resume, the rest are left alone.

    Runs with the same resources go into one Slurm job array. Submitting the same sweep again
    submits only what is new or stopped; it never duplicates a queued or running job.

    \b
    Examples:
      jobkit submit jobs/sweeps/smoke.toml --dry-run --explain
      jobkit submit jobs/sweeps/seed.toml --set steps=500 --only 'charlm-*' --wait
      jobkit submit jobs/sweeps/seed.toml --set time=02:00:00 --set total_time=12:00:00 --chunk
      jobkit submit jobs/sweeps/seed.toml --dry-run --explain --cluster tests/data/gpu-university.json
      jobkit submit jobs/sweeps/seed.toml --set account=physics --set gpus=a100:1 --set qos=long
    """
    root = resolve_root(root)
    try:
        sweep = sweep_mod.load(sweep_file, overrides=sets, only=only)
    except sweep_mod.SweepError as exc:
        fail(str(exc))
    for line in sweep.warnings:
        click.echo(f"warning: {line}", err=True)  # one line, never wrapped
    specs = sweep.specs
    if chunk:
        specs = [s.with_resources(replace(s.resources, chunk=True)) for s in specs]
    recipe = feeder_mod.Recipe(sweep_text=sweep_file.read_text(encoding="utf-8"), source=str(sweep_file),
                               stem=sweep_file.stem, sets=list(sets), only=only, chunk=chunk, executor=executor,
                               root=str(root.resolve()), cwd=str(Path.cwd()),
                               config_start=str(sweep_file.parent.resolve()))
    _go(specs, root, executor, dry_run, explain, show_script, as_json, wait, profile, sweep_file.parent,
        source=str(sweep_file), feeder=not no_feeder, recipe=recipe)


@click.command("resume")
@click.argument("selectors", nargs=-1, metavar="[SWEEP|RUN]...", shell_complete=sweeps_and_runs)
@click.option("--partition", metavar="P", help="Move the runs to this partition (e.g. from test to submit).")
@click.option("--time", "time_", metavar="T", help="New wall time per job, e.g. 02:00:00 or 1-00:00:00.")
@click.option("--chunk", is_flag=True, help="Split runs longer than any partition allows into segments that fit.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Change a resource (time, cpus, mem, gpus, account, qos, constraint, nodes, exclude, ...) or a "
                   "run setting (checkpoint_every, eval_every, sample_every, log_every, checkpoint_minutes, "
                   "keep_checkpoints, async_checkpoint); never the run's params.")
@executor_option
@dry_run_option
@json_option
@wait_option
@root_option
def resume(selectors: tuple[str, ...], partition: str | None, time_: str | None, chunk: bool, sets: tuple[str, ...],
           executor: str, dry_run: bool, as_json: bool, wait: bool, root: Path | None) -> None:
    """Resubmit unfinished runs that are neither queued nor running, from their latest checkpoint.

    Idempotent: a run that is queued, running or done is left alone. Resources and run settings
    may change on the way (`--set`); the params that make a run what it is cannot.

    \b
    Examples:
      jobkit resume smoke
      jobkit resume charlm-lstm-3f9a1c2e --partition submit --time 1-00:00:00
      jobkit resume smoke --set checkpoint_every=50 --set mem=8G
      jobkit resume seed --set qos=long --set gpus=a100:1
    """
    root = resolve_root(root)
    try:
        runs = find_runs(root, selectors)
    except LookupError as exc:
        fail(str(exc))
    if not runs:
        fail(f"no runs under {root}; create some with `jobkit submit SWEEP_FILE`")
    changes: dict = {}
    if partition is not None:
        changes["partition"] = partition
    if time_ is not None:
        changes["time"] = time_
    settings: dict = {}
    try:
        parsed = sweep_mod.parse_set(sets)
    except sweep_mod.SweepError as exc:
        fail(str(exc))
    for scope, key, value in parsed:
        if scope is not None or key not in (*RESOURCE_KEYS, *SETTING_KEYS):
            fail(f"--set {key}: resume changes only resources ({', '.join(RESOURCE_KEYS)}) and run settings "
                 f"({', '.join(SETTING_KEYS)}); to change a parameter, submit a new run")
        (settings if key in SETTING_KEYS else changes)[key] = value
    try:
        specs = [resumed_spec(run.spec(), changes, settings, chunk) for run in runs]
    except SubmitProblem as exc:
        fail(str(exc), code=exc.code)
    # no feeder: it re-plans the whole sweep file, and resume acts on the runs selected here only
    _go(specs, root, executor, dry_run, False, False, as_json, wait, None, Path.cwd(), feeder=False)
