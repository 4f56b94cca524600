"""`collect(root, sweep)`: one sweep's runs -> `index.html`, `summary.json`, `summary.md` in one folder.

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

from .. import atomic
from ..runstate import TERMINAL, RunSummary, summarize
from ..spec import differing_keys
from ..store import RunDir, find_runs
from . import samples as samples_mod
from .plots import color
from .scalars import Curve, event_files, read_scalars

SCHEMA = 1
PER_DIM = re.compile(r"(^|[/_])(kl_)?dim\d+$|per_dim$")
HIGHER_IS_BETTER = re.compile(r"(^|_)(mig|acc|accuracy|active_units|tokens_per_s|psnr|ssim)($|_)")
STARTED = {"RUNNING", "REQUEUED", *TERMINAL}


MAX_METRIC_COLUMNS = 6  # in the runs table; summary.json has every metric


def is_detail(name: str, names: list[str]) -> bool:
    """A per-dimension, per-factor or bookkeeping value (kl_dim3, mig_posX when mig is there,
    rotation_dim): kept in summary.json and TensorBoard, left out of the table's headline columns."""
    base = name.rsplit("/", 1)[-1]
    if PER_DIM.search(base) or base.endswith(("_dim", "_order", "_index")):
        return True
    return any(base != other and base.startswith(other.rsplit("/", 1)[-1] + "_") for other in names)


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
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _sort_value(v: Any) -> tuple:
    n = _num(v)
    return (0, n, "") if n is not None else (1, 0.0, json.dumps(v, sort_keys=True, default=str))


def _differing(params: list[dict[str, Any]]) -> list[str]:
    """Param names whose values are not all equal across `params` (first-seen order)."""
    distinct = differing_keys(params)
    order = list(distinct)
    # Coarser keys first (dataset before beta): the table then reads as groups.
    return sorted(distinct, key=lambda k: (distinct[k], order.index(k)))


def fmt_value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.4g}"
    return str(v)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _best(tag: str, curve: Curve) -> dict[str, float] | None:
    pts = [(s, v) for s, v in curve if math.isfinite(v)]
    if not pts:
        return None
    pick = max if HIGHER_IS_BETTER.search(tag.rsplit("/", 1)[-1]) else min
    step, value = pick(pts, key=lambda sv: sv[1])
    return {"value": value, "step": step}


def _run_record(run: RunDir) -> tuple[dict[str, Any], dict[str, Curve], samples_mod.RunSamples]:
    try:
        s: RunSummary | None = summarize(run)
    except Exception as exc:  # a spec.json being replaced, or broken by hand
        s = None
        spec_problem = f"spec.json unreadable ({type(exc).__name__})"
    rec: dict[str, Any] = {"run_id": run.run_id, "path": str(run.path), "missing": []}
    if s is None:
        rec.update(workload="?", state="UNREADABLE", step=0, total=0, params={}, run_seconds=0.0,
                   attempts=0, requeues=0, requeue_reasons={}, error=spec_problem)
        rec["missing"].append(spec_problem)
        return rec, {}, samples_mod.RunSamples()
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
    rec["best"] = {tag.partition("/")[2]: b for tag, c in curves.items()
                   if tag.startswith("val/") and not PER_DIM.search(tag) and (b := _best(tag, c))}
    smp = samples_mod.scan(run.samples_dir)
    rec["samples"] = {"steps": sorted(smp.steps),
                      "text_steps": [sf.step for sf in smp.text_steps()],
                      "image_steps": [sf.step for sf in smp.image_steps()]}
    rec["missing"] = _missing(run, s, curves, metrics, smp)
    return rec, curves, smp


def _missing(run: RunDir, s: RunSummary, curves: dict[str, Curve], metrics: dict[str, Any],
             smp: samples_mod.RunSamples) -> list[str]:
    out: list[str] = []
    if s.state not in STARTED:
        return [f"not started yet ({s.state}): no curves, metrics or samples"]
    if s.state in ("RUNNING", "REQUEUED"):
        out.append(f"still {s.state.lower()}: step {s.step} of {s.total or '?'}; final metrics and samples come at the end")
    elif s.state != "COMPLETED":
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
        if s.workload == "vae" or any(k in VAE_KIND_SET for sf in smp.steps.values() for k in sf.images):
            latest = max(smp.steps)
            sf = smp.steps[latest]
            lacking = [k for k in samples_mod.VAE_KINDS if k not in sf.images]
            if lacking:
                out.append(f"samples step {latest}: no {', '.join(lacking)} image")
            if sf.json_path is None:
                out.append(f"samples step {latest}: no step-{latest:06d}.json (MIG, KL per dim)")
        if s.state == "COMPLETED" and isinstance(metrics.get("step"), int) and max(smp.steps) < metrics["step"]:
            out.append(f"final samples (step {metrics['step']}) missing; the newest are from step {max(smp.steps)}")
    return out


VAE_KIND_SET = set(samples_mod.VAE_KINDS)


def _image_record(src: Path, dest: str, copies: list[tuple[Path, str]]) -> dict[str, Any] | None:
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


