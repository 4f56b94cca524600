"""The run directory: the single source of truth for one run. No hidden database.

```
<root>/<sweep>/<run-id>/
  spec.json            the resolved spec (identity + resources)
  events.jsonl         append-only lifecycle: submitted, started, checkpoint, requeued, alarm, finished, failed
  progress.json        the latest step and metrics (rewritten atomically, for status)
  metrics.json         the latest evaluation and final metrics
  checkpoints/         step-XXXXXX.pt + latest.json (newest verified first, with size and sha256)
  tb/ samples/ slurm/  TensorBoard events, workload artifacts, submitit's folder
```
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from jobkit import atomic, diskspace
from jobkit.plan.spec import JobSpec
from jobkit.state import Event

if TYPE_CHECKING:
    import torch



@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    file: str
    size: int
    sha256: str
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "file": self.file, "size": self.size, "sha256": self.sha256}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunDir:
    """One run's folder. Every write is atomic; readers tolerate a run that is being written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # --- layout -------------------------------------------------------------------------------
    spec_path = property(lambda self: self.path / "spec.json")
    events_path = property(lambda self: self.path / "events.jsonl")
    progress_path = property(lambda self: self.path / "progress.json")
    metrics_path = property(lambda self: self.path / "metrics.json")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    latest_path = property(lambda self: self.path / "checkpoints" / "latest.json")
    tb_dir = property(lambda self: self.path / "tb")
    samples_dir = property(lambda self: self.path / "samples")
    slurm_dir = property(lambda self: self.path / "slurm")

    @property
    def run_id(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.spec_path.is_file()

    @classmethod
    def create(cls, root: Path, spec: JobSpec, sync: bool = True) -> "RunDir":
        """Make `<root>/<sweep>/<run-id>/` (not world-accessible) and write spec.json.

        `sync=False`: the caller makes many runs durable at once with `os.sync()`.
        """
        run = cls(Path(root) / spec.sweep / spec.run_id)
        for sub in (run.path, run.checkpoint_dir, run.tb_dir, run.samples_dir, run.slurm_dir):
            sub.mkdir(parents=True, exist_ok=True, mode=atomic.DIR_MODE)
        run.write_spec(spec, sync=sync)
        return run

    def write_spec(self, spec: JobSpec, sync: bool = True) -> None:
        atomic.write_json(self.spec_path, spec.to_json(), sync=sync)

    def spec(self) -> JobSpec:
        return JobSpec.from_json(json.loads(self.spec_path.read_bytes()))  # bytes: no text layer (10k runs)

    # --- events -------------------------------------------------------------------------------
    def event(self, name: str, /, *, sync: bool = True, **fields: Any) -> dict[str, Any]:
        record = {"t": round(time.time(), 3), "event": name, **fields}
        atomic.append_line(self.events_path, json.dumps(record, default=str, sort_keys=True), sync=sync)
        return record

    # Named writers for the events written outside the training loop (the CLI, cancel, a full disk):
    # callers say what happened, the store says how it is recorded.
    def record_stopped(self, step: int, reason: str) -> dict[str, Any]:
        """A foreground run stopped by a signal at a step boundary, its checkpoint saved."""
        return self.event(Event.STOPPED, step=step, reason=reason)

    def record_cancelled(self, job_id: str | None, step: int) -> dict[str, Any]:
        """`jobkit cancel` ended the run's job; its checkpoints stay for `resume`."""
        return self.event(Event.CANCELLED, job_id=job_id, step=step)

    def record_stalled(self, step: int, **fields: Any) -> dict[str, Any]:
        """No step for the stall timeout (jobkit/run/watchdog.py, a command's supervisor); stacks in stacks/."""
        return self.event(Event.STALLED, step=step, **fields)

    def record_failed(self, error: str, **fields: Any) -> dict[str, Any]:
        """The run failed; `error` is the line `jobkit status` shows."""
        return self.event(Event.FAILED, error=error, **fields)

    def events(self) -> list[dict[str, Any]]:
        """All events; malformed or torn lines (a kill or a full disk mid-append) are skipped."""
        return self.read_events()[0]

    def read_events(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(events, one warning per skipped line): what `status` and `collect` read."""
        try:
            text = self.events_path.read_text(errors="replace")
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            return [], [f"events.jsonl cannot be read ({exc.strerror})"]
        lines = [line for line in text.splitlines() if line.strip()]
        try:  # one parse for the whole file (a 10,000-run status reads 10,000 of them)
            records = json.loads("[" + ",".join(lines) + "]")
            if len(records) == len(lines) and all(isinstance(r, dict) and isinstance(r.get("event"), str)
                                                  for r in records):
                return records, []
        except ValueError:
            pass  # a torn or malformed line: line by line below, to name it
        out, problems = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("event"), str):
                problems.append(f"events.jsonl line {number} is malformed or truncated and was skipped")
                continue
            out.append(record)
        return out, problems

    # --- progress and metrics ------------------------------------------------------------------
    def write_progress(self, progress: dict[str, Any]) -> None:
        atomic.write_json(self.progress_path, progress)

    def progress(self) -> dict[str, Any]:
        return _read_json(self.progress_path) or {}

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic.write_json(self.metrics_path, metrics)

    def metrics(self) -> dict[str, Any]:
        return _read_json(self.metrics_path) or {}

    # --- checkpoints ---------------------------------------------------------------------------
    def _kept(self) -> list[dict[str, Any]]:
        data = _read_json(self.latest_path)
        return list(data.get("checkpoints", [])) if isinstance(data, dict) else []

    def checkpoints(self) -> list[CheckpointInfo]:
        """Kept checkpoints, newest first, as recorded in latest.json."""
        return [CheckpointInfo(**{k: c[k] for k in ("step", "file", "size", "sha256")}) for c in self._kept()]

    def save_checkpoint(self, step: int, state: dict[str, Any], keep: int = 2) -> CheckpointInfo:
        """Write `state` as step-XXXXXX.pt, then point latest.json at it; keep the newest `keep`."""
        import torch  # here, not at the top: status and submit never need it

        started = time.perf_counter()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True, mode=atomic.DIR_MODE)
        name = f"step-{step:06d}.pt"
        path = self.checkpoint_dir / name
        needed = diskspace.state_bytes(state) + 64 * 1024
        if not diskspace.has_room(self.checkpoint_dir, needed):  # do not fill the disk to the last byte
            raise diskspace.NoSpace(self.checkpoint_dir, needed)
        try:
            atomic.write_with(path, lambda f: torch.save(state, f))
        except Exception as exc:  # the temp file is gone; latest.json still names the previous one
            if diskspace.is_no_space(exc):
                raise diskspace.NoSpace(self.checkpoint_dir, needed) from exc
            raise
        info = CheckpointInfo(step=step, file=name, size=path.stat().st_size, sha256=_sha256(path))
        kept = [info.to_json()] + [c for c in self._kept() if c.get("file") != name]
        kept, dropped = kept[:keep], kept[keep:]
        try:
            atomic.write_json(self.latest_path, {"latest": info.to_json(), "checkpoints": kept})
        except OSError:
            if name not in {c.get("file") for c in self._kept()}:
                path.unlink(missing_ok=True)  # unrecorded: free its room, the previous one stays latest
            raise
        keep_files = {c["file"] for c in kept}
        for c in dropped:
            if c.get("file") not in keep_files:
                (self.checkpoint_dir / c["file"]).unlink(missing_ok=True)
        return CheckpointInfo(**info.to_json(), seconds=time.perf_counter() - started)

    def load_checkpoint(self, map_location: "str | torch.device" = "cpu") -> tuple[dict[str, Any], CheckpointInfo] | None:
        """The newest checkpoint that verifies (size, sha256, loads), or None for a fresh run.

        A checkpoint that fails is skipped with a `warning` event naming it; the previous one is used.
        """
        import torch
        self.remove_temp_files()
        for info in self._candidates():
            path = self.checkpoint_dir / info.file
            problem = None
            if not path.is_file():
                problem = "file missing"
            elif info.size >= 0 and path.stat().st_size != info.size:
                problem = f"size {path.stat().st_size} != recorded {info.size}"
            elif info.sha256 and _sha256(path) != info.sha256:
                problem = "sha256 mismatch"
            if problem is None:
                try:
                    state = torch.load(path, map_location=map_location, weights_only=True)
                    return state, info
                except Exception as exc:  # corrupt pickle/zip: fall back, never crash
                    problem = f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
            self.event(Event.CHECKPOINT_REJECTED, file=info.file, step=info.step, problem=problem,
                       message=f"checkpoint {info.file} rejected: {problem}; using the previous one")
        return None

    def remove_temp_files(self) -> list[Path]:
        """Delete the `.NAME.*.tmp` files a kill mid-write left (run folder, checkpoints, samples)."""
        removed = []
        for folder in (self.path, self.checkpoint_dir, self.samples_dir):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
        return removed

    def _candidates(self) -> Iterator[CheckpointInfo]:
        """Recorded checkpoints newest first; then any unrecorded files (if latest.json is lost)."""
        seen = set()
        for info in self.checkpoints():
            seen.add(info.file)
            yield info
        if not self.checkpoint_dir.is_dir():
            return
        for path in sorted(self.checkpoint_dir.glob("step-*.pt"), reverse=True):
            if path.name not in seen:
                step = int(path.stem.split("-")[1])
                yield CheckpointInfo(step=step, file=path.name, size=-1, sha256="")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def find_runs(root: Path, selectors: list[str] | tuple[str, ...] = ()) -> list[RunDir]:
    """Run folders under `root` chosen by sweep names, run ids, run paths, id prefixes, signatures
    (the 8 hex digits ending an id) or readable names (the id without them): the one resolver of
    `status`, `resume`, `cancel`, `logs` and `collect`.

    No selectors: every run under root. Raises LookupError naming a selector that matches nothing.
    """
    root = Path(root)
    all_runs = sorted((RunDir(p.parent) for p in root.glob("*/*/spec.json")), key=lambda r: r.path)
    if not selectors:
        return all_runs
    chosen: dict[Path, RunDir] = {}
    for sel in selectors:
        as_path = Path(sel)
        matches = []
        if (as_path / "spec.json").is_file():
            matches = [RunDir(as_path.resolve())]
        else:
            matches = [r for r in all_runs if r.path.parent.name == sel or r.run_id == sel
                       or r.run_id.startswith(sel) or f"{r.path.parent.name}/{r.run_id}" == sel
                       or _names(r.run_id, sel)]
        if not matches:
            raise LookupError(f"no run or sweep named {sel!r} under {root} (see `jobkit status --root {root}`)")
        for r in matches:
            chosen[r.path.resolve()] = r
    return list(chosen.values())



_SIGNATURE = re.compile(r"^(?P<name>.+)-(?P<sig>[0-9a-f]{8})$")


def split_run_id(run_id: str) -> tuple[str, str] | None:
    """(readable name, signature) of a run folder's name `<name>-<signature>`, or None."""
    found = _SIGNATURE.match(run_id)
    return (found["name"], found["sig"]) if found else None


def _names(run_id: str, selector: str) -> bool:
    """Whether `selector` is this run's signature or its readable name."""
    parts = split_run_id(run_id)
    return parts is not None and selector in parts


def folders_by_signature(sweep_dir: Path, prefer: dict[str, str] | None = None) -> dict[str, Path]:
    """A sweep's run folders by signature, whatever their readable names: a run's identity.

    The name is for people and follows the sweep (it depends on which keys differ across its runs);
    the folder never moves. Two folders of one signature (made before identity was the signature):
    the one named as `prefer[signature]`, else the first by name.
    """
    found: dict[str, list[Path]] = {}
    try:
        entries = sorted(os.scandir(sweep_dir), key=lambda e: e.name)
    except OSError:
        return {}
    for entry in entries:
        parts = split_run_id(entry.name)
        if parts and entry.is_dir() and (Path(entry.path) / "spec.json").is_file():
            found.setdefault(parts[1], []).append(Path(entry.path))
    prefer = prefer or {}
    return {sig: next((p for p in paths if p.name == prefer.get(sig)), paths[0]) for sig, paths in found.items()}
