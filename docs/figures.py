"""Assemble docs/RESULTS.md's pictures from a finished sweep's run folders (small PNGs, side by side).

    python docs/figures.py /work/results/runs/seed-cpu docs/img
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

GAP = 8


def _label(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 16), "white")
    out.paste(img.convert("RGB"), (0, 16))
    ImageDraw.Draw(out).text((2, 2), text, fill="black")
    return out


def side_by_side(images: list[tuple[str, Path]], dest: Path, width: int | None = None) -> None:
    tiles = []
    for label, path in images:
        img = Image.open(path)
        if width and img.width > width:
            img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        tiles.append(_label(img, label))
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + GAP * (len(tiles) - 1),
                               max(t.height for t in tiles)), "white")
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + GAP
    canvas.save(dest, optimize=True)


def vae_runs(sweep: Path, dataset_part: str) -> list[tuple[float, Path]]:
    runs = []
    for spec_path in sweep.glob("vae-*/spec.json"):
        spec = json.loads(spec_path.read_text())
        if dataset_part in spec["params"]["dataset"]:
            runs.append((float(spec["params"]["beta"]), spec_path.parent))
    return sorted(runs)


def last_step(run: Path, kind: str) -> Path:
    return sorted(run.glob(f"samples/step-*-{kind}.png"))[-1]


def main(sweep: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("sprites", "sprites"), ("faces", "npy:")):
        runs = vae_runs(sweep, part)
        for kind, width in (("prior", 200), ("traversal", 240), ("rotation", 360)):
            side_by_side([(f"beta={b:g}", last_step(r, kind)) for b, r in runs], out / f"{name}-{kind}.png", width)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
