"""A plain PyTorch training script, made resumable for jobkit with a few lines (marked `# jobkit`).

A small GRU character model on $JOBKIT_DATA/tinyshakespeare.txt. It saves and loads its own
checkpoint (`<out>/ckpt.pt`, loaded with weights_only=True), so a run stopped any number of times ends
with the same weights and loss as one trained straight through (batches come from a generator saved
in the checkpoint; one CPU thread). Runs by hand too: `python examples/char_script.py --out /tmp/c`.

    jobkit submit examples/char_script.toml      # segments on the local cluster
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from jobkit import report


class CharGRU(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.embed(x))
        return self.head(out)


def load_text(path: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    text = path.read_text(encoding="utf-8")
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    split = int(0.9 * len(data))
    return data[:split], data[split:], len(vocab)


def batch(data: torch.Tensor, size: int, context: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, len(data) - context - 1, (size,), generator=gen)
    x = torch.stack([data[s:s + context] for s in starts])
    y = torch.stack([data[s + 1:s + context + 1] for s in starts])
    return x, y


@torch.no_grad()
def val_loss(model: nn.Module, val: torch.Tensor, context: int, windows: int = 32) -> float:
    model.eval()
    starts = torch.linspace(0, len(val) - context - 2, windows).long()  # fixed windows: no RNG
    x = torch.stack([val[s:s + context] for s in starts])
    y = torch.stack([val[s + 1:s + context + 1] for s in starts])
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    model.train()
    return loss


def save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-save leaves the previous checkpoint


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="run folder: checkpoint, tb/")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("JOBKIT_DATA", "data")) / "tinyshakespeare.txt")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds per step (tests: a run long enough to preempt)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    train, val, vocab = load_text(args.data)
    torch.manual_seed(args.seed)
    model = CharGRU(vocab, 32, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    ckpt = args.out / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step = int(state["step"])
        print(f"resumed from step {step}", file=sys.stderr)

    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(args.out / "tb"), purge_step=step + 1 if step else None)

    def checkpoint() -> None:
        t0 = time.perf_counter()
        writer.flush()
        save(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "step": step})
        report.checkpoint_saved(step, ckpt, seconds=time.perf_counter() - t0)  # jobkit

    loss = torch.tensor(float("nan"))
    while step < args.steps:
        if report.stop_requested():  # jobkit: a time limit, preemption or segment end
            checkpoint()
            writer.close()
            print(f"stopped at step {step}; resume me", file=sys.stderr)
            return report.EXIT_STOPPED  # jobkit: 3 = "stopped, resume me"
        x, y = batch(train, args.batch, args.context, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        writer.add_scalar("train/loss", loss.item(), step)
        evaluation = {}
        if step % args.eval_every == 0 or step == args.steps:
            evaluation = {"val_loss": val_loss(model, val, args.context)}
            writer.add_scalar("val/val_loss", evaluation["val_loss"], step)
        report.progress(step, args.steps, loss=loss.item(), **evaluation)  # jobkit
        if not math.isfinite(loss.item()):
            print(f"loss is {loss.item()} at step {step}: lower --lr", file=sys.stderr)
            return 1
        if step % args.ckpt_every == 0 and step < args.steps:
            checkpoint()
        if args.sleep:
            time.sleep(args.sleep)
    checkpoint()
    writer.close()
    final = val_loss(model, val, args.context)
    print(f"finished: step {step}, train loss {loss.item():.6f}, val loss {final:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
