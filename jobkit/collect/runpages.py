"""A large sweep's report keeps each run's detail out of index.html: one page per run under `runs/`,
and its curves, thinned, in `curves/` chunks the index loads only for the runs a person picks.

`runs/<run-id>.html`: the run's parameters, state, metrics, every logged scalar as an inline SVG
chart, its newest text samples and images, and what is missing. `curves/cNNNN.js`: CHUNK runs'
curves each, as `jobkitCurves(N, {...})` — a script, not JSON, so a page opened from a file (no
server: `fetch` of file:// is refused) can still load it with a `<script>` element.
"""
from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from jobkit import atomic
from jobkit.collect.format import PER_DIM, fmt_duration, fmt_value
from jobkit.collect.html import CSS
from jobkit.collect.plots import Series, line_chart
from jobkit.collect.scalars import Curve

CHUNK = 250  # runs per curves file: a pick of a few runs loads a few small files
CHUNK_POINTS = 120  # points per curve in the chunks (the run's own page draws up to plots.MAX_POINTS)
RUNS_DIR, CURVES_DIR = "runs", "curves"
STYLE = "style.css"  # beside the pages: one copy of the styles, not 10,000


def _e(v: Any) -> str:
    return escape("" if v is None else str(v))


def page_name(run_id: str) -> str:
    return f"{RUNS_DIR}/{run_id}.html"


def thin(curve: Curve, most: int) -> Curve:
    """At most `most` finite points, evenly spaced, the last one kept."""
    pts = [(s, v) for s, v in curve if math.isfinite(v)]
    if len(pts) <= most:
        return pts
    k = len(pts) / most
    picked = [pts[int(i * k)] for i in range(most - 1)]
    return picked + [pts[-1]]


def _short(v: float) -> float:
    return float(f"{v:.5g}")


def chunk_script(number: int, run_ids: list[str], curves: dict[str, dict[str, Curve]]) -> str:
    data = {}
    for rid in run_ids:
        tags = {}
        for tag, c in curves.get(rid, {}).items():
            if tag.startswith("hparam/") or PER_DIM.search(tag):
                continue
            pts = thin(c, CHUNK_POINTS)
            if pts:
                tags[tag] = [[s for s, _ in pts], [_short(v) for _, v in pts]]
        data[rid] = tags
    return f"jobkitCurves({number},{json.dumps(data, separators=(',', ':'))});\n"


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _charts(rec: dict[str, Any], curves: dict[str, Curve]) -> str:
    if not curves:
        return '<p class="na">No TensorBoard scalars yet.</p>'
    tags = [t for t in curves if not t.startswith("hparam/") and not PER_DIM.search(t)]
    out = []
    if "train/loss" in curves or "val/val_loss" in curves:
        series = [Series("train loss", curves.get("train/loss", []), rec["color"]),
                  Series("val loss", curves.get("val/val_loss", []), rec["color"], dashed=True, dots=True)]
        out.append("<figure>" + line_chart(series, title="train loss (solid) and validation loss (dashed)",
                                           y_label="loss", width=760, height=340) + "</figure>")
    for tag in tags:
        if tag in ("train/loss", "val/val_loss"):
            continue
        s = [Series(tag, curves[tag], rec["color"], dots=tag.startswith("val/"))]
        out.append("<figure>" + line_chart(s, title=tag, y_label=tag.split("/")[-1], width=420, height=260)
                   + "</figure>")
    return f'<div class="charts">{"".join(out)}</div>'


def _samples(rid: str, text: list[dict[str, Any]], step: int | None) -> str:
    if not text:
        return ""
    rows = "".join(f'<tr><td class="prompt"><div class="text">{_e(p["prompt"])}</div></td>'
                   f'<td><div class="text">{_e(p["by_run"].get(rid))}</div></td>'
                   f'<td class="truth"><div class="text">{_e(p["truth"])}</div></td></tr>' for p in text)
    return (f"<h2>Samples (step {_e(step)})</h2><div class=\"scroll\"><table class=\"samples\"><thead><tr>"
            f"<th>prompt</th><th>this run</th><th>true continuation</th></tr></thead><tbody>{rows}</tbody></table></div>")


def _images(images: dict[str, Any]) -> str:
    if not images:
        return ""
    figs = "".join(f'<figure><img src="../{_e(img["src"])}" alt="{_e(kind)}"><figcaption>{_e(kind)}</figcaption>'
                   f"</figure>" for kind, img in images.items())
    return f'<h2>Images</h2><div class="gallery grid">{figs}</div>'


