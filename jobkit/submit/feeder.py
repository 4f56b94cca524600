"""The feeder: a small Slurm job that sends a sweep's next wave, so no login-node process has to wait.

When a submission leaves runs waiting for room (jobkit.plan.room), it also sends one 1-CPU job of a
few minutes with `--dependency=afterany:<the first array it just sent>`. When that array has ended
the feeder runs the same idempotent `jobkit submit` of the sweep — re-planned identically from the
recipe stored in the sweep's folder at the user's submit (`.jobkit-submit.json`: the sweep file's
text, the --set overrides, --only, --chunk, the executor, the folders) — which sends what now fits
and, while runs still wait, the next feeder. A feeder that finds nothing to do ends without one.

Exactly once: each submit takes the sweep's lock and re-reads every run's state (and its unreceipted
intents) under it, so a user's `jobkit submit` and a feeder that overlap never send a run twice; the
sweep records its one current feeder (`.feeder.json`), and a feeder that is no longer that one (a
later submit sent its own) ends without submitting.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobkit import atomic, slurm
from jobkit.observe.feeders import RECORD, record
from jobkit.plan import placement
from jobkit.plan.choose import NoFit
from jobkit.plan.clusterfacts import ClusterFacts
from jobkit.plan.siteconfig import SiteConfig
from jobkit.plan.spec import Resources

RECIPE = ".jobkit-submit.json"
FEEDER_MINUTES = 10  # a feeder plans and submits one wave: a few seconds, even for thousands of runs
RETRY_S = 120  # when nothing could be sent (no room at all), the feeder starts again after this long


@dataclass
class Recipe:
    """What `jobkit submit` needs to re-plan a sweep identically."""

    sweep_text: str
    source: str  # the sweep file's path at the first submit (messages, data checks)
    stem: str  # its name without .toml: the sweep's default name
    sets: list[str] = field(default_factory=list)
    only: str | None = None
    chunk: bool = False
    executor: str = "slurm"
    root: str = ""
    cwd: str = ""
    config_start: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def save_recipe(sweep_dir: Path, recipe: Recipe) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    atomic.write_text(sweep_dir / RECIPE, json.dumps(recipe.to_json(), indent=1))


def load_recipe(sweep_dir: Path) -> Recipe:
    data = json.loads((sweep_dir / RECIPE).read_text(encoding="utf-8"))
    return Recipe(**{k: v for k, v in data.items() if k in Recipe.__dataclass_fields__})


def write_record(sweep_dir: Path, **values: Any) -> None:
    atomic.write_text(sweep_dir / RECORD, json.dumps({"t": time.time(), **values}))


def superseded(sweep_dir: Path, job_id: str | None) -> bool:
    """Whether the feeder `job_id` is no longer the sweep's current one (a later submit sent another, or
    `jobkit cancel` ended the chain)."""
    if not job_id:
        return False
    current = record(sweep_dir) or {}
    return str(current.get("job_id", "")) != str(job_id) or bool(current.get("ended"))


def batch_script(sweep_dir: Path, python: str, options: dict[str, str], setup: tuple[str, ...] = ()) -> str:
    """The feeder's batch script: `#SBATCH` lines from validated values (partition, QoS, account, time,
    dependency: names checked by jobkit.plan.slurmvalues, numbers), then `python -m jobkit.submit.feed_job`
    on the sweep folder, quoted. `python` and `setup` are the site's own shell text (jobkit.toml)."""
    lines = ["#!/bin/bash"] + [f"#SBATCH --{k}={v}" for k, v in options.items()]
    lines += list(setup)
    lines += [f"exec {python} -m jobkit.submit.feed_job {shlex.quote(str(sweep_dir))}", ""]
    return "\n".join(lines)


class FeederRefused(RuntimeError):
    """No feeder could be sent (no partition fits it, or sbatch refused it); the message says why."""


def send(facts: ClusterFacts, site: SiteConfig, sweep_dir: Path, after: str | None,
         sent_by: str | None = None) -> str:
    """Submit the sweep's next feeder: 1 CPU for FEEDER_MINUTES on the partition the chooser picks,
    after job `after` has ended (any way), or RETRY_S from now when nothing was sent. Records it as
    the sweep's current feeder; returns its job id."""
    res = Resources(time_min=FEEDER_MINUTES, cpus=1, mem_mb=512, account=site.account, qos=site.qos)
    try:
        where = placement.place(facts, res, never=site.never_partitions)
    except NoFit as exc:
        raise FeederRefused(f"no partition fits a 1-CPU {FEEDER_MINUTES}-minute job: {exc}") from None
    job = placement.with_placement(res, where, where.choice.time_min)
    options: dict[str, str] = {"job-name": f"jobkit-feed-{sweep_dir.name}", "time": str(job.time_min),
                               "cpus-per-task": "1", "mem": "512M", "open-mode": "append",
                               "output": str(sweep_dir.resolve() / ".submitit" / "feeder-%j.out")}
    if where.pass_partition and where.choice.partition is not None:
        options["partition"] = where.choice.partition.name
    for key in ("account", "qos"):
        if getattr(job, key):
            options[key] = getattr(job, key)
    if after:
        options["dependency"] = f"afterany:{int(after)}"
    else:
        options["begin"] = f"now+{RETRY_S}"
    python = site.python or shlex.quote(sys.executable)
    script = batch_script(sweep_dir.resolve(), python, options, site.setup)
    try:
        job_id = slurm.sbatch_text(script)
    except slurm.SubmissionRefused as exc:
        raise FeederRefused(str(exc)) from None
    write_record(sweep_dir, job_id=job_id, after=after, sent_by=sent_by)
    return job_id
