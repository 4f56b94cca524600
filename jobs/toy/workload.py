"""Fit a random teacher MLP with a student MLP (dropout, AdamW): real training, tiny and fast.

Used by jobkit's tests and benchmarks and as a cluster smoke test: `step_sleep` stretches a step
so that jobs live long enough to be preempted or to hit a time limit.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jobkit import atomic
from jobkit.plan.params import ParamError
from jobkit.protocol import MAX_BATCH, BaseParams, RunContext
from jobkit.torchutil import Stepper, eval_mode

log = logging.getLogger(__name__)


@dataclass
class ToyParams(BaseParams):
    dim: int = field(default=16, metadata={"min": 1, "max": 4096, "help": "input size"})
    hidden: int = field(default=64, metadata={"min": 1, "max": 16384, "help": "hidden units"})
    batch_size: int = field(default=32, metadata={"min": 1, "max": MAX_BATCH, "help": "examples per step"})
    lr: float = field(default=1e-2, metadata={"min": 0.0, "help": "AdamW learning rate"})
    dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9, "help": "dropout probability"})
    step_sleep: float = field(default=0.0, metadata={"min": 0.0, "max": 60.0, "help": "seconds slept per step"})
    fail_at: int = field(default=-1, metadata={"min": -1, "help": "make the loss NaN at this step (tests)"})
    compile: bool = field(default=False, metadata={
        "identity": "when-set",  # added later: runs made before keep their ids
        "help": "torch.compile the training step where the platform allows (else one warning, eager)"})

    def check(self) -> None:
        if self.fail_at >= self.steps:
            raise ParamError("fail_at", f"must be < steps ({self.steps}) or -1")


def _mlp(dim: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


class Toy:
    Params = ToyParams
    presets = {"default": {"steps": 200, "checkpoint_every": 50, "eval_every": 50},
               "tiny": {"steps": 40, "checkpoint_every": 10, "eval_every": 10}}

    def __init__(self, params: ToyParams) -> None:
        self.p = params
        self.total_steps = params.steps

    def setup(self, run_dir: Path, device: torch.device, ctx: RunContext = RunContext()) -> None:
        self.ctx = ctx
        g = torch.Generator().manual_seed(self.p.seed + 1)
        self.teacher = _mlp(self.p.dim, self.p.hidden, 0.0)
        with torch.no_grad():
            for t in self.teacher.parameters():
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t.shape[-1]))
        self.model = _mlp(self.p.dim, self.p.hidden, self.p.dropout)
        self.train_model = ctx.data_parallel(self.model)  # the bare model evaluates and is saved
        self.stepper = Stepper(self.train_model, self.p.compile, log)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.p.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: 1.0 / (1.0 + s / 1000))
        self.data = torch.Generator().manual_seed(self.p.seed + 2)
        self.val_x = torch.randn(256, self.p.dim, generator=g)
        with torch.no_grad():
            self.val_y = self.teacher(self.val_x)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's part of the global batch: every rank draws the same batch (one shared generator,
        so the batch does not depend on the world size) and keeps its slice."""
        x = torch.randn(self.p.batch_size, self.p.dim, generator=self.data)
        if self.ctx.world_size > 1:
            x = x[self.ctx.part(self.p.batch_size)]
        with torch.no_grad():
            return x, self.teacher(x)

    def train_step(self, step: int) -> dict[str, float]:
        if self.p.step_sleep:
            time.sleep(self.p.step_sleep)
        x, y = self._batch()

        def forward_backward(model: nn.Module) -> torch.Tensor:
            self.opt.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x), y)
            if self.ctx.world_size > 1:
                loss = loss * self.ctx.share(self.p.batch_size)
            if step == self.p.fail_at:
                loss = loss * float("nan")
            loss.backward()
            return loss

        loss = self.stepper.run(forward_backward)
        self.opt.step()
        self.sched.step()
        return {"loss": loss.item(), "lr": self.sched.get_last_lr()[0]}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.ctx.world_size == 1:
            with eval_mode(self.model):
                loss = nn.functional.mse_loss(self.model(self.val_x), self.val_y).item()
            return {"val_loss": loss}
        part = self.ctx.part(len(self.val_x))  # sharded: each rank sums its part, the sums are added
        with eval_mode(self.model):
            total = nn.functional.mse_loss(self.model(self.val_x[part]), self.val_y[part], reduction="sum")
        total = self.ctx.all_sum(total.double().reshape(1))
        return {"val_loss": total.item() / self.val_y.numel()}

    def artifacts(self, step: int, writer: Any, out_dir: Path) -> dict[str, float]:
        with eval_mode(self.model), torch.no_grad():  # main rank only: no collective here
            loss = nn.functional.mse_loss(self.model(self.val_x), self.val_y).item()
        atomic.write_json(out_dir / f"step-{step:06d}.json", {"step": step, "val_loss": loss})
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "data": self.data.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.data.set_state(state["data"])
