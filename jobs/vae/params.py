"""The `vae` parameters and presets, validated by `jobkit.plan.params.resolve`.

Field defaults are the model/data choices of the β-VAE papers (10 latents, Adam, batch 64, β = 4 on
sprites); the run length and cadence come from the presets (`default` is GPU-sized).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from jobkit.plan.params import ParamError
from jobkit.protocol import MAX_BATCH, BaseParams

from .data import parse_dataset

LIKELIHOODS = ("auto", "bernoulli", "gaussian")


@dataclass
class VAEParams(BaseParams):
    # data
    dataset: str = field(default="sprites", metadata={
        "help": "celeba | sprites | folder:PATH | npy:PATH (images are made 64×64)"})
    data_dir: str = field(default="", metadata={
        "help": "CelebA root holding celeba/ (empty: $JOBKIT_DATA, else ~/.cache/jobkit/data)"})
    download: bool = field(default=False, metadata={
        "help": "celeba only: let torchvision download it (needs internet and gdown)"})
    image_size: int = field(default=64, metadata={
        "min": 32, "max": 64, "identity": "when-set",  # added later: runs made before keep their ids
        "help": "sprites only: 64, or 32 (the same sprites, 2×2-averaged; ~3× the steps per CPU-second)"})
    val_size: int = field(default=1000, metadata={
        "min": 1, "max": 100000, "help": "fixed validation images (at most 10% of a folder/npy set)"})
    workers: int = field(default=4, metadata={"min": 0, "max": 64, "help": "threads decoding image files"})
    # model and loss
    latents: int = field(default=10, metadata={"min": 1, "max": 512, "help": "latent dimensions"})
    beta: float = field(default=4.0, metadata={
        "min": 0.0, "help": "weight of the KL term (1: standard VAE, 0: autoencoder with noise)"})
    likelihood: str = field(default="auto", metadata={
        "choices": list(LIKELIHOODS), "help": "reconstruction term (auto: bernoulli on sprites, gaussian else)"})
    # optimisation
    batch_size: int = field(default=64, metadata={"min": 1, "max": MAX_BATCH, "help": "images per step"})
    lr: float = field(default=5e-4, metadata={"min": 0.0, "help": "Adam learning rate"})
    compile: bool = field(default=False, metadata={
        "identity": "when-set",  # added later: runs made before keep their ids
        "help": "torch.compile the training step where the platform allows (else one warning, eager)"})
    # evaluation and pictures
    rotation_dim: int = field(default=-1, metadata={
        "min": -1, "help": "latent shown as the rotation strip (-1: auto; on sprites max MI with orientation)"})
    traversal_steps: int = field(default=9, metadata={
        "min": 2, "max": 41, "help": "values per traversal row and rotation strip"})
    num_samples: int = field(default=16, metadata={"min": 1, "max": 256, "help": "prior samples per grid"})
    mig_samples: int = field(default=10000, metadata={
        "min": 100, "max": 1000000, "help": "sprites: images MIG is measured on (disentanglement_lib: 10000)"})
    mig_bins: int = field(default=20, metadata={"min": 2, "max": 1000, "help": "histogram bins per code for MIG"})

    def check(self) -> None:
        try:
            kind, path = parse_dataset(self.dataset)
        except ValueError as exc:
            raise ParamError("dataset", str(exc)) from None
        if self.download and kind != "celeba":
            raise ParamError("download", f"only applies to dataset=celeba, not {self.dataset!r}")
        if self.image_size not in (32, 64):
            raise ParamError("image_size", f"got {self.image_size}; must be 64 or 32")
        if self.image_size != 64 and kind != "sprites":
            raise ParamError("image_size", f"32 is for dataset=sprites only, not {self.dataset!r}; leave it at 64")
        if self.lr <= 0:
            raise ParamError("lr", f"got {self.lr}; must be > 0")
        if self.rotation_dim >= self.latents:
            raise ParamError("rotation_dim", f"got {self.rotation_dim}; must be -1 or < latents={self.latents}")


PRESETS: dict[str, dict] = {
    # seconds on a CPU: tests and demos
    "tiny": {"steps": 40, "batch_size": 16, "lr": 1e-3, "val_size": 128, "mig_samples": 1000,
             "eval_every": 20, "sample_every": 0, "log_every": 5, "checkpoint_every": 20},
    # minutes on a few CPU cores
    "cpu-small": {"steps": 3000, "batch_size": 64, "lr": 1e-3, "val_size": 500, "mig_samples": 5000,
                  "eval_every": 500, "sample_every": 1000, "log_every": 20, "checkpoint_every": 500},
    # one GPU, ~9 epochs of sprites (the papers train 1e5–1e6 steps of batch 64)
    "default": {"steps": 100000, "batch_size": 64, "lr": 5e-4, "val_size": 1000, "mig_samples": 10000,
                "eval_every": 5000, "sample_every": 10000, "log_every": 100, "checkpoint_every": 5000},
}
