"""Scalar curves from a run's TensorBoard event files (TensorBoard's record format and protobuf).

`read_scalars(run.tb_dir)` -> `{"train/loss": [(step, value), ...], "val/val_loss": [...], ...}`.
Tolerant: a missing or empty `tb/`, a half-written last record (a run still running) or an unreadable
file gives what could be read, never an exception.
"""
from __future__ import annotations

import math
from pathlib import Path

Curve = list[tuple[int, float]]


def event_files(tb_dir: Path) -> list[Path]:
    """The event files directly in `tb_dir` (hparams sub-writers live in sub-folders)."""
    tb_dir = Path(tb_dir)
    if not tb_dir.is_dir():
        return []
    return sorted(p for p in tb_dir.glob("events.out.tfevents.*") if p.is_file())


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
