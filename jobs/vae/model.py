"""The convolutional β-VAE of Higgins et al. (2017) / Burgess et al. (2018), for 64×64 images
(and a 32×32 variant with one halving fewer, for CPU budgets).

Encoder: four 4×4 stride-2 convolutions (32, 32, 64, 64 channels, ReLU) → 64×4×4 → dense 256 (ReLU)
→ 2·latents (mean and log-variance); at 32×32 three (32, 64, 64). Decoder: the mirror image, with transposed convolutions; it
returns logits (Bernoulli) or, through a sigmoid, means (Gaussian) of each pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 64


SIZES = (32, 64)  # image sides the networks are built for


def _check_size(image_size: int) -> None:
    if image_size not in SIZES:
        raise ValueError(f"image_size must be one of {SIZES}, got {image_size}")


class Encoder(nn.Module):
    """64×64: 32, 32, 64, 64 channels; 32×32: the same without the first 32 (three halvings to 4×4)."""

    def __init__(self, channels: int, latents: int, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        _check_size(image_size)
        widths = [channels, 32, 32, 64, 64] if image_size == 64 else [channels, 32, 64, 64]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        self.conv = nn.Sequential(*layers)  # → 64×4×4
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 2 * latents))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc(self.conv(x)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """The encoder's mirror: 64×4×4 → transposed convolutions → logits at `image_size`."""

    def __init__(self, channels: int, latents: int, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        _check_size(image_size)
        widths = [64, 64, 32, 32, channels] if image_size == 64 else [64, 64, 32, channels]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        self.fc = nn.Sequential(nn.Linear(latents, 256), nn.ReLU(), nn.Linear(256, 64 * 4 * 4), nn.ReLU())
        self.deconv = nn.Sequential(*layers[:-1])  # no ReLU on the logits

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, 64, 4, 4))


class VAE(nn.Module):
    def __init__(self, channels: int = 1, latents: int = 10, likelihood: str = "bernoulli",
                 image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be bernoulli or gaussian, got {likelihood!r}")
        self.channels, self.latents, self.likelihood = channels, latents, likelihood
        self.image_size = image_size
        self.encoder = Encoder(channels, latents, image_size)
        self.decoder = Decoder(channels, latents, image_size)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1] (for pictures)."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """`losses`: what a DistributedDataParallel wrapper calls."""
        return self.losses(x, noise)

    def losses(self, x: torch.Tensor, noise: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per-image reconstruction (summed over pixels) and per-dimension KL; `noise` None = use the mean.

        Reconstruction is −log p(x|z) up to a constant: BCE with logits (Bernoulli) or the squared
        error summed over pixels (Gaussian with fixed variance 1/2).
        """
        mu, logvar = self.encoder(x)
        z = mu if noise is None else mu + torch.exp(0.5 * logvar) * noise
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            recon = F.binary_cross_entropy_with_logits(out, x, reduction="none").flatten(1).sum(1)
        else:
            recon = (torch.sigmoid(out) - x).square().flatten(1).sum(1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)
        return {"recon": recon, "kl_dims": kl, "mu": mu, "logvar": logvar}
