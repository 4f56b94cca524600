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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobkit.collect.format import fmt_duration  # noqa: E402
from jobkit.collect.plots import Series, color, line_chart, standalone  # noqa: E402
from jobkit.collect.scalars import read_scalars  # noqa: E402
from jobkit.observe.runstate import RunSummary, summarize  # noqa: E402
from jobkit.plan.spec import JobSpec  # noqa: E402
from jobkit.state import State  # noqa: E402
from jobkit.store import RunDir  # noqa: E402

GAP = 8
COPY_MIN = 20  # characters: a verbatim match at least this long counts as copied text


@dataclass
class Run:
    """One run folder as the tables need it: its spec, what jobkit's status makes of its events
    (`summarize`: attempts, requeue reasons, time running, the converged event), its final metrics
    and its TensorBoard curves."""

    folder: RunDir
    spec: JobSpec
    summary: RunSummary
    metrics: dict
    curves: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def params(self) -> dict:
        return dict(self.spec.params)

    @property
    def label(self) -> str:
        p = self.params
        if self.spec.workload == "charlm":
            return p["model"] + ("" if p["model"] != "transformer" else f" (pos={p['pos']})")
        return f"{'sprites' if p['dataset'] == 'sprites' else 'faces'} β={p['beta']:g}"

    @property
    def converged(self) -> dict | None:
        return self.summary.converged

    @property
    def running(self) -> str:
        """Wall time inside jobs, summed over the run's segments."""
        return fmt_duration(self.summary.run_seconds)


def load(sweep: Path) -> list[Run]:
    runs = []
    for spec_path in sorted(sweep.glob("*/spec.json")):
        folder = RunDir(spec_path.parent)
        runs.append(Run(folder, folder.spec(), summarize(folder), folder.metrics(), read_scalars(folder.path / "tb")))
    return runs


# ------------------------------------------------------------------------------------------ tables

def schedule_table(runs: list[Run]) -> str:
    rows = ["| run | segments (jobs started) | requeues: segment end | requeues: preemption | wall time running | ended |",
            "|---|---|---|---|---|---|"]
    for r in runs:
        s, conv = r.summary, r.converged
        ended = f"converged at step {conv['best_step']} (stopped at {conv['step']})" if conv else \
            (f"step limit {r.params['steps']}" if s.state == State.COMPLETED else "not finished")
        rows.append(f"| {r.label} | {s.attempts} | {s.requeue_reasons.get('segment', 0)} "
                    f"| {s.requeue_reasons.get('preemption', 0)} | {r.running} | {ended} |")
    return "\n".join(rows)


