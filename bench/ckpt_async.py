"""Checkpoints off the step loop, measured (issue 27 items 1 and 3): called by `bench/bench_runner.py`.

For a plain MLP (`Linear(width, width)` × layers, ReLU, AdamW) of ~10M and ~100M parameters, on CPU,
through `jobkit.run.runner.run`:
  * pause per periodic checkpoint: the loop's stand-still recorded in each `checkpoint` event
    (`pause_s`), synchronous (`async_checkpoint = false`: the whole save) vs asynchronous (the copy of
    the state, plus any wait for the write in flight). Goal: async ≤ 10 % of sync.
  * whole-run overhead at `checkpoint_every = "auto"` against the same run without checkpoints
    (`checkpoint_every = 0`, `checkpoint_minutes = 0`), interleaved, timed from the end of step 1 to
    the end of step N (setup and the final save are outside). The Young/Daly interval uses the
    stated MTBI (`--mtbi-s`; jobkit's default is 4 h, which on a short benchmark means no checkpoint
    at all, so a harsher one is used to make checkpoints happen). Goal: ≤ 3 %.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jobkit.plan import params as params_mod
from jobkit.plan.spec import JobSpec, Resources
from jobkit.protocol import BaseParams
from jobkit.run import cadence, runner
from jobkit.store import RunDir

WORKLOAD = f"{__name__}:BenchMLP"


@dataclass
class BenchParams(BaseParams):
    width: int = field(default=1000, metadata={"min": 1, "help": "Linear width"})
    layers: int = field(default=10, metadata={"min": 1, "help": "Linear layers"})
    batch: int = field(default=16, metadata={"min": 1, "help": "examples per step"})


class BenchMLP:
    """A workload of the size asked for: nothing but matrix multiplies and AdamW."""

    Params = BenchParams
    presets = {"default": {}}

    def __init__(self, p: BenchParams) -> None:
        self.p, self.total_steps = p, p.steps

    def setup(self, run_dir: Path, device: torch.device) -> None:
        layers: list[nn.Module] = []
        for _ in range(self.p.layers):
            layers += [nn.Linear(self.p.width, self.p.width), nn.ReLU()]
        self.model = nn.Sequential(*layers[:-1])
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.data = torch.Generator().manual_seed(self.p.seed)

    def train_step(self, step: int) -> dict[str, float]:
        x = torch.randn(self.p.batch, self.p.width, generator=self.data)
        self.opt.zero_grad(set_to_none=True)
        loss = (self.model(x) - x).pow(2).mean()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def evaluate(self) -> dict[str, float]:
        return {"val_loss": 0.0}

    def artifacts(self, step: int, writer: Any, out_dir: Path) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "data": self.data.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.data.set_state(state["data"])


def _run(root: Path, name: str, values: dict[str, Any], cpus: int) -> tuple[RunDir, float]:
    """A fresh run through the runner; (its folder, seconds per step from the end of step 1 to the end)."""
    p = params_mod.resolve(BenchParams, BenchMLP.presets, {"eval_every": 0, "sample_every": 0, "log_every": 50,
                                                           **values})
    spec = JobSpec(sweep="bench", workload=WORKLOAD, params=params_mod.to_dict(p), name=name,
                   resources=Resources(cpus=cpus))
    run = RunDir.create(root, spec)
    marks: dict[int, float] = {}
    steps = p.steps

    def on_step(step: int) -> None:
        if step in (1, steps):
            marks[step] = time.perf_counter()

    runner.run(run, runner.Host(executor="foreground"), on_step=on_step)
    return run, (marks[steps] - marks[1]) / (steps - 1)


def _periodic(run: RunDir) -> list[dict[str, Any]]:
    return [e for e in run.events() if e["event"] == "checkpoint" and e["reason"] == "periodic"]


def pauses(label: str, shape: dict[str, int], scratch: Path, cpus: int, every: int, checkpoints: int) -> dict:
    """The loop's pause per periodic checkpoint, synchronous vs asynchronous (median over the run's)."""
    steps = every * checkpoints + 1
    out: dict[str, Any] = {"label": label}
    for mode in ("sync", "async"):
        run, per_step = _run(scratch / f"pause-{mode}", label, {**shape, "steps": steps, "checkpoint_every": every,
                                                                "async_checkpoint": mode == "async"}, cpus)
        events = _periodic(run)
        out[mode] = statistics.median(e["pause_s"] for e in events)
        out[f"{mode}_write"] = statistics.median(e["seconds"] for e in events)
        out[f"{mode}_ms_step"] = per_step * 1e3
        out["size"] = events[-1]["size"]
        out["n"] = len(events)
    out["ratio"] = out["async"] / out["sync"]
    print(f"   {label}: checkpoint {out['size'] / 1e6:.0f} MB, a step {out['sync_ms_step']:.1f} ms, "
          f"{out['n']} periodic checkpoints each (every {every} steps)")
    print(f"      pause per checkpoint: sync {out['sync']:.3f} s (the whole save), async {out['async']:.4f} s "
          f"(copy of the state) = {100 * out['ratio']:.1f} % of sync; the background write took "
          f"{out['async_write']:.3f} s")
    return out


def auto_overhead(label: str, shape: dict[str, int], scratch: Path, cpus: int, seconds: float, mtbi_s: float,
                  ms_per_step: float, repeats: int) -> dict:
    """Whole-run time at checkpoint_every = "auto" against no checkpoints, interleaved, best of `repeats`."""
    steps = max(20, int(seconds / (ms_per_step / 1e3)))
    old = os.environ.get(cadence.MTBI_ENV)
    os.environ[cadence.MTBI_ENV] = str(mtbi_s)
    none, auto, pause_share, counts, planned = [], [], [], [], []
    try:
        for r in range(repeats):
            _, t_none = _run(scratch / f"none-{r}", label, {**shape, "steps": steps, "checkpoint_every": 0,
                                                            "checkpoint_minutes": 0}, cpus)
            run, t_auto = _run(scratch / f"auto-{r}", label, {**shape, "steps": steps, "checkpoint_every": "auto"},
                               cpus)
            events = _periodic(run)
            none.append(t_none)
            auto.append(t_auto)
            counts.append(len(events))
            pause_share.append(sum(e["pause_s"] for e in events) / (t_auto * (steps - 1)))
            planned.append(run.progress().get("checkpoint_auto", {}))
    finally:
        if old is None:
            os.environ.pop(cadence.MTBI_ENV, None)
        else:
            os.environ[cadence.MTBI_ENV] = old
    pct = 100 * (min(auto) / min(none) - 1)
    paired = 100 * statistics.median(a / n - 1 for a, n in zip(auto, none))
    plan = planned[-1]
    at = [e["step"] for e in events]
    print(f"   {label}: {steps} steps ({steps * min(none):.0f} s), MTBI {mtbi_s:.0f} s -> Young/Daly interval "
          f"{plan.get('interval_s')} s (checkpoint {plan.get('checkpoint_s')} s), {counts} periodic checkpoints "
          f"(last run: at steps {at}; the first interval uses the state size at 50 MB/s)")
    print(f"      per step: none {1e3 * min(none):.2f} ms, auto {1e3 * min(auto):.2f} ms -> overhead {pct:+.2f} % "
          f"best vs best (paired median {paired:+.2f} %); loop pauses {100 * min(pause_share):.2f} % of the run")
    return {"label": label, "pct": pct, "paired": paired, "pause_pct": 100 * min(pause_share), "checkpoints": counts}


SHAPES = {"10M": {"width": 1000, "layers": 10, "batch": 16},  # 10.01M parameters
          "100M": {"width": 2500, "layers": 16, "batch": 16}}  # 100.04M parameters


def main_section(scratch: Path, cpus: int, repeats: int, sizes: list[str], mtbi_s: float,
                 auto_seconds: dict[str, float]) -> None:
    print("\n## periodic checkpoints: the loop's pause, synchronous vs asynchronous (issue 27)")
    found = {}
    for size in sizes:
        found[size] = pauses(size, SHAPES[size], scratch / size, cpus, every=25 if size == "100M" else 30,
                             checkpoints=3 if size == "100M" else 5)
    print(f"\n## whole-run overhead at checkpoint_every = \"auto\" vs no checkpoints (best of {repeats})")
    for size in sizes:
        auto_overhead(size, SHAPES[size], scratch / size, cpus, auto_seconds[size], mtbi_s,
                      min(found[size]["sync_ms_step"], found[size]["async_ms_step"]), repeats)
