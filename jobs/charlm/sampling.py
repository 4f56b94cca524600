"""Prompted samples: fixed prompts from the validation text, continued by the model, beside the truth.

The files follow the report this workload grew from ("Initialization: '…' / book: — … / LSTM model:
— …"): `step-XXXXXX.md` for people and TensorBoard, `step-XXXXXX.json` for `jobkit collect`.
Nothing here touches the global RNGs: sampling draws from the `torch.Generator` it is given.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from jobkit.atomic import write_text


def prompt_offsets(n_val: int, prompt_len: int, sample_len: int, count: int, seed: int) -> list[int]:
    """`count` fixed prompt positions in the validation text, drawn from a generator seeded by `seed`.

    Each leaves room for `sample_len` characters of true continuation when the text is long enough.
    """
    high = max(1, n_val - prompt_len - sample_len + 1)
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (count,), generator=generator).tolist()


@torch.no_grad()
def generate(model: nn.Module, prompts: torch.Tensor, length: int, *, context: int, temperature: float,
             top_k: int, generator: torch.Generator) -> torch.Tensor:
    """Continue each prompt row (K, P) by `length` ids; the model sees at most the last `context` ids.

    `temperature` 0 is greedy; `top_k` > 0 samples among the k likeliest characters only.
    Returns (K, length) int64 on the CPU. The caller puts the model in eval mode.
    """
    device = next(model.parameters()).device
    ids = prompts.to(device)
    out = []
    for _ in range(length):
        logits = model(ids[:, -context:])[:, -1].float().cpu()
        if temperature <= 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            logits = logits / temperature
            if 0 < top_k < logits.shape[-1]:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        out.append(nxt)
        ids = torch.cat([ids, nxt.to(device)], dim=1)
    return torch.cat(out, dim=1)


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|~#"} | {"\n": "↵", "\r": "␍", "\t": "⇥"})


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell, newlines shown as ↵."""
    return text.translate(_MD_SPECIAL)


def render_markdown(step: int, model_name: str, samples: Sequence[dict[str, Any]], *,
                    temperature: float, top_k: int) -> str:
    """The samples as the report showed them: prompt, the book's continuation, the model's."""
    top = f"top-k {top_k}" if top_k else "no top-k"
    lines = [f"## charlm samples · {model_name} · step {step}", "",
             f"{len(samples)} prompts from the validation text, each continued for "
             f"{len(samples[0]['generated']) if samples else 0} characters "
             f"(temperature {temperature:g}, {top}); ↵ marks a newline.", ""]
    for i, s in enumerate(samples, 1):
        lines += [f"**Sample {i}** (validation character {s['offset']})", "",
                  "| | |", "|---|---|",
                  f"| **Initialization** | '{_md(s['prompt'])}' |",
                  f"| **book** | — {_md(s['truth'])} |",
                  f"| **{model_name} model** | — {_md(s['generated'])} |", ""]
    return "\n".join(lines).rstrip("\n")


def write_samples(out_dir: Path, step: int, model_name: str, samples: Sequence[dict[str, Any]], *,
                  temperature: float, top_k: int) -> str:
    """Write `step-XXXXXX.md` and `step-XXXXXX.json` under `out_dir` (atomically); return the Markdown."""
    markdown = render_markdown(step, model_name, samples, temperature=temperature, top_k=top_k)
    record = {"step": step, "model": model_name, "temperature": temperature, "top_k": top_k,
              "samples": list(samples)}
    write_text(out_dir / f"step-{step:06d}.json", json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    write_text(out_dir / f"step-{step:06d}.md", markdown + "\n")
    return markdown
