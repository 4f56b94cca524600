"""`CharLM`: the `charlm` workload (see `jobkit.protocol.Workload`).

Randomness: model initialisation uses its own seeded RNG fork (it consumes nothing from the
runner's global RNGs); training batches come from `self.batch_generator`, kept in `state_dict()`;
dropout uses the global RNGs, which the runner seeds and checkpoints. `evaluate()` and `artifacts()`
run under `torch.no_grad()` in eval mode and draw only from local generators.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from jobkit.atomic import write_text
from jobkit.plan.datacheck import DataProblem
from jobkit.protocol import Metric, ReportLayout, RunContext
from jobkit.torchutil import Stepper, autocast_dtype, eval_mode

from .data import (Corpus, DataError, Vocab, blocked_read_hook, check_corpus, load_corpus, random_batch,
                   val_window_starts, windows)
from .models import TCNLM, build_model, count_params
from .params import CharLMParams
from .presets import PRESETS
from .sampling import generate, prompt_offsets, write_samples

log = logging.getLogger(__name__)

STATE_FORMAT = 1
EVAL_TOKENS = 1 << 15  # characters per validation batch


class WarmupCosine:
    """LR factor for `LambdaLR`: linear warmup to 1, then cosine down to `min_lr / lr` at `total`.

    `constant=True` stays at 1 after warmup: a schedule that does not need to know where the run
    ends, for a plateau stop (a cosine cut short by one never anneals)."""

    def __init__(self, lr: float, min_lr: float, warmup: int, total: int, constant: bool = False) -> None:
        self.floor = min_lr / lr if lr > 0 else 1.0
        self.warmup, self.total, self.constant = warmup, total, constant

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.constant:
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and embeddings; not biases, norm gains or weight-norm magnitudes."""
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and "original0" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_adamw(groups: list[dict[str, Any]], **kwargs: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters, CPU and CUDA) where torch has it."""
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # older torch: no fused CPU kernel
        return torch.optim.AdamW(groups, **kwargs)


def build_seeded_model(params: CharLMParams, vocab_size: int) -> nn.Module:
    """The model initialised from `params.seed` alone, leaving the global CPU RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        return build_model(params, vocab_size)


def load_model(params: CharLMParams, state: dict[str, Any], device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, Vocab]:
    """The trained model and its vocabulary from a `CharLM.state_dict()` — no corpus needed."""
    vocab = Vocab(state["vocab"])
    model = build_seeded_model(params, len(vocab))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), vocab


