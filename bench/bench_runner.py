"""Benchmark of `jobkit.run.runner`: overhead per step against a bare loop, and checkpoint save/load time.

    python bench/bench_runner.py                       # toy + charlm (tiny), 10M-param checkpoint
    python bench/bench_runner.py --repeats 5 --toy-steps 6000
    python bench/bench_runner.py --skip-charlm --skip-checkpoint
    python bench/bench_runner.py --skip-toy --skip-charlm --skip-lease --skip-checkpoint   # the watchdog only

Prints figures, asserts nothing (issue 3, "Benchmark"). Target: runner overhead <= 3 % per step.
Issue 27 (`bench/ckpt_async.py`, `--only-async`): the loop's pause per periodic checkpoint sync vs async
and the whole-run overhead at checkpoint_every = "auto", for ~10M and ~100M-parameter MLPs.

Overhead per step. The same workload object API is driven twice in this process:
  * bare:   `setup()` then `train_step(i)` N times (no runner: no checkpoint, TensorBoard, events,
            progress file, signal flag, divergence monitor);
  * runner: `jobkit.run.runner.run(RunDir)` on a run with the same params.
Both are timed over the same window: from the end of step 1 to the end of step N, so setup, the
final evaluation, the final checkpoint and the hparams summary are *not* in the per-step figure
(they are printed separately as end-to-end times). The runner's window therefore holds its periodic
checkpoints (checkpoint_every), TensorBoard scalars (log_every), events, progress writes
(every 5 s) and the per-step bookkeeping. Evaluation and samples are off inside the window
(eval_every = 0 and sample_every = 0 mean "at the end only"), so they are not counted as overhead.
checkpoint_minutes keeps its default (10 min; it never fires in these short runs).
The two are interleaved (bare, runner, bare, runner, ...) and the best of R repeats is kept.

Checkpoints. A ~10M-parameter model (nn.Sequential of Linear layers) plus its AdamW state (after
one step, so exp_avg / exp_avg_sq exist) is saved with `RunDir.save_checkpoint` (torch.save to a
temp file, fsync, rename, fsync the folder, sha256, latest.json) and loaded with
`RunDir.load_checkpoint` (size + sha256 verification, torch.load weights_only). Best of R.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from jobkit.plan import params as params_mod
from jobkit.plan import registry
from jobkit.plan.spec import JobSpec, Resources
from jobkit.run import lease, rng, runner
from jobkit.store import RunDir

if "JOBKIT_DATA" not in os.environ and Path("/work/shared/data").is_dir():
    os.environ["JOBKIT_DATA"] = "/work/shared/data"




# ------------------------------------------------------------------------------------- overhead

def make_params(workload: str, overrides: dict):
    cls = registry.load(workload)
    p = params_mod.resolve(cls.Params, cls.presets, overrides)
    p.check()
    return cls, p


def make_run(root: Path, workload: str, overrides: dict, cpus: int, stall_timeout_s: float | None = None) -> RunDir:
    cls, p = make_params(workload, overrides)
    spec = JobSpec(sweep="bench", workload=workload, params=params_mod.to_dict(p), name=workload,
                   resources=Resources(cpus=cpus, stall_timeout_s=stall_timeout_s))
    return RunDir.create(root, spec)


class StepClock:
    """Wraps a workload class's `train_step` to add up the time spent inside it (this process only)."""

    def __init__(self, cls) -> None:
        self.cls, self.inside, self.calls = cls, 0.0, 0
        self.original = cls.__dict__["train_step"]

    def __enter__(self) -> "StepClock":
        original = self.original

        def timed(workload_self, step):
            t0 = time.perf_counter()
            try:
                return original(workload_self, step)
            finally:
                if step >= 1:  # the window starts after step 1 (index 0)
                    self.inside += time.perf_counter() - t0
                    self.calls += 1

        self.cls.train_step = timed
        return self

    def __exit__(self, *exc) -> None:
        self.cls.train_step = self.original


