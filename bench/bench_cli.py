"""Benchmark of the CLI at scale (issue 4): a 1000-run sweep through `submit` and `status`.

    python bench/bench_cli.py                  # dry-run + live Slurm submission + status, 1000 runs
    python bench/bench_cli.py --runs 200 --no-live
    python bench/bench_cli.py --profile        # also cProfile where the time goes (in-process)

Prints figures, asserts nothing. Targets: submit <= 10 s with one sbatch per resource shape;
status <= 1.5 s with one Slurm call; planning 1000 runs against the GPU university profile
(tests/data/gpu-university.json) <= 1 s in-process; planning 10,000 runs against the largest cluster
profile (tests/clusters/, tests/data/) < 1 s in-process; 1-2 sacctmgr calls per command.

Slurm calls are counted by wrapping: a temporary folder first on PATH holds `sbatch`, `sacct`,
`squeue`, `scontrol`, `scancel` and `sacctmgr` shims that append one line to a counter file and exec the real
command, so both the in-process figures and the `python -m jobkit ...` subprocesses are counted.

(a) dry run: `sweep.load` + partitions + `submit.plan` in-process (best of 3), and end to end as
    `python -m jobkit submit SWEEP --dry-run --json` (a fresh interpreter: imports included).
(b) live: `python -m jobkit submit SWEEP --json --executor slurm` on the local cluster with the
    trivial `toy` workload (steps = 1), then the same command again (everything is queued: it must
    submit nothing). By default the sbatch shim adds `--hold`, so the 1000 array tasks wait in the
    queue without taking the shared cluster's two cores (sbatch does the same work either way);
    `--no-hold` lets them run. Every job is cancelled at the end (`jobkit cancel`, then
    `scancel --name` for anything left) and the script waits until the queue holds none of them.
(p) profile: `submit.plan` of the sweep with gpus = 1 against the GPU university profile (accounts,
    QoS, typed GPUs; no Slurm), in-process and as `python -m jobkit submit --dry-run --cluster`.
(d) reports at scale (`bench/bench_reports.py`; `--only-reports` runs just this): a synthetic sweep of
    finished toy runs, `status` (grouped, --json, --all), `collect`, and the page in headless Chromium.
(c) status: `python -m jobkit status SWEEP --json` (end to end) and `collect_status` in-process,
    over the live runs; and over synthetic mid-training runs (submitted, started, checkpoints,
    progress.json, with job ids Slurm does not know) which need no cluster (`--no-live` uses only
    these). The sweep name is unique (`bench-cli-<pid>`) and the --root is a temporary folder.
"""
from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobkit import slurm as slurm_mod
from jobkit.observe import status as status_mod
from jobkit.plan import clusterfacts
from jobkit.plan import sweep as sweep_mod
from jobkit.store import RunDir, find_runs
from jobkit.submit import submission as submit_mod

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reports import bench_reports  # noqa: E402  (d): reports at scale, issue 24 item 4

WRAPPED = ("sbatch", "sacct", "squeue", "scontrol", "scancel", "sacctmgr")
PROFILE = Path(__file__).resolve().parents[1] / "tests" / "data" / "gpu-university.json"
PYTHON = sys.executable


# ------------------------------------------------------------------------------------- counting shims

class SlurmCounter:
    """PATH shims that log every call of a Slurm client command, for this process and its children."""

    def __init__(self, folder: Path, hold: bool) -> None:
        self.folder = folder / "shims"
        self.folder.mkdir(parents=True)
        self.log = folder / "slurm-calls.log"
        self.log.touch()
        self.real = {name: shutil.which(name) for name in WRAPPED}
        for name, real in self.real.items():
            if real is None:
                continue
            extra = '"--hold" ' if (name == "sbatch" and hold) else ""
            script = self.folder / name
            script.write_text(
                "#!/bin/sh\n"
                f'printf "%s %s\\n" {name} "$(printf "%s " "$@" | cut -c1-160)" >> "{self.log}"\n'
                f'exec "{real}" {extra}"$@"\n')
            script.chmod(0o755)
        self.old_path = os.environ.get("PATH", "")
        os.environ["PATH"] = f"{self.folder}{os.pathsep}{self.old_path}"

    def reset(self) -> None:
        self.log.write_text("")

    def calls(self) -> dict[str, int]:
        counts = {name: 0 for name in WRAPPED}
        for line in self.log.read_text().splitlines():
            name = line.split(" ", 1)[0]
            counts[name] = counts.get(name, 0) + 1
        return counts

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def restore(self) -> None:
        os.environ["PATH"] = self.old_path


