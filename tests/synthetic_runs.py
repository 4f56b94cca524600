"""A large synthetic sweep on disk, quickly: finished `toy` run folders as a real run leaves them.

    python tests/synthetic_runs.py ROOT 10000      # writes ROOT/synthetic/<run-id>/ x 10000

Each folder holds what a finished toy run writes (checked against a real `jobkit submit` of toy):
spec.json (via `RunDir.create`), events.jsonl (submit_intent, submitted, started, checkpoint,
finished, through `RunDir.event`), progress.json, metrics.json, one TensorBoard event file
(train/loss, train/lr, val/val_loss; TensorBoard's own record writer, so `jobkit tb` reads it) and
samples/step-XXXXXX.json. No checkpoint files (status and collect never open them). A few runs end
otherwise — failed, still running, queued — so the report has every kind of row.
Writes skip fsync (fixture data: the timing is of the reads).
"""
from __future__ import annotations

import itertools
import math
import struct
import sys
from pathlib import Path
from typing import Any

from jobkit import atomic
from jobkit.plan.spec import JobSpec, Resources
from jobkit.state import Event
from jobkit.store import RunDir

T0 = 1_700_000_000.0
LRS = [round(1e-3 * 1.3 ** i, 6) for i in range(20)]
HIDDEN = [16, 32, 64, 128, 256]
DROPOUT = [0.0, 0.1, 0.2, 0.3]
STEPS, LOG_EVERY, EVAL_EVERY = 200, 10, 50


def _toy_params(lr: float, hidden: int, dropout: float, seed: int) -> dict[str, Any]:
    return {"batch_size": 32, "dim": 16, "dropout": dropout, "fail_at": -1, "hidden": hidden, "lr": lr,
            "min_delta": 0.005, "patience": 5, "preset": "default", "seed": seed, "step_sleep": 0.0,
            "steps": STEPS, "stop": "steps"}


def _loss(step: int, lr: float, hidden: int, dropout: float, seed: int) -> float:
    floor = 0.05 + 0.3 * abs(math.log10(lr) + 2.0) + 0.02 * dropout * 10 + 0.01 * (seed % 7) + 8.0 / hidden
    return floor + 2.0 * math.exp(-step * lr * 4) + 0.01 * math.sin(step + seed)


def _tb_file(path: Path, curves: dict[str, list[tuple[int, float]]], wall: float) -> None:
    """One event file as torch's SummaryWriter writes it: a file_version record, then scalars."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        writer.write(event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString())
        points = sorted((step, tag, v) for tag, pts in curves.items() for step, v in pts)
        for step, tag, value in points:
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            writer.write(event_pb2.Event(wall_time=wall + step * 1e-3, step=step, summary=summary).SerializeToString())


def _state_of(i: int) -> str:
    """Mostly finished; every 97th failed, every 89th still running, every 83rd queued."""
    if i % 97 == 13:
        return "failed"
    if i % 89 == 7:
        return "running"
    if i % 83 == 5:
        return "pending"
    return "finished"


def make_run(root: Path, sweep: str, i: int, lr: float, hidden: int, dropout: float, seed: int) -> RunDir:
    params = _toy_params(lr, hidden, dropout, seed)
    name = f"toy-lr{lr:g}-h{hidden}-d{dropout:g}-s{seed}"
    spec = JobSpec(sweep=sweep, workload="toy", params=params, name=name, entry=1,
                   settings={"checkpoint_every": 50, "checkpoint_minutes": 10.0, "eval_every": EVAL_EVERY,
                             "keep_checkpoints": 2, "log_every": LOG_EVERY, "sample_every": 0},
                   resources=Resources(time_min=5, cpus=1, mem_mb=256), key_params=("model", "dataset"))
    run = RunDir.create(root, spec, sync=False)
    how = _state_of(i)
    job = f"{900000 + i // 1000}_{i % 1000}"
    t = T0 + i
    run.event(Event.SUBMIT_INTENT, sync=False, t=t, executor="slurm", index=i % 1000, array_size=1000,
              token=f"{i:012x}")
    run.event(Event.SUBMITTED, sync=False, t=t + 0.01, executor="slurm", job_id=job, partition="test",
              resume=False, segments=1, time="00:05:00", array_size=1000, host="login", token=f"{i:012x}")
    if how == "pending":
        return run
    t += 5
    run.event(Event.STARTED, sync=False, t=t, attempt=1, step=0, job_id=job, executor="slurm", host="n1",
              pid=10000 + i % 50000, device="cpu", resumed_from=None, cores=[0], threads=1, queued_s=5.0)
    reach = STEPS if how == "finished" else (STEPS // 2 if how == "running" else STEPS // 4 + 3)
    step_s = 0.002 + 0.0001 * (i % 10)
    loss = [(s, _loss(s, lr, hidden, dropout, seed)) for s in range(0, reach + 1, LOG_EVERY)]
    val = [(s, _loss(s, lr, hidden, dropout, seed) * 0.8) for s in range(EVAL_EVERY, reach + 1, EVAL_EVERY)]
    lrs = [(s, lr * min(1.0, (s + 1) / 20)) for s, _ in loss]
    if how == "failed":
        val.append((reach, math.nan))
    _tb_file(run.tb_dir / f"events.out.tfevents.{int(t)}.n1.{10000 + i}.0",
             {"train/loss": loss, "train/lr": lrs, "val/val_loss": val}, t)
    for s in range(50, reach + 1, 50):
        run.event(Event.CHECKPOINT, sync=False, t=t + s * step_s, step=s, file=f"step-{s:06d}.pt",
                  reason="final" if s == STEPS else "periodic", seconds=0.004, step_seconds=step_s)
    t += reach * step_s
    final_loss = loss[-1][1]
    val_loss = val[-1][1] if val else None
    progress = {"attempt": 1, "loss": final_loss, "step": reach, "steps_per_s": 1 / step_s, "t": t,
                "total": STEPS, "val_loss": val_loss}
    atomic.write_json(run.progress_path, progress, sync=False)
    if how == "failed":
        run.event(Event.FAILED, sync=False, t=t + 0.01, step=reach, error=f"loss is nan at step {reach}")
    elif how == "finished":
        metrics = {"train_loss": final_loss, "train_lr": lrs[-1][1], "val_loss": val_loss}
        run.event(Event.FINISHED, sync=False, t=t + 0.01, step=STEPS, metrics=metrics)
        atomic.write_json(run.metrics_path, {"step": STEPS, "val_loss": val_loss}, sync=False)
        atomic.write_json(run.samples_dir / f"step-{STEPS:06d}.json", {"step": STEPS, "val_loss": val_loss},
                          sync=False)
    return run


def make_sweep(root: Path, runs: int, sweep: str = "synthetic") -> list[RunDir]:
    """`runs` toy runs varying lr (20 values), hidden (5), dropout (4) and seed (as many as needed)."""
    seeds = range(math.ceil(runs / (len(LRS) * len(HIDDEN) * len(DROPOUT))))
    grid = itertools.islice(itertools.product(seeds, DROPOUT, HIDDEN, LRS), runs)
    return [make_run(Path(root), sweep, i, lr, hidden, dropout, seed)
            for i, (seed, dropout, hidden, lr) in enumerate(grid)]


if __name__ == "__main__":
    made = make_sweep(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 300)
    print(f"{len(made)} runs under {made[0].path.parent}")