def bare_loop(workload: str, overrides: dict, cpus: int, work: Path) -> tuple[float, float, float]:
    """(s/step from the end of step 1 to the end of step N, s/step inside train_step, total s incl. setup)."""
    cls, p = make_params(workload, overrides)
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, cpus))
    rng.seed_all(p.seed)
    w = cls(p)
    work.mkdir(parents=True, exist_ok=True)
    w.setup(work, torch.device("cpu"))
    n = int(w.total_steps)
    with StepClock(cls) as clock:
        w.train_step(0)
        t1 = time.perf_counter()
        for step in range(1, n):
            w.train_step(step)
        t_end = time.perf_counter()
    return (t_end - t1) / (n - 1), clock.inside / clock.calls, t_end - t_start


def runner_loop(workload: str, overrides: dict, cpus: int, work: Path,
                held: float | None = None, stall_timeout_s: float | None = None) -> tuple[float, float, float, RunDir]:
    """Same figures through `runner.run` (timed by its `on_step` hook, called after every step);
    `held`: under a lease of that timeout, as jobs and `jobkit run` train (heartbeat every timeout/5);
    `stall_timeout_s`: the run's (None: derived from its steps, the default; 0: no watchdog at all)."""
    run = make_run(work, workload, overrides, cpus, stall_timeout_s)
    if held is not None:
        with lease.Lease.take(run.path, job_id="bench", limit_s=held):
            return runner_loop_of(run, workload, overrides)
    return runner_loop_of(run, workload, overrides)


def runner_loop_of(run: RunDir, workload: str, overrides: dict) -> tuple[float, float, float, RunDir]:
    marks: dict[int, float] = {}
    total_steps = int(overrides["steps"])

    def on_step(step: int) -> None:
        if step == 1 or step == total_steps:
            marks[step] = time.perf_counter()

    t_start = time.perf_counter()
    with StepClock(registry.load(workload)) as clock:
        runner.run(run, runner.Host(executor="foreground"), on_step=on_step)
    t_end = time.perf_counter()
    return (marks[total_steps] - marks[1]) / (total_steps - 1), clock.inside / clock.calls, t_end - t_start, run


def overhead(label: str, workload: str, overrides: dict, cpus: int, repeats: int, scratch: Path,
             profile: bool) -> dict | None:
    steps = int(overrides["steps"])
    print(f"\n## {label}: {steps} steps, {cpus} thread(s), best of {repeats} (interleaved)")
    print("   cadences: " + ", ".join(f"{k}={overrides[k]}" for k in
                                       ("checkpoint_every", "log_every", "eval_every", "sample_every")
                                       if k in overrides) + ", checkpoint_minutes=10 (default; never fires)")
    # warm-up: imports, TensorBoard, allocator, data files in the page cache
    warm = dict(overrides, steps=min(steps, 30))
    bare_loop(workload, warm, cpus, scratch / "warm-bare")
    runner_loop(workload, warm, cpus, scratch / "warm-runner")
    bare, run_, last_run = [], [], None
    for r in range(repeats):
        b = bare_loop(workload, overrides, cpus, scratch / f"bare-{r}")
        *x, last_run = runner_loop(workload, overrides, cpus, scratch / f"runner-{r}")
        bare.append(b), run_.append(tuple(x))
        print(f"   repeat {r + 1}: bare {b[0] * 1e3:.4f} ms/step, runner {x[0] * 1e3:.4f} ms/step "
              f"({(x[0] / b[0] - 1) * 100:+.2f} %); runner outside train_step {(x[0] - x[1]) * 1e6:.1f} us/step")
    b = min(v[0] for v in bare)
    x = min(v[0] for v in run_)
    pct = (x / b - 1) * 100
    # in-run decomposition (noise-robust: both parts are measured in the same run)
    outside = [v[0] - v[1] for v in run_]
    inside_run = [v[1] for v in run_]
    best = min(range(repeats), key=lambda i: run_[i][0])
    self_pct = outside[best] / inside_run[best] * 100
    events = last_run.events() if last_run else []
    periodic = [e for e in events if e.get("event") == "checkpoint" and e.get("reason") == "periodic"]
    ck_s = statistics.mean(e["seconds"] for e in periodic) if periodic else 0.0
    paired = statistics.median((x_[0] / b_[0] - 1) * 100 for b_, x_ in zip(bare, run_))
    verdict = "OK" if pct <= 3.0 else "OVER TARGET"
    print(f"   bare loop      : {b * 1e3:.4f} ms/step (median {statistics.median(v[0] for v in bare) * 1e3:.4f})")
    print(f"   runner         : {x * 1e3:.4f} ms/step (median {statistics.median(v[0] for v in run_) * 1e3:.4f})")
    print(f"   overhead       : {pct:+.2f} % best vs best ({(x - b) * 1e6:+.1f} us/step), {paired:+.2f} % median of the "
          f"paired repeats   target <= 3 %: {verdict}")
    print(f"   decomposition  : in the best runner repeat, {inside_run[best] * 1e3:.4f} ms/step inside train_step "
          f"and {outside[best] * 1e6:.1f} us/step outside it (= {self_pct:.2f} % of the step; "
          f"median over repeats {statistics.median(outside) * 1e6:.1f} us/step)")
    print(f"   train_step     : bare {min(v[1] for v in bare) * 1e3:.4f} ms, inside the runner "
          f"{min(inside_run) * 1e3:.4f} ms (best of {repeats})")
    print(f"   in the window  : {len(periodic)} periodic checkpoint(s) of {ck_s * 1e3:.1f} ms "
          f"(= {len(periodic) * ck_s / max(1, steps - 1) * 1e6:.1f} us/step amortised), "
          f"{(steps - 1) // int(overrides['log_every'])} TensorBoard logging steps")
    print(f"   end to end     : bare {min(v[2] for v in bare):.2f} s (setup + {steps} steps); runner "
          f"{min(v[2] for v in run_):.2f} s (+ run folder, events, final evaluation/samples, final checkpoint, hparams)")
    if profile:
        profile_runner(workload, overrides, cpus, scratch / "profile")
    return {"label": label, "bare_ms": b * 1e3, "runner_ms": x * 1e3, "pct": pct, "paired": paired,
            "outside_us": outside[best] * 1e6, "self_pct": self_pct}


