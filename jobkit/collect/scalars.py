"""Scalar curves from a run's TensorBoard event files (TensorBoard's record format and protobuf).

`read_scalars(run.tb_dir)` -> `{"train/loss": [(step, value), ...], "val/val_loss": [...], ...}`.
Tolerant: a missing or empty `tb/`, a half-written last record (a run still running) or an unreadable
file gives what could be read, never an exception.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

Curve = list[tuple[int, float]]
PREFIX = "events.out.tfevents."


def event_files(tb_dir: Path) -> list[Path]:
    """The event files directly in `tb_dir` (hparams sub-writers live in sub-folders)."""
    try:
        with os.scandir(tb_dir) as entries:  # not glob: 10,000 runs' worth of globbing shows
            found = [Path(e.path) for e in entries if e.name.startswith(PREFIX) and e.is_file()]
    except OSError:  # no tb/ (yet), or not a folder
        return []
    return sorted(found)


def read_scalars(tb_dir: Path) -> dict[str, Curve]:
    """Every scalar tag in `tb_dir` as a step-sorted list of (step, value); one value per step.

    Read by `jobkit.collect.tfevents` with TensorBoard's rules: the points a resumed writer purged
    (torch's `purge_step`) are dropped; should a step still appear twice, the later record wins.
    Scalars written as tensors (`new_style=True`) are read too.
    """
    from jobkit.collect import tfevents

    files = event_files(tb_dir)
    return tfevents.read_files(files) if files else {}


def finite(curve: Curve) -> Curve:
    return [(s, v) for s, v in curve if math.isfinite(v)]
