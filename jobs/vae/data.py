"""Image sources for the β-VAE, all yielding 64×64 images in [0, 1] (uint8 in memory).

`dataset` forms (see `parse_dataset`):
- `sprites`      procedural dSprites-style shapes with known factors (`jobs.vae.sprites`); no files;
- `celeba`       torchvision's CelebA (aligned faces) under `data_dir`; centre 148×148 crop → 64×64;
- `folder:PATH`  every image file under PATH (recursive, sorted), RGB, centre square crop → 64×64;
- `npy:PATH`     an array N×H×W or N×H×W×C (C = 1 or 3), uint8/bool/ints 0..255 or floats in [0, 1],
                 centre square crop → 64×64 (bilinear, antialiased).

Batches are drawn with a caller-owned `torch.Generator` (uniform, with replacement), so the data order
is part of the workload's state and resumes exactly. Validation images are a fixed set (same for every
seed): the official `valid` split for CelebA, a fixed random 10% (at most `val_size`) otherwise.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from . import sprites

SIZE = 64
CELEBA_CROP = 148
SPLIT_SEED = 0x5EED_0001  # the train/validation split of folder and npy data (fixed across runs)
VAL_SEED = 0x5EED_0002  # the sprites validation set
MIG_SEED = 0x5EED_0003  # the sprites set MIG is measured on
CACHE_BYTES = 1 << 30  # file-backed sets up to this size are kept decoded in memory
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


class DatasetError(RuntimeError):
    """A dataset that cannot be used; the message (one line) says what is wrong and how to fix it."""


def parse_dataset(value: str) -> tuple[str, str | None]:
    """`'sprites'` -> ('sprites', None); `'npy:x.npy'` -> ('npy', 'x.npy'). Raises ValueError."""
    kind, sep, path = value.partition(":")
    if kind in ("sprites", "celeba") and not sep:
        return kind, None
    if kind in ("folder", "npy") and sep:
        if not path.strip():
            raise ValueError(f"{kind}: needs a path after the colon, e.g. {kind}:/data/faces")
        return kind, path
    raise ValueError(f"got {value!r}; accepted values: celeba, sprites, folder:PATH, npy:PATH")


def default_data_dir() -> Path:
    """`$JOBKIT_DATA` if set, else ~/.cache/jobkit/data."""
    env = os.environ.get("JOBKIT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jobkit" / "data"


# ---------------------------------------------------------------------------------------------- sets


class ImageSet(Protocol):
    channels: int

    def __len__(self) -> int: ...

    def load(self, index: torch.Tensor) -> torch.Tensor:
        """uint8 (len(index), C, 64, 64) on the CPU."""


class TensorImages:
    """Images already in memory: uint8 (N, C, 64, 64)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.channels = images.shape[1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def load(self, index: torch.Tensor) -> torch.Tensor:
        return self.images[index]


class SubsetImages:
    def __init__(self, base: ImageSet, index: torch.Tensor) -> None:
        self.base, self.index, self.channels = base, index, base.channels

    def __len__(self) -> int:
        return self.index.shape[0]

    def load(self, index: torch.Tensor) -> torch.Tensor:
        return self.base.load(self.index[index])


def pil_to_uint8(image, crop: int | None = None) -> torch.Tensor:
    """A PIL image -> uint8 (3, 64, 64): centre crop (`crop` px square, else the largest square), resize.

    JPEGs much larger than needed are decoded at a reduced scale (PIL's draft mode: 1/2, 1/4, 1/8),
    never below 64 px across the crop — several times faster, and just as deterministic.
    """
    from PIL import Image

    w0, h0 = image.size
    side0 = min(w0, h0) if crop is None else min(crop, w0, h0)
    if getattr(image, "format", None) == "JPEG" and side0 >= 2 * SIZE:
        image.draft("RGB", (math.ceil(w0 * SIZE / side0), math.ceil(h0 * SIZE / side0)))
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h, max(SIZE, round(side0 * w / w0)))
    left, top = int(round((w - side) / 2.0)), int(round((h - side) / 2.0))
    image = image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class FileImages:
    """Image files decoded on demand by a thread pool; kept decoded when the whole set fits CACHE_BYTES."""

    channels = 3

    def __init__(self, paths: list[Path], crop: int | None = None, workers: int = 4) -> None:
        self.paths, self.crop, self.workers = paths, crop, workers
        self._pool: ThreadPoolExecutor | None = None
        small = len(paths) * 3 * SIZE * SIZE <= CACHE_BYTES
        self._cache = torch.zeros(len(paths), 3, SIZE, SIZE, dtype=torch.uint8) if small else None
        self._cached = torch.zeros(len(paths), dtype=torch.bool) if small else None

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, i: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        if self._cache is not None and self._cached[i]:
            return self._cache[i]
        path = self.paths[i]
        try:
            with Image.open(path) as image:
                out = pil_to_uint8(image, self.crop)
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"cannot read image {path}: {exc}") from None
        if self._cache is not None:
            self._cache[i] = out
            self._cached[i] = True
        return out

    def load(self, index: torch.Tensor) -> torch.Tensor:
        items = [int(i) for i in index]
        if self.workers <= 1 or len(items) <= 1:
            return torch.stack([self._read(i) for i in items])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="vae-images")
        return torch.stack(list(self._pool.map(self._read, items)))


