"""Benchmark of data-parallel runs (issue 12): charlm cpu-small as 1 task × 2 threads vs 2 tasks × 1 thread,
and what a collective stop adds to a stop.

    python bench/bench_distributed.py                  # 60 steps each (~2-3 min on the 2-core VM)
    python bench/bench_distributed.py --steps 200 --rounds 400

Prints figures, asserts nothing.

Throughput: the same charlm cpu-small run (global batch 12) through `jobkit run`, once as one process
with torch.set_num_threads(2) and once as two ranks (RANK/WORLD_SIZE as torchrun sets them, gloo on
loopback) with one thread each. Steps/s are taken from the run's events: from the `started` event
(after setup) to the final checkpoint — training steps, the per-step agreement, bookkeeping and the
final evaluation (64 validation windows, sharded over the ranks).

Collective stop: two ranks (gloo, one thread each) time what the runner adds when several tasks run:
  * per step: one `mean_metrics` all-reduce (metrics + stop flag + checkpoint-time flag);
  * per stop: gathering every rank's RNG state into the main rank and the barrier after the checkpoint
    (the checkpoint write itself is the same as with one task and is not counted).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_charlm(root: Path, world: int, threads: int, steps: int) -> float:
    from jobkit import testing

    raw = {"preset": "cpu-small", "steps": steps, "eval_every": 0, "checkpoint_every": 0,
           "checkpoint_minutes": 0, "sample_every": 0, "val_windows": 64}
    run = testing.make_run(root / f"w{world}", "charlm", raw, cpus=threads)
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = dict(os.environ)
        if world > 1:
            env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, "-m", "jobkit", "run", str(run.path)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert all(p.wait() == 0 for p in procs)
    events = run.events()
    started = next(e["t"] for e in events if e["event"] == "started")
    final = next(e for e in events if e["event"] == "checkpoint" and e["reason"] == "final")
    return steps / (final["t"] - started)


def collective_worker(rank: int, port: int, rounds: int, out: Path) -> None:
    import torch

    from jobkit.run import distributed, rng

    torch.set_num_threads(1)
    topo = distributed.Topology(rank=rank, world_size=2, master_port=port)
    group = distributed.Group(topo, torch.device("cpu"), timeout_s=60)
    metrics = {"loss": 1.0, "grad_norm": 2.0, "lr": 1e-3, "tokens_per_s": 1000.0}
    for _ in range(20):
        distributed.mean_metrics(group, metrics, [0.0, 0.0])
    t0 = time.perf_counter()
    for _ in range(rounds):
        distributed.mean_metrics(group, metrics, [0.0, 0.0])
    per_step = (time.perf_counter() - t0) / rounds
    stops = []
    for _ in range(20):
        t0 = time.perf_counter()
        group.gather(rng.get_state())
        group.barrier()
        stops.append(time.perf_counter() - t0)
    group.close()
    if rank == 0:
        out.write_text(f"{per_step} {statistics.median(stops)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        collective_worker(int(args.worker[0]), int(args.worker[1]), args.rounds, Path(args.worker[2]))
        return
    os.environ.setdefault("JOBKIT_DATA", "/work/shared/data")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one = run_charlm(root, 1, 2, args.steps)
        two = run_charlm(root, 2, 1, args.steps)
        print(f"charlm cpu-small, global batch 12, {args.steps} steps")
        print(f"  1 task  × 2 threads: {one:6.2f} steps/s")
        print(f"  2 tasks × 1 thread : {two:6.2f} steps/s   ({two / one:.2f}× the single task)")
        out, port = root / "coll.txt", free_port()
        procs = [subprocess.Popen([sys.executable, __file__, "--rounds", str(args.rounds), "--worker", str(r),
                                   str(port), str(out)]) for r in range(2)]
        assert all(p.wait() == 0 for p in procs)
        per_step, per_stop = map(float, out.read_text().split())
        print("collective stop, 2 ranks (gloo, loopback)")
        print(f"  agreement per step (metrics + stop + checkpoint flags): {per_step * 1e3:.3f} ms "
              f"({per_step * one * 100:.2f} % of a single-task step)")
        print(f"  added to a stop (gather RNG states + barrier after the checkpoint): {per_stop * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
