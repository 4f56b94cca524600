"""Out of memory, named: the message a person acts on and the cgroup's OOM count a supervisor can
read (`jobkit.run.testhooks` makes a workload allocate past its `mem` in tests).

A run killed for memory cannot write its own last word (the kernel or slurmstepd sends SIGKILL), so
the word comes from a witness: a command run's supervisor sees its script die by SIGKILL while the
cgroup's `oom_kill` count went up; for any run, `status` reads Slurm's record of the job
(`jobkit.observe.endings`). Either way the run shows the same sentence, and `resume` will not send
it again with the same memory.
"""
from __future__ import annotations

from pathlib import Path

OOM_REASON = "oom"  # the `reason` of a `failed` event written for a run killed for memory


def format_mem(mb: int) -> str:
    """`4G` for 4096, `1536M` for 1536: as a person writes it in `--set mem=`."""
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def suggested_mem(mb: int) -> int:
    """Twice the memory that was not enough, in whole GB from 1 GB up."""
    return max(1024, -(-2 * mb // 1024) * 1024)


def oom_message(step: int | None, mem_mb: int, run_id: str) -> str:
    """The sentence `status` and the run's events show for a run killed for memory."""
    where = f"at step {step} " if step is not None else ""
    return (f"out of memory {where}(mem {format_mem(mem_mb)}): "
            f"`jobkit resume {run_id} --set mem={format_mem(suggested_mem(mem_mb))}`")


def oom_kills(proc_self: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """How many processes the kernel's OOM killer has killed in this process's memory cgroup (v2
    `memory.events`, v1 `memory.oom_control`); None where there is no readable memory cgroup (the local
    cluster has none: there Slurm's own record says it, see `jobkit.observe.endings`)."""
    try:
        lines = proc_self.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            candidates = [root / path.lstrip("/") / "memory.events"]
        elif "memory" in controllers.split(","):
            candidates = [root / "memory" / path.lstrip("/") / "memory.oom_control"]
        else:
            continue
        for file in candidates:
            try:
                for item in file.read_text().splitlines():
                    key, _, value = item.partition(" ")
                    if key == "oom_kill":
                        return int(value)
            except (OSError, ValueError):
                continue
    return None
