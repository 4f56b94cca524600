"""`collect(root, sweep)`: one sweep's runs -> `index.html`, `summary.json`, `summary.md` in one folder
(above `bigpage.LARGE_ABOVE` runs, also a page per run and curve chunks: `bigpage`, `runpages`).

Everything comes from the run directories (spec, events, metrics, TensorBoard files, samples); a
sweep that is still running gives a report of what exists plus a list of what is missing.
The HTML is self-contained: inline CSS and SVG charts, images copied beside it under `img/`.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobkit import atomic
from jobkit.collect import bigpage, gallery, runpages
from jobkit.collect import samples as samples_mod
from jobkit.collect.format import PER_DIM, fmt_value, is_detail
from jobkit.collect.format import finite_number as _num
from jobkit.collect.format import sort_value as _sort_value
from jobkit.collect.html import render_html
from jobkit.collect.layout import layout_of
from jobkit.collect.layout import to_json as layout_json
from jobkit.collect.markdown import render_markdown
from jobkit.collect.plots import color
from jobkit.collect.scalars import Curve, event_files, read_scalars
from jobkit.observe.lifecycle import is_active
from jobkit.observe.runstate import RunSummary, summarize
from jobkit.plan.spec import differing_keys
from jobkit.protocol import ReportLayout
from jobkit.state import State
from jobkit.store import RunDir, find_runs

SCHEMA = 2  # 2: image comparisons under "image_grids", described by each workload's ReportLayout
# Metrics a workload did not describe: these common names are better when higher, the rest when lower.
HIGHER_IS_BETTER = re.compile(r"(^|_)(acc|accuracy|f1|auc|psnr|ssim)($|_)")
NOT_STARTED = {State.NEW, State.PENDING}  # no attempt yet: nothing to collect
MAX_METRIC_COLUMNS = 6  # in the runs table; summary.json has every metric


class CollectError(LookupError):
    """The sweep cannot be collected (unknown sweep, no runs, unsuitable output folder)."""


@dataclass
class Collected:
    summary: dict[str, Any]
    curves: dict[str, dict[str, Curve]] = field(default_factory=dict)  # run id -> tag -> points
    copies: list[tuple[Path, str]] = field(default_factory=list)  # source file -> path in the report


@dataclass
class Report:
    out: Path
    summary: dict[str, Any]

    @property
    def index(self) -> Path:
        return self.out / "index.html"


# --- finding the sweep ------------------------------------------------------------------------------
def list_sweeps(root: Path) -> list[str]:
    return sorted({p.parent.parent.name for p in Path(root).glob("*/*/spec.json")})


def sweep_runs(root: Path, sweep: str) -> list[RunDir]:
    """The runs of `sweep` under `root`; CollectError (one line, naming the known sweeps) if none."""
    root = Path(root)
    if not root.is_dir():
        raise CollectError(f"no run folder {str(root)!r} (set --root or $JOBKIT_ROOT)")
    runs = [r for r in find_runs(root) if r.path.parent.name == sweep]
    if not runs:
        known = list_sweeps(root)
        hint = f"sweeps there: {', '.join(known)}" if known else "it holds no runs"
        raise CollectError(f"no sweep named {sweep!r} under {root} ({hint})")
    return runs


# --- gathering --------------------------------------------------------------------------------------
def _differing(params: list[dict[str, Any]], preferred: tuple[str, ...] = ()) -> list[str]:
    """Param names whose values are not all equal across `params`: the workload's own key params
    first, in its order, then the others coarsest first (the table then reads as groups)."""
    distinct = differing_keys(params)
    order = list(distinct)
    first = [k for k in preferred if k in distinct]
    rest = sorted((k for k in distinct if k not in first), key=lambda k: (distinct[k], order.index(k)))
    return first + rest


def higher_is_better(name: str, layout: ReportLayout) -> bool:
    for metric in layout.headline:
        if metric.name == name:
            return metric.higher_is_better
    return bool(HIGHER_IS_BETTER.search(name))


def _best(curve: Curve, higher: bool) -> dict[str, float] | None:
    pts = [(s, v) for s, v in curve if math.isfinite(v)]
    if not pts:
        return None
    pick = max if higher else min
    step, value = pick(pts, key=lambda sv: sv[1])
    return {"value": value, "step": step}


def _run_record(run: RunDir, layouts: dict[str, ReportLayout]
                ) -> tuple[dict[str, Any], dict[str, Curve], samples_mod.RunSamples]:
    try:
        s: RunSummary | None = summarize(run)
    except Exception as exc:  # a spec.json being replaced, or broken by hand
        s = None
        spec_problem = f"spec.json unreadable ({type(exc).__name__})"
    rec: dict[str, Any] = {"run_id": run.run_id, "path": str(run.path), "missing": []}
    if s is None:
        rec.update(workload="?", state=State.UNREADABLE, step=0, total=0, params={}, run_seconds=0.0,
                   attempts=0, requeues=0, requeue_reasons={}, error=spec_problem)
        rec["missing"].append(spec_problem)
        return rec, {}, samples_mod.RunSamples()
    if s.workload not in layouts:  # once per workload: loading one imports it
        layouts[s.workload] = layout_of(s.workload)
    layout = layouts[s.workload]
    rec.update(workload=s.workload, state=s.state, step=s.step, total=s.total, params=s.params,
               run_seconds=round(s.run_seconds, 1), attempts=s.attempts, segments=s.attempts,
               requeues=s.requeues, requeue_reasons=s.requeue_reasons, job_id=s.job_id,
               partition=s.partition, executor=s.executor, error=s.error, alarms=s.alarms,
               warnings=s.warnings, loss=s.loss, val_loss=s.val_loss, converged=s.converged,
               convergence_note=s.convergence_note)
    curves = read_scalars(run.tb_dir)
    rec["curves"] = {tag: {"points": len(c), "first_step": c[0][0], "last_step": c[-1][0], "last": c[-1][1]}
                     for tag, c in curves.items()}
    metrics = run.metrics()
    final: dict[str, float] = {}
    for k, v in metrics.items():
        if k not in ("step", "t") and _num(v) is not None:
            final[k] = float(v)
    for tag, c in curves.items():  # metrics.json missing (still running): the newest logged values
        head, _, name = tag.partition("/")
        if head == "val" and name not in final and c and math.isfinite(c[-1][1]):
            final[name] = c[-1][1]
    if "train/loss" in curves:
        final.setdefault("loss", curves["train/loss"][-1][1])
    elif s.loss is not None and _num(s.loss) is not None:
        final.setdefault("loss", float(s.loss))
    rec["final"] = final
    rec["final_step"] = metrics.get("step") if metrics else None
    rec["best"] = {}
    for tag, c in curves.items():
        name = tag.partition("/")[2]
        if tag.startswith("val/") and not PER_DIM.search(tag) and (b := _best(c, higher_is_better(name, layout))):
            rec["best"][name] = b
    smp = samples_mod.scan(run.samples_dir)
    rec["samples"] = {"steps": sorted(smp.steps),
                      "text_steps": [sf.step for sf in smp.text_steps()],
                      "image_steps": [sf.step for sf in smp.image_steps()]}
    rec["missing"] = _missing(run, s, curves, metrics, smp, layout)
    return rec, curves, smp


def _missing(run: RunDir, s: RunSummary, curves: dict[str, Curve], metrics: dict[str, Any],
             smp: samples_mod.RunSamples, layout: ReportLayout) -> list[str]:
    out: list[str] = []
    if s.state in NOT_STARTED:
        return [f"not started yet ({s.state}): no curves, metrics or samples"]
    if is_active(s.state):
        out.append(f"still {s.state.lower()}: step {s.step} of {s.total or '?'}; final metrics and samples come at the end")
    elif s.state != State.COMPLETED:
        why = f": {s.error}" if s.error else ""
        out.append(f"{s.state.lower()} at step {s.step} of {s.total or '?'}{why}")
    if not event_files(run.tb_dir):
        out.append("no TensorBoard event files in tb/")
    else:
        if "train/loss" not in curves:
            out.append("no train/loss points in tb/ yet")
        if not any(t.startswith("val/") for t in curves):
            out.append("no validation points (val/*) in tb/ yet")
    if not metrics:
        out.append("no metrics.json yet")
    out.extend(smp.problems)
    if not smp.steps:
        out.append("no samples yet (samples/ is empty)")
    else:
        for step, sf in sorted(smp.steps.items()):
            if sf.md_path and sf.json_path is None:
                out.append(f"samples step {step}: step-{step:06d}.md has no .json beside it")
        if layout.images:
            latest = max(smp.steps)
            sf = smp.steps[latest]
            lacking = [k.name for k in layout.images if k.name not in sf.images]
            if lacking:
                out.append(f"samples step {latest}: no {', '.join(lacking)} image")
            if sf.json_path is None:
                out.append(f"samples step {latest}: no step-{latest:06d}.json")
        if s.state == State.COMPLETED and isinstance(metrics.get("step"), int) and max(smp.steps) < metrics["step"]:
            out.append(f"final samples (step {metrics['step']}) missing; the newest are from step {max(smp.steps)}")
    return out


def gather(root: Path, sweep: str) -> Collected:
    runs = sweep_runs(root, sweep)
    col = Collected(summary={})
    recs, smps = [], {}
    layouts: dict[str, ReportLayout] = {}
    large = bigpage.is_large(len(runs))
    for run in runs:
        rec, curves, smp = _run_record(run, layouts)
        recs.append(rec)
        col.curves[rec["run_id"]] = bigpage.thinned(curves) if large else curves
        smps[rec["run_id"]] = smp
    # Key values: the params that tell runs of the same workload apart.
    workloads: dict[str, list[dict[str, Any]]] = {}
    for rec in recs:
        workloads.setdefault(rec["workload"], []).append(rec)
    key_params = {w: _differing([r["params"] for r in rs], layouts.get(w, ReportLayout()).key_params)
                  for w, rs in workloads.items()}
    for rec in recs:
        keys = key_params[rec["workload"]]
        rec["key_values"] = {k: rec["params"].get(k) for k in keys}
        rec["label"] = ", ".join(f"{k}={fmt_value(v)}" for k, v in rec["key_values"].items()) or rec["run_id"]
    recs.sort(key=lambda r: (r["workload"], [_sort_value(r["key_values"].get(k)) for k in key_params[r["workload"]]],
                             r["run_id"]))
    for i, rec in enumerate(recs):
        rec["color"] = color(i)
    by_id = {r["run_id"]: r for r in recs}

    states: dict[str, int] = {}
    for rec in recs:
        states[rec["state"]] = states.get(rec["state"], 0) + 1
    summary: dict[str, Any] = {
        "schema": SCHEMA, "sweep": sweep, "root": str(Path(root)), "generated_t": round(time.time(), 3),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "counts": {"runs": len(recs), "states": states},
        "complete": False,
        "workloads": {}, "runs": recs, "text_samples": {}, "image_grids": {}, "images": {}, "missing": [],
    }
    for w, rs in sorted(workloads.items()):
        ids = [r["run_id"] for r in recs if r["workload"] == w]
        metric_names: list[str] = []
        for rid in ids:
            for k in list(by_id[rid]["final"]) + list(by_id[rid]["best"]):
                if k not in metric_names and not PER_DIM.search(k):
                    metric_names.append(k)
        layout = layouts.get(w, ReportLayout())
        order = ["loss", *(m.name for m in layout.headline)]
        metric_names.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
        headline = [m for m in metric_names if not is_detail(m, metric_names)][:MAX_METRIC_COLUMNS]
        tags = sorted({t for rid in ids for t in col.curves[rid]})
        summary["workloads"][w] = {"runs": ids, "key_params": key_params[w], "metrics": headline,
                                   "all_metrics": metric_names, "tags": tags, "layout": layout_json(layout)}
    # Text samples (any workload whose step json holds prompts): per step, every run's continuation.
    for w, info in summary["workloads"].items():
        text_runs = [rid for rid in info["runs"] if smps[rid].text_steps()]
        if text_runs:
            summary["text_samples"][w] = gallery.text_samples(text_runs, smps)
    # Image comparisons: the kinds each workload names, side by side per group of runs.
    compared: set[str] = set()
    for w, info in summary["workloads"].items():
        layout = layouts.get(w, ReportLayout())
        if layout.images:
            grid_recs = [by_id[rid] for rid in info["runs"]]
            summary["image_grids"][w] = gallery.image_grid(grid_recs, smps, layout, col.copies)
            compared.update(info["runs"])
    # Any other images (a workload that names none): the newest of each kind, per run.
    for rec in recs:
        if rec["run_id"] in compared:
            continue
        latest = smps[rec["run_id"]].latest(lambda sf: bool(sf.images))
        if latest:
            imgs = {}
            for kind, path in sorted(latest.images.items()):
                img = gallery.image_record(path, f"img/{rec['run_id']}/{path.name}", col.copies)
                if img:
                    imgs[kind] = img
                else:
                    rec["missing"].append(f"samples/{path.name}: not a readable image")
            summary["images"][rec["run_id"]] = {"step": latest.step, "images": imgs}
    for rec in recs:
        summary["missing"].extend(f"{rec['run_id']}: {m}" for m in rec["missing"])
    summary["complete"] = all(r["state"] == State.COMPLETED for r in recs) and not summary["missing"]
    col.summary = summary
    return col


# --- writing ----------------------------------------------------------------------------------------
def default_out(root: Path, sweep: str) -> Path:
    return Path(root) / sweep / "report"


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CollectError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise CollectError(f"--out {out} is not empty and holds no earlier report; choose a new or empty folder")


def write(col: Collected, out: Path) -> Report:
    out = Path(out)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True, mode=atomic.DIR_MODE)
    for sub in ("img", runpages.RUNS_DIR, runpages.CURVES_DIR):  # a previous report's: replaced wholesale
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    summary = col.summary
    summary["report"] = str(out / "index.html")
    failed: set[str] = set()
    for src, dest in col.copies:
        target = out / dest
        target.parent.mkdir(parents=True, exist_ok=True, mode=atomic.DIR_MODE)
        try:
            shutil.copyfile(src, target)
        except OSError as exc:  # removed between the scan and the copy
            failed.add(dest)
            summary["missing"].append(f"{src.parent.parent.name}: samples/{src.name}: could not copy ({exc.strerror})")
    if failed:
        _drop_images(summary, failed)
    large = bigpage.is_large(len(summary["runs"]))
    index = bigpage.write(out, summary, col.curves) if large else render_html(summary, col.curves)
    atomic.write_text(out / "index.html", index)
    atomic.write_text(out / "summary.md", render_markdown(summary))
    if large:  # no indent: json's C encoder, not its Python one (seconds, at 10,000 runs)
        text = json.dumps(summary, sort_keys=True, default=str, separators=(",", ":")) + "\n"
        atomic.write_text(out / "summary.json", text)
    else:
        atomic.write_json(out / "summary.json", summary)
    return Report(out=out, summary=summary)


def _drop_images(summary: dict[str, Any], failed: set[str]) -> None:
    for grid in summary.get("image_grids", {}).values():
        for group in grid["groups"]:
            for e in group["runs"]:
                e["images"] = {k: v for k, v in e["images"].items() if v["src"] not in failed}
    for entry in summary.get("images", {}).values():
        entry["images"] = {k: v for k, v in entry["images"].items() if v["src"] not in failed}


def collect(root: Path, sweep: str, out: Path | None = None) -> Report:
    """Gather the sweep's runs and write the report; raises CollectError for a bad sweep or folder."""
    out = Path(out) if out is not None else default_out(root, sweep)
    _check_out(out)
    col = gather(root, sweep)
    try:
        return write(col, out)
    except OSError as exc:
        raise CollectError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
