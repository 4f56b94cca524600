"""What a script written before jobkit needs, without editing it: resume arguments for later starts,
progress read from its output, checkpoints seen on disk, and tracker ids that survive a requeue.

All keys are optional and, when unset, absent from the run's params: existing runs keep their ids.
"""
from __future__ import annotations

import bisect
import collections
import glob
import hashlib
import re
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from jobkit import report
from jobkit.command.params import CommandError, check_placeholders, expand
TRACKERS = ("wandb", "mlflow", "tensorboard")


def check(params: dict[str, Any]) -> None:
    """Validate the optional script keys (raises CommandError naming the key and the fix)."""

    def fields(text: str, key: str) -> None:
        check_placeholders(params, text, key)

    resume_args = params.get("resume_args")
    if resume_args is not None:
        if not isinstance(resume_args, list) or not all(isinstance(a, str) for a in resume_args):
            raise CommandError(f'resume_args: expected a list of strings, e.g. ["--init_from=resume"], '
                               f"got {resume_args!r}")
        for arg in resume_args:
            fields(arg, "resume_args")
    if params.get("resume_when") is not None and not resume_args:
        raise CommandError("resume_when: given without resume_args; add the arguments it should switch on, "
                           'e.g. resume_args = ["--resume", "{run_dir}/ckpt.pt"]')
    for key in ("resume_when", "checkpoint"):
        value = params.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise CommandError(f'{key}: expected a path such as "{{run_dir}}/ckpt.pt", got {value!r}')
        fields(value, key)
    ckpt = params.get("checkpoint")
    if ckpt is not None and (not ckpt.startswith("{run_dir}/") or ".." in Path(ckpt).parts):
        raise CommandError(f'checkpoint: {ckpt!r} is outside the run folder; give a path or glob under it, '
                           'e.g. "{run_dir}/ckpt.pt", and make the script save there')
    pattern = params.get("progress")
    if pattern is not None:
        compile_progress(pattern)
    trackers = params.get("trackers")
    if trackers is not None and not isinstance(trackers, bool):
        if not isinstance(trackers, list) or any(t not in TRACKERS for t in trackers):
            raise CommandError(f"trackers: expected true, false or a list of {', '.join(TRACKERS)}, "
                               f"got {trackers!r}")


def compile_progress(pattern: Any) -> re.Pattern[str]:
    """The progress pattern, which must compile and name a `step` group."""
    if not isinstance(pattern, str):
        raise CommandError(f"progress: expected a regular expression string, got {pattern!r}")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise CommandError(f"progress: {pattern!r} is not a regular expression ({exc}); "
                           "write it in single quotes in TOML so backslashes stay") from None
    if "step" not in regex.groupindex:
        raise CommandError(f"progress: {pattern!r} has no (?P<step>...) group; name the step number, e.g. "
                           "'iter (?P<step>\\d+): loss (?P<loss>[\\d.]+)'")
    return regex


def resume_argv(params: Mapping[str, Any], run_dir: Path, attempt: int) -> list[str]:
    """`resume_args` expanded, for this start: from the second start on, or while `resume_when` exists."""
    args = params.get("resume_args")
    if not args:
        return []
    when = params.get("resume_when")
    if when is not None:
        if not glob.glob(expand([when], params, run_dir)[0]):
            return []
    elif attempt < 2:
        return []
    return expand(list(args), params, run_dir)


