"""Submitting a set of run specs, start to end: what `jobkit submit` and `jobkit resume` do.

In order, and nothing is written before the last check: every run's data, the run folder root,
the site config, the cluster's facts (read once, or a saved profile), the local machine's size,
the plan; then, under the sweep's lock, the plan again (no duplicate jobs) and the submission.
Bad input raises `SubmitProblem` with one line for the user and the exit code it deserves.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from jobkit import slurm
from jobkit.plan import choose as cluster_mod
from jobkit.plan import clusterfacts
from jobkit.plan import datacheck
from jobkit.plan import params as params_mod
from jobkit.plan import registry, siteconfig
from jobkit.plan.spec import JobSpec, ResourceError, Resources, parse_resources
from jobkit.submit import intents, localqueue
from jobkit.submit import submission as submit_mod
from jobkit.submit.localnode import Node, Request, schedule

EXIT_USAGE, EXIT_FAILED = 2, 1


class SubmitProblem(RuntimeError):
    """The submission cannot go ahead; nothing was written or submitted."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Submission:
    executor: str
    planned: list[submit_mod.PlannedRun]
    site: siteconfig.SiteConfig
    facts: clusterfacts.ClusterFacts | None = None
    notes: list[str] = field(default_factory=list)
    outlook: dict[str, Any] | None = None  # local executor: how the runs share this machine

    @property
    def max_array(self) -> int | None:
        return self.facts.max_array_size if self.facts is not None else None


def submit_runs(specs: Sequence[JobSpec], root: Path, executor_name: str, dry_run: bool,
                profile: Path | None = None, config_start: Path | None = None, source: str = "",
                explain: bool = False) -> Submission:
    """Check, plan and (unless `dry_run`) submit `specs`. Raises SubmitProblem before anything is written.

    On a live cluster Slurm judges the plan: one `sbatch --test-only` per array shape before anything
    is written (a refusal is one line), and with `explain` one per partition that fits, whose expected
    start times rank the partitions that fit equally (see jobkit.plan.placement)."""
    specs = list(specs)
    # a plan against another cluster's saved profile: its data is there, not here
    data_warnings = _check_data(specs, source or str(root)) if profile is None else []
    if profile is not None and not dry_run:
        raise SubmitProblem("--cluster plans against a saved profile and submits nothing: add --dry-run")
    executor = "slurm" if profile is not None else resolve_executor(executor_name)
    if executor == "slurm":
        try:
            submit_mod.check_root_for_slurm(root)
        except ValueError as exc:
            raise SubmitProblem(str(exc)) from None
    try:
        site = siteconfig.load(config_start)
    except siteconfig.ConfigError as exc:
        raise SubmitProblem(str(exc)) from None
    facts = _facts(executor, profile)  # read once: the limits do not change within a submit
    out = Submission(executor=executor, planned=[], site=site, facts=facts,
                     notes=list(facts.notes) if facts is not None else [])
    node = local_node(specs) if executor == "local" else None
    if node is not None and not dry_run:
        try:
            localqueue.open_pool(localqueue.pool_dir())
        except OSError as exc:
            raise SubmitProblem(f"local queue folder: {exc}; set JOBKIT_LOCAL_POOL to another folder") from None
    live = executor == "slurm" and facts is not None and facts.source == "slurm"
    if dry_run:
        out.planned = _plan(specs, root, out)
        if live and explain:
            out.planned = _plan(specs, root, out, starts=_starts(out.planned, root, site))
        if live:
            _confirm(out.planned, root, out)
        _adopt(out, write=False)
    else:
        checked = _plan(specs, root, out, check_only=True)  # NoFit and friends before anything is written
        if live:
            _confirm(checked, root, out)  # Slurm's own verdict per array shape, before anything is written
        sweeps = sorted({s.sweep for s in specs})
        try:
            with submit_mod.sweep_lock(root / sweeps[0]):  # one sweep per call in practice
                out.planned = _plan(specs, root, out)  # under the lock: no duplicate jobs
                _adopt(out, write=True)  # jobs a dead submitter sent, found by their token
                out.outlook = local_outlook(node, out.planned) if node else None
                if any(p.submits for p in out.planned):
                    submit_mod.execute(out.planned, root, executor, site=site, max_array_size=out.max_array)
        except submit_mod.SubmitError as exc:
            raise SubmitProblem(f"submission refused, nothing was submitted: {exc}", EXIT_FAILED) from None
    if dry_run and node is not None:
        out.outlook = local_outlook(node, out.planned)
    signature_of = {s.run_id: s.signature for s in specs}  # planned ids keep their folders' names
    for p in out.planned:
        p.warning = "; ".join(w for rid, w in [(p.spec.run_id, p.warning)] + data_warnings
                              if (rid == p.spec.run_id or signature_of.get(rid) == p.spec.signature) and w) or None
    return out


def _adopt(sub: Submission, write: bool) -> None:
    """Adopt the jobs of intents without a receipt (jobkit.submit.intents); if the scheduler cannot be
    asked, submit nothing rather than maybe twice."""
    error = intents.adopt(sub.planned, sub.executor, write=write)
    if error and write:  # a dry run (maybe against a saved profile) plans as if none were found
        raise SubmitProblem(f"an earlier submit of these runs died before recording its jobs, and the "
                            f"scheduler cannot be asked for them now ({error}); try again", EXIT_FAILED)


def resolve_executor(name: str) -> str:
    chosen = submit_mod.pick_executor(name)
    if chosen == "slurm" and name == "slurm" and not slurm.available():
        raise SubmitProblem("--executor slurm: the Slurm controller does not answer (scontrol ping); "
                            "start it (slurm/up.sh) or use --executor local")
    return chosen


