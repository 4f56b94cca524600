"""What a run's `samples/` folder holds, step by step, read tolerantly.

Files (written by the workloads' `artifacts`): `step-XXXXXX.json` (numbers and text samples),
`step-XXXXXX.md` (the same text for people), `step-XXXXXX-<kind>.png` (images, of the kinds the
workload's `ReportLayout` names). A run that is still running may have none, or a half-set; unreadable files are
reported in `problems`, never raised.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_FILE = re.compile(r"^step-(\d+)(?:-([A-Za-z0-9_.-]+?))?\.(json|md|png|jpg|jpeg|gif|webp)$")
IMAGE_EXT = {"png", "jpg", "jpeg", "gif", "webp"}


@dataclass
class StepFiles:
    step: int
    data: dict[str, Any] | None = None  # the parsed step-XXXXXX.json
    json_path: Path | None = None
    md_path: Path | None = None
    images: dict[str, Path] = field(default_factory=dict)  # kind -> file


@dataclass
class RunSamples:
    steps: dict[int, StepFiles] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def latest(self, want=lambda s: True) -> StepFiles | None:
        for step in sorted(self.steps, reverse=True):
            if want(self.steps[step]):
                return self.steps[step]
        return None

    def text_steps(self) -> list[StepFiles]:
        """Steps whose json holds a `samples` list of {prompt, generated, truth} (text models)."""
        return [sf for _, sf in sorted(self.steps.items())
                if isinstance(sf.data, dict) and isinstance(sf.data.get("samples"), list)]

    def image_steps(self) -> list[StepFiles]:
        return [sf for _, sf in sorted(self.steps.items()) if sf.images]


def scan(samples_dir: Path) -> RunSamples:
    out = RunSamples()
    try:
        with os.scandir(samples_dir) as entries:
            found = sorted((e.name, e.is_file()) for e in entries)
    except OSError:  # no samples/ (yet)
        return out
    for name, is_file in found:
        m = SAMPLE_FILE.match(name)
        if not m or not is_file:
            continue
        path = Path(samples_dir) / name
        step, kind, ext = int(m.group(1)), m.group(2), m.group(3).lower()
        sf = out.steps.setdefault(step, StepFiles(step))
        if ext == "json" and not kind:
            sf.json_path = path
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                sf.data = data if isinstance(data, dict) else None
                if sf.data is None:
                    out.problems.append(f"samples/{path.name}: not a JSON object")
            except (OSError, ValueError) as exc:
                out.problems.append(f"samples/{path.name}: unreadable ({type(exc).__name__})")
        elif ext == "md" and not kind:
            sf.md_path = path
        elif ext in IMAGE_EXT:
            sf.images[kind or "image"] = path
    return out


def text_samples(sf: StepFiles) -> list[dict[str, str]]:
    """The well-formed {prompt, generated, truth} entries of a text step (others are skipped)."""
    rows = []
    for item in (sf.data or {}).get("samples", []):
        if isinstance(item, dict) and isinstance(item.get("prompt"), str):
            rows.append({"prompt": item["prompt"], "generated": str(item.get("generated", "")),
                         "truth": str(item.get("truth", ""))})
    return rows