def lease_cost(label: str, workload: str, overrides: dict, cpus: int, repeats: int, scratch: Path,
               beat_timeout_s: float) -> None:
    """The lease's cost on a step: the runner with and without it, interleaved, best of `repeats`;
    the lease's timeout is short (`beat_timeout_s`) so that its heartbeat thread beats often."""
    steps = int(overrides["steps"])
    print(f"\n## lease on {label}: {steps} steps, heartbeat every {beat_timeout_s / 5:g} s, best of {repeats}")
    runner_loop(workload, dict(overrides, steps=min(steps, 30)), cpus, scratch / "warm")
    free, held = [], []
    for r in range(repeats):
        free.append(runner_loop(workload, overrides, cpus, scratch / f"free-{r}")[0])
        held.append(runner_loop(workload, overrides, cpus, scratch / f"held-{r}", held=beat_timeout_s)[0])
        print(f"   repeat {r + 1}: without {free[-1] * 1e3:.4f} ms/step, with the lease {held[-1] * 1e3:.4f} ms/step "
              f"({(held[-1] / free[-1] - 1) * 100:+.2f} %)")
    takes = []
    run = make_run(scratch / "take", workload, dict(overrides, steps=1), cpus)
    for _ in range(20):
        t0 = time.perf_counter()
        lease.Lease.take(run.path, limit_s=beat_timeout_s).release()
        takes.append(time.perf_counter() - t0)
    pct = (min(held) / min(free) - 1) * 100
    paired = statistics.median((h / f - 1) * 100 for f, h in zip(free, held))
    print(f"   per step       : {pct:+.2f} % best vs best, {paired:+.2f} % median of the paired repeats   "
          f"target < 1 %: {'OK' if pct < 1.0 else 'OVER TARGET'}")
    print(f"   take + release : {statistics.median(takes) * 1e3:.2f} ms (median of 20; once per job)")


