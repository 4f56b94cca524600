"""The three character models, plain `nn.Module`s mapping ids (B, T) to next-character logits (B, T, V).

- `LSTMLM`: embedding, `torch.nn.LSTM` (its fused kernels), linear read-out;
- `TCNLM`: causal dilated residual blocks with weight norm (Bai, Kolter & Koltun 2018);
- `TransformerLM`: decoder-only, pre-LayerNorm, `F.scaled_dot_product_attention(is_causal=True)`,
  SwiGLU feed-forward (GELU / ReLU as ablations), positions learned, sinusoidal or none, GPT-2 init.
Every model is causal: logits at position t depend on ids[..., :t+1] only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------- LSTM
class LSTMLM(nn.Module):
    def __init__(self, vocab_size: int, embed: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.drop(self.embed(ids)))
        return self.head(self.drop(out))


# ---------------------------------------------------------------------------------------------- TCN
def tcn_receptive_field(kernel: int, levels: int) -> int:
    """Characters seen by one output of `levels` blocks (two convs each, dilation 2^i at block i).

    Each conv with kernel k and dilation d adds (k-1)*d: 1 + 2*(k-1)*(1 + 2 + ... + 2^(L-1)).
    """
    return 1 + 2 * (kernel - 1) * (2 ** levels - 1)


def tcn_levels_for(context: int, kernel: int) -> int:
    """The fewest blocks whose receptive field covers `context` characters."""
    levels = 1
    while tcn_receptive_field(kernel, levels) < context:
        levels += 1
    return levels


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions (weight norm, ReLU, dropout) and a residual connection."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv1 = self._conv(c_in, c_out, kernel, dilation)
        self.conv2 = self._conv(c_out, c_out, kernel, dilation)
        self.drop = nn.Dropout(dropout)
        self.down = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None
        if self.down is not None:
            nn.init.normal_(self.down.weight, std=0.01)

    @staticmethod
    def _conv(c_in: int, c_out: int, kernel: int, dilation: int) -> nn.Module:
        conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)
        nn.init.normal_(conv.weight, std=0.01)  # as in Bai et al.; weight norm starts from it
        return weight_norm(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        y = self.drop(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        y = self.drop(F.relu(self.conv2(F.pad(y, (self.pad, 0)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


class TCNLM(nn.Module):
    def __init__(self, vocab_size: int, embed: int, channels: int, levels: int, kernel: int,
                 dropout: float) -> None:
        super().__init__()
        self.kernel, self.levels = kernel, levels
        self.receptive_field = tcn_receptive_field(kernel, levels)
        self.embed = nn.Embedding(vocab_size, embed)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[
            TemporalBlock(embed if i == 0 else channels, channels, kernel, 2 ** i, dropout)
            for i in range(levels)])
        self.head = nn.Linear(channels, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embed(ids)).transpose(1, 2)
        return self.head(self.blocks(x).transpose(1, 2))


# -------------------------------------------------------------------------------------- Transformer
def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : width // 2]
    return table


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class MLP(nn.Module):
    """Position-wise feed-forward. `swiglu` (the default) uses 2 x 8/3 width hidden units, about the
    parameters of the 4 x width `gelu` / `relu` MLP."""

    def __init__(self, width: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.activation = activation
        if activation == "swiglu":
            hidden = (8 * width // 3 + 7) // 8 * 8
            self.fc = nn.Linear(width, 2 * hidden)
        elif activation in ("gelu", "relu"):
            hidden = 4 * width
            self.fc = nn.Linear(width, hidden)
        else:
            raise ValueError(f"activation: got {activation!r}; accepted values: swiglu, gelu, relu")
        self.proj = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.activation == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        elif self.activation == "gelu":
            h = F.gelu(h)
        else:
            h = F.relu(h)
        return self.drop(self.proj(h))


class Block(nn.Module):
    """Pre-LayerNorm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width, activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TransformerLM(nn.Module):
    def __init__(self, vocab_size: int, context: int, width: int, layers: int, heads: int, dropout: float,
                 pos: str = "learned", activation: str = "swiglu", tie_weights: bool = False) -> None:
        super().__init__()
        self.context, self.pos = context, pos
        self.embed = nn.Embedding(vocab_size, width)
        if pos == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(context, width))
        elif pos == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(context, width), persistent=False)
        elif pos != "none":
            raise ValueError(f"pos: got {pos!r}; accepted values: learned, sinusoidal, none")
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(width, heads, dropout, activation) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self._init(layers)
        if tie_weights:
            self.head.weight = self.embed.weight

    def _init(self, layers: int) -> None:
        """GPT-2 style: N(0, 0.02), zero biases, residual projections scaled by 1/sqrt(2 * layers)."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.context and self.pos != "none":
            raise ValueError(f"sequence of {t} characters is longer than the context ({self.context})")
        x = self.embed(ids)
        if self.pos == "learned":
            x = x + self.pos_embed[:t]
        elif self.pos == "sinusoidal":
            x = x + self.pos_table[:t]
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def build_model(params, vocab_size: int) -> nn.Module:
    """The network that `params.model` names, sized by the matching params."""
    p = params
    if p.model == "lstm":
        return LSTMLM(vocab_size, p.embed, p.hidden, p.lstm_layers, p.dropout)
    if p.model == "tcn":
        levels = p.levels or tcn_levels_for(p.context, p.kernel)
        return TCNLM(vocab_size, p.embed, p.channels, levels, p.kernel, p.dropout)
    if p.model == "transformer":
        return TransformerLM(vocab_size, p.context, p.width, p.layers, p.heads, p.dropout, p.pos,
                             p.activation, p.tie_weights)
    raise ValueError(f"model: got {p.model!r}; accepted values: lstm, tcn, transformer")
