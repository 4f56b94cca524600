"""Fault injection for live tests, off unless a `JOBKIT_TEST_*` variable is set (sbatch passes the
submitter's environment to the job): the faults a run must survive, made on purpose at a known step.

- `JOBKIT_TEST_ALLOCATE="STEP:MB"`: after step STEP, hold MB MiB more, as a workload outgrowing its `mem`;
- `JOBKIT_TEST_RAISE="STEP:RANK"`: after step STEP, rank RANK raises (a rank crash in a run of several).
"""
from __future__ import annotations

import os
import time

ALLOCATE_ENV = "JOBKIT_TEST_ALLOCATE"
RAISE_ENV = "JOBKIT_TEST_RAISE"


class InjectedCrash(RuntimeError):
    """The crash a test asked for."""


def at_step(step: int, rank: int, environ: "os._Environ[str] | dict[str, str]" = os.environ) -> None:
    """Called by the loop after each step; does nothing unless a test variable names this step."""
    crash = environ.get(RAISE_ENV)
    if crash and crash.split(":") == [str(step), str(rank)]:
        raise InjectedCrash(f"{RAISE_ENV}: rank {rank} crashes after step {step}")
    spec = environ.get(ALLOCATE_ENV)
    if spec and spec.partition(":")[0] == str(step):
        allocate(int(spec.partition(":")[2]))


def allocate(mb: int, hold_s: float = 20) -> None:
    """Allocate and touch `mb` MiB in 16 MiB pieces, then hold them for `hold_s`: a memory limit the
    cluster enforces kills the job meanwhile; without one the run goes on afterwards."""
    held = []
    for _ in range(mb // 16):
        held.append(bytearray(16 << 20))  # zero-filled: every page is written, so it counts as resident
        time.sleep(0.02)
    time.sleep(hold_s)
    del held