def tracker_env(params: Mapping[str, Any], run_id: str, run_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment that makes W&B, MLflow and TensorBoard continue one run across requeues.
    Variables already in `environ` win (the user's choice)."""
    chosen = params.get("trackers", True)
    names = TRACKERS if chosen is True else () if chosen is False else tuple(chosen)
    folder = Path(run_dir).resolve()
    stable = hashlib.sha256(run_id.encode()).hexdigest()[:16]  # W&B ids: short, [a-z0-9]
    wanted: dict[str, str] = {}
    if "wandb" in names:
        wanted.update(WANDB_RUN_ID=stable, WANDB_RESUME="allow", WANDB_DIR=str(folder / "wandb"),
                      WANDB_NAME=run_id)
    if "mlflow" in names:
        wanted.update(MLFLOW_RUN_NAME=run_id)  # a convention: mlflow.start_run(run_name=os.environ[...])
    if "tensorboard" in names:
        wanted.update(TENSORBOARD_LOGDIR=str(folder / "tb"))
    return {k: v for k, v in wanted.items() if k not in environ}


class ProgressReader:
    """Reads progress lines from the script's stdout and stderr into progress.json (via `report`)."""

    def __init__(self, pattern: str, folder: Path, attempt: int, total: int | None, start_step: int = 0) -> None:
        self.regex = compile_progress(pattern)
        self.folder, self.attempt, self.total, self.start_step = folder, attempt, total, start_step
        self.state = report.Reporter()
        self.matches = 0
        self.step: int | None = None
        self._seen: collections.deque[tuple[float, int]] = collections.deque(maxlen=4096)  # (read at, step)
        self._writer: Any = None  # TensorBoard, opened at the first match (None: not yet; False: no torch)
        self._lock = threading.Lock()

    def feed(self, line: str) -> None:
        found = self.regex.search(line)
        if found is None:
            return
        values: dict[str, float] = {}
        for name, text in found.groupdict().items():
            try:
                values[name] = float(text)
            except (TypeError, ValueError):
                pass
        if "step" not in values:
            return
        with self._lock:
            self.matches += 1
            step = int(values.pop("step"))
            loss, val_loss = values.pop("loss", None), values.pop("val_loss", None)
            self._scalars(step, loss, val_loss, values)
            if self.step is not None and step < self.step:
                return  # stdout and stderr are read apart: a line may arrive after a later one
            self.step = step
            self._seen.append((time.time(), step))
            report.record(self.state, self.folder, self.attempt, self.step, self.total,
                          loss=loss, val_loss=val_loss, **values)

    def _scalars(self, step: int, loss: float | None, val_loss: float | None, other: dict[str, float]) -> None:
        """The same numbers as TensorBoard scalars in {run_dir}/tb (what `collect` and `jobkit tb` read)."""
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._writer = False
            else:
                from jobkit.run import tblog

                self._writer = tblog.open_writer(SummaryWriter, self.folder / "tb", self.start_step)
        if self._writer is False:
            return
        tags = {"train/loss": loss, "val/val_loss": val_loss, **{f"train/{k}": v for k, v in other.items()}}
        for tag, value in tags.items():
            if value is not None:
                self._writer.add_scalar(tag, value, step)

    def step_at(self, t: float) -> int:
        """The last step read by time `t` (a checkpoint file's mtime: what the script had printed
        when it saved); the attempt's first step when none was. Polling the file is slower than a step."""
        with self._lock:
            seen = list(self._seen)
        i = bisect.bisect_right([when for when, _ in seen], t)
        return seen[i - 1][1] if i else self.start_step

    def flush(self) -> None:
        """Write the last progress seen (progress.json is otherwise rewritten every few seconds)."""
        with self._lock:
            if self.step is not None:
                report.record(self.state, self.folder, self.attempt, self.step, self.total, force=True)
            if self._writer:
                self._writer.close()


class CheckpointWatch:
    """Notices when the checkpoint file(s) change: a new (mtime, size) that held for one poll."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.recorded = self._look()  # what was there at the start is no news: name -> (mtime, size)
        self.pending: dict[str, tuple[float, int]] = {}

    def _look(self) -> dict[str, tuple[float, int]]:
        seen = {}
        for name in glob.glob(self.pattern):
            try:
                st = Path(name).stat()
            except OSError:
                continue
            seen[name] = (st.st_mtime, st.st_size)
        return seen

    def poll(self, final: bool = False) -> list[str]:
        """The files that changed and have settled (all changes when `final`: the script has exited)."""
        now = self._look()
        settled = [n for n, sig in now.items() if sig != self.recorded.get(n)
                   and (final or self.pending.get(n) == sig)]
        self.pending = now
        for name in settled:
            self.recorded[name] = now[name]
        return sorted(settled)