def fmt_calls(counts: dict[str, int]) -> str:
    shown = [f"{n} {name}" for name, n in counts.items() if n]
    return ", ".join(shown) if shown else "no Slurm call"


# ------------------------------------------------------------------------------------- helpers

def write_sweep(folder: Path, name: str, runs: int, time_: str) -> Path:
    seeds = ", ".join(str(i) for i in range(runs))
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n'
        "[defaults]\n"
        f'time = "{time_}"\n'
        "cpus = 1\n"
        'mem = "256M"\n'
        "gpus = 0\n"
        "[[run]]\n"
        'workload = "toy"\n'
        "steps = 1\n"
        "eval_every = 0\n"
        f"seed = [{seeds}]\n")
    return path


def jobkit(args: list[str], timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run([PYTHON, "-m", "jobkit", *args], capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, out


def best(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f} s"
    return f"{min(values):.3f} s (best of {len(values)}; median {statistics.median(values):.3f} s)"


def profile_top(prof: cProfile.Profile, title: str, limit: int = 18) -> None:
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(limit)
    print(f"\n   --- cProfile: {title} (cumulative, top {limit}) ---")
    text = buf.getvalue()
    body = text[text.find("   ncalls"):] if "   ncalls" in text else text
    for line in body.rstrip().splitlines():
        print("   " + line.replace(str(Path.cwd()) + "/", "").replace(sys.prefix + "/lib/python3.11/site-packages/", ""))


def import_time() -> tuple[float, float | None]:
    """(seconds for a fresh interpreter to import the CLI, of which importing torch), via -X importtime."""
    t0 = time.perf_counter()
    out = subprocess.run([PYTHON, "-X", "importtime", "-c", "import jobkit.cli"], check=True, capture_output=True,
                         text=True)
    seconds = time.perf_counter() - t0
    torch_us = None
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "torch":
            torch_us = int(parts[1])
    return seconds, None if torch_us is None else torch_us / 1e6


# ------------------------------------------------------------------------------------- (a) dry run

def bench_dry_run(sweep_file: Path, root: Path, counter: SlurmCounter, repeats: int, profile: bool,
                  runs: int) -> None:
    print(f"\n## (a) submit --dry-run, {runs} runs")
    phases: dict[str, list[float]] = {"load": [], "executor": [], "partitions": [], "plan": [], "total": []}
    counter.reset()
    planned = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sweep = sweep_mod.load(sweep_file)
        t1 = time.perf_counter()
        executor = submit_mod.pick_executor("auto")
        t2 = time.perf_counter()
        facts = slurm_mod.read_facts() if executor == "slurm" else None
        t3 = time.perf_counter()
        planned = submit_mod.plan(sweep.specs, root, executor, facts=facts)
        t4 = time.perf_counter()
        for key, value in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            phases[key].append(value)
    calls = counter.calls()
    actions: dict[str, int] = {}
    parts: dict[str | None, int] = {}
    for p in planned:
        actions[p.action] = actions.get(p.action, 0) + 1
        parts[p.partition] = parts.get(p.partition, 0) + 1
    per_call = {k: v // repeats for k, v in calls.items()}
    print(f"   in-process     : {best(phases['total'])}  [sweep.load {min(phases['load']):.3f} s, "
          f"pick_executor {min(phases['executor']):.3f} s, read_facts {min(phases['partitions']):.3f} s, "
          f"plan {min(phases['plan']):.3f} s]; Slurm calls per dry run: {fmt_calls(per_call)}")
    print(f"   plan           : {len(planned)} runs, actions {actions}, partitions {parts}")
    times = []
    out = None
    for _ in range(2):
        counter.reset()
        seconds, out = jobkit(["submit", str(sweep_file), "--dry-run", "--json", "--root", str(root)])
        times.append(seconds)
    if out.returncode != 0:
        print(f"   end to end     : FAILED (exit {out.returncode}): {out.stderr.strip()[-800:]}")
        return
    data = json.loads(out.stdout)
    print(f"   end to end     : {best(times)}  `python -m jobkit submit SWEEP --dry-run --json` "
          f"({len(data['runs'])} runs, executor {data['executor']}); Slurm calls: {fmt_calls(counter.calls())}")
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        sweep = sweep_mod.load(sweep_file)
        executor = submit_mod.pick_executor("auto")
        submit_mod.plan(sweep.specs, root, executor,
                        facts=slurm_mod.read_facts() if executor == "slurm" else None)
        prof.disable()
        profile_top(prof, "dry run in-process (sweep.load + plan)")


# ------------------------------------------------------------------------------------- (p) profile

def bench_profile(sweep_file: Path, root: Path, counter: SlurmCounter, repeats: int, runs: int,
                  profile: bool) -> None:
    print(f"\n## (p) planning {runs} GPU runs against the profile {PROFILE.name} (no Slurm)")
    phases: dict[str, list[float]] = {"load": [], "facts": [], "plan": []}
    planned = []
    counter.reset()
    for _ in range(repeats):
        t0 = time.perf_counter()
        sweep = sweep_mod.load(sweep_file, overrides=["gpus=a100:1", "time=04:00:00"])
        t1 = time.perf_counter()
        facts = clusterfacts.load_profile(PROFILE)
        t2 = time.perf_counter()
        planned = submit_mod.plan(sweep.specs, root, "slurm", summaries={}, facts=facts)
        t3 = time.perf_counter()
        for key, value in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
            phases[key].append(value)
    where = {(p.partition, p.job_res.qos) for p in planned}
    arrays = submit_mod.arrays(planned, facts.max_array_size)
    print(f"   in-process     : plan {best(phases['plan'])} for {len(planned)} runs "
          f"[sweep.load {min(phases['load']):.3f} s, load_profile {min(phases['facts']):.3f} s]; "
          f"chosen {sorted(where)}; {len(arrays)} arrays (MaxArraySize {facts.max_array_size}); "
          f"Slurm calls: {fmt_calls(counter.calls())}")
    counter.reset()
    seconds, out = jobkit(["submit", str(sweep_file), "--dry-run", "--json", "--cluster", str(PROFILE),
                           "--set", "gpus=a100:1", "--set", "time=04:00:00", "--root", str(root)])
    ok = "ok" if out.returncode == 0 else f"FAILED: {out.stderr.strip()[-300:]}"
    print(f"   end to end     : {seconds:.3f} s `python -m jobkit submit SWEEP --dry-run --cluster PROFILE` ({ok}); "
          f"Slurm calls: {fmt_calls(counter.calls())}")
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        submit_mod.plan(sweep.specs, root, "slurm", summaries={}, facts=facts)
        prof.disable()
        profile_top(prof, "plan against the profile")


def largest_profile() -> Path:
    """The profile with the most nodes among tests/clusters/*.json (the corpus) and tests/data/*.json."""
    tests = PROFILE.parents[1]
    best_path, best_nodes = PROFILE, -1
    for path in sorted([*tests.glob("clusters/*.json"), *tests.glob("data/*.json")]):
        try:
            facts = clusterfacts.load_profile(path)
        except ValueError:
            continue
        nodes = sum(len(t.names) for t in facts.node_types) or sum(p.nodes for p in facts.partitions)
        if nodes > best_nodes:
            best_path, best_nodes = path, nodes
    return best_path


def bench_plan_10k(work: Path, root: Path, repeats: int, runs: int = 10_000) -> None:
    """Planning `runs` runs in-process against the largest profile (target < 1 s): four resource shapes
    (CPU 30 min, 1 GPU 2 h, 4 GPUs 2 days, CPU 3 days chunked), so the chooser runs per shape and the
    rest is per-run bookkeeping. A profile with several accounts and no default gets the first named."""
    path = largest_profile()
    facts = clusterfacts.load_profile(path)
    sweep_file = work / "plan10k.toml"
    n = runs // 4
    shapes = ['time = "00:30:00"\ngpus = 0', 'time = "02:00:00"\ngpus = 1', 'time = "2-00:00:00"\ngpus = 4',
              'time = "3-00:00:00"\ngpus = 0\nchunk = true']
    account = "" if facts.default_account or not facts.accounts() else f'account = "{facts.accounts()[0]}"\n'
    sweep_file.write_text(f'name = "plan10k"\n[defaults]\ncpus = 1\nmem = "4G"\n{account}' + "".join(
        f'[[run]]\nworkload = "toy"\nsteps = 1\neval_every = 0\n{shape}\n'
        f'seed = [{", ".join(str(i) for i in range(k * n, (k + 1) * n))}]\n' for k, shape in enumerate(shapes)))
    specs = sweep_mod.load(sweep_file).specs
    times, planned, error = [], [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            planned = submit_mod.plan(specs, root, "slurm", summaries={}, facts=facts)
        except Exception as exc:  # noqa: BLE001 - a figure, not a test: say why a shape did not place
            error = f" (refused: {str(exc)[:200]})"
        times.append(time.perf_counter() - t0)
    where = sorted({(p.partition, p.job_res.qos) for p in planned}, key=str)
    print(f"\n## (p2) planning {len(specs)} runs in-process against the largest profile {path.name} "
          f"({sum(len(t.names) for t in facts.node_types)} nodes, {len(facts.partitions)} partitions)")
    print(f"   plan {best(times)}{error}; chosen {where}  [target < 1 s]")


def bench_sacctmgr_calls(sweep_file: Path, root: Path, counter: SlurmCounter) -> None:
    """sacctmgr calls per command (target 1-2): the facts are read once per command."""
    figures = []
    for args in (["partitions", "--json"], ["submit", str(sweep_file), "--dry-run", "--json", "--root", str(root)]):
        counter.reset()
        _, out = jobkit(args)
        calls = counter.calls()
        figures.append(f"`jobkit {args[0]}`: {calls.get('sacctmgr', 0)} sacctmgr, {calls.get('scontrol', 0)} scontrol"
                       + ("" if out.returncode == 0 else f" (exit {out.returncode})"))
    print("   calls per command: " + "; ".join(figures))


# ------------------------------------------------------------------------------------- (b) live

def max_array_size() -> int | None:
    try:
        text = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", text, re.M)
    return int(m.group(1)) if m else None


def queued_jobs(job_name: str) -> int:
    out = subprocess.run(["squeue", "-h", "-r", "-n", job_name, "-o", "%i"], capture_output=True, text=True,
                         timeout=30)
    return len([l for l in out.stdout.splitlines() if l.strip()])


def cancel_all(sweep: str, root: Path, counter: SlurmCounter | None, timeout: float = 120) -> None:
    """`jobkit cancel SWEEP`, then `scancel --name` for anything left; wait until the queue is clear."""
    name = f"{submit_mod.JOB_NAME_PREFIX}{sweep}"
    if counter:
        counter.reset()
    seconds, out = jobkit(["cancel", sweep, "--root", str(root), "--json"], timeout=300)
    calls = counter.calls() if counter else {}
    try:
        n = len(json.loads(out.stdout).get("cancelled", []))
    except (ValueError, AttributeError):
        n = -1
    print(f"   jobkit cancel  : {seconds:.3f} s, {n} runs cancelled, exit {out.returncode}; "
          f"Slurm calls: {fmt_calls(calls)}" + (f"; stderr: {out.stderr.strip()[-300:]}" if out.returncode else ""))
    subprocess.run(["scancel", "--name", name], capture_output=True, timeout=60)
    t0 = time.time()
    left = queued_jobs(name)
    while left and time.time() - t0 < timeout:
        time.sleep(2)
        subprocess.run(["scancel", "--name", name], capture_output=True, timeout=60)
        left = queued_jobs(name)
    print(f"   queue          : {left} job(s) named {name} left after {time.time() - t0:.1f} s"
          + ("" if not left else "  <-- NOT CLEAR, cancel by hand: scancel --name " + name))


def bench_live(sweep_file: Path, sweep: str, root: Path, counter: SlurmCounter, runs: int, hold: bool,
               profile: bool) -> bool:
    """Live submission; returns True when jobs were (or may have been) submitted."""
    print(f"\n## (b) live submission, {runs} runs (toy, steps = 1), {'held (sbatch --hold)' if hold else 'not held'}")
    limit = max_array_size()
    if limit is not None:
        fits = runs <= limit - 1
        print(f"   MaxArraySize   : {limit} (array indices 0..{limit - 1}): an array of {runs} "
              f"{'fits' if fits else 'does NOT fit'}")
    counter.reset()
    if profile:
        # in-process through the CLI's own entry, under cProfile (inflates the time a little)
        from jobkit.cli import cli

        prof = cProfile.Profile()
        t0 = time.perf_counter()
        stdout = io.StringIO()
        real_stdout, sys.stdout = sys.stdout, stdout
        code: object = 0
        try:
            prof.enable()
            try:
                cli.main(["submit", str(sweep_file), "--json", "--executor", "slurm", "--root", str(root)],
                         standalone_mode=False)
            except SystemExit as exc:
                code = exc.code
            finally:
                prof.disable()
        finally:
            sys.stdout = real_stdout
        seconds = time.perf_counter() - t0
        result = subprocess.CompletedProcess([], code if isinstance(code, int) else 1, stdout.getvalue(), "")
        how = "in-process under cProfile (no interpreter start)"
    else:
        seconds, result = jobkit(["submit", str(sweep_file), "--json", "--executor", "slurm", "--root", str(root)])
        how = "`python -m jobkit submit SWEEP --json --executor slurm`"
    calls = counter.calls()
    if result.returncode != 0:
        print(f"   submit         : FAILED after {seconds:.2f} s (exit {result.returncode}); Slurm calls: "
              f"{fmt_calls(calls)}")
        print("   error          : " + (result.stderr.strip() or result.stdout.strip())[-1500:])
        for line in counter.lines():
            if line.startswith("sbatch"):
                print(f"   sbatch call    : {line}")
        return calls.get("sbatch", 0) > 0
    data = json.loads(result.stdout)
    job_ids = [r["job_id"] for r in data["runs"] if r.get("job_id")]
    arrays = sorted({j.split("_")[0] for j in job_ids})
    shapes = {(r["partition"], r["time"]) for r in data["runs"]}
    verdict = "OK" if seconds <= 10 and calls.get("sbatch", 0) == len(shapes) else "OVER TARGET"
    print(f"   submit         : {seconds:.2f} s {how}; {calls.get('sbatch', 0)} sbatch call(s) for "
          f"{len(shapes)} resource shape(s), {len(arrays)} job array(s) ({', '.join(arrays)}), "
          f"{len(job_ids)} array tasks; all Slurm calls: {fmt_calls(calls)}   target <= 10 s, one sbatch "
          f"per shape: {verdict}")
    if profile:
        profile_top(prof, "live submit in-process (jobkit submit)", limit=28)
    counter.reset()
    seconds2, again = jobkit(["submit", str(sweep_file), "--json", "--executor", "slurm", "--root", str(root)])
    if again.returncode == 0:
        actions: dict[str, int] = {}
        for r in json.loads(again.stdout)["runs"]:
            actions[r["action"]] = actions.get(r["action"], 0) + 1
        print(f"   resubmit       : {seconds2:.2f} s, actions {actions}; Slurm calls: {fmt_calls(counter.calls())}")
    else:
        print(f"   resubmit       : FAILED (exit {again.returncode}): {again.stderr.strip()[-500:]}")
    return True


# ------------------------------------------------------------------------------------- (c) status

def make_synthetic(sweep_file: Path, root: Path, name: str) -> list[RunDir]:
    """Run folders as a mid-training sweep leaves them: 10 events and a progress.json each."""
    from dataclasses import replace

    sweep = sweep_mod.load(sweep_file)
    out = []
    base = 900000
    for i, spec in enumerate(sweep.specs):
        spec = replace(spec, sweep=name)
        run = RunDir.create(root, spec)
        lines = [{"t": 1.0, "event": "submitted", "job_id": f"{base}_{i}", "partition": "test",
                  "executor": "slurm", "time": "00:05:00", "segments": 1, "resume": False, "array_size": 1000},
                 {"t": 2.0, "event": "started", "attempt": 1, "step": 0, "job_id": f"{base}_{i}",
                  "executor": "slurm", "host": "vm", "pid": 1, "device": "cpu", "resumed_from": None}]
        for k in range(1, 9):
            lines.append({"t": 2.0 + k, "event": "checkpoint", "step": 500 * k, "file": f"step-{500 * k:06d}.pt",
                          "reason": "periodic", "seconds": 0.01, "step_seconds": 0.002})
        # written plainly (not atomically): this is fixture data, the timing is of the reads
        run.events_path.write_text("".join(json.dumps(l, sort_keys=True) + "\n" for l in lines))
        run.progress_path.write_text(json.dumps({"step": 4100, "total": 5000, "t": 12.0, "attempt": 1,
                                                 "loss": 1.5, "val_loss": 1.6, "steps_per_s": 50.0}))
        out.append(run)
    return out


def bench_status(label: str, selector: str, root: Path, counter: SlurmCounter, repeats: int, profile: bool) -> None:
    print(f"\n## (c) status {label}")
    runs = find_runs(root, [selector])
    inproc, inproc_calls, report = [], {}, None
    for _ in range(repeats):
        counter.reset()
        t0 = time.perf_counter()
        report = status_mod.collect_status(find_runs(root, [selector]))
        inproc.append(time.perf_counter() - t0)
        inproc_calls = counter.calls()
    states: dict[str, int] = {}
    for s in report.summaries:
        states[s.state] = states.get(s.state, 0) + 1
    print(f"   in-process     : {best(inproc)}  find_runs + collect_status over {len(runs)} runs; "
          f"Slurm calls: {fmt_calls(inproc_calls)} (source {report.slurm.source}"
          + (f", error: {report.slurm.error}" if report.slurm.error else "") + f"); states {states}")
    # the split: reading the folders vs the one scheduler call
    t0 = time.perf_counter()
    summaries = [status_mod.summarize(r) for r in runs]
    t_read = time.perf_counter() - t0
    ids = [s.job_id for s in summaries if s.executor == "slurm" and s.job_id]
    t0 = time.perf_counter()
    slurm_mod.query_states(ids)
    t_query = time.perf_counter() - t0
    print(f"   split          : reading {len(runs)} run folders {t_read:.3f} s "
          f"({t_read / max(1, len(runs)) * 1e3:.2f} ms/run), one scheduler query for {len(ids)} job ids {t_query:.3f} s")
    times, out = [], None
    for _ in range(max(1, repeats - 1)):  # interpreter starts are slow: one fewer than in-process
        counter.reset()
        seconds, out = jobkit(["status", selector, "--json", "--root", str(root)])
        times.append(seconds)
    calls = counter.calls()
    if out.returncode not in (0, 1):
        print(f"   end to end     : FAILED (exit {out.returncode}): {out.stderr.strip()[-800:]}")
        return
    data = json.loads(out.stdout)
    n_slurm = sum(calls.get(k, 0) for k in ("sacct", "squeue"))
    verdict = "OK" if min(times) <= 1.5 and n_slurm <= 1 else "OVER TARGET"
    print(f"   end to end     : {best(times)}  `python -m jobkit status SWEEP --json` ({len(data['runs'])} runs, "
          f"scheduler {data['scheduler']}, slurm_calls {data['slurm_calls']}); Slurm calls seen: "
          f"{fmt_calls(calls)}   target <= 1.5 s with one Slurm call: {verdict}")
    t0 = time.perf_counter()
    table_out = subprocess.run([PYTHON, "-m", "jobkit", "status", selector, "--root", str(root)],
                               capture_output=True, text=True, timeout=300)
    print(f"   table output   : {time.perf_counter() - t0:.3f} s  `python -m jobkit status SWEEP` (rich table, "
          f"{len(table_out.stdout.splitlines())} lines)")
    # accounting off: the squeue path (in-process, by switching accounting_enabled off)
    saved = slurm_mod.accounting_enabled
    slurm_mod.accounting_enabled = lambda: False
    try:
        counter.reset()
        t0 = time.perf_counter()
        rep = status_mod.collect_status(find_runs(root, [selector]))
        t_sq = time.perf_counter() - t0
        print(f"   without sacct  : {t_sq:.3f} s in-process (squeue path); Slurm calls: {fmt_calls(counter.calls())} "
              f"(source {rep.slurm.source})")
    finally:
        slurm_mod.accounting_enabled = saved
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        status_mod.collect_status(find_runs(root, [selector]))
        prof.disable()
        profile_top(prof, f"status in-process {label}")


# ------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000, help="runs in the sweep (default 1000)")
    ap.add_argument("--no-live", action="store_true", help="no live Slurm submission (dry run + synthetic status)")
    ap.add_argument("--no-hold", dest="hold", action="store_false",
                    help="let the live array tasks run instead of holding them (they are cancelled at the end)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the cheap measurements (default 3)")
    ap.add_argument("--time", default="00:05:00", help="wall time of each run's job (default 00:05:00: `test`)")
    ap.add_argument("--profile", action="store_true", help="cProfile the in-process parts and print the top calls")
    ap.add_argument("--keep", action="store_true", help="keep the temporary root (printed) instead of removing it")
    ap.add_argument("--only-reports", action="store_true",
                    help="only (d): status, collect and the page of a synthetic finished sweep (bench_reports.py)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="jobkit-bench-cli-"))
    root = work / "runs"
    sweep = f"bench-cli-{os.getpid()}"
    counter = SlurmCounter(work, hold=args.hold)
    print(f"# jobkit CLI benchmark — {time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · {os.cpu_count()} cores · "
          f"python {platform.python_version()}")
    print(f"# sweep {sweep} ({args.runs} runs of toy, steps = 1, time {args.time}); root {root}")
    slurm = slurm_mod.available()
    imp, imp_torch = import_time()
    print(f"# Slurm controller answers: {slurm}; `python -c 'import jobkit.cli'`: {imp:.2f} s"
          + (f" (importing torch: {imp_torch:.2f} s of it, -X importtime)" if imp_torch else " (torch not imported)"))
    sweep_file = write_sweep(work, sweep, args.runs, args.time)
    submitted = False

    def cleanup() -> None:
        if submitted:
            cancel_all(sweep, root, None)

    atexit.register(cleanup)
    try:
        if args.only_reports:  # (d) alone: reports at scale (bench/bench_reports.py)
            bench_reports(work, args.runs, args.repeats, counter.calls, counter.reset)
            return 0
        bench_dry_run(sweep_file, root, counter, args.repeats, args.profile, args.runs)
        if slurm:
            bench_sacctmgr_calls(sweep_file, root, counter)
        bench_profile(sweep_file, root, counter, args.repeats, args.runs, args.profile)
        bench_plan_10k(work, root, args.repeats)
        if not args.no_live and slurm:
            submitted = True
            submitted = bench_live(sweep_file, sweep, root, counter, args.runs, args.hold, args.profile)
            if submitted and find_runs(root, [sweep]):
                bench_status(f"over the {args.runs} live runs (just submitted{', held' if args.hold else ''})",
                             sweep, root, counter, args.repeats, args.profile)
        elif not args.no_live:
            print("\n## (b) live submission: skipped (the Slurm controller does not answer)")
        synth = f"{sweep}-synthetic"
        make_synthetic(sweep_file, root, synth)
        bench_status(f"over {args.runs} synthetic mid-training runs (10 events + progress.json each; "
                     "job ids unknown to Slurm)", synth, root, counter, args.repeats, args.profile)
        bench_reports(work, args.runs, args.repeats, counter.calls, counter.reset)  # (d)
    finally:
        if submitted:
            print("\n## cleanup")
            cancel_all(sweep, root, counter)
            submitted = False
        counter.restore()
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
