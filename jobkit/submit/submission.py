"""Plan and submit runs: what is new / to resume / to leave alone, on which partition, in which array.

Submitting is all-or-nothing per call: specs are validated and partitions chosen before anything is
written; if an sbatch call fails, the arrays already sent by this call are cancelled and the run
folders it created are removed. A lock per sweep folder keeps two `jobkit submit` of the same sweep
from creating duplicate jobs.
"""
from __future__ import annotations

import fcntl
import math
import os
import re
import shlex
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from jobkit import slurm, store
from jobkit.observe.runstate import RunSummary
from jobkit.observe.status import collect_status
from jobkit.plan import choose as cluster_mod
from jobkit.plan import lead as lead_mod
from jobkit.plan import placement as placement_mod
from jobkit.plan.clusterfacts import ClusterFacts
from jobkit.plan.siteconfig import SiteConfig
from jobkit.plan.spec import JobSpec, Resources
from jobkit.schedcalls import CALLS
from jobkit.state import QUEUED, Event, State
from jobkit.store import RunDir
from jobkit.submit import aftermath, intents, localqueue
from jobkit.submit.localnode import Node, Request

JOB_NAME_PREFIX = "jobkit-"
LOCAL_CONTROLLER_TIMEOUT_MIN = 60 * 24 * 365  # a queued local job may wait long; jobkit.submit.localqueue times the run


class SubmitError(RuntimeError):
    """sbatch (or the local executor) refused a submission; nothing of this call is left behind."""


@dataclass
class PlannedRun:
    spec: JobSpec  # as the user asked (spec.json); identity + requested resources
    run_dir: Path
    action: str  # new | resume | queued | running | done | waiting (no room under the job limits yet)
    reason: str
    partition: str | None = None
    partition_reason: str = ""
    segments: int = 1
    verdicts: list[Any] = field(default_factory=list)
    warning: str | None = None
    job_id: str | None = None
    job_res: Resources | None = None  # what one job asks for (a segment's time when chunked)
    routed: bool = False  # the site assigns the partition from the time: --partition is not passed
    candidates: tuple[tuple[str, str | None], ...] = ()  # (partition, QoS) that fit, best first (placement)
    starts: dict[str, str] = field(default_factory=dict)  # partition -> Slurm's expected start (--test-only)
    prior: str | None = None  # the run's state before this submit (None: no folder)
    lead: lead_mod.Lead | None = None  # the warning time its job asks for, from what the run measured

    def __post_init__(self) -> None:
        if self.job_res is None:
            self.job_res = self.spec.resources

    @property
    def sbatch_partition(self) -> str | None:
        """What --partition gets: none when the site routes by time and the user named none."""
        return None if self.routed else self.partition

    @property
    def signal_s(self) -> int:
        """Seconds between Slurm's USR2 and the kill that this run's job asks for (--signal)."""
        return self.lead.seconds if self.lead else signal_delay_for(self.job_res)

    @property
    def submits(self) -> bool:
        return self.action in ("new", "resume")

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.spec.run_id, "action": self.action, "reason": self.reason,
                "partition": self.partition, "partition_reason": self.partition_reason,
                "account": self.job_res.account, "qos": self.job_res.qos,
                "gpus": self.job_res.gpus_text if self.job_res.gpu_type else self.job_res.gpus,
                "constraint": self.job_res.constraint, "nodes": self.job_res.nodes,
                "segments": self.segments, "time": self.job_res.time, "warning": self.warning,
                "signal_s": self.signal_s, **({"signal_why": self.lead.why} if self.lead else {}),
                **({"routed": True} if self.routed else {}), **({"starts": self.starts} if self.starts else {}),
                "job_id": self.job_id, "path": str(self.run_dir),
                "verdicts": [{"partition": v.partition.name, "fits": v.fits, "reason": v.reason}
                             for v in self.verdicts]}


def signal_delay_for(res: Resources) -> int:
    """Seconds between Slurm's warning signal and the kill before anything is measured (`plan.lead`)."""
    return lead_mod.default_lead_s(res.time_min)


SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+@%=,-]+$")


def check_root_for_slurm(root: Path) -> None:
    """The run root ends up in #SBATCH lines (--output, --error): refuse what they cannot carry."""
    text = str(Path(root).resolve())
    if not SAFE_PATH.match(text):
        raise ValueError(f"--root {text!r}: Slurm job scripts cannot safely name a folder with spaces or "
                         "shell characters; choose a --root made of letters, digits and . _ - /")


def pick_executor(name: str) -> str:
    """`auto` is Slurm when the controller answers, else submitit's local executor."""
    if name != "auto":
        return name
    return "slurm" if slurm.available() else "local"


