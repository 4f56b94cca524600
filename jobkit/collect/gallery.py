"""Samples side by side: each run's text continuations per prompt, and each workload's images per group
(`ReportLayout`), gathered for the report from what `samples.scan` found in the run folders."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jobkit.collect import samples as samples_mod
from jobkit.collect.format import finite_number as _num
from jobkit.collect.format import fmt_value
from jobkit.collect.format import sort_value as _sort_value
from jobkit.protocol import ReportLayout


def image_record(src: Path, dest: str, copies: list[tuple[Path, str]]) -> dict[str, Any] | None:
    """Note `src` for copying to `dest`; None (so the caller reports it) if it is not a readable image."""
    width = height = None
    try:
        from PIL import Image

        with Image.open(src) as im:
            width, height = im.size
            im.verify()
    except ImportError:
        pass
    except Exception:
        return None
    copies.append((src, dest))
    return {"src": dest, "width": width, "height": height}


def text_samples(run_ids: list[str], smps: dict[str, samples_mod.RunSamples]) -> dict[str, Any]:
    def group(entries: list[tuple[str, list[dict[str, str]]]]) -> list[dict[str, Any]]:
        prompts: dict[str, dict[str, Any]] = {}
        for rid, rows in entries:
            for row in rows:
                p = prompts.setdefault(row["prompt"], {"prompt": row["prompt"], "truth": row["truth"], "by_run": {}})
                p["by_run"][rid] = row["generated"]
                p["truth"] = p["truth"] or row["truth"]
        return list(prompts.values())

    steps: dict[int, list[tuple[str, list[dict[str, str]]]]] = {}
    models: dict[str, str | None] = {}
    latest_entries, latest_steps = [], {}
    for rid in run_ids:
        text_steps = smps[rid].text_steps()
        for sf in text_steps:
            steps.setdefault(sf.step, []).append((rid, samples_mod.text_samples(sf)))
            models[rid] = (sf.data or {}).get("model", models.get(rid))
        last = text_steps[-1]
        latest_entries.append((rid, samples_mod.text_samples(last)))
        latest_steps[rid] = last.step
    return {
        "runs": run_ids,
        "models": models,
        "latest": {"steps": latest_steps, "prompts": group(latest_entries)},
        "steps": [{"step": step, "runs": [rid for rid, _ in entries], "prompts": group(entries)}
                  for step, entries in sorted(steps.items())],
    }


def image_grid(recs: list[dict[str, Any]], smps: dict[str, samples_mod.RunSamples], layout: ReportLayout,
                copies: list[tuple[Path, str]]) -> dict[str, Any]:
    """Per group (`layout.group_images_by`), each run's newest images and headline numbers, ordered
    by `layout.compare_by`. Values come from the run's newest step json first, then its final metrics."""
    groups: dict[str, list[dict[str, Any]]] = {}
    symbol = layout.compare_label or layout.compare_by or ""
    for rec in recs:
        rid = rec["run_id"]
        latest = smps[rid].latest(lambda sf: bool(sf.images) or sf.data is not None)
        data = (latest.data if latest else None) or {}
        value = data.get(layout.compare_by, rec["params"].get(layout.compare_by)) if layout.compare_by else None
        group = str(data.get(layout.group_images_by) or rec["params"].get(layout.group_images_by) or "?") \
            if layout.group_images_by else ""
        skip = {layout.compare_by, layout.group_images_by}
        others = {k: v for k, v in rec["key_values"].items() if k not in skip}
        label = f"{symbol}={fmt_value(value)}" if value is not None else ""
        if others:
            rest = ", ".join(f"{k}={fmt_value(v)}" for k, v in others.items())
            label = f"{label} ({rest})" if label else rest
        metrics = {}
        for m in layout.headline:
            got = data.get(m.name)
            metrics[m.name] = _num(got) if got is not None else rec["final"].get(m.name)
        entry = {"run_id": rid, "value": value, "label": label or rid, "color": rec["color"], "state": rec["state"],
                 "step": latest.step if latest else None, "images": {}, "metrics": metrics, "data": data}
        if latest:
            for kind, path in sorted(latest.images.items()):
                img = image_record(path, f"img/{rid}/{path.name}", copies)
                if img:
                    entry["images"][kind] = img
                else:
                    rec["missing"].append(f"samples/{path.name}: not a readable image")
        groups.setdefault(group, []).append(entry)
    for entries in groups.values():
        entries.sort(key=lambda e: (_sort_value(e["value"]), e["label"], e["run_id"]))
    return {"kinds": [k.name for k in layout.images], "group_by": layout.group_images_by,
            "groups": [{"group": g, "runs": entries} for g, entries in sorted(groups.items())]}
