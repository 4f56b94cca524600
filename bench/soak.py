"""Soak: kill a run at random instants, again and again, and it still ends bit-identical to a straight run.

    python bench/soak.py --kills 100                    # kill -9 of `jobkit run`, then `jobkit run` again
    python bench/soak.py --kills 0 --slurm-kills 3      # scancel -s KILL of the Slurm job, then `jobkit resume`

A `toy` run that checkpoints every 3 steps (so many kills land mid-write) is killed with SIGKILL at a
random instant after each start; the next `jobkit run` continues it from its last verified checkpoint.
At the end its weights, optimizer, data generator and RNG state must equal (torch.equal) those of
the same run trained straight through, and no temporary file may be left in the run folder. Prints
one JSON line with the figures. Single process at a time (the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobkit import testing
from jobkit.run import runner
from jobkit.store import RunDir

PARAMS = {"preset": "tiny", "checkpoint_every": 3, "eval_every": 0, "log_every": 1, "keep_checkpoints": 2,
          "step_sleep": 0.004, "dim": 32, "hidden": 256}


def temp_files(run: RunDir) -> list[Path]:
    return sorted(p for p in run.path.rglob("*") if p.name.endswith((".tmp", ".part")))


def _started(run: RunDir) -> int:
    return sum(e.get("event") == "started" for e in run.events())


def _jobkit(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobkit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def kill_soak(root: Path, kills: int, seed: int = 0, max_delay: float = 0.4) -> dict:
    """`kills` times: start `jobkit run`, wait for it to train, SIGKILL it at a random instant."""
    rnd = random.Random(seed)
    params = {**PARAMS, "steps": 25 * kills + 60}
    straight = testing.make_run(root / "straight", "toy", params)
    t0 = time.perf_counter()
    runner.run(straight)
    straight_s = time.perf_counter() - t0
    run = testing.make_run(root / "killed", "toy", params)
    done, mid_write, torn = 0, 0, 0
    for _ in range(kills):
        before = _started(run)
        proc = _jobkit("run", str(run.path))
        while _started(run) == before and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is not None:  # it finished before it could be killed
            break
        time.sleep(rnd.uniform(0.0, max_delay))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done += 1
        mid_write += bool(temp_files(run))
        data = run.events_path.read_bytes()
        torn += bool(data) and not data.endswith(b"\n")
    final = _jobkit("run", str(run.path))
    err = final.communicate()[1]
    if final.returncode != 0:
        raise AssertionError(f"the last `jobkit run` failed ({final.returncode}): {err.strip()[-500:]}")
    a, b = straight.load_checkpoint(), run.load_checkpoint()
    testing.assert_same(a[0], b[0])  # step, workload (model, optimizer, scheduler, data), rng, runner
    left = temp_files(run)
    assert not left, f"temporary files left: {left}"
    events = run.events()
    return {"kills": done, "steps": params["steps"], "killed_mid_write": mid_write, "torn_event_lines": torn,
            "checkpoints_written": sum(e["event"] == "checkpoint" for e in events),
            "starts": sum(e["event"] == "started" for e in events),
            "rejected_checkpoints": sum(e["event"] == "checkpoint_rejected" for e in events),
            "bit_identical": True, "temp_files_left": 0, "straight_run_s": round(straight_s, 2)}


def _status(root: Path, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "jobkit", "status", "--json", "--root", str(root)],
                         capture_output=True, text=True, env=env, timeout=120)
    return json.loads(out.stdout)["runs"][0]


def slurm_soak(root: Path, kills: int, seed: int = 0, timeout: float = 600.0) -> dict:
    """`kills` times: submit/resume the run on Slurm, wait until it trains, `scancel -s KILL` its job."""
    rnd = random.Random(seed)
    env = {**os.environ, "JOBKIT_ROOT": str(root)}
    params = {**PARAMS, "steps": 200 * kills + 100, "step_sleep": 0.02}
    sweep = root / "soak.toml"
    sweep.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
    sweep.write_text(f'name = "soak"\n[[run]]\nworkload = "toy"\ntime = "00:10:00"\ncpus = 1\nmem = "1G"\n{body}\n')
    straight = testing.make_run(root / "straight", "toy", params)
    runner.run(straight)

    def cli(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "jobkit", *args, "--executor", "slurm"],
                              capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"jobkit {' '.join(args)}: {done.stderr.strip()[-400:]}")

    cli("submit", str(sweep))
    done = 0
    try:
        for _ in range(kills):
            end = time.time() + timeout
            s = _status(root, env)
            start_step = s["step"]
            while not (s["state"] == "RUNNING" and s["step"] > start_step) and time.time() < end:
                if s["state"] == "COMPLETED":
                    break
                time.sleep(0.5)
                s = _status(root, env)
            if s["state"] == "COMPLETED":
                break
            time.sleep(rnd.uniform(0.0, 1.5))
            subprocess.run(["scancel", "-s", "KILL", str(s["job_id"])], check=True)
            while _status(root, env)["state"] in ("RUNNING", "PENDING"):
                time.sleep(0.5)
            done += 1
            cli("resume", "soak")
        end = time.time() + timeout
        while (s := _status(root, env))["state"] not in ("COMPLETED", "FAILED") and time.time() < end:
            time.sleep(1.0)
        assert s["state"] == "COMPLETED", s
    finally:
        subprocess.run(["scancel", "--name", "jobkit-soak"], capture_output=True)
    run = RunDir(Path(s["path"]))
    testing.assert_same(straight.load_checkpoint()[0], run.load_checkpoint()[0])
    left = temp_files(run)
    assert not left, f"temporary files left: {left}"
    return {"slurm_kills": done, "slurm_bit_identical": True, "slurm_temp_files_left": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=100, help="kill -9 of `jobkit run` (default 100)")
    ap.add_argument("--slurm-kills", type=int, default=0, help="scancel -s KILL of the Slurm job + jobkit resume")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", type=Path, default=None, help="where the runs go (default: a temp folder)")
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="jobkit-soak-"))
    t0 = time.perf_counter()
    result: dict = {"root": str(root)}
    if args.kills:
        result.update(kill_soak(root / "local", args.kills, args.seed))
    if args.slurm_kills:
        result.update(slurm_soak(root / "slurm", args.slurm_kills, args.seed))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
