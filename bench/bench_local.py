"""The local executor with and without its queue (issue 11, item 8): a 3-run charlm cpu-small sweep.

    python bench/bench_local.py                # 100 steps per model, cpus = this machine's CPUs
    python bench/bench_local.py --steps 300 --cpus 2

Prints figures, asserts nothing. The sweep: `charlm`, preset `cpu-small`, models LSTM, TCN and
Transformer, `steps` each, evaluation only at the end over 16 windows, no samples, one final
checkpoint. Two modes, each in its own temporary --root:

- **all at once** (what `--executor local` did before the queue): the three runs are submitted by
  three `jobkit submit --only MODEL` calls, each with its own `JOBKIT_LOCAL_POOL`, so none waits for
  another; each still sets `cpus` threads, so they share the machine's cores.
- **queued**: one `jobkit submit --executor local`, one shared pool: a run starts when its `cpus`
  are free and is pinned to them.

For each mode: wall time from the first `submitted` event to the last `finished` event, and per run
its training steps/s (the runner's moving average of the step time, `progress.json`) and its
started→finished time. The modes run one after the other, never at once.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("lstm", "tcn", "transformer")


def sweep_text(steps: int, cpus: int) -> str:
    return f"""name = "benchlocal"
[defaults]
time = "01:00:00"
cpus = {cpus}
mem = "1G"
[[run]]
workload = "charlm"
preset = "cpu-small"
model = ["lstm", "tcn", "transformer"]
data = "tinyshakespeare"
steps = {steps}
eval_every = 0
sample_every = 0
val_windows = 16
checkpoint_every = 0
"""


def jobkit(args: list[str], root: Path, pool: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JOBKIT_ROOT": str(root), "JOBKIT_LOCAL_POOL": str(pool)}
    return subprocess.run([sys.executable, "-m", "jobkit", *args], capture_output=True, text=True, env=env,
                          timeout=3600)


def wait_done(root: Path, timeout_s: float = 3600) -> None:
    end = time.time() + timeout_s
    while time.time() < end:
        runs = [d for d in (root / "benchlocal").iterdir() if (d / "events.jsonl").exists()]
        ended = 0
        for run in runs:
            events = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
            ended += events[-1] in ("finished", "failed", "cancelled", "timeout")
        if runs and ended == len(runs):
            return
        time.sleep(1.0)
    raise TimeoutError("runs did not end")


def figures(root: Path) -> dict:
    out: dict = {"runs": {}}
    first, last = float("inf"), 0.0
    for run in sorted((root / "benchlocal").iterdir()):
        if not (run / "events.jsonl").exists():
            continue
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        t = {e["event"]: e["t"] for e in events}
        started = next(e for e in events if e["event"] == "started")
        progress = json.loads((run / "progress.json").read_text())
        model = json.loads((run / "spec.json").read_text())["params"]["model"]
        first, last = min(first, t["submitted"]), max(last, t.get("finished", 0.0))
        out["runs"][model] = {"steps_per_s": progress.get("steps_per_s"), "run_s": t["finished"] - t["started"],
                              "threads": started.get("threads"), "cores": started.get("cores"),
                              "queued_s": started.get("queued_s"), "finished": "finished" in t}
    out["wall_s"] = last - first
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    os.environ.setdefault("JOBKIT_DATA", "/work/shared/data")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        base = Path(tmp)
        sweep = base / "sweep.toml"
        sweep.write_text(sweep_text(args.steps, args.cpus))

        root = base / "all-at-once"
        for model in MODELS:  # three pools: nobody waits
            done = jobkit(["submit", str(sweep), "--executor", "local", "--only", f"charlm-{model}-*", "--json"],
                          root, base / f"pool-{model}")
            if done.returncode:
                sys.exit(f"submit failed: {done.stderr.strip()}")
        wait_done(root)
        results["all at once"] = figures(root)

        root = base / "queued"
        done = jobkit(["submit", str(sweep), "--executor", "local", "--wait"], root, base / "pool")
        if done.returncode:
            sys.exit(f"submit failed: {done.stderr.strip()}\n{done.stdout[-2000:]}")
        results["queued"] = figures(root)

    load = os.getloadavg()
    print(f"charlm cpu-small, {args.steps} steps per model, cpus = {args.cpus}, on {len(os.sched_getaffinity(0))} "
          f"cores; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"{'mode':<12} {'wall':>8}   " + "   ".join(f"{m:>26}" for m in MODELS))
    print(f"{'':<12} {'':>8}   " + "   ".join(f"{'steps/s · run s · queued s':>26}" for _ in MODELS))
    for mode, res in results.items():
        cells = []
        for m in MODELS:
            r = res["runs"].get(m, {})
            sps = f"{r['steps_per_s']:.2f}" if r.get("steps_per_s") else "-"
            cells.append(f"{sps:>8} · {r.get('run_s', 0):6.1f} · {r.get('queued_s') or 0:6.1f}")
        print(f"{mode:<12} {res['wall_s']:7.1f}s   " + "   ".join(f"{c:>26}" for c in cells))
    a, q = results["all at once"]["wall_s"], results["queued"]["wall_s"]
    print(f"queued / all at once, wall time: {q / a:.2f}")
    for m in MODELS:
        sa = results["all at once"]["runs"].get(m, {}).get("steps_per_s")
        sq = results["queued"]["runs"].get(m, {}).get("steps_per_s")
        if sa and sq:
            print(f"  {m}: steps/s queued / all at once = {sq / sa:.1f}x")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
