"""The charlm Transformer against nanoGPT at nanoGPT's own CPU configuration, in one process.

nanoGPT is a benchmark input only: its `model.py` is imported from a checkout outside this repository
(`NANOGPT_DIR` or `--nanogpt DIR`), never copied. Get the pinned commit with e.g.

    git clone https://github.com/karpathy/nanoGPT /tmp/nanogpt && git -C /tmp/nanogpt checkout 3adf61e1
    NANOGPT_DIR=/tmp/nanogpt python bench/bench_charlm.py --only nanogpt

nanoGPT's side follows its `train.py` with `config/train_shakespeare_char.py` and the CPU overrides its
README gives (device=cpu compile=False eval_iters=20 log_interval=1 block_size=64 batch_size=12
n_layer=4 n_head=4 n_embd=128 max_iters=2000 lr_decay_iters=2000 dropout=0.0), train.py's defaults
otherwise (bias=False, weight_decay 0.1, grad_clip 1.0, beta2 0.99 from the config): its GPT and
`configure_optimizers`, a batch read through a fresh `np.memmap` of the uint16 ids each step, its
warmup-cosine learning rate, `loss.item()` every step (log_interval=1). Its periodic evaluation is not
timed on either side. Both train the same number of steps on the same characters (the workload's 90/10
split), alternating in chunks, one torch thread; both are then scored on the same validation windows.
nanoGPT's CPU run is float32 (its train.py autocasts on a GPU only); charlm variants may set
`autocast = "bf16"`, and `nanogpt_bf16` adds nanoGPT under the same autocast as an ablation.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import math
import os
import statistics
import subprocess
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from jobkit.plan.params import resolve
from jobs.charlm.data import windows
from jobs.charlm.workload import CharLM

NANOGPT_COMMIT = "3adf61e154c3fe3fca428ad6bc3818b27a3b8291"  # karpathy/nanoGPT master, 2025
NANOGPT_MODEL_SHA256 = "7c01703240dbec5d554527dc666e35b3df8391d0b117fddc07afcf325a21d11c"  # its model.py, for a checkout without .git
# nanoGPT's CPU configuration (README, "I only have a macbook") on top of train_shakespeare_char.py.
STEPS, WARMUP, LR, MIN_LR, BATCH, BLOCK = 2000, 100, 1e-3, 1e-4, 12, 64
LAYERS, HEADS, WIDTH, WEIGHT_DECAY, BETA2, GRAD_CLIP = 4, 4, 128, 0.1, 0.99, 1.0
# The charlm run it is compared with: the same shape, budget, schedule and optimiser settings;
# charlm's own architecture (SwiGLU, biases) where nanoGPT's differs.
CHARLM_RAW: dict[str, Any] = {
    "preset": "cpu-small", "model": "transformer", "steps": STEPS, "context": BLOCK, "batch_size": BATCH,
    "layers": LAYERS, "heads": HEADS, "width": WIDTH, "lr": LR, "min_lr": MIN_LR, "warmup_steps": WARMUP,
    "weight_decay": WEIGHT_DECAY, "beta2": BETA2, "grad_clip": GRAD_CLIP, "dropout": 0.0,
}


def find_nanogpt(explicit: str | None) -> tuple[Path | None, str]:
    """The checkout to use and a line saying what it is (or why there is none)."""
    where = explicit or os.environ.get("NANOGPT_DIR")
    if not where:
        return None, "nanoGPT comparison skipped: set NANOGPT_DIR (or --nanogpt) to a checkout of " \
                     f"karpathy/nanoGPT at {NANOGPT_COMMIT[:8]}"
    path = Path(where)
    if not (path / "model.py").is_file():
        return None, f"nanoGPT comparison skipped: {path}/model.py not found; point NANOGPT_DIR at a checkout"
    commit = _git_head(path)
    digest = hashlib.sha256((path / "model.py").read_bytes()).hexdigest()
    if commit == NANOGPT_COMMIT or digest == NANOGPT_MODEL_SHA256:
        return path, f"nanoGPT at {path}: model.py of the pinned commit {NANOGPT_COMMIT[:8]}"
    return path, (f"nanoGPT at {path}: NOT the pinned commit {NANOGPT_COMMIT[:8]} "
                  f"(HEAD {commit or 'unknown'}, model.py sha256 {digest[:12]}); figures may differ")


def _git_head(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _import_model(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("nanogpt_model", path / "model.py")
    module = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(io.StringIO()):
        spec.loader.exec_module(module)
    return module


def nanogpt_lr(it: int) -> float:
    """train.py's schedule: linear warmup over WARMUP (+1) steps, cosine to MIN_LR at STEPS."""
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    if it > STEPS:
        return MIN_LR
    ratio = (it - WARMUP) / (STEPS - WARMUP)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


