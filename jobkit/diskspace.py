"""Disk space, named: a full disk (ENOSPC) or an exhausted quota (EDQUOT) recognised wherever it shows,
the room a write needs, and a small reserve per run folder — beside the atomic writer, so the run
folder's store (`store.py`) can refuse a checkpoint that would not fit without importing `run/`.

torch reports a full disk while saving as `RuntimeError: [enforce fail at inline_container.cc] ...
unexpected pos`, TensorBoard's writer thread re-raises the OSError later: `is_no_space` recognises
them all. The reserve is freed when the disk is full, so the `failed` event that names the fault can
still be written (`jobkit.run.faults`).
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# what C++ writers (torch's zip writer) say when a write came up short
NO_SPACE_TEXTS = ("No space left", "Disk quota exceeded", "unexpected pos", "file write failed",
                  "PytorchStreamWriter failed writing")
RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 256 * 1024


class NoSpace(OSError):
    """Not enough room to write; `needed` is the bytes the write needed (an estimate)."""

    def __init__(self, path: Path, needed: int, code: int = errno.ENOSPC) -> None:
        super().__init__(code, message(path, needed))
        self.path, self.needed = Path(path), needed


def is_no_space(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is a full disk or quota."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if isinstance(exc, RuntimeError) and any(t in str(exc) for t in NO_SPACE_TEXTS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding `path` (what a user would `df`)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: Path) -> int:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def has_room(path: Path, needed: int) -> bool:
    """Whether `needed` bytes fit on the file system of `path` (quota aside: that shows as EDQUOT)."""
    return free_bytes(path) >= needed


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def message(path: Path, needed: int) -> str:
    """`no space left on /scratch (free 1.2 MB, needed ~6.3 MB)`: the status line of the run."""
    return f"no space left on {mount_point(path)} (free {human(free_bytes(path))}, needed ~{human(needed)})"


def state_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested state (what a checkpoint of it needs, give or take headers)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 8


def ensure_reserve(run_dir: Path) -> None:
    """Keep RESERVE_BYTES allocated in the run folder; raises NoSpace when not even that fits."""
    path = Path(run_dir) / RESERVE_NAME
    try:
        if path.is_file() and path.stat().st_size >= RESERVE_BYTES:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            except OSError as exc:
                if exc.errno in NO_SPACE_ERRNOS:
                    raise
                os.pwrite(fd, b"\0" * RESERVE_BYTES, 0)  # a file system without fallocate
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            path.unlink(missing_ok=True)
            raise NoSpace(run_dir, RESERVE_BYTES, exc.errno) from None
        raise


def release_reserve(run_dir: Path) -> None:
    try:
        (Path(run_dir) / RESERVE_NAME).unlink(missing_ok=True)
    except OSError:
        pass
