"""index.html of a large sweep (more than LARGE_ABOVE runs): a page that opens in a moment.

Instead of every run's row, curve and sample on one page: every run as one compact JSON array in
a data block, a table that shows a page of rows at a time and sorts and filters by any column, the
best run of each group (grouped by the parameters a person ticks), and the curves of the runs they
pick, loaded from `curves/` chunks; each run's detail is its own page under `runs/`
(`jobkit.collect.runpages`). Inline script and styles (`bigpage_js`): nothing from the network.
"""
from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from jobkit.collect import runpages
from jobkit.collect.bigpage_js import EXTRA_CSS, SCRIPT
from jobkit.collect.format import fmt_value
from jobkit.collect.html import CSS
from jobkit.collect.plots import MAX_POINTS
from jobkit.collect.runpages import CHUNK
from jobkit.collect.scalars import Curve

LARGE_ABOVE = 50  # more runs than this: this page, per-run pages and curve chunks
SEED = "seed"  # BaseParams' seed: never a group, it is what groups average over
MAX_GROUPS = 200  # the default grouping drops keys until it has at most this many groups
MISSING_SHOWN = 20


def _e(v: Any) -> str:
    return escape("" if v is None else str(v))


def _cell(v: Any) -> Any:
    """A value as the data block holds it: numbers and strings as they are, non-finite as null."""
    if isinstance(v, bool) or v is None:
        return None if v is None else str(v).lower()
    if isinstance(v, (int, float)):
        return v if math.isfinite(v) else None
    return v if isinstance(v, str) else fmt_value(v)


