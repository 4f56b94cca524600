"""Reports at scale (issue 24 item 4), the part of `bench/bench_cli.py` that needs no live jobs:
a synthetic sweep of finished toy runs, then `status` (target <= 2 s, <= 2 scheduler calls),
`collect` (<= 60 s) and the collected page in headless Chromium (<= 3 s to a drawn table).

    python bench/bench_cli.py --runs 10000 --only-reports      # just this part
    python bench/bench_reports.py --runs 10000                  # the same, on its own

The run folders are what a finished toy run leaves (tests/synthetic_runs.py: spec, events,
progress, metrics, a TensorBoard file, a samples json), written without fsync. Their job ids are
unknown to Slurm: `status` still asks the scheduler once (sacct, or squeue without accounting),
and Slurm calls are counted by bench_cli's PATH shims when it runs this. Prints figures, asserts nothing.
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
from typing import Callable

TESTS = Path(__file__).resolve().parents[1] / "tests"
PYTHON = sys.executable


def _jobkit(args: list[str], timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run([PYTHON, "-m", "jobkit", *args], capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, out


def make_report_sweep(root: Path, runs: int, sweep: str) -> float:
    """The synthetic finished sweep; returns the seconds it took."""
    sys.path.insert(0, str(TESTS))
    from synthetic_runs import make_sweep

    t0 = time.perf_counter()
    make_sweep(root, runs, sweep=sweep)
    seconds = time.perf_counter() - t0
    print(f"   made           : {runs} finished toy run folders in {seconds:.1f} s ({seconds / runs * 1e3:.2f} ms/run)")
    return seconds


def bench_status_large(root: Path, sweep: str, repeats: int, calls: Callable[[], dict[str, int]] | None,
                       reset: Callable[[], None] | None) -> None:
    """`jobkit status SWEEP` end to end: the grouped summary (the default above 50 runs), --json, --all."""
    for label, extra in (("grouped (default)", []), ("--json", ["--json"]), ("--all (table)", ["--all"])):
        times, out, counted = [], None, {}
        for _ in range(repeats if not extra else 1):
            if reset:
                reset()
            seconds, out = _jobkit(["status", sweep, "--root", str(root), *extra])
            times.append(seconds)
            counted = calls() if calls else {}
        n_sched = sum(counted.get(k, 0) for k in ("sacct", "squeue"))
        shown = f"; scheduler calls {n_sched} ({', '.join(f'{n} {k}' for k, n in counted.items() if n) or 'none'})" \
            if calls else ""
        verdict = ""
        if not extra:
            verdict = f"   target <= 2 s, <= 2 scheduler calls: {'OK' if min(times) <= 2 and (not calls or n_sched <= 2) else 'OVER TARGET'}"
        print(f"   status {label:17s}: {min(times):.2f} s (best of {len(times)}), exit {out.returncode}, "
              f"{len(out.stdout.splitlines())} lines{shown}{verdict}")


def bench_collect_large(root: Path, sweep: str, out: Path) -> tuple[float, Path | None]:
    seconds, res = _jobkit(["collect", sweep, "--root", str(root), "--out", str(out)], timeout=900)
    if res.returncode != 0:
        print(f"   collect        : FAILED (exit {res.returncode}) after {seconds:.1f} s: {res.stderr.strip()[-600:]}")
        return seconds, None
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size  # noqa: E731
    parts = ", ".join(f"{name} {size(out / name) / 1e6:.1f} MB" for name in ("index.html", "summary.json", "runs", "curves"))
    print(f"   collect        : {seconds:.1f} s end to end ({parts})   target <= 60 s: "
          f"{'OK' if seconds <= 60 else 'OVER TARGET'}")
    return seconds, out / "index.html"


def _chromium(profile: Path) -> tuple[subprocess.Popen, int]:
    from test_browser import CHROMIUM, FLAGS

    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.is_file() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("Chromium did not start")
        time.sleep(0.1)
    return proc, int(port_file.read_text().split()[0])


def bench_browser_load(index: Path, repeats: int = 3) -> None:
    """Navigate headless Chromium to the page; time until its table is drawn (`body[data-ready]`)."""
    sys.path.insert(0, str(TESTS))
    try:
        from test_browser import CHROMIUM
        from test_browser import page_session, wait_js
    except Exception as exc:  # noqa: BLE001 - a figure we cannot take is reported, not raised
        print(f"   browser        : skipped ({type(exc).__name__}: {exc})")
        return
    if not Path(CHROMIUM).exists():
        print(f"   browser        : skipped ({CHROMIUM} missing)")
        return
    profile = Path(tempfile.mkdtemp(prefix="jobkit-bench-chromium-"))
    proc, port = _chromium(profile)
    try:
        figures: list[tuple[float, float]] = []
        nodes = rows = 0
        run_page = 0.0
        for _ in range(repeats):
            cdp = page_session(port)
            try:
                cdp.call("Page.navigate", url="about:blank")
                t0 = time.perf_counter()
                cdp.call("Page.navigate", url=index.resolve().as_uri())
                wait_js(cdp, "document.body && document.body.dataset.ready === '1'", timeout_ms=60000)
                wall = time.perf_counter() - t0
                inpage = cdp.call("Runtime.evaluate", expression="window.jobkitReady", returnByValue=True)["result"]["value"]
                figures.append((wall, inpage / 1e3))
                res = cdp.call("Runtime.evaluate", returnByValue=True, expression=(
                    "[document.getElementsByTagName('*').length, document.querySelectorAll('#rows tr').length, "
                    "document.querySelector('#rows a').href]"))["result"]["value"]
                nodes, rows, link = res
                t0 = time.perf_counter()
                cdp.call("Page.navigate", url=link)
                cdp.wait_for("Page.loadEventFired")
                run_page = time.perf_counter() - t0
            finally:
                cdp.close()
        best = min(figures)
        print(f"   browser        : table drawn {best[0]:.2f} s after navigation (best of {repeats}; "
              f"in-page {best[1]:.2f} s from navigation start), {rows} rows drawn, {nodes} DOM elements; "
              f"a run's page {run_page:.2f} s   target <= 3 s: {'OK' if best[0] <= 3 else 'OVER TARGET'}")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=15)
        shutil.rmtree(profile, ignore_errors=True)


def bench_reports(work: Path, runs: int, repeats: int = 3, calls: Callable[[], dict[str, int]] | None = None,
                  reset: Callable[[], None] | None = None) -> None:
    """The whole of this part: a fresh root under `work`, removed afterwards."""
    print(f"\n## (d) reports at scale: {runs} finished synthetic runs (status, collect, the page in Chromium)")
    root = work / "report-runs"
    sweep = "report-sweep"
    make_report_sweep(root, runs, sweep)
    try:
        bench_status_large(root, sweep, repeats, calls, reset)
        _, index = bench_collect_large(root, sweep, work / "report")
        if index is not None:
            bench_browser_load(index)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work / "report", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="jobkit-bench-reports-"))
    try:
        bench_reports(work, args.runs, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
