"""A full disk or quota, reported: the `failed` event that names it (the reserve freed first so it can
be written) and the error line `jobkit status` shows. Recognising the fault and measuring room live in
`jobkit.diskspace` (beside the atomic writer); they are re-exported here for the runner.
"""
from __future__ import annotations

import sys
from typing import Any

from jobkit.diskspace import (NO_SPACE_ERRNOS, NO_SPACE_TEXTS, RESERVE_BYTES, RESERVE_NAME, NoSpace,  # noqa: F401
                              ensure_reserve, free_bytes, has_room, human, is_no_space, message, mount_point,
                              release_reserve, state_bytes)


def record_no_space(run: Any, message_text: str, **fields: Any) -> None:
    """Write the `failed` event naming the full disk: free the reserve first; if even that fails, say
    it on stderr (the job's log), which is all that is left."""
    release_reserve(run.path)
    try:
        run.record_failed(message_text, fault="no_space", **fields)
    except OSError as exc:
        print(f"jobkit: {message_text} (could not record it in {run.events_path}: {exc.strerror})",
              file=sys.stderr, flush=True)


def report_no_space(run: Any, exc: BaseException, record: bool = True) -> str:
    """The run's error line for a full disk, recorded as its `failed` event (by the writing rank)."""
    needed = getattr(exc, "needed", None) or checkpoint_size(run)
    text = message(run.path, needed)
    if record:
        record_no_space(run, text, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
    return f"{text}; make room, then `jobkit resume` continues from the last checkpoint"


def checkpoint_size(run: Any) -> int:
    """Room a run needs to go on: its newest checkpoint's size (1 MB before the first one)."""
    kept = run.checkpoints()
    return max(kept[0].size, RESERVE_BYTES) if kept else 1_000_000