def with_site_defaults(res: Resources, site: SiteConfig | None) -> Resources:
    """The site config's account/qos (and stall timeout) where the run names none."""
    if site is None:
        return res
    stall = res.stall_timeout_s if res.stall_timeout_s is not None else site.stall_timeout_s
    return replace(res, account=res.account or site.account, qos=res.qos or site.qos, stall_timeout_s=stall)


def plan(specs: Sequence[JobSpec], root: Path, executor: str,
         summaries: dict[str, RunSummary] | None = None, *,
         facts: ClusterFacts | None = None, site: SiteConfig | None = None,
         starts: dict[Resources, dict[str, str]] | None = None) -> list[PlannedRun]:
    """Decide, per spec, what submitting would do. Raises cluster.NoFit before anything is written.

    On Slurm, `facts` (read once per command, or a saved profile) are what `placement.place` chooses
    the partition, account and QoS from; without them (local, or `--dry-run` off a cluster) nothing is placed."""
    specs = keep_folder_names(specs, root)  # a run's folder is found by its signature, never renamed
    summaries = summaries if summaries is not None else _existing_summaries(specs, root)
    placed: dict[Resources, placement_mod.Placement] = {}  # one choice per resource shape
    groups = None  # placement checks AllowGroups against the local user on a live cluster only
    bandwidth = lead_mod.measured_bandwidth(list(summaries.values()))
    planned = []
    for spec in specs:
        run_dir = Path(root) / spec.sweep / spec.run_id
        current = summaries.get(spec.run_id)
        action, reason = aftermath.memory_guard(spec, run_dir, current, *_action(current))
        item = PlannedRun(spec=spec, run_dir=run_dir, action=action, reason=reason,
                          job_id=current.job_id if current else None, prior=current.state if current else None)
        if executor == "slurm" and facts is not None:
            res = with_site_defaults(spec.resources, site)
            if res not in placed:
                placed[res] = placement_mod.place(facts, res, never=site.never_partitions if site else (),
                                                  groups=groups, starts=(starts or {}).get(res))
            where = placed[res]
            choice = where.choice
            item.partition = choice.partition.name if choice.partition else None
            item.partition_reason, item.verdicts, item.segments = choice.reason, choice.verdicts, choice.segments
            item.job_res = placement_mod.with_placement(res, where, choice.time_min)
            item.routed = not where.pass_partition
            item.candidates = where.candidates
        elif spec.resources.total_time_min and spec.resources.total_time_min > spec.resources.time_min:
            item.segments = math.ceil(spec.resources.total_time_min / spec.resources.time_min)
        if item.submits:
            if current is not None:
                item.job_res, avoided = aftermath.avoid_failed_nodes(item.job_res, current)
                item.reason += f"; {avoided}" if avoided else ""
            chosen = next((v.partition for v in item.verdicts if v.partition.name == item.partition), None)
            item.lead = lead_mod.lead_for(item.job_res.time_min, lead_mod.Figures.of(current),
                                          grace_s=getattr(chosen, "grace_time_s", None), partition=item.partition,
                                          bandwidth=bandwidth)
            item.warning = item.lead.problem
        planned.append(item)
    sent = [i for i in planned if i.submits]  # one array, one --signal: the longest its runs need
    for item, shared in zip(sent, lead_mod.shared([(i.spec.sweep, i.job_res.shape(), i.segments) for i in sent],
                                                  [i.lead for i in sent])):
        item.lead = shared
    return planned  # what the job limits leave room for now: jobkit.plan.room (submit_runs)


def keep_folder_names(specs: Sequence[JobSpec], root: Path) -> list[JobSpec]:
    """Each spec named as the existing folder of its signature (`<any name>-<signature>`), if one exists:
    adding, removing or reordering runs of a sweep changes their readable names, never a folder or id."""
    by_sweep: dict[str, dict[str, Path]] = {}
    out = []
    for spec in specs:
        if spec.sweep not in by_sweep:
            prefer = {s.signature: s.run_id for s in specs if s.sweep == spec.sweep}
            by_sweep[spec.sweep] = store.folders_by_signature(Path(root) / spec.sweep, prefer)
        folder = by_sweep[spec.sweep].get(spec.signature)
        parts = store.split_run_id(folder.name) if folder is not None else None
        out.append(replace(spec, name=parts[0]) if parts and folder.name != spec.run_id else spec)
    return out


def _existing_summaries(specs: Sequence[JobSpec], root: Path) -> dict[str, RunSummary]:
    runs = [RunDir(Path(root) / s.sweep / s.run_id) for s in specs]
    runs = [r for r in runs if r.exists()]
    report = collect_status(runs)
    return {s.run_id: s for s in report.summaries}