class CharLM:
    """Character-level LSTM, TCN or Transformer on a text file, with prompted samples."""

    Params: ClassVar[type[CharLMParams]] = CharLMParams
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    report: ClassVar[ReportLayout] = ReportLayout(key_params=("model",), headline=(Metric("val_loss"),))

    def __init__(self, params: CharLMParams) -> None:
        self.params = params
        self.total_steps = params.steps

    # ------------------------------------------------------------------------------------- setup
    def check_data(self) -> None:
        """At submit: the corpus exists, is readable UTF-8 and long enough (see `check_corpus`)."""
        p = self.params
        try:
            check_corpus(p.data, val_fraction=p.val_fraction, min_split=max(p.context, p.prompt_len) + 1)
        except DataError as exc:
            path, _, problem = str(exc).partition(": ")
            raise DataProblem("data", path, problem,
                              "a readable UTF-8 text file, or data = \"tinyshakespeare\" with "
                              "tinyshakespeare.txt in $JOBKIT_DATA") from None

    def setup(self, run_dir: Path, device: torch.device, ctx: RunContext = RunContext()) -> None:
        p = self.params
        self.run_dir, self.device, self.ctx = Path(run_dir), torch.device(device), ctx
        self.blocked_read = blocked_read_hook(ctx.rank)  # tests only ($JOBKIT_TEST_BLOCK_READ); None
        self.corpus: Corpus = load_corpus(p.data, lowercase=p.lowercase, val_fraction=p.val_fraction,
                                          min_split=max(p.context, p.prompt_len) + 1)
        self.vocab = self.corpus.vocab
        if ctx.is_main:
            write_text(self.run_dir / "vocab.json", self.vocab.to_json() + "\n")

        self.model = build_seeded_model(p, len(self.vocab)).to(self.device)
        self.train_model = ctx.data_parallel(self.model)  # steps only; the bare model evaluates and is saved
        self.stepper = Stepper(self.train_model, p.compile, log)
        self.autocast_dtype = autocast_dtype(p.autocast, self.device.type, log)
        self.optimizer = make_adamw(param_groups(self.model, p.weight_decay), lr=p.lr, betas=(0.9, p.beta2))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(p.lr, p.min_lr, p.warmup_steps, p.steps, constant=p.schedule == "constant"))
        self.batch_generator = torch.Generator().manual_seed(p.seed)

        self.val_starts = val_window_starts(len(self.corpus.val), p.context, p.val_windows)
        self.prompt_offsets = prompt_offsets(len(self.corpus.val), p.prompt_len, p.sample_len,
                                             p.num_prompts, p.seed)
        self.num_params = count_params(self.model)
        extra = ""
        if isinstance(self.model, TCNLM):
            self.receptive_field = self.model.receptive_field
            extra = (f", {self.model.levels} levels, receptive field {self.receptive_field} characters"
                     + ("" if self.receptive_field >= p.context else f" (< context {p.context})"))
        log.info("charlm: %s with %s parameters%s; corpus %s: %d characters, vocabulary %d, "
                 "%d validation windows", p.model, f"{self.num_params:,}", extra, self.corpus.path,
                 self.corpus.num_chars, len(self.vocab), len(self.val_starts))

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ---------------------------------------------------------------------------------- training
    def train_step(self, step: int) -> dict[str, float]:
        p = self.params
        start = time.perf_counter()
        if self.blocked_read is not None:
            self.blocked_read(step)
        if self.ctx.world_size == 1:
            x, y = random_batch(self.corpus.train, p.batch_size, p.context, self.batch_generator)
        else:  # every rank draws the global batch's starts (one generator) and keeps its part
            starts = torch.randint(0, len(self.corpus.train) - p.context, (p.batch_size,),
                                   generator=self.batch_generator)
            x, y = windows(self.corpus.train, starts[self.ctx.part(p.batch_size)], p.context)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

        def forward_backward(model: nn.Module) -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            if self.ctx.world_size > 1:
                loss = loss * self.ctx.share(p.batch_size)
            loss.backward()
            return loss

        loss = self.stepper.run(forward_backward)
        if p.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([q.grad for q in self.model.parameters() if q.grad is not None])
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        metrics = {"loss": loss.item(), "grad_norm": grad_norm.item(), "lr": lr}
        metrics["tokens_per_s"] = x.numel() / (time.perf_counter() - start)
        return metrics

    # -------------------------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float]:
        p = self.params
        chunk = max(1, EVAL_TOKENS // p.context)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        mine = self.val_starts if self.ctx.world_size == 1 else self.val_starts[self.ctx.part(len(self.val_starts))]
        with eval_mode(self.model), torch.no_grad():
            for starts in mine.split(chunk):
                x, y = windows(self.corpus.val, starts, p.context)
                x, y = x.to(self.device), y.to(self.device)
                with self._autocast():
                    logits = self.model(x)
                total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
                count += y.numel()
        if self.ctx.world_size > 1:  # sharded: the ranks' sums are added
            both = self.ctx.all_sum(torch.stack([total, torch.tensor(float(count), dtype=torch.float64,
                                                                     device=self.device)]))
            total, count = both[0], int(both[1].item())
        val_loss = total.item() / count
        return {"val_loss": val_loss, "val_bpc": val_loss / math.log(2)}

    def samples(self, step: int) -> list[dict[str, Any]]:
        """Each fixed prompt, the model's continuation and the true one (generator seeded by seed, step)."""
        p = self.params
        val = self.corpus.val
        prompts = torch.stack([val[o:o + p.prompt_len] for o in self.prompt_offsets]).long()
        generator = torch.Generator().manual_seed(p.seed * 1_000_003 + step)
        with eval_mode(self.model), self._autocast():
            generated = generate(self.model, prompts, p.sample_len, context=p.context,
                                 temperature=p.temperature, top_k=p.top_k, generator=generator)
        out = []
        for o, prompt, gen in zip(self.prompt_offsets, prompts, generated):
            truth = val[o + p.prompt_len:o + p.prompt_len + p.sample_len]
            out.append({"offset": o, "prompt": self.vocab.decode(prompt), "generated": self.vocab.decode(gen),
                        "truth": self.vocab.decode(truth)})
        return out

    def artifacts(self, step: int, writer: Any, out_dir: Path) -> dict[str, float]:
        p = self.params
        markdown = write_samples(Path(out_dir), step, p.model, self.samples(step),
                                 temperature=p.temperature, top_k=p.top_k)
        if writer is not None:
            writer.add_text("samples", markdown, step)
        return {}

    # -------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "vocab": self.vocab.chars,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "batch_generator": self.batch_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"charlm checkpoint format {state.get('format')!r}; this code reads {STATE_FORMAT}")
        if state["vocab"] != self.vocab.chars:
            raise ValueError(f"the checkpoint's vocabulary ({len(state['vocab'])} characters) differs from "
                             f"{self.corpus.path}'s ({len(self.vocab)}): resume with the run's original data "
                             "and lowercase settings")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.batch_generator.set_state(state["batch_generator"])
