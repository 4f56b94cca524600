"""The scheduler boundary: the only module that runs Slurm's commands or imports submitit.

Everything jobkit asks Slurm goes through here — `scontrol`, `sacct`, `squeue`, `scancel`,
`sacctmgr`, `sbatch` (through submitit's executor) — so that what a Slurm version prints, how a
failure reads and where its config lives are known in one place.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from jobkit.plan.choose import ClusterError, Partition
from jobkit.plan.clusterfacts import ClusterFacts, facts_from_text
from jobkit.plan.batchscript import render_script, with_job_defaults  # noqa: F401 (render_script: the boundary's)
from jobkit.plan.slurmtext import SlurmJudgement, parse_partitions, parse_sbatch_test_only
from jobkit.state import State


def __getattr__(name: str) -> Any:
    """`slurm.Checkpointable`, imported on first use: submitit costs ~75 ms that `status` need not pay.

    The job entry point subclasses it: submitit calls its `checkpoint()` for a signal that arrives
    outside the training loop (the loop itself stops at a step boundary and calls `requeue`).
    """
    if name == "Checkpointable":
        import submitit

        return submitit.helpers.Checkpointable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Slurm's job state words (squeue %T, sacct State), each read explicitly as what it means to jobkit.
# A word not listed is State.UNKNOWN: shown with the word, never taken for a jobkit state by its name
# (Slurm's STOPPED is a job held by SIGSTOP, not jobkit's terminal STOPPED).
SLURM_WORDS: dict[str, State] = {
    **dict.fromkeys(("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"), State.PENDING),
    **dict.fromkeys(("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"), State.RUNNING),
    **dict.fromkeys(("SUSPENDED", "STOPPED"), State.SUSPENDED),  # allocation kept; goes on when released
    "COMPLETED": State.COMPLETED, "FAILED": State.FAILED, "CANCELLED": State.CANCELLED,
    "TIMEOUT": State.TIMEOUT, "PREEMPTED": State.PREEMPTED, "OUT_OF_MEMORY": State.OUT_OF_MEMORY,
    "NODE_FAIL": State.NODE_FAIL, "BOOT_FAIL": State.BOOT_FAIL, "DEADLINE": State.DEADLINE,
}


def job_state(word: str | None) -> State:
    """What Slurm's state word for a job means to jobkit ("CANCELLED by 0" reads as CANCELLED)."""
    return SLURM_WORDS.get((word or "").split(" ")[0].strip(), State.UNKNOWN)


DEFAULT_CONF = Path("/etc/slurm/slurm.conf")


def conf_path() -> Path:
    """The slurm.conf clients read: $SLURM_CONF, else the default path."""
    return Path(os.environ.get("SLURM_CONF") or DEFAULT_CONF)


# ------------------------------------------------------------------------------ reading the cluster

def check_conf() -> None:
    """Slurm's clients retry a missing config file for a minute: say so at once instead."""
    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.exists(conf):
        raise ClusterError(f"SLURM_CONF={conf} does not exist: is the cluster up? (slurm/up.sh prints the path)")
    default = "/etc/slurm/slurm.conf"
    if not conf and os.path.islink(default) and not os.path.exists(default):
        raise ClusterError(f"{default} points to {os.readlink(default)}, which does not exist: "
                           "start the cluster (slurm/up.sh) or use --executor local")


def scontrol(args: list[str], timeout: float) -> str:
    argv = ["scontrol", *args]
    check_conf()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ClusterError("scontrol not found: is Slurm installed? "
                           "Run slurm/up.sh or use --executor local") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`{' '.join(argv)}` did not answer in {timeout:g} s: is slurmctld running? "
                           "(slurm/up.sh, or --executor local)") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        raise ClusterError(f"`{' '.join(argv)}` failed: {detail}")
    return proc.stdout


def preempted(job_id: str, timeout: float = 10) -> bool:
    """Whether Slurm has chosen this running job for preemption (`PreemptTime` is set in `scontrol
    show job`). Its USR2 then means "leave the node" even in the last minutes before the time limit,
    where the time-limit warning is the same signal. False when Slurm cannot say."""
    try:
        text = scontrol(["show", "job", job_id], timeout)
    except ClusterError:
        return False
    value = next((field.split("=", 1)[1] for field in text.split() if field.startswith("PreemptTime=")), "None")
    return value not in ("None", "Unknown", "")