def watchdog_cost(label: str, workload: str, overrides: dict, cpus: int, repeats: int, scratch: Path) -> None:
    """The stall watchdog's cost on a step: the runner with it (the default) and without it
    (`stall_timeout = "off"`: no thread, no wrapper), interleaved in this process, best of `repeats`;
    and its per-step call (`Watchdog.feed`) timed alone, against the step time of the same runs."""
    from jobkit.run.watchdog import StallRule, Watchdog

    steps = int(overrides["steps"])
    print(f"\n## stall watchdog on {label}: {steps} steps, best of {repeats} (interleaved, same process)")
    runner_loop(workload, dict(overrides, steps=min(steps, 30)), cpus, scratch / "warm")
    off, on = [], []
    for r in range(repeats):
        off.append(runner_loop(workload, overrides, cpus, scratch / f"off-{r}", stall_timeout_s=0)[0])
        on.append(runner_loop(workload, overrides, cpus, scratch / f"on-{r}")[0])
        print(f"   repeat {r + 1}: without {off[-1] * 1e3:.4f} ms/step, with the watchdog {on[-1] * 1e3:.4f} ms/step "
              f"({(on[-1] / off[-1] - 1) * 100:+.2f} %)")
    dog = Watchdog(StallRule(), on_stall=lambda d, limit: None)
    n = 200_000
    t0 = time.perf_counter()
    for i in range(n):
        dog.feed(i)
    feed_s = (time.perf_counter() - t0) / n
    pct = (min(on) / min(off) - 1) * 100
    paired = statistics.median((a / b - 1) * 100 for b, a in zip(off, on))
    print(f"   per step       : {pct:+.2f} % best vs best, {paired:+.2f} % median of the paired repeats   "
          f"target < 1 %: {'OK' if pct < 1.0 else 'OVER TARGET'}")
    print(f"   feed() alone   : {feed_s * 1e6:.3f} us per call = {feed_s / min(off) * 100:.4f} % of a "
          f"{min(off) * 1e3:.3f} ms step (+ one wrapper call; the thread wakes every few seconds)")


RUNNER_SIDE = [  # (label, file fragment, function): the runner's own work per step, by cause
    ("TensorBoard add_scalar", "tensorboard/writer.py", "add_scalar"),
    ("checkpoint (RunDir.save_checkpoint)", "jobkit/store.py", "save_checkpoint"),
    ("checkpoint state (workload.state_dict + rng)", "jobkit/run/rng.py", "get_state"),
    ("events (RunDir.event)", "jobkit/store.py", "event"),
    ("progress.json (RunDir.write_progress)", "jobkit/store.py", "write_progress"),
    ("divergence monitor", "jobkit/run/divergence.py", "update"),
    ("_scalar_metrics", "jobkit/run/runner.py", "_scalar_metrics"),
    ("writer.flush (before a checkpoint)", "tensorboard/writer.py", "flush"),
    ("fsync (all callers)", "~", "<built-in method posix.fsync>"),
    ("lock release (wakes the TB writer thread)", "~", "<method 'release' of '_thread.lock' objects>"),
]


def profile_runner(workload: str, overrides: dict, cpus: int, scratch: Path) -> None:
    """cProfile one runner run; print the cumulative time of the runner-side calls, per step."""
    import cProfile
    import pstats

    steps = int(overrides["steps"])
    prof = cProfile.Profile()
    prof.enable()
    runner_loop(workload, overrides, cpus, scratch)
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    print(f"   profile (cProfile, one whole runner run incl. setup and the final checkpoint; cProfile inflates "
          f"small calls) — cumulative time / {steps} steps:")
    for label, frag, func in RUNNER_SIDE:
        ct = sum(v[3] for (f, _l, fn), v in stats.items() if fn == func and frag in f)
        calls = sum(v[1] for (f, _l, fn), v in stats.items() if fn == func and frag in f)
        if calls:
            print(f"     {label:<46} {ct / steps * 1e6:8.1f} us/step  ({calls} calls, {ct / calls * 1e3:.3f} ms each)")


