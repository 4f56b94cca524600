"""The report page: one self-contained HTML file (inline CSS and SVG, images beside it under img/).

No JavaScript and no network: it opens from a file, an archive or a mail attachment alike.
"""
from __future__ import annotations

import math
from html import escape
from typing import Any

from jobkit.collect.format import PER_DIM, fmt_duration, fmt_value, is_detail
from jobkit.collect.plots import Series, bar_chart, line_chart
from jobkit.collect.scalars import Curve
from jobkit.state import State

CSS = """
:root { --fg:#1b1f24; --muted:#57606a; --line:#d0d7de; --bg:#ffffff; --soft:#f6f8fa; --warn:#fff8c5; --warnline:#d4a72c; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 22px 0 8px; } h4 { font-size: 14px; margin: 16px 0 6px; color: var(--muted); }
.meta { color: var(--muted); margin: 0 0 12px; } .meta code { font-size: 12px; }
nav a { margin-right: 14px; } a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: var(--soft); border: 1px solid var(--line); }
.s-COMPLETED { background: #dafbe1; border-color: #4ac26b; } .s-RUNNING, .s-REQUEUED { background: #ddf4ff; border-color: #54aeff; }
.s-FAILED, .s-UNREADABLE, .s-TIMEOUT, .s-OUT_OF_MEMORY, .s-NODE_FAIL { background: #ffebe9; border-color: #ff8182; }
.s-CANCELLED, .s-PREEMPTED, .s-STOPPED { background: #eaeef2; } .s-PENDING, .s-NEW { background: #fff8c5; border-color: #d4a72c; }
.warn { background: var(--warn); border: 1px solid var(--warnline); border-radius: 6px; padding: 8px 16px; margin: 12px 0; }
.warn h2 { border: 0; margin: 6px 0; font-size: 16px; } .warn ul { margin: 4px 0 8px; padding-left: 20px; }
.ok { background: #dafbe1; border: 1px solid #4ac26b; border-radius: 6px; padding: 8px 16px; margin: 12px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; } td.num, th.num { text-align: right; white-space: nowrap; }
tr.err td { background: #fff5f5; } td.run { white-space: nowrap; } .small { font-size: 12px; color: var(--muted); }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; max-width: 720px; }
svg.chart { background: #fff; max-width: 100%; height: auto; }
svg.chart .title { font-size: 13px; font-weight: 600; fill: var(--fg); }
svg.chart .tick { font-size: 11px; fill: var(--muted); } svg.chart .axis { font-size: 12px; fill: var(--muted); }
svg.chart .grid { stroke: #eaeef2; stroke-width: 1; } svg.chart .plot { fill: none; stroke: var(--line); }
svg.chart .empty { font-size: 13px; fill: var(--muted); font-style: italic; }
svg.chart g.series:hover polyline { stroke-width: 3.2; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; margin: 6px 0 0; }
.legend .key { white-space: nowrap; } .dash { display: inline-block; width: 22px; border-top: 2px solid var(--fg); vertical-align: 3px; margin: 0 4px; }
.dash.val { border-top-style: dashed; }
table.samples td { min-width: 220px; max-width: 420px; } table.samples td.prompt { background: var(--soft); }
table.samples td.truth { background: #f0fff4; }
.text { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
.na { color: var(--muted); font-style: italic; }
.gallery { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.gallery figure { border: 1px solid var(--line); border-radius: 6px; padding: 6px; background: var(--soft); }
.gallery figcaption { font-size: 12.5px; color: var(--fg); font-weight: 600; }
.gallery .cap2 { font-weight: 400; color: var(--muted); }
.gallery img { display: block; image-rendering: pixelated; height: auto; background: #000; }
.grid img, .grid .placeholder { width: 224px; } .wide img, .wide .placeholder { width: 420px; }
.strip { display: block; } .strip figure { margin-bottom: 10px; }
.strip img, .strip .placeholder { max-width: 100%; width: 900px; }
.placeholder { display: flex; align-items: center; justify-content: center; width: 224px; height: 224px;
               color: var(--muted); font-style: italic; border: 1px dashed var(--line); background: #fff; }
details > summary { cursor: pointer; margin: 8px 0; font-weight: 600; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _e(v: Any) -> str:
    return escape("" if v is None else str(v))


def _badge(state: str) -> str:
    return f'<span class="badge s-{_e(state)}">{_e(state)}</span>'


def _swatch(col: str) -> str:
    return f'<span class="swatch" style="background:{_e(col)}"></span>'


def _metric(v: Any) -> str:
    if v is None:
        return '<span class="na">—</span>'
    if isinstance(v, float) and not math.isfinite(v):
        return _e(v)
    return _e(fmt_value(v) if not isinstance(v, float) else f"{v:.4g}")


def render_html(summary: dict[str, Any], curves: dict[str, dict[str, Curve]]) -> str:
    runs = {r["run_id"]: r for r in summary["runs"]}
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(summary['sweep'])} — jobkit report</title>", f"<style>{CSS}</style></head><body>",
        f"<h1>Sweep <code>{_e(summary['sweep'])}</code></h1>",
        _meta(summary),
        _nav(summary),
        _missing(summary),
        '<section id="runs"><h2>Runs</h2>',
    ]
    for w, info in summary["workloads"].items():
        if len(summary["workloads"]) > 1:
            parts.append(f"<h3>{_e(w)}</h3>")
        parts.append(_runs_table([runs[r] for r in info["runs"]], info))
    parts.append("</section>")
    parts.append('<section id="curves"><h2>Curves</h2>')
    for w, info in summary["workloads"].items():
        parts.append(_curves(w, [runs[r] for r in info["runs"]], info, curves))
    parts.append("</section>")
    for w, ts in summary.get("text_samples", {}).items():
        parts.append(_text_samples(w, ts, runs))
    for w, grid in summary.get("image_grids", {}).items():
        parts.append(_image_grid(w, grid, summary["workloads"][w]["layout"]))
    if summary.get("images"):
        parts.append(_other_images(summary["images"], runs))
    parts.append('<footer>Written by <code>jobkit collect</code> from the run folders under '
                 f'<code>{_e(summary["root"])}</code>. Machine-readable: <a href="summary.json">summary.json</a>; '
                 'text: <a href="summary.md">summary.md</a>. Curves are read from each run\'s TensorBoard '
                 'files (<code>jobkit tb ' + _e(summary["sweep"]) + '</code> opens them live).</footer>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _meta(summary: dict[str, Any]) -> str:
    states = " ".join(f'{_badge(s)} {n}' for s, n in sorted(summary["counts"]["states"].items()))
    return (f'<p class="meta">{summary["counts"]["runs"]} runs · {states} · generated {_e(summary["generated"])} '
            f'from <code>{_e(summary["root"])}</code></p>')


def _nav(summary: dict[str, Any]) -> str:
    links = ['<a href="#runs">Runs</a>', '<a href="#curves">Curves</a>']
    for w in summary.get("text_samples", {}):
        links.append(f'<a href="#samples-{_e(w)}">Samples ({_e(w)})</a>')
    for w in summary.get("image_grids", {}):
        links.append(f'<a href="#images-{_e(w)}">Images ({_e(w)})</a>')
    if summary.get("images"):
        links.append('<a href="#images">Images</a>')
    if summary["missing"]:
        links.append(f'<a href="#missing">Missing ({len(summary["missing"])})</a>')
    return "<nav>" + "".join(links) + "</nav>"


def _missing(summary: dict[str, Any]) -> str:
    items = summary["missing"]
    if not items:
        return '<div class="ok" id="missing">Every run finished and every expected file is here.</div>'
    lis = "".join(f"<li>{_e(m)}</li>" for m in items)
    head = f"Missing or still in progress ({len(items)})"
    if len(items) > 15:
        return f'<section class="warn" id="missing"><details><summary>{head}</summary><ul>{lis}</ul></details></section>'
    return f'<section class="warn" id="missing"><h2>{head}</h2><ul>{lis}</ul></section>'


def _runs_table(recs: list[dict[str, Any]], info: dict[str, Any]) -> str:
    keys, metrics = info["key_params"], info["metrics"]
    head = ["<th>run</th>"] + [f"<th>{_e(k)}</th>" for k in keys] + [
        "<th>state</th>", '<th class="num">steps</th>']
    best = _any_best(recs, info)
    for m in metrics:
        if m in best:
            head.append(f'<th class="num">best {_e(m)}</th>')
        head.append(f'<th class="num">{"final " if m in best else ""}{_e(m)}</th>')
    head += ['<th class="num">time</th>', '<th class="num">segments</th>', '<th class="num">requeues</th>']
    rows = []
    for r in recs:
        cells = [f'<td class="mono run">{_swatch(r["color"])}{_e(r["run_id"])}</td>']
        cells += [f"<td>{_e(fmt_value(r['key_values'].get(k)))}</td>" for k in keys]
        title = f' title="{_e(r["error"])}"' if r.get("error") else ""
        conv = f'<br><span class="small">{_e(r["convergence_note"])}</span>' if r.get("convergence_note") else ""
        cells.append(f"<td{title}>{_badge(r['state'])}{conv}</td>")
        cells.append(f'<td class="num">{r["step"]} / {r["total"] or "?"}</td>')
        for m in metrics:
            if m in best:
                b = r.get("best", {}).get(m)
                at = f' <span class="small">@{b["step"]}</span>' if b else ""
                cells.append(f'<td class="num">{_metric(b["value"] if b else None)}{at}</td>')
            cells.append(f'<td class="num">{_metric(r.get("final", {}).get(m))}</td>')
        reasons = ", ".join(f"{k}×{v}" for k, v in r.get("requeue_reasons", {}).items())
        why = f' <span class="small">({_e(reasons)})</span>' if reasons else ""
        used = fmt_duration(r.get("run_seconds")) if r.get("attempts") else "—"
        cells += [f'<td class="num">{used}</td>',
                  f'<td class="num">{r.get("segments", r.get("attempts", 0))}</td>',
                  f'<td class="num">{r.get("requeues", 0)}{why}</td>']
        cls = ' class="err"' if r["state"] in (State.FAILED, State.UNREADABLE) else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
        if r.get("error"):
            rows.append(f'<tr class="err"><td colspan="{len(cells)}" class="small">{_e(r["run_id"])}: '
                        f'{_e(r["error"])}</td></tr>')
    higher = [m["title"] for m in info["layout"]["headline"] if m["higher_is_better"]]
    exception = f" (highest for {', '.join(higher)})" if higher else ""
    note = (f'<p class="small">best = the lowest validation value logged during training{_e(exception)}, '
            'with its step; final = metrics.json, or the newest logged value while a run is running; '
            'time = wall time spent running, over all segments.</p>')
    return f'<div class="scroll"><table><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{note}'


def _any_best(recs: list[dict[str, Any]], info: dict[str, Any]) -> set[str]:
    """The workload's headline metrics that some run logged during training: they get a "best" column."""
    headline = {m["name"] for m in info["layout"]["headline"]}
    return {m for r in recs for m in r.get("best", {}) if m in headline}


