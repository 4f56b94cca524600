"""Scalar curves from a run's TensorBoard event files, read with TensorBoard's own reader.

`read_scalars(run.tb_dir)` -> `{"train/loss": [(step, value), ...], "val/val_loss": [...], ...}`.
Tolerant: a missing or empty `tb/`, a half-written last record (a run still running) or an unreadable
file gives what could be read, never an exception.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

Curve = list[tuple[int, float]]

# Keep every point (0 = no reservoir sampling): curves are short (steps / log_every).
_SIZE_GUIDANCE = {"scalars": 0, "tensors": 0, "images": 1, "audio": 1, "histograms": 1,
                  "distributions": 1, "compressedHistograms": 1}


def event_files(tb_dir: Path) -> list[Path]:
    """The event files directly in `tb_dir` (hparams sub-writers live in sub-folders)."""
    tb_dir = Path(tb_dir)
    if not tb_dir.is_dir():
        return []
    return sorted(p for p in tb_dir.glob("events.out.tfevents.*") if p.is_file())


def read_scalars(tb_dir: Path) -> dict[str, Curve]:
    """Every scalar tag in `tb_dir` as a step-sorted list of (step, value); one value per step.

    TensorBoard's reader already drops the points a resumed writer purged (torch's `purge_step`);
    should a step still appear twice, the later record wins. Scalars written as tensors
    (`new_style=True`) are read too.
    """
    if not event_files(tb_dir):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    acc = EventAccumulator(str(tb_dir), size_guidance=_SIZE_GUIDANCE)
    try:
        acc.Reload()
    except Exception:  # a corrupt file: keep what was loaded before it
        pass
    tags = acc.Tags()
    curves: dict[str, dict[int, float]] = {}
    for tag in tags.get("scalars", []):
        points = curves.setdefault(tag, {})
        for ev in acc.Scalars(tag):
            points[int(ev.step)] = float(ev.value)
    for tag in tags.get("tensors", []):
        try:
            if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
                continue
            from tensorboard.util import tensor_util

            points = curves.setdefault(tag, {})
            for ev in acc.Tensors(tag):
                arr = tensor_util.make_ndarray(ev.tensor_proto)
                if arr.size == 1:
                    points[int(ev.step)] = float(arr.reshape(()))
        except Exception:
            continue
    return {tag: sorted((s, v) for s, v in pts.items()) for tag, pts in sorted(curves.items()) if pts}


def finite(curve: Curve) -> Curve:
    return [(s, v) for s, v in curve if math.isfinite(v)]
