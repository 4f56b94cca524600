"""The `vae` workload: a β-VAE on faces or on procedural sprites, with pictures and a disentanglement score.

Per run, every `sample_every` steps and at the end, under the run's `samples/` (and in TensorBoard):
`step-NNNNNN-prior.png` (prior samples), `-recon.png` (fixed inputs above their reconstructions),
`-traversal.png` (one row per latent, by KL, across its posterior range), `-rotation.png` (one image
moved along the rotation latent) and `step-NNNNNN.json` (what the pictures show, for the collector).
"""
from __future__ import annotations

import io
import json
import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

from jobkit.atomic import write_bytes, write_text
from jobkit.protocol import ImageKind, Metric, ReportLayout, RunContext
from jobkit.torchutil import Stepper, eval_mode

from . import sprites
from .data import FaceData, SpritesData, check_dataset, load_dataset, parse_dataset
from .mig import histogram_discretize, mig_details, mutual_info_matrix
from .model import VAE
from .params import PRESETS, VAEParams

EVAL_NOISE_SEED = 0xE7A1  # fixed noise for the validation loss (same every evaluation)
PRIOR_SEED = 0x9A1E  # fixed prior draws, so sample grids compare across steps and runs
NUM_RECON = 8
ROTATION_ROWS = 3  # faces without rotation_dim: strips for this many top-KL dimensions
HEART = 2
# Base image of traversals and the rotation strip on sprites: the largest heart, upright, centred.
SPRITES_BASE = (HEART, 5, 0, 15, 16)
ACTIVE_THRESHOLD = 0.01  # Burda et al.: a unit is active if Var_x(E[z_u | x]) > 0.01
CHUNK = 256

log = logging.getLogger(__name__)


