"""The `charlm` parameters: one dataclass, validated by `jobkit.plan.params.resolve`.

Field defaults equal the `default` preset (GPU-sized for a ~1 MB corpus); see `presets.py`.
Size parameters are per model (`layers`/`width`/`heads` for the Transformer, `lstm_layers`/`hidden`
for the LSTM, `kernel`/`levels`/`channels` for the TCN), so one preset sizes all three and a sweep
over `model` compares them at similar parameter counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from jobkit.plan.params import ParamError
from jobkit.protocol import MAX_BATCH, BaseParams

MODELS = ("lstm", "tcn", "transformer")
POSITIONS = ("learned", "sinusoidal", "none")
ACTIVATIONS = ("swiglu", "gelu", "relu")
AUTOCASTS = ("auto", "bf16", "off")


@dataclass
class CharLMParams(BaseParams):
    # data
    model: str = field(default="transformer", metadata={"choices": list(MODELS), "help": "network"})
    data: str = field(default="tinyshakespeare", metadata={
        "help": "UTF-8 text file, or 'tinyshakespeare' ($JOBKIT_DATA, then the cache, then download)"})
    lowercase: bool = field(default=False, metadata={"help": "lowercase the text before building the vocabulary"})
    val_fraction: float = field(default=0.1, metadata={
        "min": 0.001, "max": 0.5, "help": "last fraction of the text held out for validation and prompts"})
    context: int = field(default=256, metadata={"min": 2, "max": 65536, "help": "characters per training window"})
    batch_size: int = field(default=64, metadata={"min": 1, "max": MAX_BATCH, "help": "windows per step"})
    # optimisation
    lr: float = field(default=1e-3, metadata={"min": 0.0, "help": "peak AdamW learning rate"})
    min_lr: float = field(default=1e-4, metadata={"min": 0.0, "help": "learning rate at the end of the cosine"})
    warmup_steps: int = field(default=100, metadata={"min": 0, "help": "linear warmup steps"})
    schedule: str = field(default="cosine", metadata={
        "choices": ["cosine", "constant"],
        "help": "after warmup: cosine to min_lr at `steps`, or constant lr (needs no end: for stop = 'plateau')"})
    weight_decay: float = field(default=0.1, metadata={
        "min": 0.0, "help": "AdamW weight decay (matrices and embeddings only)"})
    beta2: float = field(default=0.99, metadata={"min": 0.0, "max": 0.99999, "help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"min": 0.0, "help": "max gradient norm (0: off)"})
    dropout: float = field(default=0.2, metadata={"min": 0.0, "max": 0.9, "help": "dropout probability"})
    # transformer
    layers: int = field(default=6, metadata={"min": 1, "help": "Transformer blocks"})
    width: int = field(default=384, metadata={"min": 1, "help": "Transformer model width"})
    heads: int = field(default=6, metadata={"min": 1, "help": "Transformer attention heads (divide width)"})
    pos: str = field(default="learned", metadata={
        "choices": list(POSITIONS), "help": "Transformer positions ('none': the report's variant)"})
    activation: str = field(default="swiglu", metadata={
        "choices": list(ACTIVATIONS), "help": "Transformer feed-forward (swiglu learns fastest here)"})
    tie_weights: bool = field(default=False, metadata={
        "help": "Transformer: output layer shares the token embedding"})
    # lstm
    lstm_layers: int = field(default=2, metadata={"min": 1, "help": "LSTM layers"})
    hidden: int = field(default=896, metadata={"min": 1, "help": "LSTM hidden size"})
    embed: int = field(default=128, metadata={"min": 1, "help": "LSTM and TCN character embedding size"})
    # tcn
    kernel: int = field(default=3, metadata={"min": 2, "help": "TCN convolution kernel size"})
    levels: int = field(default=0, metadata={
        "min": 0, "help": "TCN residual blocks, dilation 2^i (0: fewest whose receptive field covers the context)"})
    channels: int = field(default=512, metadata={"min": 1, "help": "TCN channels"})
    # evaluation and samples
    val_windows: int = field(default=0, metadata={
        "min": 0, "help": "fixed, evenly spaced validation windows (0: every non-overlapping window)"})
    num_prompts: int = field(default=3, metadata={"min": 1, "max": 64, "help": "prompts per sample file"})
    prompt_len: int = field(default=30, metadata={"min": 1, "help": "prompt length in characters"})
    sample_len: int = field(default=128, metadata={"min": 1, "help": "characters generated per prompt"})
    temperature: float = field(default=0.8, metadata={"min": 0.0, "help": "sampling temperature (0: greedy)"})
    top_k: int = field(default=0, metadata={"min": 0, "help": "sample among the k likeliest characters (0: all)"})
    compile: bool = field(default=False, metadata={
        "identity": "when-set",  # added later: runs made before keep their ids
        "help": "torch.compile the training step where the platform allows (else one warning, eager)"})
    autocast: str = field(default="auto", metadata={
        "choices": list(AUTOCASTS), "identity": "when-set",  # added later: runs made before keep their ids
        "help": "mixed precision of forward passes: auto = bfloat16 on CUDA, float32 on CPU; bf16 = bfloat16 "
                "on CPU too (~1.3x faster with AVX512-BF16/AMX); off = float32 everywhere"})

    def check(self) -> None:
        if self.model == "transformer" and self.width % self.heads:
            raise ParamError("heads", f"got {self.heads}; must divide width={self.width}")
        if self.min_lr > self.lr:
            raise ParamError("min_lr", f"got {self.min_lr}; must be <= lr={self.lr}")