def _action(current: RunSummary | None) -> tuple[str, str]:
    if current is None:
        return "new", "no run folder yet"
    if current.state == State.COMPLETED:
        return "done", f"finished at step {current.step}/{current.total}"
    if current.state in (State.RUNNING, State.SUSPENDED):  # held by Slurm: its job goes on
        return "running", f"job {current.job_id} is {current.state.lower()} (step {current.step}/{current.total})"
    if current.state in QUEUED:
        return "queued", f"job {current.job_id} is queued ({current.state.lower()})"
    if current.state == State.UNKNOWN and current.job_id:  # Slurm still has the job, in a word jobkit
        # does not know: submitting again could train the run twice
        return "running", (f"job {current.job_id} is in a state jobkit does not know; left alone "
                           f"(`jobkit cancel {current.run_id}` first to resubmit)")
    if current.state == State.WAITING:
        return "resume", "was waiting for room under the job limits"
    last = f", last state {current.state}" if current.state != State.NEW else ""
    return "resume", f"unfinished at step {current.step}/{current.total}{last}"


def _signal_warning(current: RunSummary, res: Resources) -> str | None:
    """The one line a run whose measured needs exceed what its job allows is told at submit."""
    return lead_mod.lead_for(res.time_min, lead_mod.Figures.of(current)).problem


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Exclusive lock on a sweep folder (blocks until the other submit is done)."""
    sweep_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(sweep_dir / ".submit.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def slurm_parameters(res: Resources, partition: str | None, sweep: str,
                     site: SiteConfig | None = None, token: str | None = None,
                     signal_s: int | None = None) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for one job of `res`: every value was validated when parsed
    (spec/slurmvalues), so none needs quoting in the #SBATCH lines; `setup` lines are the site's own."""
    params: dict[str, Any] = dict(time=res.time_min, cpus_per_task=res.cpus, mem=f"{res.mem_mb}M",
                                  signal_delay_s=signal_s or signal_delay_for(res), job_name=f"{JOB_NAME_PREFIX}{sweep}",
                                  additional_parameters={"open-mode": "append", **dict(res.sbatch)})
    if token:  # the submission's token travels with the job: a dead submitter's jobs are found by it
        own = params["additional_parameters"].get("comment")  # a user's `[sbatch] comment` follows it
        params["additional_parameters"]["comment"] = intents.comment(token) + (f",{own}" if own else "")
    if res.gpus:
        params["gpus_per_node"] = res.gpus_text if res.gpu_type else res.gpus
    if partition:
        params["partition"] = partition
    for key in ("account", "qos", "constraint", "exclude"):
        if getattr(res, key):
            params[key] = getattr(res, key)
    if res.max_running:  # the array throttle: sbatch --array=0-N%max_running
        params["array_parallelism"] = res.max_running
    if res.world_size > 1:  # one job step of nodes × tasks_per_node data-parallel ranks
        params["nodes"] = res.nodes
        params["ntasks_per_node"] = res.tasks
    if site is not None and site.setup:
        params["setup"] = list(site.setup)
    return params


def sbatch_script(item: PlannedRun, root: Path, site: SiteConfig | None = None) -> str:
    """The batch script this run's job would be sent with (`--dry-run --show-script`): rendered from
    the same parameters `execute` gives the executor, so the two cannot drift apart."""
    python = site.python if site is not None and site.python else shlex.quote(sys.executable)
    return slurm.render_script(slurm_parameters(item.job_res, item.sbatch_partition, item.spec.sweep, site,
                                                token=intents.TOKEN_PLACEHOLDER, signal_s=item.signal_s),
                               slurm.job_folder(Path(root) / item.spec.sweep), python)


def arrays(planned: list[PlannedRun], max_array_size: int | None = None) -> list[list[PlannedRun]]:
    """The job arrays submitting sends: one per sweep and resource shape, split at MaxArraySize
    (array indices run 0..size-1 and must stay below it)."""
    groups: dict[tuple, list[PlannedRun]] = {}
    for item in planned:
        if item.submits:
            groups.setdefault((item.spec.sweep, item.job_res.shape(), item.segments), []).append(item)
    size = max(1, max_array_size) if max_array_size else None
    out = []
    for items in groups.values():
        step = size or len(items)
        out.extend(items[i:i + step] for i in range(0, len(items), step))
    return out