class NanoGPTTrainer:
    """nanoGPT's model and optimiser, stepped the way its train.py steps them on a CPU."""

    def __init__(self, nanogpt: Path, train_ids: torch.Tensor, vocab_size: int, scratch: Path,
                 bf16: bool = False) -> None:
        ng = _import_model(nanogpt)
        self.bf16 = bf16  # train.py's own GPU setting (autocast) used on the CPU: an ablation, not its CPU run
        torch.manual_seed(1337)  # train.py's seed
        config = ng.GPTConfig(block_size=BLOCK, vocab_size=vocab_size, n_layer=LAYERS, n_head=HEADS,
                              n_embd=WIDTH, dropout=0.0, bias=False)
        with contextlib.redirect_stdout(io.StringIO()):
            self.model = ng.GPT(config)
            self.optimizer = self.model.configure_optimizers(WEIGHT_DECAY, LR, (0.9, BETA2), "cpu")
        self.bin = scratch / "train.bin"  # what data/shakespeare_char/prepare.py writes: uint16 ids
        train_ids.numpy().astype(np.uint16).tofile(self.bin)
        self.x, self.y = self._batch()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        data = np.memmap(self.bin, dtype=np.uint16, mode="r")  # reopened per batch, as train.py does
        starts = torch.randint(len(data) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy(data[i:i + BLOCK].astype(np.int64)) for i in starts])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + BLOCK].astype(np.int64)) for i in starts])
        return x, y

    def train_step(self, it: int) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = nanogpt_lr(it)
        with torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext():
            _, loss = self.model(self.x, self.y)
        self.x, self.y = self._batch()  # the next batch, fetched before the backward as in train.py
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": loss.item()}


@torch.no_grad()
def val_loss(forward: Callable[[torch.Tensor], torch.Tensor], workload: CharLM, model: torch.nn.Module) -> float:
    """Mean loss (nats/char) over the workload's validation windows (every non-overlapping one)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for starts in workload.val_starts.split(512):
        x, y = windows(workload.corpus.val, starts, BLOCK)
        x, y = x.contiguous(), y.contiguous()  # nanoGPT's forward views its inputs
        total += F.cross_entropy(forward(x).flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was)
    return total / count


def compare(nanogpt: Path, data: str, scratch: Path, chunk: int = 100, steps: int = STEPS,
            variants: dict[str, dict[str, Any]] | None = None, nanogpt_bf16: bool = False
            ) -> dict[str, dict[str, float]]:
    """Train nanoGPT and each charlm variant (name: extra params) for `steps`, in turn every `chunk`
    steps (the order rotates); print and return each one's speed ratio and validation loss.

    `nanogpt_bf16` adds nanoGPT under bf16 autocast (what its train.py does on a GPU) as an ablation:
    it tells how much of a bf16 variant's lead is the precision rather than the code."""
    variants = variants or {"charlm": {}}
    trainers: dict[str, Any] = {}
    for name, extra in variants.items():
        workload = CharLM(resolve(CharLM.Params, CharLM.presets, {**CHARLM_RAW, "data": data, "steps": steps, **extra}))
        workload.setup(scratch / name, torch.device("cpu"))
        trainers[name] = workload
    first = next(iter(trainers.values()))
    ng = {"nanoGPT": False, **({"nanoGPT autocast=bf16": True} if nanogpt_bf16 else {})}
    trainers = {**{n: NanoGPTTrainer(nanogpt, first.corpus.train, len(first.vocab), scratch, bf16)
                   for n, bf16 in ng.items()}, **trainers}
    names = list(trainers)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, list[float]] = {n: [] for n in names}
    for k, begin in enumerate(range(0, steps, chunk)):
        for name in names[k % len(names):] + names[:k % len(names)]:
            t0 = time.perf_counter()
            for it in range(begin, min(steps, begin + chunk)):
                losses[name].append(trainers[name].train_step(it)["loss"])
            seconds[name].append(time.perf_counter() - t0)
    # every model is scored in float32 on the same windows; a charlm variant also by its own
    # evaluate() (under its autocast: what a run reports)
    vals = {n: val_loss(lambda x, m=trainers[n].model: m(x, x)[0], first, trainers[n].model) for n in ng}
    vals.update({n: val_loss(trainers[n].model, first, trainers[n].model) for n in variants})
    own = {n: trainers[n].evaluate()["val_loss"] for n in variants}
    timed = {n: sum(v[1:]) for n, v in seconds.items()}  # the first chunk warms up (and compiles)
    n_timed = steps - chunk
    print(f"charlm settings: {dict(CHARLM_RAW)}; variants: {variants}")
    print("| trainer | params | ms/step | chars/s | first chunk (s) | train loss, last 100 | val loss fp32 "
          "(nats/char) | val loss, own evaluate |")
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        params = sum(q.numel() for q in trainers[n].model.parameters())
        print(f"| {n} | {params:,} | {timed[n] / n_timed * 1000:.2f} | {n_timed * BATCH * BLOCK / timed[n]:,.0f} | "
              f"{seconds[n][0]:.1f} | {sum(losses[n][-100:]) / 100:.4f} | {vals[n]:.4f} | "
              f"{own.get(n, vals[n]):.4f} |")
    out = {}
    for n in names[1:]:
        ratios = [a / b for a, b in zip(seconds["nanoGPT"][1:], seconds[n][1:])]
        worst = max(vals[n], own.get(n, vals[n]))  # the fp32 score and the run's own must both hold
        out[n] = {"ratio": timed["nanoGPT"] / timed[n], "val_loss": worst, "nanogpt_val_loss": vals["nanoGPT"]}
        print(f"{n} / nanoGPT speed: {out[n]['ratio']:.3f}x over {len(ratios)} chunks of {chunk} steps "
              f"(median chunk {statistics.median(ratios):.3f}x, {min(ratios):.3f}-{max(ratios):.3f}); val loss "
              f"{worst:.4f} vs {vals['nanoGPT']:.4f}: {'equal or better' if worst <= vals['nanoGPT'] else 'WORSE'}")
    if nanogpt_bf16:
        for n in (v for v, extra in variants.items() if extra.get("autocast") == "bf16"):
            print(f"{n} / nanoGPT autocast=bf16 speed (the same precision on both sides): "
                  f"{timed['nanoGPT autocast=bf16'] / timed[n]:.3f}x")
    return out
