"""summary.md: the report as Markdown (renders on GitLab/GitHub; images linked from img/)."""
from __future__ import annotations

import math
from typing import Any

from jobkit.collect.format import fmt_duration, fmt_value


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        v = f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "↵ ")


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def render_markdown(summary: dict[str, Any]) -> str:
    runs = {r["run_id"]: r for r in summary["runs"]}
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["counts"]["states"].items()))
    lines = [f"# Sweep `{summary['sweep']}`", "",
             f"{summary['counts']['runs']} runs ({states}); generated {summary['generated']} from `{summary['root']}`. "
             "Curves and images: `index.html` beside this file.", ""]
    if summary["missing"]:
        lines += [f"## Missing or still in progress ({len(summary['missing'])})", ""]
        lines += [f"- {m}" for m in summary["missing"]] + [""]
    else:
        lines += ["Every run finished and every expected file is here.", ""]
    lines += ["## Runs", ""]
    for w, info in summary["workloads"].items():
        if len(summary["workloads"]) > 1:
            lines += [f"### {w}", ""]
        recs = [runs[r] for r in info["runs"]]
        headline = {m["name"] for m in info["layout"]["headline"]}
        best_names = {m for r in recs for m in r.get("best", {}) if m in headline}
        head = ["run", *info["key_params"], "state", "steps"]
        for m in info["metrics"]:
            if m in best_names:
                head.append(f"best {m} (step)")
            head.append(f"final {m}" if m in best_names else m)
        head += ["time", "segments", "requeues"]
        rows = []
        for r in recs:
            row = [f"`{r['run_id']}`", *[fmt_value(r["key_values"].get(k)) for k in info["key_params"]],
                   r["state"] + (f", {r['convergence_note']}" if r.get("convergence_note") else ""),
                   f"{r['step']} / {r['total'] or '?'}"]
            for m in info["metrics"]:
                if m in best_names:
                    b = r.get("best", {}).get(m)
                    row.append(f"{b['value']:.4g} ({b['step']})" if b else None)
                row.append(r.get("final", {}).get(m))
            row += [fmt_duration(r.get("run_seconds")) if r.get("attempts") else None, r.get("segments", r.get("attempts", 0)), r.get("requeues", 0)]
            rows.append(row)
        lines += _table(head, rows)
        curves = [f"`{r['run_id']}`: " + ", ".join(f"{t} ({c['points']} points, last {c['last']:.4g} at step {c['last_step']})"
                                                    for t, c in r.get("curves", {}).items()
                                                    if t in ("train/loss", "val/val_loss"))
                  for r in recs if r.get("curves")]
        if curves:
            lines += ["Loss curves (plotted in index.html):", ""] + [f"- {c}" for c in curves] + [""]
    for w, ts in summary.get("text_samples", {}).items():
        lines += [f"## Samples: {w}", ""]
        labels = [f"{runs[r]['label']} (step {ts['latest']['steps'][r]})" for r in ts["runs"]]
        lines += ["Newest samples of each run:", ""]
        lines += _table(["prompt", *labels, "true continuation"],
                        [[p["prompt"], *[p["by_run"].get(r) for r in ts["runs"]], p["truth"]]
                         for p in ts["latest"]["prompts"]])
        for st in ts["steps"][:-1] if len(ts["steps"]) > 1 else []:
            lines += [f"Step {st['step']}:", ""]
            lines += _table(["prompt", *[runs[r]["label"] for r in ts["runs"]], "true continuation"],
                            [[p["prompt"], *[p["by_run"].get(r) for r in ts["runs"]], p["truth"]]
                             for p in st["prompts"]])
    for w, grid in summary.get("image_grids", {}).items():
        layout = summary["workloads"][w]["layout"]
        symbol = layout["compare_label"] or layout["compare_by"] or "run"
        metrics = layout["headline"]
        for group in grid["groups"]:
            where = f": {grid['group_by']} `{group['group']}`" if grid["group_by"] else ""
            lines += [f"## Images: {w}{where}", ""]
            lines += _table([symbol, "run", *[m["title"] for m in metrics], "sample step"],
                            [[e["label"], f"`{e['run_id']}`", *[e["metrics"].get(m["name"]) for m in metrics],
                              e.get("step")] for e in group["runs"]])
            for kind in grid["kinds"]:
                imgs = [f"![{kind} {e['label']}]({e['images'][kind]['src']})" for e in group["runs"]
                        if kind in e["images"]]
                if imgs:
                    lines += [f"{kind}: " + " ".join(imgs), ""]
    return "\n".join(lines).rstrip() + "\n"