def _metric_columns(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """`best m` (the workload's headline metrics logged during training) and `m` (final) columns."""
    cols: list[dict[str, Any]] = []
    for info in summary["workloads"].values():
        headline = {m["name"]: m["higher_is_better"] for m in info["layout"]["headline"]}
        ids = set(info["runs"])
        with_best = {m for r in summary["runs"] if r["run_id"] in ids for m in r.get("best", {}) if m in headline}
        for m in info["metrics"]:
            higher = headline.get(m, False)
            if m in with_best and not any(c["name"] == f"best {m}" for c in cols):
                cols.append({"name": f"best {m}", "type": "num", "metric": m, "best": True, "higher": higher})
            if not any(c["name"] == m for c in cols):
                cols.append({"name": m, "type": "num", "metric": m, "best": False, "higher": higher})
    return cols


def _keys(summary: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for info in summary["workloads"].values():
        keys += [k for k in info["key_params"] if k not in keys]
    return keys


def default_groups(summary: dict[str, Any], keys: list[str]) -> list[str]:
    """The workloads' own key params where they vary; else every varying key but the seed and the
    one with the most values (the searched one: the best of it is what a group's best run shows)."""
    declared = [k for info in summary["workloads"].values() for k in info["layout"]["key_params"] if k in keys]
    if declared:
        return list(dict.fromkeys(declared))
    values = {k: len({json.dumps(r["params"].get(k), sort_keys=True, default=str) for r in summary["runs"]})
              for k in keys}
    chosen = [k for k in keys if k != SEED and values[k] < len(summary["runs"])]
    if len(chosen) > 1:
        chosen.remove(max(chosen, key=lambda k: values[k]))
    while len(chosen) > 1 and math.prod(values[k] for k in chosen) > MAX_GROUPS:
        chosen.remove(max(chosen, key=lambda k: values[k]))
    return chosen


def table_data(summary: dict[str, Any]) -> dict[str, Any]:
    keys = _keys(summary)
    metrics = _metric_columns(summary)
    several = len(summary["workloads"]) > 1
    columns = [{"name": "run", "type": "text"}]
    if several:
        columns.append({"name": "workload", "type": "text"})
    for k in keys:
        numeric = all(isinstance(r["params"].get(k), (int, float)) and not isinstance(r["params"].get(k), bool)
                      for r in summary["runs"] if r["params"].get(k) is not None)
        columns.append({"name": k, "type": "num" if numeric else "text", "key": True})
    columns += [{"name": "state", "type": "text"}, {"name": "steps", "type": "num", "fmt": "steps"}, *metrics,
                {"name": "time", "type": "num", "fmt": "dur"}, {"name": "note", "type": "text"}]
    rows, total, chunk = [], [], []
    for i, r in enumerate(summary["runs"]):
        row: list[Any] = [r["run_id"]] + ([r["workload"]] if several else [])
        row += [_cell(r["params"].get(k)) for k in keys]
        row += [r["state"], r["step"]]
        for c in metrics:
            got = r.get("best", {}).get(c["metric"], {}).get("value") if c["best"] else r.get("final", {}).get(c["metric"])
            row.append(_cell(got))
        row.append(round(r["run_seconds"]) if r.get("attempts") else None)
        row.append(r.get("error") or r.get("convergence_note") or (r["missing"][0] if r.get("missing") else None))
        rows.append(row)
        total.append(r["total"])
        chunk.append(i // CHUNK)
    headline = next((i for i, c in enumerate(columns) if c.get("best")), None)
    if headline is None:
        headline = next((i for i, c in enumerate(columns) if c.get("metric") in ("val_loss", "loss")), None)
    if headline is None:
        headline = next((i for i, c in enumerate(columns) if "metric" in c), -1)
    return {"sweep": summary["sweep"], "columns": columns, "rows": rows, "total": total, "chunk": chunk,
            "sort": headline, "groups": default_groups(summary, keys)}


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element (no `</script>`, no `<!--`)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def render_index(summary: dict[str, Any], data: dict[str, Any]) -> str:
    columns = data["columns"]
    states = " ".join(f'<span class="badge s-{_e(s)}">{_e(s)}</span> {n}'
                      for s, n in sorted(summary["counts"]["states"].items()))
    heads = "".join(f'<th class="sort{" num" if c["type"] == "num" else ""}" data-c="{i}" title="sort">{_e(c["name"])}</th>'
                    for i, c in enumerate(columns))
    filters = "".join(f'<th><input class="f" data-c="{i}" placeholder="{"&gt;0.5, 1..2" if c["type"] == "num" else "filter"}" '
                      f'aria-label="filter {_e(c["name"])}"></th>' for i, c in enumerate(columns))
    group_boxes = "".join(f'<label><input type="checkbox" value="{i}"{" checked" if c["name"] in data["groups"] else ""}> '
                          f'{_e(c["name"])}</label>' for i, c in enumerate(columns) if c.get("key"))
    metric_opts = "".join(f'<option value="{i}"{" selected" if i == data["sort"] else ""}>{_e(c["name"])}</option>'
                          for i, c in enumerate(columns) if "metric" in c)
    missing = summary["missing"]
    if missing:
        items = "".join(f"<li>{_e(m)}</li>" for m in missing[:MISSING_SHOWN])
        more = (f"<li>… {len(missing) - MISSING_SHOWN} more: each run's page and summary.md list them</li>"
                if len(missing) > MISSING_SHOWN else "")
        missing_html = (f'<section class="warn" id="missing"><details><summary>Missing or still in progress '
                        f'({len(missing)})</summary><ul>{items}{more}</ul></details></section>')
    else:
        missing_html = '<div class="ok" id="missing">Every run finished and every expected file is here.</div>'
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(summary['sweep'])} — jobkit report</title><style>{CSS}{EXTRA_CSS}</style></head><body>",
        f"<h1>Sweep <code>{_e(summary['sweep'])}</code></h1>",
        f'<p class="meta">{summary["counts"]["runs"]} runs · {states} · generated {_e(summary["generated"])} from '
        f'<code>{_e(summary["root"])}</code></p>',
        '<nav><a href="#best-runs">Best per group</a><a href="#curves">Curves</a><a href="#runs">Runs</a></nav>',
        missing_html,
        '<section id="best-runs"><h2>Best run per group</h2><div class="controls"><span>group by:</span>'
        f'<span id="group-keys">{group_boxes}</span><label>best by <select id="best-metric">{metric_opts}</select></label>'
        '<span class="small" id="best-count"></span></div><div class="scroll"><table id="best"></table></div></section>',
        '<section id="curves"><h2>Curves</h2><div class="controls"><span id="pick-note"></span>'
        '<button id="pick-best" type="button">the best of each group</button>'
        '<button id="pick-top" type="button">the first 8 rows shown</button>'
        '<button id="pick-clear" type="button">clear</button></div>'
        '<div class="charts" id="curve-charts"></div><div class="legend" id="curve-legend"></div></section>',
        '<section id="runs"><h2>Runs</h2><div class="controls pager"><span id="count"></span>'
        '<button id="prev" type="button">‹ previous</button><span id="page"></span>'
        '<button id="next" type="button">next ›</button><label>rows per page <select id="page-size">'
        '<option>50</option><option selected>100</option><option>500</option></select></label>'
        '<span class="small">click a heading to sort; numbers filter as &gt;0.5, &lt;=3, 1..2 or =4</span></div>',
        f'<div class="scroll"><table id="runs-table"><thead><tr>{heads}</tr><tr class="filters">{filters}</tr></thead>'
        '<tbody id="rows"></tbody></table></div></section>',
        f'<noscript><p class="warn">This page needs JavaScript for its table; summary.md lists every run.</p></noscript>',
        '<footer>Written by <code>jobkit collect</code>. Each run has its own page (its id links to it); '
        'machine-readable: <a href="summary.json">summary.json</a>; text: <a href="summary.md">summary.md</a>.</footer>',
        f'<script type="application/json" id="jobkit-data">{_script_json(data)}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>\n",
    ])


def is_large(runs: int) -> bool:
    return runs > LARGE_ABOVE


def thinned(curves: dict[str, Curve]) -> dict[str, Curve]:
    """A large sweep's curves, kept in memory no longer than a run's page draws them."""
    return {tag: runpages.thin(c, MAX_POINTS) for tag, c in curves.items()}


def write(out: Path, summary: dict[str, Any], curves: dict[str, dict[str, Curve]]) -> str:
    """Write the per-run pages and curve chunks under `out`; returns index.html's text."""
    summary["run_pages"] = runpages.RUNS_DIR
    runpages.write_all(out, summary, curves, [r["run_id"] for r in summary["runs"]])
    return render_index(summary, table_data(summary))