def charlm_table(runs: list[Run]) -> str:
    rows = ["| model | shape | validation loss at the stop (nats/char) | bits per character | last improvement ≥ 0.5 % "
            "(step: loss) | stopped at step | wall time |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        p, conv = r.params, r.converged
        shape = {"lstm": f"{p['lstm_layers']}×{p['hidden']}", "tcn": f"{p['channels']} channels",
                 "transformer": f"{p['layers']}×{p['width']}, {p['heads']} heads"}[p["model"]]
        final = r.metrics.get("val_loss", math.nan)
        best = f"{conv['best_step']}: {conv['best']:.3f}" if conv else "— (step limit)"
        rows.append(f"| {r.label} | {shape} | {final:.3f} | {final / math.log(2):.3f} | {best} "
                    f"| {r.metrics.get('step')} | {r.running} |")
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


def data_dir() -> Path:
    """Where the workloads find tinyshakespeare and the faces: $JOBKIT_DATA, else ../shared/data."""
    return Path(os.environ.get("JOBKIT_DATA", ROOT.parent / "shared" / "data"))


def corpus(run: Run) -> tuple[str, str]:
    """(training text, validation text) of a charlm run, split as the workload splits it."""
    data = run.params["data"]
    path = data_dir() / "tinyshakespeare.txt" if data == "tinyshakespeare" else Path(data)
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


def copying(generated: str, train: str, grams: set[str]) -> tuple[float, int]:
    """(fraction of characters inside a ≥COPY_MIN verbatim match with the training text, longest
    match; 0 when none reaches COPY_MIN). `grams`: every COPY_MIN-character substring of `train`."""
    starts = [i for i in range(len(generated) - COPY_MIN + 1) if generated[i:i + COPY_MIN] in grams]
    covered = {j for i in starts for j in range(i, i + COPY_MIN)}
    longest = max((longest_in(generated, train, i) for i in starts), default=0)
    return len(covered) / max(1, len(generated)), longest


def continuations(run: Run, prompts: int, length: int) -> list[dict]:
    """`prompts` held-out prompts continued by the run's final weights (its own sampling settings)."""
    import torch

    from jobkit.plan import registry
    from jobkit.plan.params import from_dict

    cls = registry.load(run.spec.workload)
    params = from_dict(cls.Params, {**run.spec.workload_values, "num_prompts": prompts, "sample_len": length})
    workload = cls(params)
    with tempfile.TemporaryDirectory() as scratch:  # setup may write (a vocabulary); the run folder stays as it is
        workload.setup(Path(scratch), torch.device("cpu"))
    state, info = run.folder.load_checkpoint()
    workload.load_state_dict(state["workload"])
    return workload.samples(info.step)


def _longest(results: list[tuple[float, int]]) -> str:
    n = max(length for _, length in results)
    return str(n) if n else f"< {COPY_MIN}"


def copying_table(runs: list[Run], prompts: int = 32, length: int = 200) -> str:
    rows = [f"| model | characters inside a verbatim training-text match of ≥ {COPY_MIN} | longest match "
            "| the book's own continuations: same measure |", "|---|---|---|---|"]
    texts: dict[tuple, tuple[str, set[str]]] = {}  # runs on the same corpus and split share one n-gram set
    for r in runs:
        key = (r.params["data"], r.params.get("lowercase"), r.params["val_fraction"])
        if key not in texts:
            train, _ = corpus(r)
            texts[key] = (train, {train[i:i + COPY_MIN] for i in range(len(train) - COPY_MIN + 1)})
        train, grams = texts[key]
        samples = continuations(r, prompts, length)
        gen = [copying(s["generated"], train, grams) for s in samples]
        truth = [copying(s["truth"], train, grams) for s in samples]
        rows.append(f"| {r.label} | {100 * sum(g[0] for g in gen) / len(gen):.1f} % | {_longest(gen)} "
                    f"| {100 * sum(t[0] for t in truth) / len(truth):.1f} % (longest {_longest(truth)}) |")
    return f"{prompts} prompts × {length} characters each, final weights, temperature of the run\n\n" + "\n".join(rows)


def vae_table(runs: list[Run]) -> str:
    factors = ("shape", "scale", "orientation", "posX", "posY")
    rows = ["| β | MIG | " + " | ".join(factors) + " | active latents | KL (nats) | reconstruction (nats) "
            "| rotation latent: MI with orientation (2nd best) | best at step | stopped at step |",
            "|---|---|" + "---|" * len(factors) + "---|---|---|---|---|---|"]
    for r in runs:
        last = sorted((r.path / "samples").glob("step-*.json"))[-1]
        s = json.loads(last.read_text())
        conv = r.converged
        per = s.get("mig_per_factor") or {}
        mi = sorted(s.get("orientation_mi") or [], reverse=True)
        rot = f"dim {s['rotation_dim']}: {mi[0]:.3f} ({mi[1]:.3f})" if len(mi) > 1 else "—"
        mig = "—" if s["mig"] is None else f"{s['mig']:.3f}"
        rows.append(f"| {r.params['beta']:g} | {mig} | " + " | ".join(f"{per.get(f, math.nan):.3f}" for f in factors)
                    + f" | {s['active_units']} | {r.metrics.get('kl', math.nan):.1f} | {r.metrics.get('recon', math.nan):.1f} "
                    f"| {rot} | {conv['best_step'] if conv else '—'} | {conv['step'] if conv else s['step']} |")
    return "\n".join(rows)


def faces_table(runs: list[Run]) -> str:
    rows = ["| β | active latents | KL (nats) | reconstruction (nats) | held-out loss: best (step) | stopped at step |",
            "|---|---|---|---|---|---|"]
    for r in runs:
        conv = r.converged
        best = f"{conv['best']:.1f} ({conv['best_step']})" if conv else "—"
        rows.append(f"| {r.params['beta']:g} | {int(r.metrics.get('active_units', 0))} | {r.metrics.get('kl', math.nan):.1f} "
                    f"| {r.metrics.get('recon', math.nan):.1f} | {best} | {r.metrics.get('step')} |")
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


def main(sweep: Path, out: Path, copy_prompts: int = 32) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = load(sweep)
    order = {"lstm": 0, "tcn": 1, "transformer": 2}
    lms = sorted((r for r in runs if r.spec.workload == "charlm"),
                 key=lambda r: (order[r.params["model"]], r.params["pos"] != "learned"))
    vaes = sorted((r for r in runs if r.spec.workload == "vae"),
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
        print("## Copying\n\n" + copying_table(lms, prompts=copy_prompts) + "\n")
    if sprites:
        print("## Sprites\n\n" + vae_table(sprites) + "\n")
    if faces:
        print("## Faces\n\n" + faces_table(faces) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python docs/figures.py RUNS/SWEEP IMAGE_FOLDER")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