def execute(planned: list[PlannedRun], root: Path, executor: str, site: SiteConfig | None = None,
            max_array_size: int | None = None) -> list[PlannedRun]:
    """Submit the runs whose action is new/resume, one array per resource shape. All or nothing."""
    from jobkit.run.job import TrainJob

    todo = [p for p in planned if p.submits]
    waiting = [p for p in planned if p.action == "waiting" and p.prior != State.WAITING]
    local = executor == "local"  # locally one job per run: each waits for its own share of the machine
    node, pool, t0 = (Node.detect(), localqueue.pool_dir(), time.time_ns()) if local else (None, None, 0)
    created: list[Path] = []
    recorded: list[PlannedRun] = []  # existing folders holding this call's intents
    sent: list[Any] = []
    try:
        for item in todo:
            if item.action == "new":
                created.append(item.run_dir)
                RunDir.create(Path(root), item.spec, sync=False)
            else:  # resources may have changed; identity cannot
                RunDir(item.run_dir).write_spec(item.spec, sync=False)
        for item in waiting:  # a folder and a `waiting` event: `status` shows it, the next wave sends it
            if item.prior is None:
                created.append(item.run_dir)
                RunDir.create(Path(root), item.spec, sync=False)
            RunDir(item.run_dir).event(Event.WAITING, sync=False, reason=item.reason)
        batches = arrays(todo, max_array_size if executor == "slurm" else 1)
        tokens = [intents.new_token() for _ in batches]
        for items, token in zip(batches, tokens):  # exactly once: the intent before sbatch (intents.py)
            intents.record([RunDir(item.run_dir) for item in items], token, executor)
            recorded.extend(item for item in items if item.action != "new")
        os.sync()  # one flush for every spec and intent, before any job can start (not an fsync per file)
        for n, (items, token) in enumerate(zip(batches, tokens)):
            sweep = items[0].spec.sweep
            folder = slurm.job_folder(Path(root).resolve() / sweep)
            partition = items[0].partition
            sbatch_partition = items[0].sbatch_partition
            python = None
            if local:  # FIFO key: this submission's time, then the run's place in it; then its token
                key = f"{t0:020d}-{n:05d}-{token}"
                python = localqueue.wrapper_command(pool, node, Request.of(items[0].job_res), key,
                                                    items[0].job_res.time_min * 60, str(items[0].run_dir.resolve()))
            res = items[0].job_res
            if executor == "slurm":
                ex = slurm.slurm_executor(folder, slurm_parameters(res, sbatch_partition, sweep, site, token=token,
                                                                   signal_s=items[0].signal_s),
                                          python=site.python if site is not None else None)
            else:  # `python` puts jobkit.submit.localqueue in front of each task: it waits for its share, then runs
                ex = slurm.local_executor(folder, timeout_min=LOCAL_CONTROLLER_TIMEOUT_MIN if python else res.time_min,
                                          signal_delay_s=items[0].signal_s, gpus=res.gpus,
                                          tasks=res.world_size, python=shlex.join(python) if python else None)
            fns = [TrainJob(item.run_dir.resolve(), item.signal_s, item.job_res.time_min,
                            stall_timeout_s=with_site_defaults(item.job_res, site).stall_timeout_s) for item in items]
            if executor == "slurm":  # a site's "N allocations a minute" (jobkit.toml sbatch_per_minute)
                CALLS.pace_sbatch(site.sbatch_per_minute if site is not None else None)
            try:
                with _stdio_detached(executor == "local"):
                    jobs = slurm.submit(ex, fns)
                CALLS.last_sbatch = time.monotonic()
            except slurm.SubmissionRefused as exc:  # sbatch refused: say why in one line
                raise SubmitError(str(exc)) from None
            sent.extend(jobs)
            intents.die_here_for_tests()
            for item, job in zip(items, jobs):
                item.job_id = str(job.job_id)
                run = RunDir(item.run_dir)
                where = {"host": socket.gethostname()} if executor == "local" else {}
                run.event(Event.SUBMITTED, sync=False, job_id=item.job_id, token=token, partition=partition,
                          executor=executor, time=item.job_res.time, segments=item.segments,
                          resume=item.action == "resume", array_size=len(items), **where)
                _link_logs(run, folder.parent, item.job_id)
            _drop_template_folder(folder)
        os.sync()
    except BaseException:
        slurm.cancel_submitted(sent)
        for item in recorded:  # every job of this call is cancelled: its intents are void
            RunDir(item.run_dir).event(Event.SUBMIT_ABORTED)
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return planned


@contextmanager
def _stdio_detached(on: bool) -> Iterator[None]:
    """Local controllers outlive this command and inherit its stdout/stderr: give them /dev/null, or
    `jobkit submit | tee` and `$(jobkit submit --json)` would wait until every local run has ended."""
    if not on:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (1, 2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


def _drop_template_folder(folder: Path) -> None:
    """submitit makes the literal `%j` folder when the executor is created; it stays empty."""
    try:
        folder.rmdir()
    except OSError:
        pass


def _link_logs(run: RunDir, jobs_folder: Path, job_id: str) -> None:
    """`<run>/slurm/<job id>` -> submitit's folder for that job (pickles, stdout, stderr)."""
    link = run.slurm_dir / job_id
    try:
        run.slurm_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        if not link.exists() and not link.is_symlink():
            link.symlink_to(jobs_folder / job_id)
    except OSError:
        pass  # logs stay reachable through the events' job ids
