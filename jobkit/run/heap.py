"""Keep freed tensor memory in the training process instead of handing it back to the kernel (glibc).

Why: a CPU training step frees and reallocates the same large tensors every step (gradients under
`zero_grad(set_to_none=True)`, activations). glibc serves blocks above its mmap threshold with a fresh
`mmap` and trims the top of its heap as soon as 128 KiB are free there, so those blocks go back to the
kernel at every free and come back as zero-filled page faults at the next step. Its threshold adapts
upwards after the first free of a large mmapped block, but whether a process gets there depends on the
order of its first allocations: the same 100M-parameter MLP stepped at 410 ms or 835 ms here from one
start to the next, 42,000 page faults a second in the slow case (issue 27's benchmark).

How: `mallopt` at the start of a run raises the mmap threshold to glibc's maximum (32 MiB) and the trim
threshold to 2 GiB, so blocks up to 32 MiB are reused from the heap and freed memory stays in the
process. The price: a run's resident memory stays near its peak instead of shrinking after it (the
peak itself is what Slurm's memory limit already had to allow). Tensors above 32 MiB are mmapped and
faulted as before.

Left alone: non-glibc platforms, a process whose allocator was replaced (jemalloc or tcmalloc through
`LD_PRELOAD`), a user who set glibc's own `MALLOC_*_` variables, and `JOBKIT_MALLOC=system`.
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Mapping

ENV = "JOBKIT_MALLOC"  # "keep" (default) or "system": glibc's own behaviour
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 2 * 1024 * 1024 * 1024 - 1  # an int: memory stays unless 2 GiB sit free at the heap's top
GLIBC_KNOBS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
               "GLIBC_TUNABLES")
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def choice(env: Mapping[str, str]) -> str:
    """What this process should do: "keep", or why not ("system", "user-set", "preloaded", "not-glibc")."""
    wanted = (env.get(ENV) or "keep").strip().lower()
    if wanted not in ("keep", "system"):
        raise ValueError(f"{ENV}={env.get(ENV)!r}: use keep (the default) or system")
    if wanted == "system":
        return "system"
    if any(env.get(k) for k in GLIBC_KNOBS):
        return "user-set"
    if any(name in env.get("LD_PRELOAD", "") for name in OTHER_ALLOCATORS):
        return "preloaded"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not-glibc"
    return "keep"


def keep_freed_memory(env: Mapping[str, str] | None = None) -> str:
    """Apply `choice` to this process; returns what it did (recorded in the `started` event)."""
    what = choice(os.environ if env is None else env)
    if what != "keep":
        return what
    try:
        libc = ctypes.CDLL(None)
        ok = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
              and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    except (OSError, AttributeError):
        return "not-glibc"
    return "keep" if ok else "refused"
