"""Benchmark of a sweep larger than the user's job limit, completed by feeder jobs alone (issue 24).

    python bench/bench_feeder.py                                   # 1000 runs, MaxSubmitPU 300, MaxArraySize 101
    python bench/bench_feeder.py --runs 60 --limit 20 --max-array 9 --restart
    python bench/bench_feeder.py --conf /tmp/c/etc/slurm.conf ...  # a running private cluster (its MaxArraySize)

Starts a private cluster (`slurm/up.sh --port-base 7917 --max-array-size N`, removed at the end) unless
--conf names one, adds QoS `feed` with MaxSubmitPU = --limit, submits a `toy` sweep under it ONCE and
then only watches: the user's jobs under the QoS sampled with squeue every 2 s, the runs read from
their folders (tests/slurmtools.py:feeder_sweep, the same driver as tests/test_slurm_feeder.py).
Prints figures, asserts nothing: wall time, peak queued vs the limit, job arrays and feeder jobs sent
(= job-creating sbatch calls), duplicates (runs submitted twice: target 0), runs never submitted.
A toy array task costs ~10 s of two shared cores here, so 1000 runs take over an hour on this machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import DOWN, _up  # noqa: E402
from slurmtools import feeder_sweep  # noqa: E402
from test_slurm_feeder import QOS, SWEEP, add_feed_qos, restart_controller  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=300, help="QoS feed MaxSubmitPU (default 300)")
    ap.add_argument("--max-array", type=int, default=101, help="MaxArraySize of the private cluster (default 101)")
    ap.add_argument("--conf", help="use this running cluster's slurm.conf instead of starting one")
    ap.add_argument("--port-base", type=int, default=7917)
    ap.add_argument("--restart", action="store_true", help="restart slurmctld once a third of the runs finished")
    ap.add_argument("--timeout", type=float, default=4 * 3600)
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="jobkit-bench-feeder-"))
    state = Path(args.conf).parent.parent if args.conf else work / "slurm"
    started = False
    try:
        if args.conf:
            conf = Path(args.conf)
        else:
            t0 = time.time()
            conf, why = _up(state, "--port-base", str(args.port_base), "--no-symlink",
                            "--max-array-size", str(args.max_array))
            if conf is None:
                print(f"private cluster: {why}")
                return 1
            started = True
            print(f"# private cluster up in {time.time() - t0:.0f} s: {conf}")
        env = {**os.environ, "SLURM_CONF": str(conf), "JOBKIT_ROOT": str(work / "runs")}
        add_feed_qos(env, args.limit)
        config = subprocess.run(["scontrol", "show", "config"], env=env, capture_output=True, text=True).stdout
        size = next((ln.split("=")[1].strip() for ln in config.splitlines() if ln.startswith("MaxArraySize")), "?")
        sweep = work / "feeder.toml"
        sweep.write_text(SWEEP.format(qos=QOS, seeds=list(range(args.runs))))
        print(f"# {args.runs} toy runs under QoS {QOS} (MaxSubmitPU {args.limit}), MaxArraySize {size}; "
              f"restart slurmctld mid-sweep: {args.restart}")
        figures = feeder_sweep(work / "runs", sweep, QOS, env, timeout=args.timeout,
                               restart=(lambda: restart_controller(state, env)) if args.restart else None)
        fig = {k: v for k, v in figures.items() if k != "first_submit"}
        print(f"time            : {fig['seconds']:.0f} s for {fig['runs']} runs ({fig['completed']} completed, "
              f"states {fig['states']})")
        print(f"peak queued     : {fig['peak_queued']} of MaxSubmitPU {args.limit} "
              f"({fig['samples']} squeue samples, {fig['squeue_unanswered']} unanswered)")
        print(f"sbatch calls    : {fig['arrays']} job arrays + {fig['feeders']} feeder jobs "
              f"(>= ceil({args.runs}/{int(size) - 1 if size.isdigit() else '?'}) arrays)")
        print(f"duplicates      : {fig['duplicates']} runs submitted twice; {fig['never_submitted']} never submitted"
              + (f"; slurmctld restarted: {fig['restarted']}" if args.restart else ""))
        return 0
    finally:
        if started:
            subprocess.run(["bash", str(DOWN), str(state), "--purge"], capture_output=True, timeout=300)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
