"""Procedural dSprites-style data: 64×64 binary images of a square, an ellipse or a heart.

Five factors, each an index (the "latent classes" of dSprites), in this column order:

| factor        | values | meaning                                                        |
|---------------|--------|----------------------------------------------------------------|
| `shape`       | 3      | 0 square, 1 ellipse, 2 heart                                   |
| `scale`       | 6      | linspace(0.5, 1, 6) × 12 px (radius of the shape's bounding disk) |
| `orientation` | 40     | k · 2π/40, counter-clockwise as displayed                      |
| `posX`        | 32     | centre from x = 12 px (index 0, left) to x = 52 px (index 31)  |
| `posY`        | 32     | centre from y = 12 px (index 0, top) to y = 52 px (index 31)   |

737,280 distinct images; nothing is stored or downloaded: `render(factors)` draws any batch of them,
vectorised over the batch, in a few milliseconds. Rendering is pure arithmetic on the pixel grid, so
the same factors give the same image every time (bit for bit on CPU).
"""
from __future__ import annotations

import math

import torch

SIZE = 64
SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
NUM_IMAGES = math.prod(FACTOR_SIZES)

RADIUS = 12.0  # px: bounding-disk radius of a shape at scale 1
POS_LO, POS_HI = RADIUS, SIZE - RADIUS  # centre range, so the largest shape stays inside the frame
SQUARE_HALF = 0.7  # half side, in units of the bounding radius
ELLIPSE_AXES = (1.0, 0.5)  # semi-axes (along x at orientation 0)
# The heart (x²+y²−1)³ − x²y³ ≤ 0 fits the disk of radius 1.25 around (0, 0.25): rotate about that.
HEART_R, HEART_Y0 = 1.25, 0.25

SCALES = torch.linspace(0.5, 1.0, FACTOR_SIZES[1], dtype=torch.float64)
ORIENTATIONS = torch.arange(FACTOR_SIZES[2], dtype=torch.float64) * (2 * math.pi / FACTOR_SIZES[2])
POSITIONS = torch.linspace(0.0, 1.0, FACTOR_SIZES[3], dtype=torch.float64)


def sample_factors(n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` factor index rows (n, 5), uniform over the whole set, drawn with `generator` (CPU)."""
    cols = [torch.randint(0, k, (n,), generator=generator) for k in FACTOR_SIZES]
    return torch.stack(cols, dim=1)


def factors_to_index(factors: torch.Tensor) -> torch.Tensor:
    """Flat index (row-major over FACTOR_SIZES) of each factor row, as in dSprites' ordering."""
    index = torch.zeros(factors.shape[0], dtype=torch.long)
    for col, k in enumerate(FACTOR_SIZES):
        index = index * k + factors[:, col].long().cpu()
    return index


def index_to_factors(index: torch.Tensor) -> torch.Tensor:
    """Inverse of `factors_to_index`."""
    index = index.long().cpu().clone()
    cols = []
    for k in reversed(FACTOR_SIZES):
        cols.append(index % k)
        index = index // k
    return torch.stack(cols[::-1], dim=1)


def _check(factors: torch.Tensor) -> torch.Tensor:
    factors = torch.as_tensor(factors).long().cpu()
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors must have shape (n, {len(FACTOR_SIZES)}), got {tuple(factors.shape)}")
    hi = torch.tensor(FACTOR_SIZES)
    if bool(((factors < 0) | (factors >= hi)).any()):
        raise ValueError(f"factor indices out of range; sizes are {dict(zip(FACTOR_NAMES, FACTOR_SIZES))}")
    return factors


def render(factors: torch.Tensor, device: torch.device | str = "cpu", chunk: int = 2048) -> torch.Tensor:
    """Images (n, 1, 64, 64) float32 in {0, 1} for factor index rows (n, 5), on `device`."""
    factors = _check(factors)
    out = torch.empty(factors.shape[0], 1, SIZE, SIZE, device=device)
    for start in range(0, factors.shape[0], chunk):
        out[start:start + chunk, 0] = _render(factors[start:start + chunk], torch.device(device))
    return out


def _render(f: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Per-image parameters in float64 on the CPU (cos/sin identical everywhere), then float32.
    radius = SCALES[f[:, 1]] * RADIUS
    theta = ORIENTATIONS[f[:, 2]]
    cx = POS_LO + POSITIONS[f[:, 3]] * (POS_HI - POS_LO)
    cy = POS_LO + POSITIONS[f[:, 4]] * (POS_HI - POS_LO)
    cos_r = torch.cos(theta) / radius
    sin_r = torch.sin(theta) / radius
    p = torch.stack([cx, cy, cos_r, sin_r], dim=1).to(torch.float32).to(device)
    cx, cy, cos_r, sin_r = (p[:, i, None, None] for i in range(4))
    grid = torch.arange(SIZE, dtype=torch.float32, device=device) + 0.5  # pixel centres
    u = grid[None, None, :] - cx  # (n, 1, W): x to the right
    v = cy - grid[None, :, None]  # (n, H, 1): y up (image rows go down)
    # Undo a counter-clockwise rotation by theta, in units of the bounding radius.
    x = cos_r * u + sin_r * v
    y = cos_r * v - sin_r * u
    img = torch.empty(x.shape, dtype=torch.bool, device=device)
    shape = f[:, 0]
    for k in range(len(SHAPES)):
        sel = (shape == k).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        if sel.numel() == shape.numel():
            xs, ys = x, y
        else:
            sel = sel.to(device)
            xs, ys = x.index_select(0, sel), y.index_select(0, sel)
        if k == 0:
            inside = torch.maximum(xs.abs(), ys.abs()) <= SQUARE_HALF
        elif k == 1:
            inside = (xs / ELLIPSE_AXES[0]).square() + (ys / ELLIPSE_AXES[1]).square() <= 1.0
        else:
            hx2 = (xs * HEART_R).square()
            hy = ys * HEART_R + HEART_Y0
            r = hx2 + hy.square() - 1.0
            inside = r * r * r <= hx2 * hy * hy * hy
        if xs is x:
            img = inside
        else:
            img[sel] = inside
    return img.to(torch.float32)