def _png_bytes(grid: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    save_image(grid, buf, format="PNG")
    return buf.getvalue()


class BetaVAE:
    """β-VAE (Higgins et al. 2017): reconstruction + β·KL, conv encoder/decoder, 64×64 images."""

    Params = VAEParams
    presets = PRESETS
    report = ReportLayout(
        key_params=("dataset", "beta"),
        headline=(Metric("val_loss"), Metric("mig", higher_is_better=True, label="MIG"),
                  Metric("active_units", higher_is_better=True, label="active units"), Metric("recon"), Metric("kl")),
        images=(ImageKind("prior", "Samples from the prior (4×4)"), ImageKind("recon", "Reconstructions"),
                ImageKind("traversal", "Latent traversals", layout="wide"),
                ImageKind("rotation", "Rotation strips", layout="strip")),
        group_images_by="dataset", compare_by="beta", compare_label="β", chart="mig")

    def __init__(self, params: VAEParams) -> None:
        self.params = params
        self.total_steps = params.steps
        self.kind, _ = parse_dataset(params.dataset)
        self.data: FaceData | SpritesData | None = None
        self.model: VAE | None = None
        self._version = 0  # bumped by every change of the weights; keys the analysis cache
        self._analysis: tuple[int, dict[str, Any]] | None = None

    # ------------------------------------------------------------------------------------- training

    def check_data(self) -> None:
        """At submit: the dataset's files exist and an npy header fits (see `check_dataset`)."""
        check_dataset(self.params.dataset, self.params.data_dir, self.params.download)

    def setup(self, run_dir: Path, device: torch.device, ctx: RunContext = RunContext()) -> None:
        p = self.params
        self.device, self.ctx = torch.device(device), ctx
        self.data = load_dataset(p.dataset, data_dir=p.data_dir, val_size=p.val_size, workers=p.workers,
                                 download=p.download, image_size=p.image_size)
        likelihood = p.likelihood
        if likelihood == "auto":
            likelihood = "bernoulli" if self.data.binary else "gaussian"
        with torch.random.fork_rng(devices=[]):  # weights depend on the seed only, global RNG untouched
            torch.manual_seed(p.seed)
            model = VAE(self.data.channels, p.latents, likelihood, p.image_size)
        self.model = model.to(self.device)
        self.train_model = ctx.data_parallel(self.model)  # steps only; the bare model evaluates and is saved
        self.stepper = Stepper(self.train_model, p.compile, log)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=p.lr)
        self.batch_gen = torch.Generator().manual_seed(2 * p.seed + 1)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(2 * p.seed + 2)
        self._version += 1
        self._analysis = None

    def train_step(self, step: int) -> dict[str, float]:
        p, model = self.params, self.model
        t0 = time.perf_counter()
        model.train()
        if self.ctx.world_size == 1:
            x = self.data.train_batch(self.batch_gen, p.batch_size, self.device)
            noise = torch.randn((x.shape[0], p.latents), generator=self.noise_gen, device=self.device)
        else:  # every rank draws the global batch (one generator each for images and noise), keeps its part
            part = self.ctx.part(p.batch_size)
            x = self.data.train_batch(self.batch_gen, p.batch_size, self.device, part)
            noise = torch.randn((p.batch_size, p.latents), generator=self.noise_gen, device=self.device)[part]

        def forward_backward(net: torch.nn.Module) -> tuple[torch.Tensor, ...]:
            self.optimizer.zero_grad(set_to_none=True)
            out = net(x, noise)  # forward = losses (what a DistributedDataParallel wrapper calls)
            kl = out["kl_dims"].sum(1)
            loss = (out["recon"] + p.beta * kl).mean()
            if self.ctx.world_size > 1:
                loss = loss * self.ctx.share(p.batch_size)
            loss.backward()
            return loss, out["recon"], kl

        loss, recon, kl = self.stepper.run(forward_backward)
        self.optimizer.step()
        self._version += 1
        loss_v, recon_v, kl_v = torch.stack([loss.detach(), recon.detach().mean(), kl.detach().mean()]).tolist()
        seconds = time.perf_counter() - t0
        return {"loss": loss_v, "recon": recon_v, "kl": kl_v, "images_per_s": x.shape[0] / max(seconds, 1e-9)}

    # ---------------------------------------------------------------------------------- evaluation

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        with eval_mode(self.model), torch.no_grad():
            yield

    def _encode_means(self, images: torch.Tensor) -> torch.Tensor:
        """Posterior means (n, latents) on the CPU of uint8 (0..255) CPU images, in chunks."""
        out = []
        for chunk in images.split(CHUNK):
            x = chunk.to(self.device).float().div_(255.0)
            out.append(self.model.encode(x)[0].float().cpu())
        return torch.cat(out)

    def _analyse(self) -> dict[str, Any]:
        """Validation loss, KL per dimension, posterior ranges, MIG and the rotation latent (cached)."""
        if self._analysis is not None and self._analysis[0] == self._version:
            return self._analysis[1]
        p, model = self.params, self.model
        val = self.data.val
        gen = torch.Generator(device=self.device).manual_seed(EVAL_NOISE_SEED)
        recon_sum = 0.0
        kl_sum = torch.zeros(p.latents, dtype=torch.float64)
        means = []
        with self._evaluating():
            for chunk in val.split(CHUNK):
                x = chunk.to(self.device).float().div_(255.0)
                noise = torch.randn((x.shape[0], p.latents), generator=gen, device=self.device)
                out = model.losses(x, noise)
                recon_sum += float(out["recon"].double().sum())
                kl_sum += out["kl_dims"].double().sum(0).cpu()
                means.append(out["mu"].float().cpu())
            mu = torch.cat(means)
            n = mu.shape[0]
            kl_per_dim = (kl_sum / n).tolist()
            recon = recon_sum / n
            kl = float(sum(kl_per_dim))
            variance = mu.var(0, correction=0)
            order = sorted(range(p.latents), key=lambda d: (-kl_per_dim[d], d))
            lo, hi = torch.quantile(mu, torch.tensor([0.02, 0.98]), dim=0)
            result: dict[str, Any] = {
                "val_loss": recon + p.beta * kl, "recon": recon, "kl": kl, "kl_per_dim": kl_per_dim,
                "kl_order": order, "active_units": int((variance > ACTIVE_THRESHOLD).sum()),
                "lo": lo, "hi": hi, "mig": None, "mig_per_factor": None, "rotation_dim": None,
            }
            if isinstance(self.data, SpritesData):
                factors, images = self.data.mig_set(p.mig_samples)
                codes = self._encode_means(images).double().numpy()
                f = factors.numpy()
                details = mig_details(codes, f, p.mig_bins)
                result["mig"] = details["mig"]
                result["mig_per_factor"] = dict(zip(sprites.FACTOR_NAMES, details["per_factor"]))
                hearts = f[:, 0] == HEART
                mi = mutual_info_matrix(histogram_discretize(codes[hearts], p.mig_bins), f[hearts, 2])[:, 0]
                result["orientation_mi"] = mi.tolist()
                result["rotation_dim"] = int(np.argmax(mi))
            if p.rotation_dim >= 0:
                result["rotation_dim"] = p.rotation_dim
        self._analysis = (self._version, result)
        return result

    def evaluate(self) -> dict[str, float]:
        a = self._analyse()
        metrics = {"val_loss": a["val_loss"], "recon": a["recon"], "kl": a["kl"],
                   "active_units": float(a["active_units"])}
        metrics.update({f"kl_dim{d}": v for d, v in enumerate(a["kl_per_dim"])})
        if a["mig"] is not None:
            metrics["mig"] = a["mig"]
            metrics.update({f"mig_{k}": v for k, v in a["mig_per_factor"].items() if v is not None})
        if a["rotation_dim"] is not None:
            metrics["rotation_dim"] = float(a["rotation_dim"])
        return metrics

    # ----------------------------------------------------------------------------------- artifacts

    def _base_image(self) -> torch.Tensor:
        """(1, C, S, S) float: what traversals and the rotation strip start from."""
        if isinstance(self.data, SpritesData):
            return self.data.render(torch.tensor([SPRITES_BASE]), self.device)
        return self.data.val[:1].to(self.device).float() / 255.0

    def _line(self, z0: torch.Tensor, dim: int, values: torch.Tensor) -> torch.Tensor:
        z = z0.repeat(values.shape[0], 1)
        z[:, dim] = values.to(z.device, z.dtype)
        return self.model.decode(z).cpu()

    def pictures(self) -> dict[str, torch.Tensor]:
        """The four grids (3, H, W) in [0, 1], keyed prior / recon / traversal / rotation."""
        p, model = self.params, self.model
        a = self._analyse()
        steps = p.traversal_steps
        with self._evaluating():
            z = torch.randn((p.num_samples, p.latents), generator=torch.Generator().manual_seed(PRIOR_SEED))
            prior = model.decode(z.to(self.device)).cpu()
            x = self.data.val[:NUM_RECON].to(self.device).float() / 255.0
            recon = model.decode(model.encode(x)[0]).cpu()
            z0 = model.encode(self._base_image())[0]
            lo, hi = a["lo"].to(self.device), a["hi"].to(self.device)
            traversal = [self._line(z0, d, torch.linspace(float(lo[d]), float(hi[d]), steps)) for d in a["kl_order"]]
            rotation = []
            for d in self._rotation_rows(a):
                half = float(hi[d] - lo[d]) / 2
                rotation.append(self._line(z0, d, float(z0[0, d]) + torch.linspace(-half, half, steps)))
        pad = {"padding": 2, "pad_value": 0.5}
        return {
            "prior": make_grid(prior, nrow=math.ceil(math.sqrt(p.num_samples)), **pad),
            "recon": make_grid(torch.cat([x.cpu(), recon]), nrow=x.shape[0], **pad),
            "traversal": make_grid(torch.cat(traversal), nrow=steps, **pad),
            "rotation": make_grid(torch.cat(rotation), nrow=steps, **pad),
        }

    def _rotation_rows(self, a: dict[str, Any]) -> list[int]:
        if a["rotation_dim"] is not None:
            return [a["rotation_dim"]]
        return a["kl_order"][:min(ROTATION_ROWS, self.params.latents)]

    def artifacts(self, step: int, writer: Any, out_dir: Path) -> dict[str, float]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        a = self._analyse()
        for kind, grid in self.pictures().items():
            write_bytes(out_dir / f"step-{step:06d}-{kind}.png", _png_bytes(grid))
            if writer is not None:
                writer.add_image(f"vae/{kind}", grid, step)
        summary = {
            "step": step, "beta": self.params.beta, "dataset": self.params.dataset,
            "rotation_dim": a["rotation_dim"], "rotation_dims": self._rotation_rows(a),
            "kl_order": a["kl_order"], "mig": a["mig"], "mig_per_factor": a["mig_per_factor"],
            "orientation_mi": a.get("orientation_mi"),  # sprites: each latent's MI (nats) with orientation, hearts
            "kl_per_dim": a["kl_per_dim"], "active_units": a["active_units"],
            "traversal_range": [[float(l), float(h)] for l, h in zip(a["lo"], a["hi"])],
        }
        write_text(out_dir / f"step-{step:06d}.json", json.dumps(summary, indent=1) + "\n")
        metrics: dict[str, float] = {"active_units": float(a["active_units"])}
        if a["mig"] is not None:
            metrics["mig"] = a["mig"]
        if a["rotation_dim"] is not None:
            metrics["rotation_dim"] = float(a["rotation_dim"])
        return metrics

    # -------------------------------------------------------------------------------------- resume

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "batch_gen": self.batch_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # A checkpoint loaded with map_location=cuda carries the generator states there: they live on the CPU.
        self.batch_gen.set_state(state["batch_gen"].cpu())
        self.noise_gen.set_state(state["noise_gen"].cpu())
        self._version += 1
        self._analysis = None
