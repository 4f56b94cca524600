"""The convolutional β-VAE of Higgins et al. (2017) / Burgess et al. (2018), for 64×64 images.

Encoder: four 4×4 stride-2 convolutions (32, 32, 64, 64 channels, ReLU) → 64×4×4 → dense 256 (ReLU)
→ 2·latents (mean and log-variance). Decoder: the mirror image, with transposed convolutions; it
returns logits (Bernoulli) or, through a sigmoid, means (Gaussian) of each pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 64


class Encoder(nn.Module):
    def __init__(self, channels: int, latents: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),  # 32×32
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),  # 16×16
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),  # 8×8
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),  # 4×4
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 2 * latents))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc(self.conv(x)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    def __init__(self, channels: int, latents: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(latents, 256), nn.ReLU(), nn.Linear(256, 64 * 4 * 4), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),  # 8×8
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),  # 16×16
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),  # 32×32
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # 64×64 logits
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, 64, 4, 4))


class VAE(nn.Module):
    def __init__(self, channels: int = 1, latents: int = 10, likelihood: str = "bernoulli") -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be bernoulli or gaussian, got {likelihood!r}")
        self.channels, self.latents, self.likelihood = channels, latents, likelihood
        self.encoder = Encoder(channels, latents)
        self.decoder = Decoder(channels, latents)

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