def render_run(rec: dict[str, Any], summary: dict[str, Any], curves: dict[str, Curve],
               text: list[dict[str, Any]], text_step: int | None, images: dict[str, Any]) -> str:
    rid = rec["run_id"]
    metrics = [(f"final {k}", _e(fmt_value(v) if not isinstance(v, float) else f"{v:.5g}"))
               for k, v in rec.get("final", {}).items() if not PER_DIM.search(k)]
    metrics += [(f"best {k}", f'{b["value"]:.5g} <span class="small">@{b["step"]}</span>')
                for k, b in rec.get("best", {}).items()]
    state = f'<span class="badge s-{_e(rec["state"])}">{_e(rec["state"])}</span>'
    facts = [("state", state), ("steps", f'{rec["step"]} / {rec["total"] or "?"}'), ("workload", _e(rec["workload"])),
             ("time running", fmt_duration(rec.get("run_seconds")) if rec.get("attempts") else "—"),
             ("segments", _e(rec.get("segments", 0))), ("requeues", _e(rec.get("requeues", 0))),
             ("job", _e(rec.get("job_id"))), ("partition", _e(rec.get("partition"))),
             ("folder", f'<code>{_e(rec["path"])}</code>')]
    if rec.get("error"):
        facts.append(("error", _e(rec["error"])))
    if rec.get("convergence_note"):
        facts.append(("converged", _e(rec["convergence_note"])))
    params = [(k, _e(fmt_value(v))) for k, v in sorted(rec["params"].items())]
    missing = "".join(f"<li>{_e(m)}</li>" for m in rec.get("missing", []))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<title>{_e(rid)} — {_e(summary["sweep"])}</title><link rel="stylesheet" href="{STYLE}"></head><body>',
        f'<p class="meta"><a href="../index.html">← sweep {_e(summary["sweep"])}</a></p>',
        f'<h1><code>{_e(rid)}</code></h1><p class="meta">{_e(rec.get("label", ""))}</p>',
        f'<div class="charts"><table class="facts">{_rows(facts)}</table>',
        f'<table class="metrics">{_rows(metrics) or "<tr><td class=na>no metrics yet</td></tr>"}</table>',
        f'<table class="params">{_rows(params)}</table></div>',
        f'<section class="warn"><h2>Missing or in progress</h2><ul>{missing}</ul></section>' if missing else "",
        "<h2>Curves</h2>", _charts(rec, curves), _samples(rid, text, text_step), _images(images),
        f'<footer>Written by <code>jobkit collect</code> from <code>{_e(rec["path"])}</code>.</footer>',
        "</body></html>\n",
    ]
    return "\n".join(p for p in parts if p)


def _extras(summary: dict[str, Any]) -> tuple[dict[str, tuple[list, int | None]], dict[str, dict[str, Any]]]:
    """Per run: its newest text samples (prompts, step) and its images, from what the summary holds."""
    text: dict[str, tuple[list, int | None]] = {}
    for ts in summary.get("text_samples", {}).values():
        prompts = ts["latest"]["prompts"]
        for rid in ts["runs"]:
            text[rid] = ([p for p in prompts if rid in p["by_run"]], ts["latest"]["steps"].get(rid))
    images: dict[str, dict[str, Any]] = {}
    for grid in summary.get("image_grids", {}).values():
        for group in grid["groups"]:
            for e in group["runs"]:
                images[e["run_id"]] = e["images"]
    for rid, entry in summary.get("images", {}).items():
        images[rid] = entry["images"]
    return text, images


def write_all(out: Path, summary: dict[str, Any], curves: dict[str, dict[str, Curve]], order: list[str]) -> None:
    """Every run's page and the curve chunks (in `order`, the index's row order). Written without
    fsync: a report is rebuilt from the run folders at will, and 10,000 fsyncs take minutes."""
    by_id = {r["run_id"]: r for r in summary["runs"]}
    text, images = _extras(summary)
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True, mode=atomic.DIR_MODE)
    (out / CURVES_DIR).mkdir(parents=True, exist_ok=True, mode=atomic.DIR_MODE)
    atomic.write_text(out / RUNS_DIR / STYLE, CSS)
    for rid in order:
        t, step = text.get(rid, ([], None))
        page = render_run(by_id[rid], summary, curves.get(rid, {}), t, step, images.get(rid, {}))
        atomic.write_with(out / page_name(rid), lambda f, b=page.encode(): f.write(b), sync=False)
    for n in range(0, len(order), CHUNK):
        script = chunk_script(n // CHUNK, order[n:n + CHUNK], curves)
        atomic.write_with(out / CURVES_DIR / f"c{n // CHUNK:04d}.js", lambda f, b=script.encode(): f.write(b),
                          sync=False)
