"""Rebuild docs/RESULTS.md's pictures and tables from its finished sweep (second edition).

    python docs/figures.py RUNS/converge-cpu docs/img > /tmp/results-tables.md

Writes into the image folder: the character models' validation curves (`charlm-val.svg`), MIG per
step per β on sprites (`sprites-mig.svg`), and per dataset the prior samples, traversals and rotation
strips of every β side by side (`sprites-*.png`, `faces-*.png`). Prints, as markdown, every table
RESULTS.md quotes: what the scheduler did to each run, the character models at their plateau,
samples early / middle / converged, how much of each Transformer's text is copied from the training
text, and the β-VAEs' MIG with its per-factor breakdown. Reads only the run folders (spec.json,
events.jsonl, metrics.json, samples/, tb/) and, for the copying measure, the corpus under $JOBKIT_DATA.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobkit.collect.plots import Series, color, line_chart, standalone  # noqa: E402
from jobkit.collect.scalars import read_scalars  # noqa: E402

GAP = 8
COPY_MIN = 20  # characters: a verbatim match at least this long counts as copied text


@dataclass
class Run:
    path: Path
    spec: dict
    events: list[dict]
    metrics: dict
    curves: dict = field(default_factory=dict)

    @property
    def params(self) -> dict:
        return self.spec["params"]

    @property
    def label(self) -> str:
        p = self.params
        if self.spec["workload"] == "charlm":
            return p["model"] + ("" if p["model"] != "transformer" else f" (pos={p['pos']})")
        return f"{'sprites' if p['dataset'] == 'sprites' else 'faces'} β={p['beta']:g}"

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == kind]


def load(sweep: Path) -> list[Run]:
    runs = []
    for spec_path in sorted(sweep.glob("*/spec.json")):
        folder = spec_path.parent
        events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines() if line.strip()]
        metrics_path = folder / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        runs.append(Run(folder, json.loads(spec_path.read_text()), events, metrics, read_scalars(folder / "tb")))
    return runs


def minutes_running(run: Run) -> float:
    """Wall time inside jobs: each `started` to the next event that ends that attempt."""
    total, start = 0.0, None
    for e in run.events:
        if e["event"] == "started":
            start = e["t"]
        elif start is not None and e["event"] in ("requeued", "finished", "failed", "timeout", "stopped"):
            total += e["t"] - start
            start = None
    return total / 60


def fmt_minutes(m: float) -> str:
    return f"{int(m)}m{round((m - int(m)) * 60):02d}s"


# ------------------------------------------------------------------------------------------ tables

def schedule_table(runs: list[Run]) -> str:
    rows = ["| run | segments (jobs started) | requeues: segment end | requeues: preemption | wall time running | ended |",
            "|---|---|---|---|---|---|"]
    for r in runs:
        requeues = r.of("requeued")
        conv = r.of("converged")
        ended = f"converged at step {conv[-1]['best_step']} (stopped at {conv[-1]['step']})" if conv else \
            (f"step limit {r.params['steps']}" if r.of("finished") else "not finished")
        rows.append(f"| {r.label} | {len(r.of('started'))} | {sum(e.get('reason') == 'segment' for e in requeues)} "
                    f"| {sum(e.get('reason') == 'preemption' for e in requeues)} "
                    f"| {fmt_minutes(minutes_running(r))} | {ended} |")
    return "\n".join(rows)


def charlm_table(runs: list[Run]) -> str:
    rows = ["| model | shape | validation loss (nats/char) | bits per character | best at step | stopped at step | wall time |",
            "|---|---|---|---|---|---|---|"]
    for r in runs:
        p, conv = r.params, r.of("converged")
        shape = {"lstm": f"{p['lstm_layers']}×{p['hidden']}", "tcn": f"{p['channels']} channels",
                 "transformer": f"{p['layers']}×{p['width']}, {p['heads']} heads"}[p["model"]]
        best = conv[-1]["best"] if conv else r.metrics.get("val_loss", math.nan)
        best_step = conv[-1]["best_step"] if conv else r.metrics.get("step")
        stop = conv[-1]["step"] if conv else r.metrics.get("step")
        rows.append(f"| {r.label} | {shape} | {best:.3f} | {best / math.log(2):.3f} | {best_step} | {stop} "
                    f"| {fmt_minutes(minutes_running(r))} |")
    return "\n".join(rows)


def _one_line(text: str, n: int = 90) -> str:
    return text[:n].replace("\n", "↵").replace("|", "¦").replace("`", "'")


def samples_table(runs: list[Run], prompt: int = 0) -> str:
    """Prompt `prompt` continued by each model at its first, middle and last sample point."""
    out = []
    for r in runs:
        files = sorted((r.path / "samples").glob("step-*.json"))
        if not files:
            continue
        picks = [files[0], files[len(files) // 2], files[-1]]
        first = json.loads(picks[0].read_text())["samples"][prompt]
        out.append(f"**{r.label}** — prompt `{_one_line(first['prompt'])}` · the book: `{_one_line(first['truth'])}`\n")
        out.append("| step | generated |\n|---|---|")
        for f in picks:
            s = json.loads(f.read_text())
            out.append(f"| {s['step']} | `{_one_line(s['samples'][prompt]['generated'])}` |")
        out.append("")
    return "\n".join(out)


def corpus(run: Run) -> tuple[str, str]:
    """(training text, validation text) of a charlm run, split as the workload splits it."""
    data = run.params["data"]
    path = Path(os.environ.get("JOBKIT_DATA", ROOT.parent / "shared" / "data")) / "tinyshakespeare.txt" \
        if data == "tinyshakespeare" else Path(data)
    text = path.read_text(encoding="utf-8")
    if run.params.get("lowercase"):
        text = text.lower()
    cut = int(len(text) * (1 - run.params["val_fraction"]))
    return text[:cut], text[cut:]


def longest_in(text: str, haystack: str, start: int) -> int:
    """Length of the longest prefix of text[start:] that occurs verbatim in `haystack`."""
    lo, hi = 0, len(text) - start
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text[start:start + mid] in haystack:
            lo = mid
        else:
            hi = mid - 1
    return lo


def copying(generated: str, train: str) -> tuple[float, int]:
    """(fraction of characters inside a ≥COPY_MIN verbatim match with the training text, longest match)."""
    covered = [False] * len(generated)
    longest = 0
    for i in range(len(generated)):
        n = longest_in(generated, train, i)
        longest = max(longest, n)
        if n >= COPY_MIN:
            for j in range(i, i + n):
                covered[j] = True
    return sum(covered) / max(1, len(generated)), longest


def copying_table(runs: list[Run]) -> str:
    rows = [f"| model | samples | characters in a verbatim training-text match of ≥ {COPY_MIN} | longest match | "
            "same measure for the book's own continuation |", "|---|---|---|---|---|"]
    for r in runs:
        train, _ = corpus(r)
        last = sorted((r.path / "samples").glob("step-*.json"))[-1]
        samples = json.loads(last.read_text())["samples"]
        gen = [copying(s["generated"], train) for s in samples]
        truth = [copying(s["truth"], train) for s in samples]
        rows.append(f"| {r.label} | {len(samples)} at step {json.loads(last.read_text())['step']} "
                    f"| {100 * sum(g[0] for g in gen) / len(gen):.0f} % | {max(g[1] for g in gen)} "
                    f"| {100 * sum(t[0] for t in truth) / len(truth):.0f} % (longest {max(t[1] for t in truth)}) |")
    return "\n".join(rows)


def vae_table(runs: list[Run]) -> str:
    factors = ("shape", "scale", "orientation", "posX", "posY")
    rows = ["| β | MIG | " + " | ".join(factors) + " | active latents | KL (nats) | reconstruction (nats) "
            "| rotation latent: MI with orientation (2nd best) | best at step | stopped at step |",
            "|---|---|" + "---|" * len(factors) + "---|---|---|---|---|---|"]
    for r in runs:
        last = sorted((r.path / "samples").glob("step-*.json"))[-1]
        s = json.loads(last.read_text())
        conv = r.of("converged")
        per = s.get("mig_per_factor") or {}
        mi = sorted(s.get("orientation_mi") or [], reverse=True)
        rot = f"dim {s['rotation_dim']}: {mi[0]:.3f} ({mi[1]:.3f})" if len(mi) > 1 else "—"
        mig = "—" if s["mig"] is None else f"{s['mig']:.3f}"
        rows.append(f"| {r.params['beta']:g} | {mig} | " + " | ".join(f"{per.get(f, math.nan):.3f}" for f in factors)
                    + f" | {s['active_units']} | {r.metrics.get('kl', math.nan):.1f} | {r.metrics.get('recon', math.nan):.1f} "
                    f"| {rot} | {conv[-1]['best_step'] if conv else '—'} | {conv[-1]['step'] if conv else s['step']} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------- figures

def curve_figure(runs: list[Run], tag: str, dest: Path, title: str, y_label: str) -> None:
    series = [Series(r.label, r.curves.get(tag, []), color(i), dots=True) for i, r in enumerate(runs)]
    dest.write_text(standalone(line_chart(series, title=title, y_label=y_label, log_y=False),
                               [r.label for r in runs]))


def _label(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 16), "white")
    out.paste(img.convert("RGB"), (0, 16))
    ImageDraw.Draw(out).text((2, 2), text, fill="black")
    return out


def side_by_side(images: list[tuple[str, Path]], dest: Path, width: int | None = None) -> None:
    tiles = []
    for label, path in images:
        img = Image.open(path)
        if width and img.width != width:
            img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        tiles.append(_label(img, label))
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + GAP * (len(tiles) - 1),
                               max(t.height for t in tiles)), "white")
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + GAP
    canvas.save(dest, optimize=True)


def last_picture(run: Run, kind: str) -> Path:
    return sorted(run.path.glob(f"samples/step-*-{kind}.png"))[-1]


def main(sweep: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = load(sweep)
    order = {"lstm": 0, "tcn": 1, "transformer": 2}
    lms = sorted((r for r in runs if r.spec["workload"] == "charlm"),
                 key=lambda r: (order[r.params["model"]], r.params["pos"] != "learned"))
    vaes = sorted((r for r in runs if r.spec["workload"] == "vae"),
                  key=lambda r: (r.params["dataset"] != "sprites", r.params["beta"]))
    sprites = [r for r in vaes if r.params["dataset"] == "sprites"]
    faces = [r for r in vaes if r.params["dataset"] != "sprites"]
    if lms:
        curve_figure(lms, "val/val_loss", out / "charlm-val.svg",
                     "Character models: validation loss (held-out text)", "nats/char")
    if sprites:
        curve_figure(sprites, "val/mig", out / "sprites-mig.svg", "Sprites: MIG per β", "MIG")
    for name, group in (("sprites", sprites), ("faces", faces)):
        if group:
            for kind, width in (("prior", 200), ("traversal", 240), ("rotation", 360)):
                side_by_side([(f"beta={r.params['beta']:g}", last_picture(r, kind)) for r in group],
                             out / f"{name}-{kind}.png", width)
    print("## What the scheduler did\n\n" + schedule_table(lms + vaes) + "\n")
    if lms:
        print("## Character models\n\n" + charlm_table(lms) + "\n")
        print("## Samples\n\n" + samples_table(lms))
        transformers = [r for r in lms if r.params["model"] == "transformer"]
        if transformers:
            print("## Copying\n\n" + copying_table(transformers) + "\n")
    if sprites:
        print("## Sprites\n\n" + vae_table(sprites) + "\n")
    if faces:
        print("## Faces\n\n" + vae_table(faces) + "\n")  # no factors: MIG and rotation columns stay empty


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python docs/figures.py RUNS/SWEEP IMAGE_FOLDER")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