def _split(n: int, val_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices: a fixed random 10% (1 ≤ size ≤ val_size) for validation."""
    if n < 2:
        everything = torch.arange(n)
        return everything, everything
    n_val = max(1, min(val_size, n // 10))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


# ------------------------------------------------------------------------------------------ datasets


class FaceData:
    """Natural images (no known factors): Gaussian likelihood by default."""

    binary = False
    has_factors = False

    def __init__(self, kind: str, train: ImageSet, val: torch.Tensor, description: str) -> None:
        self.kind, self.train, self.val, self.description = kind, train, val, description
        self.channels = train.channels

    def train_batch(self, generator: torch.Generator, batch_size: int, device: torch.device,
                    part: slice | None = None) -> torch.Tensor:
        """A random batch; `part`: only that slice of it (a data-parallel rank's share)."""
        index = torch.randint(0, len(self.train), (batch_size,), generator=generator)
        if part is not None:
            index = index[part]
        return self.train.load(index).to(device).float().div_(255.0)


class SpritesData:
    """Procedural sprites, rendered on the training device; binary, with factors.

    `image_size` 32 draws the same 64×64 sprites and averages each 2×2 block: the same factors and
    positions at a quarter of the pixels (edges become grey levels), for CPU budgets.
    """

    kind = "sprites"
    binary = True
    has_factors = True
    channels = 1

    def __init__(self, val_size: int, image_size: int = SIZE) -> None:
        self.image_size = image_size
        self.description = f"sprites: {sprites.NUM_IMAGES:,} procedural {image_size}×{image_size} shapes"
        self.val_factors = sprites.sample_factors(val_size, torch.Generator().manual_seed(VAL_SEED))
        self.val = to_uint8(self.render(self.val_factors))
        self._mig: tuple[torch.Tensor, torch.Tensor] | None = None

    def render(self, factors: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """Float images (n, 1, image_size, image_size) in [0, 1] of these factor rows."""
        images = sprites.render(factors, device)
        return images if self.image_size == SIZE else F.avg_pool2d(images, SIZE // self.image_size)

    def train_batch(self, generator: torch.Generator, batch_size: int, device: torch.device,
                    part: slice | None = None) -> torch.Tensor:
        factors = sprites.sample_factors(batch_size, generator)
        return self.render(factors if part is None else factors[part], device)

    def mig_set(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(factors (n, 5), images uint8 (n, 1, S, S)) — fixed for every run, kept after first use."""
        if self._mig is None or self._mig[0].shape[0] != n:
            factors = sprites.sample_factors(n, torch.Generator().manual_seed(MIG_SEED))
            self._mig = (factors, to_uint8(self.render(factors)))
        return self._mig


def load_npy(path: str, val_size: int) -> FaceData:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DatasetError(f"npy dataset: no such file {file}")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"npy dataset: cannot load {file} as a .npy array: {exc}") from None
    shape = tuple(array.shape)
    if array.ndim == 3:
        channels = 1
    elif array.ndim == 4 and shape[-1] in (1, 3):
        channels = shape[-1]
    else:
        raise DatasetError(f"npy dataset {file}: expected an array N×H×W or N×H×W×C with C = 1 or 3, got shape {shape}")
    if shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
        raise DatasetError(f"npy dataset {file}: empty array, shape {shape}")
    kind = array.dtype.kind
    if kind == "b":
        scale = 1.0
    elif kind in "ui":
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise DatasetError(f"npy dataset {file}: integer values must lie in 0..255, found {lo}..{hi}")
        scale = 1.0 / 255.0
    elif kind == "f":
        lo, hi = float(np.min(array)), float(np.max(array))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise DatasetError(f"npy dataset {file}: float values must lie in [0, 1], found {lo:g}..{hi:g}")
        scale = 1.0
    else:
        raise DatasetError(f"npy dataset {file}: unsupported dtype {array.dtype} (use uint8, bool or float in [0, 1])")
    out = torch.empty(shape[0], channels, SIZE, SIZE, dtype=torch.uint8)
    for start in range(0, shape[0], 1024):
        chunk = torch.from_numpy(np.array(array[start:start + 1024], dtype=np.float32)) * scale
        chunk = chunk.unsqueeze(1) if channels == 1 and chunk.ndim == 3 else chunk.permute(0, 3, 1, 2)
        out[start:start + chunk.shape[0]] = to_uint8_64(chunk)
    images = TensorImages(out)
    train, val = _split(len(images), val_size)
    return FaceData("npy", SubsetImages(images, train), images.load(val),
                    f"npy: {file} ({shape[0]} images {shape[1]}×{shape[2]}, {channels} channel(s))")


def to_uint8_64(x: torch.Tensor) -> torch.Tensor:
    """Float images (B, C, H, W) in [0, 1] -> uint8 (B, C, 64, 64): centre square crop, bilinear resize."""
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top:top + side, left:left + side]
    if side != SIZE:
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=side > SIZE)
    return to_uint8(x)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 0..255 (rounded): how every dataset keeps its images in memory."""
    return x.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)


def load_folder(path: str, val_size: int, workers: int) -> FaceData:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"folder dataset: no such directory {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise DatasetError(f"folder dataset: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {root}")
    images = FileImages(paths, None, workers)
    train, val = _split(len(images), val_size)
    return FaceData("folder", SubsetImages(images, train), images.load(val),
                    f"folder: {root} ({len(paths)} images)")


def celeba_root(data_dir: str) -> Path:
    """The directory torchvision's CelebA calls `root` (it holds `celeba/`)."""
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if (root / "img_align_celeba").is_dir() and not (root / "celeba").is_dir():
        root = root.parent  # pointed at the celeba folder itself
    return root


def load_celeba(data_dir: str, val_size: int, workers: int, download: bool = False) -> FaceData:
    from torchvision.datasets import CelebA

    root = celeba_root(data_dir)
    try:
        train = CelebA(str(root), split="train", target_type=[], download=download)
        valid = CelebA(str(root), split="valid", target_type=[], download=False)
    except RuntimeError as exc:
        if "not found" not in str(exc).lower():
            raise
        raise DatasetError(
            f"CelebA not found under {root / 'celeba'} (needs img_align_celeba/ and the list_*.txt and "
            f"identity_CelebA.txt files): download 'Align&Cropped Images' and the annotations from {CELEBA_URL} "
            f"into that folder, or point data_dir (or $JOBKIT_DATA) at the folder that holds celeba/, or set "
            f"download=true on a machine with internet access and gdown installed") from None
    folder = root / CelebA.base_folder / "img_align_celeba"
    train_set = FileImages([folder / f for f in train.filename], CELEBA_CROP, workers)
    val_set = FileImages([folder / f for f in valid.filename[:val_size]], CELEBA_CROP, workers)
    val = val_set.load(torch.arange(len(val_set)))
    return FaceData("celeba", train_set, val, f"celeba: {root / 'celeba'} ({len(train_set)} train images)")


NPY_EXPECTED = "a .npy array N×H×W or N×H×W×C (C = 1 or 3) of uint8, bool or floats in [0, 1]"
CELEBA_FILES = ("list_eval_partition.txt", "identity_CelebA.txt", "list_attr_celeba.txt",
                "list_bbox_celeba.txt", "list_landmarks_align_celeba.txt")


def check_dataset(dataset: str, data_dir: str = "", download: bool = False) -> None:
    """The cheap submit-time check of `load_dataset`: paths exist and npy headers fit; no image is
    decoded and no array read. Raises `jobkit.plan.datacheck.DataProblem`."""
    from jobkit.plan.datacheck import DataProblem

    kind, path = parse_dataset(dataset)
    if kind == "sprites" or (kind == "celeba" and download):
        return
    if kind == "celeba":
        root = celeba_root(data_dir) / "celeba"
        expected = (f"CelebA's img_align_celeba/ and {', '.join(CELEBA_FILES)} (from {CELEBA_URL}); "
                    "set data_dir or $JOBKIT_DATA to the folder holding celeba/")
        if not (root / "img_align_celeba").is_dir():
            raise DataProblem("dataset", str(root / "img_align_celeba"), "no such directory", expected)
        missing = [f for f in CELEBA_FILES if not (root / f).is_file()]
        if missing:
            raise DataProblem("dataset", str(root / missing[0]), "no such file", expected)
        return
    file = Path(path).expanduser()
    if kind == "folder":
        expected = f"a directory holding image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        if not file.is_dir():
            raise DataProblem("dataset", str(file), "no such directory", expected)
        if not os.access(file, os.R_OK | os.X_OK):
            raise DataProblem("dataset", str(file), "not readable", expected)
        if next((p for p in file.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()), None) is None:
            raise DataProblem("dataset", str(file), "no image files under it", expected)
        return
    if not file.is_file():
        raise DataProblem("dataset", str(file), "no such file", NPY_EXPECTED)
    try:
        with open(file, "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(f))
    except OSError as exc:
        raise DataProblem("dataset", str(file), f"cannot be read ({exc.strerror})", NPY_EXPECTED) from None
    except ValueError as exc:
        raise DataProblem("dataset", str(file), f"not a .npy file ({str(exc).splitlines()[0]})", NPY_EXPECTED) from None
    if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))):
        raise DataProblem("dataset", str(file), f"shape {tuple(shape)}", NPY_EXPECTED)
    if 0 in shape[:3]:
        raise DataProblem("dataset", str(file), f"empty array, shape {tuple(shape)}", NPY_EXPECTED)
    if dtype.kind not in "buif":
        raise DataProblem("dataset", str(file), f"dtype {dtype}", NPY_EXPECTED)


def load_dataset(dataset: str, *, data_dir: str = "", val_size: int = 1000, workers: int = 4,
                 download: bool = False, image_size: int = SIZE) -> FaceData | SpritesData:
    """The dataset named by a `dataset` parameter; raises DatasetError with a one-line fix."""
    try:
        kind, path = parse_dataset(dataset)
    except ValueError as exc:
        raise DatasetError(f"dataset: {exc}") from None
    if kind == "sprites":
        return SpritesData(val_size, image_size)
    if kind == "celeba":
        return load_celeba(data_dir, val_size, workers, download)
    if kind == "npy":
        return load_npy(path, val_size)
    return load_folder(path, val_size, workers)