def gather(root: Path, sweep: str) -> Collected:
    runs = sweep_runs(root, sweep)
    col = Collected(summary={})
    recs, smps = [], {}
    for run in runs:
        rec, curves, smp = _run_record(run)
        recs.append(rec)
        col.curves[rec["run_id"]] = curves
        smps[rec["run_id"]] = smp
    # Key values: the params that tell runs of the same workload apart.
    workloads: dict[str, list[dict[str, Any]]] = {}
    for rec in recs:
        workloads.setdefault(rec["workload"], []).append(rec)
    key_params = {w: _differing([r["params"] for r in rs]) for w, rs in workloads.items()}
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
        "workloads": {}, "runs": recs, "text_samples": {}, "vae": {}, "images": {}, "missing": [],
    }
    for w, rs in sorted(workloads.items()):
        ids = [r["run_id"] for r in recs if r["workload"] == w]
        metric_names: list[str] = []
        for rid in ids:
            for k in list(by_id[rid]["final"]) + list(by_id[rid]["best"]):
                if k not in metric_names and not PER_DIM.search(k):
                    metric_names.append(k)
        order = ["loss", "val_loss"]
        metric_names.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
        headline = [m for m in metric_names if not is_detail(m, metric_names)][:MAX_METRIC_COLUMNS]
        tags = sorted({t for rid in ids for t in col.curves[rid]})
        summary["workloads"][w] = {"runs": ids, "key_params": key_params[w], "metrics": headline,
                                   "all_metrics": metric_names, "tags": tags}
    # Text samples (charlm): per sample step, each prompt with every run's continuation.
    for w, info in summary["workloads"].items():
        text_runs = [rid for rid in info["runs"] if smps[rid].text_steps()]
        if text_runs:
            summary["text_samples"][w] = _text_samples(text_runs, smps)
    # VAE image grids: per dataset, every β side by side.
    vae_runs = [r for r in recs if r["workload"] == "vae" or any(
        k in VAE_KIND_SET for sf in smps[r["run_id"]].steps.values() for k in sf.images)]
    if vae_runs:
        summary["vae"] = _vae(vae_runs, smps, col.copies)
    # Any other images (a workload this report does not know): the newest of each kind, per run.
    vae_ids = {r["run_id"] for r in vae_runs}
    for rec in recs:
        if rec["run_id"] in vae_ids:
            continue
        latest = smps[rec["run_id"]].latest(lambda sf: bool(sf.images))
        if latest:
            imgs = {}
            for kind, path in sorted(latest.images.items()):
                img = _image_record(path, f"img/{rec['run_id']}/{path.name}", col.copies)
                if img:
                    imgs[kind] = img
                else:
                    rec["missing"].append(f"samples/{path.name}: not a readable image")
            summary["images"][rec["run_id"]] = {"step": latest.step, "images": imgs}
    for rec in recs:
        summary["missing"].extend(f"{rec['run_id']}: {m}" for m in rec["missing"])
    summary["complete"] = all(r["state"] == "COMPLETED" for r in recs) and not summary["missing"]
    col.summary = summary
    return col


def _text_samples(run_ids: list[str], smps: dict[str, samples_mod.RunSamples]) -> dict[str, Any]:
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


def _vae(recs: list[dict[str, Any]], smps: dict[str, samples_mod.RunSamples],
         copies: list[tuple[Path, str]]) -> dict[str, Any]:
    datasets: dict[str, list[dict[str, Any]]] = {}
    for rec in recs:
        rid = rec["run_id"]
        latest = smps[rid].latest(lambda sf: bool(sf.images) or sf.data is not None)
        data = (latest.data if latest else None) or {}
        beta = data.get("beta", rec["params"].get("beta"))
        dataset = str(data.get("dataset") or rec["params"].get("dataset") or "?")
        others = {k: v for k, v in rec["key_values"].items() if k not in ("beta", "dataset")}
        label = f"β={fmt_value(beta)}" if beta is not None else rec["run_id"]
        if others:
            label += " (" + ", ".join(f"{k}={fmt_value(v)}" for k, v in others.items()) + ")"
        entry = {"run_id": rid, "beta": beta, "label": label, "color": rec["color"], "state": rec["state"],
                 "step": latest.step if latest else None, "images": {},
                 "mig": _num(data.get("mig")) if data.get("mig") is not None else rec["final"].get("mig"),
                 "active_units": data.get("active_units"), "kl_per_dim": data.get("kl_per_dim"),
                 "kl_order": data.get("kl_order"), "rotation_dim": data.get("rotation_dim"),
                 "val_loss": rec["final"].get("val_loss"), "recon": rec["final"].get("recon"),
                 "kl": rec["final"].get("kl")}
        if latest:
            for kind, path in sorted(latest.images.items()):
                img = _image_record(path, f"img/{rid}/{path.name}", copies)
                if img:
                    entry["images"][kind] = img
                else:
                    rec["missing"].append(f"samples/{path.name}: not a readable image")
        datasets.setdefault(dataset, []).append(entry)
    for entries in datasets.values():
        entries.sort(key=lambda e: (_sort_value(e["beta"]), e["label"], e["run_id"]))
    return {"kinds": list(samples_mod.VAE_KINDS), "datasets": [
        {"dataset": d, "runs": entries} for d, entries in sorted(datasets.items())]}


# --- writing ----------------------------------------------------------------------------------------
def default_out(root: Path, sweep: str) -> Path:
    return Path(root) / sweep / "report"


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CollectError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise CollectError(f"--out {out} is not empty and holds no earlier report; choose a new or empty folder")


def write(col: Collected, out: Path) -> Report:
    from .html import render_html
    from .markdown import render_markdown

    out = Path(out)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True, mode=atomic.DIR_MODE)
    img = out / "img"
    if img.is_dir():  # a previous report's copies: replaced wholesale, so no stale image survives
        shutil.rmtree(img)
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
    atomic.write_text(out / "index.html", render_html(summary, col.curves))
    atomic.write_text(out / "summary.md", render_markdown(summary))
    atomic.write_json(out / "summary.json", summary)
    return Report(out=out, summary=summary)


def _drop_images(summary: dict[str, Any], failed: set[str]) -> None:
    for ds in summary.get("vae", {}).get("datasets", []):
        for e in ds["runs"]:
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
