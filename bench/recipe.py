"""Train one workload setting for a fixed CPU budget and print its learning curve (asserts nothing).

This is how the CPU recipes in bench/README.md were chosen: every candidate gets the same number of
CPU-minutes (one torch thread, so a 2-core machine measures two candidates side by side without
either slowing the other), the validation metrics are taken every `--eval-minutes` of training time
(evaluation time is not charged), and the curve is printed as JSON lines.

    python bench/recipe.py charlm --minutes 4 preset=cpu-small model=lstm hidden=384
    python bench/recipe.py vae --minutes 15 --eval-minutes 3 preset=cpu-small beta=4 batch_size=64

`--fit-steps` (the default for charlm) times 20 steps first and sets `steps` so that the
learning-rate schedule (a cosine to `min_lr`) ends with the budget; `--no-fit-steps` keeps `steps`.
Each line: {"minutes": training CPU-minutes so far, "step": ..., metric: value, ...}; the last line
has "final": true. With `--out FILE` the lines also go to FILE (one JSON object per line).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobkit.plan import registry  # noqa: E402
from jobkit.plan.params import resolve  # noqa: E402
from jobkit.plan.sweep import SweepError, parse_set  # noqa: E402

WARMUP_STEPS = 20


def build(cls, values: dict, tmp: Path):
    workload = cls(resolve(cls.Params, cls.presets, values))
    workload.setup(tmp, torch.device("cpu"))
    return workload


def fitted_steps(cls, values: dict, minutes: float, tmp: Path) -> tuple[int, float]:
    """Steps that `minutes` of training buys at this setting's measured rate (steps/s)."""
    workload = build(cls, values, tmp)
    for s in range(3):
        workload.train_step(s)
    t0 = time.perf_counter()
    for s in range(WARMUP_STEPS):
        workload.train_step(3 + s)
    rate = WARMUP_STEPS / (time.perf_counter() - t0)
    return max(1, int(rate * minutes * 60)), rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload")
    ap.add_argument("values", nargs="*", help="key=value parameters (as in a sweep file)")
    ap.add_argument("--minutes", type=float, required=True, help="training CPU-minutes (1 thread)")
    ap.add_argument("--eval-minutes", type=float, default=0.5, help="training minutes between evaluations")
    ap.add_argument("--fit-steps", action=argparse.BooleanOptionalAction, default=None,
                    help="set steps so the schedule ends with the budget (default: on for charlm)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_intermixed_args()
    torch.set_num_threads(args.threads)
    cls = registry.load(args.workload)
    try:
        values = {key: value for _, key, value in parse_set(args.values)}  # the --set syntax: TOML values
    except SweepError as exc:
        raise SystemExit(f"recipe: {exc}") from None
    fit = args.fit_steps if args.fit_steps is not None else args.workload == "charlm"
    with tempfile.TemporaryDirectory(prefix="recipe-") as scratch, \
            (args.out.open("w") if args.out else contextlib.nullcontext()) as out:
        measure(cls, values, args, fit, Path(scratch), out)


def measure(cls, values: dict, args: argparse.Namespace, fit: bool, scratch: Path, out: IO[str] | None) -> None:
    """Train within the budget, evaluating every `eval_minutes` of training; print the curve."""
    budget_s = args.minutes * 60
    header = {"workload": args.workload, "values": values, "minutes_budget": args.minutes, "threads": args.threads}
    if fit:
        steps, rate = fitted_steps(cls, values, args.minutes, scratch)
        values = {**values, "steps": steps}
        header.update(fitted_steps=steps, steps_per_s=round(rate, 2))
    workload = build(cls, values, scratch)
    params = workload.params
    header["parameters"] = sum(p.numel() for p in workload.model.parameters()) if hasattr(workload, "model") else None

    def emit(record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    emit(header)
    trained, next_eval, step, done = 0.0, args.eval_minutes * 60, 0, False
    while not done:
        t0 = time.perf_counter()
        workload.train_step(step)
        trained += time.perf_counter() - t0
        step += 1
        done = step >= params.steps or trained >= budget_s
        if trained >= next_eval or done:
            next_eval += args.eval_minutes * 60
            metrics = workload.evaluate()
            emit({"minutes": round(trained / 60, 3), "step": step, "final": done,
                  **{k: round(v, 5) for k, v in metrics.items() if not k.startswith("kl_dim")}})


if __name__ == "__main__":
    main()
