"""Workload `train_step` against the barest loop over the same model and data (issue 27: ≥ 0.95×).

The bare loop draws the same batches, runs the same network's forward and loss, `zero_grad`,
`backward`, a default-settings optimiser step and `loss.item()` — nothing else. The workload's step
adds what a run needs (gradient clipping, learning-rate schedule, metrics) and the kernels it picks
(fused AdamW); the ratio says what that costs or saves. Rounds alternate; the median is reported.

Both run in one process with the heap as a jobkit run has it (`jobkit/run/heap.py`: freed memory
kept; `JOBKIT_MALLOC=system` measures glibc's own behaviour), so both get the same allocator.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from jobkit.plan.params import resolve
from jobkit.run import heap
from jobs.charlm.data import random_batch
from jobs.charlm.models import build_model
from jobs.charlm.workload import CharLM
from jobs.vae.model import VAE
from jobs.vae.workload import BetaVAE


def _bare_charlm(workload: CharLM) -> Callable[[int], float]:
    p = workload.params
    torch.manual_seed(p.seed)
    model = build_model(p, len(workload.vocab))
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr)
    generator = torch.Generator().manual_seed(p.seed)

    def step(_: int) -> float:
        x, y = random_batch(workload.corpus.train, p.batch_size, p.context, generator)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def _bare_vae(workload: BetaVAE) -> Callable[[int], float]:
    p = workload.params
    torch.manual_seed(p.seed)
    model = VAE(workload.data.channels, p.latents, workload.model.likelihood, p.image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
    generator = torch.Generator().manual_seed(p.seed)

    def step(_: int) -> float:
        x = workload.data.train_batch(generator, p.batch_size, torch.device("cpu"))
        out = model.losses(x, torch.randn(x.shape[0], p.latents))
        loss = (out["recon"] + p.beta * out["kl_dims"].sum(1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def _rates(steppers: dict[str, Callable[[int], Any]], steps: int, rounds: int) -> dict[str, float]:
    """Median steps/s of each over `rounds` alternating rounds of `steps` (after 5 warm-up steps)."""
    for fn in steppers.values():
        for s in range(5):
            fn(s)
    rates: dict[str, list[float]] = {name: [] for name in steppers}
    for r in range(rounds):
        names = list(steppers) if r % 2 == 0 else list(reversed(steppers))
        for name in names:
            t0 = time.perf_counter()
            for s in range(steps):
                steppers[name](5 + r * steps + s)
            rates[name].append(steps / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in rates.items()}


def compare(data: str, scratch: Path, steps: int = 50, rounds: int = 5) -> dict[str, float]:
    """Print workload vs bare speed for the charlm LSTM (cpu-small) and the β-VAE (cpu-small, sprites)."""
    out = {}
    print(f"heap: {heap.keep_freed_memory()} (as in a run)")
    lstm = CharLM(resolve(CharLM.Params, CharLM.presets, {"preset": "cpu-small", "model": "lstm", "data": data}))
    lstm.setup(scratch / "lstm", torch.device("cpu"))
    vae = BetaVAE(resolve(BetaVAE.Params, BetaVAE.presets, {"preset": "cpu-small"}))
    vae.setup(scratch / "vae", torch.device("cpu"))
    print("| workload | bare loop steps/s | workload steps/s | workload / bare |")
    print("|---|---|---|---|")
    for name, workload, bare, n in (("charlm LSTM cpu-small", lstm, _bare_charlm(lstm), steps),
                                    ("β-VAE cpu-small sprites", vae, _bare_vae(vae), max(5, steps // 5))):
        rates = _rates({"bare": bare, "workload": workload.train_step}, n, rounds)
        out[name] = rates["workload"] / rates["bare"]
        print(f"| {name} | {rates['bare']:.1f} | {rates['workload']:.1f} | {out[name]:.3f}x |", flush=True)
    return out