def charlm_available() -> str | None:
    """None when `jobs.charlm` imports and its corpus is found; else the reason to skip."""
    try:
        registry.load("charlm")
        from jobs.charlm.data import find_corpus
    except Exception as exc:  # not installed or broken: skip, never fail
        return f"{type(exc).__name__}: {exc}"
    try:
        path = find_corpus("tinyshakespeare")
        if not Path(path).is_file():
            return f"corpus not found at {path}"
    except Exception as exc:
        return f"corpus: {type(exc).__name__}: {exc}"
    return None


# ------------------------------------------------------------------------------------- checkpoints

def ten_million_state(width: int, layers: int) -> tuple[dict, int]:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, width)).pow(2).mean().backward()
    opt.step()
    n = sum(p.numel() for p in model.parameters())
    state = {"format": runner.CHECKPOINT_FORMAT, "step": 1,
             "workload": {"model": model.state_dict(), "opt": opt.state_dict()}, "rng": rng.get_state()}
    return state, n


def checkpoint_bench(repeats: int, scratch: Path, width: int, layers: int) -> None:
    state, n = ten_million_state(width, layers)
    print(f"\n## checkpoint of a {n / 1e6:.2f}M-parameter model ({layers} x Linear({width}, {width})) "
          f"+ AdamW state, best of {repeats}")
    run = RunDir(scratch / "ckpt")
    run.path.mkdir(parents=True, exist_ok=True)
    saves, loads, sers, shas, size = [], [], [], [], 0
    for r in range(repeats + 1):  # the first round warms up and is dropped
        step = 1000 + r
        t0 = time.perf_counter()
        info = run.save_checkpoint(step, state, keep=2)
        t_save = time.perf_counter() - t0
        size = info.size
        t0 = time.perf_counter()
        loaded = run.load_checkpoint()
        t_load = time.perf_counter() - t0
        assert loaded is not None and loaded[1].step == step
        # where the time goes: serialising alone (to memory) and hashing alone (file in page cache)
        t0 = time.perf_counter()
        torch.save(state, io.BytesIO())
        t_ser = time.perf_counter() - t0
        t0 = time.perf_counter()
        h = hashlib.sha256()
        with open(run.checkpoint_dir / info.file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        t_sha = time.perf_counter() - t0
        if r:
            saves.append(t_save), loads.append(t_load), sers.append(t_ser), shas.append(t_sha)
    mb = size / 1e6
    print(f"   file size      : {mb:.1f} MB")
    print(f"   save           : {min(saves):.3f} s  ({mb / min(saves):.0f} MB/s; median {statistics.median(saves):.3f} s)"
          f"  via RunDir.save_checkpoint (torch.save + fsync + rename + fsync dir + sha256 + latest.json)")
    print(f"   load           : {min(loads):.3f} s  ({mb / min(loads):.0f} MB/s; median {statistics.median(loads):.3f} s)"
          f"  via RunDir.load_checkpoint (size + sha256 check + torch.load weights_only)")
    print(f"   of which       : torch.save to memory {min(sers):.3f} s, sha256 of the file {min(shas):.3f} s "
          f"(the save hashes once, the load once)")


# ------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best is kept (default 3)")
    ap.add_argument("--cpus", type=int, default=1, help="torch threads for both loops (the spec's cpus; default 1)")
    ap.add_argument("--toy-steps", type=int, default=3000, help="steps of the toy workload (default 3000)")
    ap.add_argument("--charlm-steps", type=int, default=600, help="steps of charlm tiny (default 600: one periodic checkpoint in the window)")
    ap.add_argument("--charlm-model", default="transformer", help="charlm model (default transformer)")
    ap.add_argument("--checkpoint-every", type=int, default=500, help="runner checkpoint cadence (default 500)")
    ap.add_argument("--log-every", type=int, default=10, help="TensorBoard cadence (default 10)")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile one runner run per workload and print where the runner's time goes")
    ap.add_argument("--skip-toy", action="store_true")
    ap.add_argument("--skip-charlm", action="store_true")
    ap.add_argument("--skip-checkpoint", action="store_true")
    ap.add_argument("--skip-lease", action="store_true", help="skip the lease's cost on a charlm tiny step")
    ap.add_argument("--skip-watchdog", action="store_true", help="skip the stall watchdog's cost on a charlm tiny step")
    ap.add_argument("--lease-beat-timeout", type=float, default=1.0,
                    help="lease timeout for the lease figure (heartbeat every timeout/5; default 1 s: often)")
    ap.add_argument("--ckpt-width", type=int, default=1000, help="Linear width (default 1000)")
    ap.add_argument("--ckpt-layers", type=int, default=10, help="Linear layers (default 10: 10.01M params)")
    ap.add_argument("--ckpt-sizes", default="10M,100M", help="async checkpoint section: model sizes (10M,100M)")
    ap.add_argument("--mtbi-s", type=float, default=120.0, help="MTBI the auto cadence assumes here (default 120 s)")
    ap.add_argument("--auto-seconds", type=float, nargs=2, default=(60.0, 120.0), metavar=("S10M", "S100M"),
                    help="length of each auto-overhead run (default 60 s and 120 s)")
    ap.add_argument("--skip-async", action="store_true", help="skip the async checkpoint / auto cadence section")
    ap.add_argument("--only-async", action="store_true", help="run only the async checkpoint / auto cadence section")
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp folder, removed)")
    args = ap.parse_args(argv)
    if args.only_async:
        args.skip_toy = args.skip_charlm = args.skip_lease = args.skip_checkpoint = True

    scratch = Path(tempfile.mkdtemp(prefix="jobkit-bench-runner-", dir=args.dir))
    print(f"# jobkit runner benchmark — {time.strftime('%Y-%m-%d %H:%M')} · {platform.node()} · "
          f"{os.cpu_count()} cores · torch {torch.__version__} · python {platform.python_version()}")
    print(f"# scratch: {scratch}")
    cadence = {"checkpoint_every": args.checkpoint_every, "log_every": args.log_every,
               "eval_every": 0, "sample_every": 0}
    charlm_tiny = {"preset": "tiny", "model": args.charlm_model, "data": "tinyshakespeare",
                   "steps": args.charlm_steps, **cadence}
    results = []
    try:
        if not args.skip_toy:
            results.append(overhead("toy (default preset: MLP 16-64-1, batch 32)", "toy",
                                    {"preset": "default", "steps": args.toy_steps, **cadence},
                                    args.cpus, args.repeats, scratch / "toy", args.profile))
        if not args.skip_charlm:
            why = charlm_available()
            if why:
                print(f"\n## charlm: skipped ({why})")
            else:
                results.append(overhead(f"charlm tiny ({args.charlm_model})", "charlm",
                                        charlm_tiny,
                                        args.cpus, args.repeats, scratch / "charlm", args.profile))
        if not args.skip_lease:
            why = charlm_available()
            if why:
                print(f"\n## lease: skipped ({why})")
            else:
                lease_cost(f"charlm tiny ({args.charlm_model})", "charlm",
                           charlm_tiny, args.cpus, args.repeats, scratch / "lease",
                           args.lease_beat_timeout)
        if not args.skip_watchdog:
            why = charlm_available()
            if why:
                print(f"\n## stall watchdog: skipped ({why})")
            else:
                watchdog_cost(f"charlm tiny ({args.charlm_model})", "charlm",
                              charlm_tiny, args.cpus, args.repeats, scratch / "watchdog")
        if not args.skip_checkpoint:
            checkpoint_bench(args.repeats, scratch, args.ckpt_width, args.ckpt_layers)
        if not args.skip_async:  # issue 27: the loop's pause sync vs async, and the overhead at "auto"
            import ckpt_async
            ckpt_async.main_section(scratch / "async", args.cpus, args.repeats, args.ckpt_sizes.split(","),
                                    args.mtbi_s, dict(zip(("10M", "100M"), args.auto_seconds)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if results:
        print("\n## summary")
        for r in results:
            print(f"   {r['label']:<45} bare {r['bare_ms']:.4f} ms/step  runner {r['runner_ms']:.4f} ms/step  "
                  f"overhead {r['pct']:+.2f} % vs bare (paired median {r['paired']:+.2f} %); in-run {r['outside_us']:.1f} us/step outside "
                  f"train_step = {r['self_pct']:.2f} %")


if __name__ == "__main__":
    sys.exit(main())