def _legend(recs: list[dict[str, Any]], styles: bool = True) -> str:
    keys = []
    for r in recs:
        label = f" ({_e(r['label'])})" if r["label"] != r["run_id"] else ""
        keys.append(f'<span class="key">{_swatch(r["color"])}<span class="mono">{_e(r["run_id"])}</span>{label}</span>')
    if styles:
        keys.append('<span class="key"><span class="dash"></span>train <span class="dash val"></span>validation</span>')
    return f'<div class="legend">{"".join(keys)}</div>'


def _curves(w: str, recs: list[dict[str, Any]], info: dict[str, Any], curves: dict[str, dict[str, Curve]]) -> str:
    series = []
    for r in recs:
        c = curves.get(r["run_id"], {})
        series.append(Series(f"{r['run_id']} train loss", c.get("train/loss", []), r["color"]))
        series.append(Series(f"{r['run_id']} val loss", c.get("val/val_loss", []), r["color"], dashed=True, dots=True))
    parts = [f"<h3>{_e(w)}: loss</h3>",
             '<figure>' + line_chart(series, title=f"{w}: train loss (solid) and validation loss (dashed)",
                                     y_label="loss", width=860, height=380) + _legend(recs) + "</figure>"]
    tags = [t for t in info["tags"] if not t.startswith("hparam/") and not PER_DIM.search(t)]
    val_tags = [t for t in tags if t.startswith("val/") and t != "val/val_loss" and not is_detail(t, tags)]
    other_tags = [t for t in tags if t not in val_tags and t not in ("train/loss", "val/val_loss")]
    if val_tags:
        charts = []
        for tag in val_tags:
            s = [Series(r["run_id"], curves.get(r["run_id"], {}).get(tag, []), r["color"], dots=True) for r in recs]
            charts.append("<figure>" + line_chart(s, title=tag, y_label=tag.split("/", 1)[1], width=420, height=260)
                          + "</figure>")
        parts.append(f'<h4>{_e(w)}: other validation metrics</h4><div class="charts">{"".join(charts)}</div>')
    if other_tags:
        charts = []
        for tag in other_tags:
            s = [Series(r["run_id"], curves.get(r["run_id"], {}).get(tag, []), r["color"]) for r in recs]
            charts.append("<figure>" + line_chart(s, title=tag, y_label=tag.split("/")[-1], width=420, height=260)
                          + "</figure>")
        parts.append(f'<details><summary>{_e(w)}: other logged scalars ({len(other_tags)})</summary>'
                     f'<div class="charts">{"".join(charts)}</div></details>')
    per_dim = [t for t in info["tags"] if PER_DIM.search(t) and not t.startswith("hparam/")]
    if per_dim:
        parts.append(f'<p class="small">{len(per_dim)} per-dimension tags ({_e(", ".join(per_dim[:4]))}'
                     f'{", …" if len(per_dim) > 4 else ""}) are left to TensorBoard.</p>')
    return "\n".join(parts)