def local_node(specs: Sequence[JobSpec]) -> Node:
    """This machine as the local executor's one node; a run larger than it is refused."""
    node = Node.detect()
    for spec in specs:
        res = spec.resources  # every rank of a multi-process run runs here, each with `cpus` cores
        why = node.refusal(Request(cpus=res.cpus * res.world_size, mem_mb=res.mem_mb * res.world_size,
                                   gpus=res.gpus * res.nodes))
        if why:
            raise SubmitProblem(f"{spec.run_id}: {why}, and the local executor runs on this machine only; "
                                "ask for less (--set) or submit to a Slurm cluster")
    return node


def local_outlook(node: Node, planned: Sequence[submit_mod.PlannedRun]) -> dict[str, Any]:
    """How the runs to submit would share this machine: how many start now, how many wait."""
    reqs = [Request.of(p.job_res) for p in planned if p.submits]
    try:
        held, waiting = localqueue.busy(localqueue.pool_dir())
    except OSError:
        held, waiting = Request(0, 0, 0), 0
    start_now = 0 if waiting else schedule(node, reqs, held)
    shapes = sorted({r for r in reqs}, key=lambda r: (r.cpus, r.mem_mb, r.gpus))
    return {"node": node.to_json(), "describe": node.describe(), "start_now": start_now,
            "queued": len(reqs) - start_now, "busy": {"cpus": held.cpus, "mem_mb": held.mem_mb, "gpus": held.gpus},
            "waiting_before": waiting,
            "at_once": [{"cpus": r.cpus, "mem_mb": r.mem_mb, "gpus": r.gpus, "runs": node.at_once(r)} for r in shapes]}


def _check_data(specs: list[JobSpec], source: str) -> list[tuple[str, str]]:
    """Every run's data, before anything is written; the runs not checked, as warnings."""
    try:
        return datacheck.check_specs(specs, source).warnings()
    except datacheck.DataCheckFailed as exc:
        raise SubmitProblem(str(exc)) from None


def _facts(executor: str, profile: Path | None) -> clusterfacts.ClusterFacts | None:
    """The cluster's facts, read once per command (or loaded from a `--cluster` profile)."""
    try:
        if profile is not None:
            return clusterfacts.load_profile(profile)
        return slurm.read_facts() if executor == "slurm" else None
    except (ValueError, cluster_mod.ClusterError) as exc:
        raise SubmitProblem(str(exc)) from None


def _plan(specs: list[JobSpec], root: Path, sub: Submission, check_only: bool = False,
          starts: dict | None = None) -> list[submit_mod.PlannedRun]:
    """The plan; `check_only` skips reading the runs' state (partitions and input checks only)."""
    try:
        planned = submit_mod.plan(specs, root, sub.executor, summaries={} if check_only else None,
                                  facts=sub.facts, site=sub.site, starts=starts)
    except cluster_mod.NoFit as exc:
        raise SubmitProblem(str(exc)) from None
    for item in planned:
        key = submit_mod.with_site_defaults(item.spec.resources, sub.site)
        item.starts = dict((starts or {}).get(key, {}))
    return planned


def _starts(planned: list[submit_mod.PlannedRun], root: Path, site: siteconfig.SiteConfig) -> dict:
    """Per resource shape: partition -> Slurm's expected start, one `sbatch --test-only` per partition
    that fits (with the QoS placement chose there); a partition Slurm refuses gets no time."""
    out: dict = {}
    for item in planned:
        key = submit_mod.with_site_defaults(item.spec.resources, site)
        if key in out or not item.submits:
            continue
        out[key] = {}
        for name, qos in item.candidates:
            trial = replace(item, partition=name, routed=False, job_res=replace(item.job_res, partition=name, qos=qos))
            try:
                verdict = slurm.sbatch_test_only(submit_mod.sbatch_script(trial, root, site))
            except cluster_mod.ClusterError:
                return {}
            if verdict.ok:
                out[key][name] = verdict.start
    return out


def _confirm(planned: list[submit_mod.PlannedRun], root: Path, sub: Submission) -> None:
    """One `sbatch --test-only` per array (the real submission's options): a refusal stops everything."""
    for items in submit_mod.arrays(planned, sub.max_array):
        first = items[0]
        try:
            verdict = slurm.sbatch_test_only(submit_mod.sbatch_script(first, root, sub.site), array=len(items))
        except cluster_mod.ClusterError as exc:
            raise SubmitProblem(str(exc)) from None
        if not verdict.ok:
            where = f"partition {first.partition}" if first.partition else "the routed partition"
            raise SubmitProblem(f"Slurm refuses {len(items)} run{'s' if len(items) != 1 else ''} on {where} "
                                f"(sbatch --test-only): {verdict.message}; nothing was submitted")
        if verdict.start:
            for item in items:
                item.starts.setdefault(verdict.partition or first.partition or "", verdict.start)


def resumed_spec(spec: JobSpec, changes: dict, settings: dict, chunk: bool) -> JobSpec:
    """The spec with new resources and settings, validated against the run's workload."""
    try:
        res: Resources = parse_resources(changes, base=spec.resources) if changes else spec.resources
    except ResourceError as exc:
        flag = f"--{exc.key}: {exc.message}" if exc.key in ("partition", "time") else f"--set {exc}"
        raise SubmitProblem(flag) from None
    if chunk:
        res = replace(res, chunk=True)
    if settings:
        try:
            checked = registry.check_settings(registry.load(spec.workload), settings)
        except (params_mod.ParamError, registry.UnknownWorkload) as exc:
            raise SubmitProblem(f"--set {exc}") from None
        spec = replace(spec, settings={**spec.settings, **checked})
    return spec.with_resources(res)

