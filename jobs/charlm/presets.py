"""Named bundles of `charlm` defaults (`preset = ...`); explicit parameters override them.

Each preset sizes all three models, so a sweep over `model` compares them at about the same
parameter count (counts for the 65-character tinyshakespeare vocabulary):

- `tiny`: seconds on a CPU, for tests and demos (45k-115k parameters);
- `cpu-small`: the issue's CPU reference — Transformer 4 layers, 4 heads, width 128, context 64,
  batch 12, AdamW lr 1e-3 cosine to 1e-4 after 100 warmup steps, dropout 0, 2000 steps
  (Transformer 0.81M, LSTM 2x246 0.81M, TCN 5 levels x 166 channels 0.81M);
- `cpu-converge`: each model at its best shape for a few CPU-minutes (bench/README.md) trained to
  its plateau — LSTM 1×256 (0.35M), TCN 128 channels (0.59M), Transformer 2×96 (0.25M), context
  128, batch 32, constant lr 2e-3, `stop = "plateau"` (patience 3 evaluations of 250 steps);
- `default`: a GPU run on a ~1 MB corpus — Transformer 6 layers, width 384, context 256, batch 64,
  dropout 0.2, 5000 steps (Transformer 10.8M, LSTM 2x896 10.2M, TCN 7 levels x 512 10.5M).
"""
from __future__ import annotations

from typing import Any

TINY: dict[str, Any] = {
    "steps": 200, "context": 32, "batch_size": 16,
    "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 10, "weight_decay": 0.0, "dropout": 0.0,
    "layers": 2, "width": 64, "heads": 4,
    "lstm_layers": 1, "hidden": 80, "embed": 32,
    "kernel": 3, "levels": 0, "channels": 48,
    "val_windows": 32, "num_prompts": 3, "prompt_len": 30, "sample_len": 64,
    "eval_every": 50, "sample_every": 100, "checkpoint_every": 50, "log_every": 10,
}

CPU_SMALL: dict[str, Any] = {
    "steps": 2000, "context": 64, "batch_size": 12,
    "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100, "dropout": 0.0,
    "weight_decay": 0.01, "beta2": 0.999, "grad_clip": 5.0,
    "layers": 4, "width": 128, "heads": 4, "pos": "learned", "activation": "swiglu", "tie_weights": False,
    "lstm_layers": 2, "hidden": 246, "embed": 64,
    "kernel": 3, "levels": 0, "channels": 166,
    "val_windows": 0,
    "eval_every": 500, "sample_every": 500, "checkpoint_every": 500, "log_every": 50,
}

DEFAULT: dict[str, Any] = {
    "steps": 5000, "context": 256, "batch_size": 64,
    "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100, "dropout": 0.2,
    "weight_decay": 0.1, "beta2": 0.99, "grad_clip": 1.0,
    "layers": 6, "width": 384, "heads": 6, "pos": "learned", "activation": "swiglu", "tie_weights": False,
    "lstm_layers": 2, "hidden": 896, "embed": 128,
    "kernel": 3, "levels": 0, "channels": 512,
    "val_windows": 0,
    "eval_every": 250, "sample_every": 1000, "checkpoint_every": 500, "log_every": 10,
}

# Measured (bench/README.md, "CPU recipes"): the best validation loss after 4 CPU-minutes on one
# thread came from the smallest shapes tried for each model (a bigger model learns more per step but
# takes too few steps); context 128, batch 32, lr 2e-3. Here it trains until its plateau: constant
# lr after warmup, so the schedule needs no end, and `steps` is only the upper bound.
CPU_CONVERGE: dict[str, Any] = {
    "steps": 5000, "context": 128, "batch_size": 32,
    "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 50, "schedule": "constant", "dropout": 0.0,
    "weight_decay": 0.01, "beta2": 0.999, "grad_clip": 5.0,
    "layers": 2, "width": 96, "heads": 4, "pos": "learned", "activation": "swiglu", "tie_weights": False,
    "lstm_layers": 1, "hidden": 256, "embed": 64,
    "kernel": 3, "levels": 0, "channels": 128,
    "val_windows": 0,
    "stop": "plateau", "patience": 3, "min_delta": 0.005,
    "eval_every": 250, "sample_every": 1000, "checkpoint_every": 250, "log_every": 25,
}

PRESETS: dict[str, dict[str, Any]] = {"tiny": TINY, "cpu-small": CPU_SMALL, "cpu-converge": CPU_CONVERGE,
                                      "default": DEFAULT}