def _sample_table(prompts: list[dict[str, Any]], run_ids: list[str], runs: dict[str, dict[str, Any]],
                  steps: dict[str, int] | None = None) -> str:
    head = ["<th>prompt</th>"]
    for rid in run_ids:
        r = runs[rid]
        at = f" · step {steps[rid]}" if steps and rid in steps else ""
        head.append(f"<th>{_swatch(r['color'])}{_e(r['label'])}<br><span class=\"small mono\">{_e(rid)}{_e(at)}"
                    f"</span></th>")
    head.append("<th>true continuation</th>")
    rows = []
    for p in prompts:
        cells = [f'<td class="prompt"><div class="text">{_e(p["prompt"])}</div></td>']
        for rid in run_ids:
            text = p["by_run"].get(rid)
            cells.append(f'<td><div class="text">{_e(text)}</div></td>' if text is not None
                         else '<td><span class="na">no sample for this prompt</span></td>')
        cells.append(f'<td class="truth"><div class="text">{_e(p["truth"])}</div></td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table class="samples"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _text_samples(w: str, ts: dict[str, Any], runs: dict[str, dict[str, Any]]) -> str:
    run_ids = ts["runs"]
    without = [rid for rid, r in runs.items() if r["workload"] == w and rid not in run_ids]
    parts = [f'<section id="samples-{_e(w)}"><h2>Samples: {_e(w)}</h2>',
             '<p class="small">Each prompt is text the models did not train on; every run continues it, '
             'and the last column is what the text really says next.</p>']
    if without:
        parts.append(f'<p class="small">No text samples yet from: {_e(", ".join(without))}.</p>')
    parts.append("<h3>Newest samples of each run</h3>")
    parts.append(_sample_table(ts["latest"]["prompts"], run_ids, runs, ts["latest"]["steps"]))
    if len(ts["steps"]) > 0:
        parts.append("<h3>By sample step</h3>")
        for st in ts["steps"]:
            missing = [rid for rid in run_ids if rid not in st["runs"]]
            note = f" — not yet from {len(missing)} run(s)" if missing else ""
            parts.append(f"<details><summary>step {st['step']}{_e(note)}</summary>"
                         + _sample_table(st["prompts"], run_ids, runs) + "</details>")
    parts.append("</section>")
    return "\n".join(parts)


def _img(img: dict[str, Any] | None, alt: str, like: dict[str, Any] | None = None) -> str:
    """The image, or a placeholder shaped like `like` (a sibling image of the same kind)."""
    if not img:
        shape = ""
        if like and like.get("width") and like.get("height"):
            shape = f' style="aspect-ratio: {like["width"]} / {like["height"]}; height: auto"'
        return f'<div class="placeholder"{shape}>not written yet</div>'
    wh = f' width="{img["width"]}" height="{img["height"]}"' if img.get("width") else ""
    return f'<img src="{_e(img["src"])}"{wh} alt="{_e(alt)}">'


def _image_grid(w: str, grid: dict[str, Any], layout: dict[str, Any]) -> str:
    titles = {k["name"]: (k["title"], k["layout"]) for k in layout["images"]}
    symbol = layout["compare_label"] or layout["compare_by"] or "run"
    metrics = layout["headline"]
    chart = next((m for m in metrics if m["name"] == layout["chart"]), None)
    parts = [f'<section id="images-{_e(w)}"><h2>{_e(w)}: images per {_e(symbol)}</h2>']
    for group in grid["groups"]:
        entries = group["runs"]
        if grid["group_by"]:
            parts.append(f'<h3>{_e(grid["group_by"])} <code>{_e(group["group"])}</code> — {len(entries)} run(s)</h3>')
        for n, kind in enumerate(grid["kinds"]):
            if n and not any(kind in e["images"] for e in entries):
                continue  # a kind nobody wrote yet; the first kind always shows, with placeholders
            title, cls = titles.get(kind, (kind, "grid"))
            figs = []
            like = next((e["images"][kind] for e in entries if kind in e["images"]), None)
            for e in entries:
                step = f"step {e['step']}" if e["step"] is not None else "no samples yet"
                value = e["metrics"].get(chart["name"]) if chart else None
                shown = f" · {chart['title']} {value:.3f}" if isinstance(value, (int, float)) else ""
                alt = f"{kind} {e['label']} {e['run_id']}"
                state = "" if e["state"] == State.COMPLETED else " · " + e["state"]
                figs.append(f'<figure>{_img(e["images"].get(kind), alt, like)}'
                            f'<figcaption>{_swatch(e["color"])}{_e(e["label"])} <span class="cap2">{_e(step)}{_e(shown)}'
                            f'{_e(state)}<br><span class="mono">{_e(e["run_id"])}</span></span></figcaption></figure>')
            parts.append(f'<h4>{_e(title)}</h4><div class="gallery {_e(cls)}">{"".join(figs)}</div>')
        head = "".join(f'<th class="num">{_e(m["title"])}</th>' for m in metrics)
        rows = "".join(
            f'<tr><td>{_swatch(e["color"])}{_e(e["label"])}</td><td class="mono">{_e(e["run_id"])}</td>'
            + "".join(f'<td class="num">{_metric(e["metrics"].get(m["name"]))}</td>' for m in metrics)
            + f'<td class="num">{_e(e["step"] if e["step"] is not None else "—")}</td></tr>'
            for e in entries)
        table = (f'<div class="scroll"><table><thead><tr><th>{_e(symbol)}</th><th>run</th>{head}'
                 f'<th class="num">sample step</th></tr></thead><tbody>{rows}</tbody></table></div>')
        if chart:
            bars = [(e["label"].split(" (")[0], v if isinstance(v := e["metrics"].get(chart["name"]), (int, float))
                     else None, e["color"]) for e in entries]
            where = f" ({group['group']})" if grid["group_by"] else ""
            parts.append(f'<h4>{_e(chart["title"])} per {_e(symbol)}</h4><div class="charts"><figure>'
                         + bar_chart(bars, title=f"{chart['title']} per {symbol}{where}", y_label=chart["title"])
                         + f"</figure>{table}</div>")
        else:
            parts.append(table)
    parts.append("</section>")
    return "\n".join(parts)


def _other_images(images: dict[str, Any], runs: dict[str, dict[str, Any]]) -> str:
    parts = ['<section id="images"><h2>Images</h2>']
    for rid, entry in images.items():
        r = runs[rid]
        figs = "".join(f'<figure>{_img(img, kind + " " + rid)}<figcaption>{_e(kind)}</figcaption></figure>'
                       for kind, img in entry["images"].items())
        parts.append(f'<h4>{_swatch(r["color"])}{_e(r["label"])} <span class="small mono">{_e(rid)} · step '
                     f'{entry["step"]}</span></h4><div class="gallery">{figs}</div>')
    parts.append("</section>")
    return "\n".join(parts)
