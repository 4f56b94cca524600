"""The loop's TensorBoard: one writer on the main rank, a resumed attempt's points after the old ones.

Other ranks get a `NullWriter`. A resumed attempt's writer purges the old attempt's points past the
checkpoint (`purge_step`), and its event file must sort after the old ones; at the end the run's
params and final metrics go to the HPARAMS tab.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable


class NullWriter:
    """TensorBoard for ranks other than the main one: every call does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def open_writer(writer_cls: Any, tb_dir: Path, step: int) -> Any:
    """The main rank's writer (a `SummaryWriter` class) for an attempt that starts at `step` (0: fresh)."""
    if step:
        _after_older_event_files(tb_dir)
    # a deep queue: scalars go to the writer thread in bursts (it is flushed at checkpoints)
    return writer_cls(log_dir=str(tb_dir), purge_step=step + 1 if step else None, max_queue=1000)


def write_hparams(writer: Any, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """The run's params and final metrics in the HPARAMS tab (and as `hparam/` scalars)."""
    from torch.utils.tensorboard.summary import hparams as hp_summary

    flat = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}
    final = {f"hparam/{k}": v for k, v in metrics.items() if math.isfinite(v)}
    for summary in hp_summary(flat, final):
        writer.file_writer.add_summary(summary)
    for key, value in final.items():
        writer.add_scalar(key, value)


def _after_older_event_files(tb_dir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and the name starts with the second it was
    made in; a resumed attempt's file (whose purge_step drops the old attempt's later points) must sort
    after the old ones. Only an attempt resumed within the same second in one process can tie: wait."""
    newest = max((int(p.name.split(".")[3]) for p in tb_dir.glob("events.out.tfevents.*")
                  if p.name.split(".")[3].isdigit()), default=0)
    while int(time.time()) <= newest:
        time.sleep(0.05)
