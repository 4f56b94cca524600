"""Crash-safe file writes: a kill at any instant leaves either the old file or the new one.

Temp file in the same folder, flush + fsync, rename over the target, fsync the folder.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

FILE_MODE = 0o640
DIR_MODE = 0o750


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_with(path: Path, writer: Callable[[IO[bytes]], None], sync: bool = True) -> None:
    """Atomically replace `path` with what `writer(f)` writes to a binary file object.

    `sync=False` skips the fsyncs (the rename is still atomic) for callers that write many files
    and then make them all durable with one `os.sync()`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    write_with(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any, sync: bool = True) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
    write_with(path, lambda f: f.write(data), sync=sync)


def append_line(path: Path, line: str, sync: bool = True) -> None:
    """Append one line with a single write + fsync (O_APPEND: concurrent writers never interleave).

    A file whose last line was torn (a kill or a full disk mid-write) gets a newline first, so the
    torn line stays one skippable line instead of swallowing this one.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        size = os.fstat(fd).st_size
        if size and _last_byte(path, size) != b"\n":
            data = b"\n" + data
        while data:  # a short write (disk filling up) continues; the next write raises ENOSPC
            data = data[os.write(fd, data):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _last_byte(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(size - 1)
            return f.read(1)
    except OSError:
        return b"\n"
