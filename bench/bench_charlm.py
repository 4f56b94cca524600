"""Benchmark the `charlm` workload on CPU (prints figures; asserts nothing).

0. Against nanoGPT (`bench/vs_nanogpt.py`): the charlm Transformer's training speed over nanoGPT's at
   nanoGPT's CPU configuration, measured in this run (alternating, one thread, 2000 steps each), and
   the validation loss each reaches (target: ≥ 1.10x with an equal or better loss), for charlm in
   float32 and with `autocast = "bf16"` (the variant that meets the target on CPUs with native bf16;
   nanoGPT's CPU run is float32). Needs a checkout
   of karpathy/nanoGPT at the pinned commit in NANOGPT_DIR (or --nanogpt); skipped with one line
   without it. Then the LSTM and the β-VAE against their bare loops (`bench/bare_loops.py`, ≥ 0.95x).
1. Training throughput (characters/s) of each model at the `cpu-small` sizes, and of a
   straightforward PyTorch Transformer of the same shape (per-head attention modules with a
   masked softmax, PyTorch default init, plain AdamW) — interleaved rounds, median reported.
2. Full `cpu-small` runs on tinyshakespeare (2000 steps): the Transformer (target: validation loss
   <= 1.85 nats/char), the straightforward reference with the same data, schedule and budget,
   then the LSTM and the TCN — final validation loss and wall time of each.

    python bench/bench_charlm.py [--quick] [--data PATH] [--threads N] [--skip-reference]
        [--only nanogpt|bare|models] [--nanogpt DIR] [--compile] [--nanogpt-bf16] [--variant NAME]

`--quick` runs 200 steps per model instead of 2000 (losses are then far from converged).
The corpus defaults to $JOBKIT_DATA/tinyshakespeare.txt, else ../shared/data/tinyshakespeare.txt.
Timings on a shared machine move with its load; the load average is printed beside them.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobkit.run import heap  # noqa: E402
import bare_loops  # noqa: E402  (bench/, beside this file)
import vs_nanogpt  # noqa: E402
from jobkit.plan.params import resolve  # noqa: E402
from jobs.charlm.data import random_batch, val_window_starts, windows  # noqa: E402
from jobs.charlm.workload import CharLM, WarmupCosine  # noqa: E402


# ------------------------------------------------------------------------- the reference model
class Head(nn.Module):
    """One attention head, written out: scores, causal mask, softmax, weighted values."""

    def __init__(self, width: int, head_size: int, context: int) -> None:
        super().__init__()
        self.key = nn.Linear(width, head_size, bias=False)
        self.query = nn.Linear(width, head_size, bias=False)
        self.value = nn.Linear(width, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(context, context)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        k, q, v = self.key(x), self.query(x), self.value(x)
        att = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        att = att.masked_fill(self.tril[:t, :t] == 0, float("-inf"))
        return F.softmax(att, dim=-1) @ v


class RefBlock(nn.Module):
    def __init__(self, width: int, heads: int, context: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList([Head(width, width // heads, context) for _ in range(heads)])
        self.proj = nn.Linear(width, width)
        self.ffwd = nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width))
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.proj(torch.cat([head(h) for head in self.heads], dim=-1))
        return x + self.ffwd(self.ln2(x))


class ReferenceTransformer(nn.Module):
    """The straightforward implementation of the same 4-layer, 4-head, width-128 model."""

    def __init__(self, vocab_size: int, context: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*[RefBlock(width, heads, context) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        return self.head(self.ln_f(self.blocks(x)))


class Reference:
    """Trains `ReferenceTransformer` on the workload's data, batches and schedule (AdamW defaults)."""

    def __init__(self, workload: CharLM) -> None:
        p = self.params = workload.params
        self.corpus = workload.corpus
        torch.manual_seed(p.seed)
        self.model = ReferenceTransformer(len(self.corpus.vocab), p.context, p.width, p.layers, p.heads)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=p.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(p.lr, p.min_lr, p.warmup_steps, p.steps))
        self.generator = torch.Generator().manual_seed(p.seed)
        self.val_starts = val_window_starts(len(self.corpus.val), p.context, p.val_windows)

    def train_step(self, step: int) -> dict[str, float]:
        x, y = random_batch(self.corpus.train, self.params.batch_size, self.params.context, self.generator)
        loss = F.cross_entropy(self.model(x).flatten(0, 1), y.flatten())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        total, count = 0.0, 0
        for starts in self.val_starts.split(512):
            x, y = windows(self.corpus.val, starts, self.params.context)
            total += F.cross_entropy(self.model(x).flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
        self.model.train()
        return {"val_loss": total / count}


# ------------------------------------------------------------------------------------ harness
def make(data: str, run_dir: Path, **raw) -> CharLM:
    workload = CharLM(resolve(CharLM.Params, CharLM.presets, {"preset": "cpu-small", "data": data, **raw}))
    workload.setup(run_dir, torch.device("cpu"))
    return workload


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def throughput(trainers: dict[str, object], steps: int, rounds: int, chars_per_step: int) -> dict[str, float]:
    """Median characters/s over `rounds` interleaved rounds of `steps` steps (after a warm-up)."""
    for trainer in trainers.values():
        for s in range(5):
            trainer.train_step(s)
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for r in range(rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for s in range(steps):
                trainer.train_step(5 + r * steps + s)
            rates[name].append(steps * chars_per_step / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in rates.items()}


def full_run(name: str, trainer, steps: int, chars_per_step: int) -> dict[str, float]:
    start = time.perf_counter()
    losses = []
    for s in range(steps):
        losses.append(trainer.train_step(s)["loss"])
        if (s + 1) % 500 == 0:
            print(f"  {name:12s} step {s + 1:5d}  train loss (last 100) {sum(losses[-100:]) / 100:.3f}  "
                  f"{time.perf_counter() - start:6.1f} s", flush=True)
    train_s = time.perf_counter() - start
    val = trainer.evaluate()["val_loss"]
    return {"val_loss": val, "train_s": train_s, "wall_s": time.perf_counter() - start,
            "chars_per_s": steps * chars_per_step / train_s, "params": n_params(trainer.model)}


def bench(data: str, tmp: Path, steps: int, tp_steps: int, tp_rounds: int, skip_reference: bool = False) -> None:
    """Print the throughput table, then train each model for `steps` and print its validation loss."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {data}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # 1. throughput ----------------------------------------------------------------------------
    trainers: dict[str, object] = {m: make(data, tmp / f"tp-{m}", model=m) for m in ("transformer", "lstm", "tcn")}
    trainers["reference"] = Reference(trainers["transformer"])
    cps = trainers["transformer"].params.batch_size * trainers["transformer"].params.context
    rates = throughput(trainers, tp_steps, tp_rounds, cps)
    print(f"\n## training throughput, cpu-small sizes ({tp_rounds} x {tp_steps} steps, median)")
    print(f"{'model':28s} {'params':>9s} {'chars/s':>9s}")
    for name, trainer in trainers.items():
        label = "reference transformer" if name == "reference" else name
        print(f"{label:28s} {n_params(trainer.model):9,d} {rates[name]:9,.0f}")
    print(f"transformer / reference speed: {rates['transformer'] / rates['reference']:.2f}x")
    del trainers

    # 2. full runs -----------------------------------------------------------------------------
    print(f"\n## full cpu-small runs: {steps} steps, batch 12 x context 64, validation = every "
          f"non-overlapping window of the last 10%")
    results = {}
    order = ["transformer"] + ([] if skip_reference else ["reference"]) + ["lstm", "tcn"]
    for name in order:
        torch.manual_seed(0)
        workload = make(data, tmp / f"run-{name}", model="transformer" if name == "reference" else name,
                        steps=steps)
        trainer = Reference(workload) if name == "reference" else workload
        results[name] = full_run(name, trainer, steps, cps)
        r = results[name]
        print(f"{name:12s} val loss {r['val_loss']:.4f} nats/char ({r['val_loss'] / math.log(2):.3f} bpc)  "
              f"train {r['train_s']:.1f} s  ({r['chars_per_s']:,.0f} chars/s)", flush=True)

    print("\n| model | params | val loss (nats/char) | bpc | train wall (s) | chars/s |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['params']:,} | {r['val_loss']:.4f} | {r['val_loss'] / math.log(2):.3f} | "
              f"{r['train_s']:.1f} | {r['chars_per_s']:,.0f} |")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 steps per full run, short throughput rounds")
    ap.add_argument("--data", default=None, help="text file (default: tinyshakespeare from JOBKIT_DATA or ../shared/data)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one each, as measured)")
    ap.add_argument("--skip-reference", action="store_true", help="do not train the reference to the end")
    ap.add_argument("--only", choices=["nanogpt", "bare", "models"], help="run one section (default: all)")
    ap.add_argument("--nanogpt", default=None, help="nanoGPT checkout (default: $NANOGPT_DIR)")
    ap.add_argument("--compile", action="store_true",
                    help="also the charlm runs at compile=true (float32 and autocast=bf16)")
    ap.add_argument("--nanogpt-bf16", action="store_true",
                    help="also nanoGPT under bf16 autocast (its GPU setting): the same precision on both sides")
    ap.add_argument("--variant", action="append", metavar="NAME",
                    help="only these charlm variants, e.g. 'charlm compile=true autocast=bf16' (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = args.data
    if data is None:
        env = os.environ.get("JOBKIT_DATA")
        data = str(Path(env) / "tinyshakespeare.txt") if env else str(ROOT.parent / "shared/data/tinyshakespeare.txt")
    steps = 200 if args.quick else 2000
    tp_steps, tp_rounds = (20, 1) if args.quick else (50, 3)
    with tempfile.TemporaryDirectory(prefix="bench_charlm.") as tmp:
        if args.only in (None, "nanogpt"):
            nanogpt_section(args.nanogpt, data, Path(tmp), steps, args.compile, args.nanogpt_bf16,
                            args.variant)
        if args.only in (None, "bare"):
            print(f"\n## workload step vs bare loop, {torch.get_num_threads()} thread(s) (goal >= 0.95x)")
            bare_loops.compare(data, Path(tmp) / "bare", *((20, 3) if args.quick else (50, 5)))
        if args.only in (None, "models"):
            bench(data, Path(tmp), steps, tp_steps, tp_rounds, args.skip_reference)


def nanogpt_section(where: str | None, data: str, tmp: Path, steps: int, compile_too: bool,
                    nanogpt_bf16: bool = False, only: list[str] | None = None) -> None:
    path, line = vs_nanogpt.find_nanogpt(where)
    print(f"## charlm Transformer vs nanoGPT at its CPU configuration, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    print(line)
    if path is None:
        return
    # as a charlm run has it (jobkit/run/heap.py); nanoGPT, in the same process, gets it too
    print(f"heap: {heap.keep_freed_memory()} (both trainers)")
    variants: dict = {"charlm": {}, "charlm autocast=bf16": {"autocast": "bf16"}}
    if compile_too:
        variants.update({"charlm compile=true": {"compile": True},
                         "charlm compile=true autocast=bf16": {"compile": True, "autocast": "bf16"}})
    if only:
        variants = {n: v for n, v in variants.items() if n in only}
    vs_nanogpt.compare(path, data, tmp / "nanogpt", steps=steps, chunk=max(10, steps // 20), variants=variants,
                       nanogpt_bf16=nanogpt_bf16)


if __name__ == "__main__":
    main()