def read_partitions(timeout: float = 10) -> list[Partition]:
    """The cluster's partitions, now. Raises ClusterError with a one-line message."""
    text = scontrol(["show", "partition", "-o"], timeout)
    try:
        nodes_text = scontrol(["show", "node", "-o"], timeout)
    except ClusterError:
        nodes_text = None  # per-node sizes then come from the partitions' TRES
    parts = parse_partitions(text, nodes_text)
    if not parts:
        raise ClusterError("Slurm reports no partitions (`scontrol show partition -o` printed none)")
    return parts


ASSOC_FORMAT = "Cluster,Account,User,Partition,QOS,DefaultQOS,MaxWall,MaxJobs,MaxSubmit,MaxTRES"
QOS_FORMAT = "Name,Priority,MaxWall,MaxTRES,MaxTRESPU,MaxJobsPU,MaxSubmitPU,Flags,Preempt,PreemptMode"


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", str(os.getuid()))


def _sacctmgr(args: list[str], timeout: float) -> str:
    """`sacctmgr -nP ...` output; raises ClusterError with Slurm's last line when it fails."""
    argv = ["sacctmgr", "-nP", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ClusterError("sacctmgr not found") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"sacctmgr did not answer in {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise ClusterError(lines[-1] if lines else f"sacctmgr exit code {proc.returncode}")
    return proc.stdout


def read_facts(timeout: float = 10, accounting: bool = True) -> ClusterFacts:
    """Partitions, nodes, MaxArraySize, and (when accounting answers) the user's associations and QoS."""
    parts = scontrol(["show", "partition", "-o"], timeout)
    try:
        nodes = scontrol(["show", "node", "-o"], timeout)
    except ClusterError:
        nodes = None
    try:
        config = scontrol(["show", "config"], timeout)
    except ClusterError:
        config = None
    assoc = qos = user = queue = None
    note = None
    if accounting:
        try:
            # the user's associations and DefaultAccount (last column) in one call
            assoc = user = _sacctmgr(["show", "user", _user(), "withassoc", f"format={ASSOC_FORMAT},DefaultAccount"],
                                     timeout)
            qos = _sacctmgr(["show", "qos", f"format={QOS_FORMAT}"], timeout)
        except ClusterError as exc:
            assoc = qos = user = None
            note = (f"no accounting ({exc}): accounts and QoS are not checked; "
                    "choosing from the partitions' limits alone")
    if (qos and any(line.split("|")[6:7] not in ([""], []) for line in qos.splitlines())) or (
            assoc and any(line.split("|")[8:9] not in ([""], []) for line in assoc.splitlines())):
        queue = _queued(timeout)  # MaxSubmitPU / MaxSubmit count the jobs already queued: asked when one is set
    facts = facts_from_text(parts, nodes, qos, assoc, config, user_text=user, queue_text=queue, user=_user())
    if not facts.partitions:
        raise ClusterError("Slurm reports no partitions (`scontrol show partition -o` printed none)")
    if note:
        facts.notes.append(note)
    return facts


def _queued(timeout: float) -> str | None:
    """`squeue -h -u USER -o %q|%a`: one line per queued or running job of the user, its QoS and account."""
    try:
        proc = subprocess.run(["squeue", "-h", "-u", _user(), "-o", "%q|%a"], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def sbatch_test_only(script: str, array: int | None = None, timeout: float = 30) -> SlurmJudgement:
    """`sbatch --test-only` on a batch script (its #SBATCH lines are the real submission's options):
    Slurm validates every limit and says when it expects the job to start; nothing is queued."""
    argv = ["sbatch", "--test-only", *([f"--array=0-{array - 1}"] if array and array > 1 else [])]
    check_conf()
    try:
        proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ClusterError("sbatch not found: is Slurm installed?") from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"sbatch --test-only did not answer in {timeout:g} s") from None
    return parse_sbatch_test_only(proc.returncode, proc.stderr + proc.stdout)


def last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


def available() -> bool:
    """Whether a Slurm controller answers (`scontrol ping`)."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return False
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=10, text=True).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def scancel(job_ids: Sequence[str]) -> str | None:
    """Cancel Slurm jobs in one call; None when it worked, else scancel's last line."""
    done = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
    return None if done.returncode == 0 else (last_line(done.stderr) or "scancel failed")


@dataclass
class SlurmView:
    states: dict[str, str] = field(default_factory=dict)  # job id -> Slurm state
    partitions: dict[str, str] = field(default_factory=dict)
    source: str = "none"  # sacct | squeue | none
    calls: int = 0
    error: str | None = None


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def query_states(job_ids: Sequence[str]) -> SlurmView:
    """States of `job_ids` with one sacct call, or one squeue call when accounting is off."""
    view = SlurmView()
    ids = sorted({j for j in job_ids if j and str(j)[0].isdigit()})
    if not ids or shutil.which("squeue") is None:
        return view
    if shutil.which("sacct") and accounting_enabled():
        view.calls += 1
        try:
            out = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,Partition", "-j", ",".join(ids)])
        except (OSError, subprocess.TimeoutExpired) as exc:
            out, view.error = None, str(exc)
        if out is not None and out.returncode == 0:
            view.source = "sacct"
            for line in out.stdout.splitlines():
                parts = line.split("|")
                if len(parts) >= 3:
                    view.states[parts[0]] = parts[1].split()[0]  # "CANCELLED by 0" -> CANCELLED
                    view.partitions[parts[0]] = parts[2]
            return view
        if out is not None:
            view.error = last_line(out.stderr or out.stdout) or "sacct failed"
    return _squeue(view)


HISTORY_FIELDS = "JobID,State,ExitCode,NodeList,MaxRSS,ReqMem,NTasks"


def job_history(job_ids: Sequence[str]) -> str | None:
    """`sacct -D` lines (every attempt and step) of these jobs in one call, None when accounting does not
    answer: `jobkit.plan.endings` reads an OOM kill or a lost node from them."""
    ids = sorted({j for j in job_ids if j and str(j)[0].isdigit()})
    if not ids or shutil.which("sacct") is None or not accounting_enabled():
        return None
    try:
        out = _run(["sacct", "-D", "-n", "-P", "-o", HISTORY_FIELDS, "-j", ",".join(ids)])
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def jobs_by_comment(comments: Sequence[str]) -> tuple[dict[str, list[str]], str | None]:
    """{comment: job ids (array tasks as `123_4`)} of this user's queued and running jobs whose comment
    starts with one of `comments` (up to a comma), with one squeue call; and squeue's error line, if it failed."""
    wanted = set(comments)
    try:
        out = _run(["squeue", "-h", "-r", "-u", _user(), "-o", "%i|%k"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"squeue: {exc}"
    if out.returncode != 0:
        return {}, last_line(out.stderr) or "squeue failed"
    found: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        job_id, _, text = line.strip().partition("|")
        key = text.split(",", 1)[0]  # jobkit's part comes first; a user's own comment may follow
        if key in wanted:
            found.setdefault(key, []).append(job_id)
    return found, None


def accounting_enabled() -> bool:
    """Whether slurm.conf names an accounting storage (read from the file: no Slurm call)."""
    conf = conf_path()
    try:
        text = conf.read_text(errors="replace")
    except OSError:
        return True  # unknown: try sacct, fall back to squeue
    for line in text.splitlines():
        key, _, value = line.split("#", 1)[0].partition("=")
        if key.strip().lower() == "accountingstoragetype":
            return value.strip().lower() not in ("", "accounting_storage/none")
    return False


def _squeue(view: SlurmView) -> SlurmView:
    view.calls += 1
    try:
        out = _run(["squeue", "-h", "-u", _user(), "-o", "%i|%T|%P"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        view.error = str(exc)
        return view
    if out.returncode != 0:
        view.error = last_line(out.stderr) or "squeue failed"
        return view
    view.source = "squeue"
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3:
            view.states[parts[0]] = parts[1]
            view.partitions[parts[0]] = parts[2]
    return view




# --------------------------------------------------------------------------- submitting, via submitit

MAX_REQUEUES = 1000  # submitit's own count of signal requeues; jobkit stops loops itself (runner)


class SubmissionRefused(RuntimeError):
    """The scheduler refused a submission; the message is its one line."""


def job_folder(sweep_dir: Path, job_id: str = "%j") -> Path:
    """submitit's folder for one job of a sweep (pickles, logs); `%j` is the template submitit fills."""
    return Path(sweep_dir) / ".submitit" / job_id


def job_log_paths(sweep_dir: Path, job_id: str, task: int = 0) -> tuple[Path, Path]:
    """(stdout, stderr) that submitit writes for one task of the job (task 0: the main rank)."""
    folder = job_folder(sweep_dir, job_id)
    return folder / f"{job_id}_{task}_log.out", folder / f"{job_id}_{task}_log.err"


def slurm_executor(folder: Path, params: dict[str, Any], python: str | None = None) -> Any:
    """submitit's SlurmExecutor with these parameters (its public `update_parameters` names)."""
    import submitit

    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_REQUEUES, python=python or None)
    ex.update_parameters(stderr_to_stdout=False, **with_job_defaults(params))
    return ex


def local_executor(folder: Path, timeout_min: int, signal_delay_s: int, gpus: int, tasks: int,
                   python: str | None = None) -> Any:
    """submitit's LocalExecutor: the job runs on this machine, `tasks` processes of it."""
    import submitit

    ex = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_REQUEUES, python=python or None)
    ex.update_parameters(timeout_min=timeout_min, signal_delay_s=signal_delay_s, gpus_per_node=gpus,
                         tasks_per_node=tasks)
    return ex


def submit(executor: Any, fns: Sequence[Any]) -> list[Any]:
    """One job array for several callables (one sbatch), a plain job for one. Raises SubmissionRefused."""
    try:
        return executor.submit_array(list(fns)) if len(fns) > 1 else [executor.submit(fns[0])]
    except Exception as exc:  # submitit raises sbatch's failure as a plain exception
        raise SubmissionRefused(_refusal(exc)) from None


def cancel_submitted(jobs: Sequence[Any]) -> None:
    """Take back jobs this command submitted (all-or-nothing submission)."""
    for job in jobs:
        try:
            job.cancel(check=False)
        except Exception:
            pass


def _refusal(exc: Exception) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "error:" in line.lower() and "sbatch" in line.lower():
            return line.strip()
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else type(exc).__name__


# ------------------------------------------------------------------------------------ inside a job

@dataclass(frozen=True)
class JobEnvironment:
    executor: str  # "slurm" | "local"
    job_id: str  # `123`, or `123_4` for a task of an array
    global_rank: int = 0
    num_tasks: int = 1
    local_rank: int = 0
    num_nodes: int = 1
    hostnames: tuple[str, ...] = ()  # the allocation's nodes; the first is the rendezvous


def job_environment() -> JobEnvironment:
    """Where this job runs, from submitit's job environment (only valid inside a submitit job)."""
    import submitit

    env = submitit.JobEnvironment()
    return JobEnvironment(executor="local" if env.cluster == "local" else "slurm", job_id=str(env.job_id),
                          global_rank=env.global_rank, num_tasks=env.num_tasks, local_rank=env.local_rank,
                          num_nodes=env.num_nodes, hostnames=tuple(env.hostnames))


def requeue(env: JobEnvironment, exclude: Sequence[str] = ()) -> str:
    """Put this job back in the queue and end the process; returns only with the reason it could not.

    Slurm: `scontrol requeue JOB` (the job keeps its id and restarts from the same submission), then,
    with `exclude`, `ExcNodeList` (only a pending job's can change; a failure there is only printed).
    Local executor: exit with submitit's requeue code, and its controller starts the job again.
    """
    if env.executor == "local":
        from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE

        sys.exit(LOCAL_REQUEUE_RETURN_CODE)
    try:
        done = subprocess.run(["scontrol", "requeue", env.job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol requeue {env.job_id}: {exc}"
    if done.returncode != 0:
        return f"scontrol requeue {env.job_id}: {last_line(done.stderr) or 'failed'}"
    try:  # pending again now: its ExcNodeList may change
        exclude and scontrol(["update", f"jobid={env.job_id}", f"ExcNodeList={','.join(exclude)}"], 30)
    except ClusterError as exc:
        print(f"jobkit: could not keep job {env.job_id} off {','.join(exclude)}: {exc}", file=sys.stderr)
    sys.exit(-1)  # as submitit does: the job is requeued; this attempt ends without a result


def resubmission(fn: Any) -> Any:
    """What `Checkpointable.checkpoint` returns: the same callable, submitted again."""
    import submitit

    return submitit.helpers.DelayedSubmission(fn)
