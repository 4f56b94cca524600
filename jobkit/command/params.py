"""A command run's parameters: the user's script, checked when the sweep is read and expanded at run time.

The command is a list of arguments, never a shell line: `{name}` placeholders take the run's
parameters, `{run_dir}` its folder and `{python}` the interpreter jobkit runs with, and each expands
inside its own argument, so a value like `"; rm -rf ~"` reaches the script as one literal argument.
Every key of the run other than the keys below is a parameter (typed by TOML, part of the identity).
No torch here: `jobkit submit` validates command runs without it.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import string
import sys
from pathlib import Path
from typing import Any, Mapping

NAME = "command"
# Keys jobkit itself reads from a command run (they are parameters too: part of the identity).
# Optional keys for a script written before jobkit (`jobkit.command.script`); absent unless set.
SCRIPT_KEYS = ("resume_args", "resume_when", "progress", "checkpoint", "trackers", "stall_signal")
JOBKIT_KEYS = ("command", "steps", "resumable", "stop_signal", *SCRIPT_KEYS)
LIST_KEYS = ("command", "resume_args", "trackers")  # lists that are one value, not a sweep axis
BUILTINS = ("run_dir", "python")  # placeholders that are not parameters
DEFAULT_STOP_SIGNAL = "USR2"
STOP_MARKER = ".jobkit-stop"  # in the run folder: written by the supervisor just before it forwards the signal
_INTERPRETER = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|bash|sh|zsh|dash|perl|ruby|Rscript|julia|node)$")
_WITH_ARG = {"-m", "-c", "-W", "-X", "-O", "-e"}  # options that take the next argument (no script then)


class CommandError(ValueError):
    """A bad command run; the message names the key and the fix (the sweep adds the file and run)."""


def stop_signal_of(name: str) -> signal.Signals:
    """`USR2`, `SIGUSR2`, `TERM`, ... -> the signal."""
    text = str(name).strip().upper()
    try:
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except KeyError:
        raise CommandError(f"stop_signal: {name!r} is not a signal name; use e.g. \"USR2\" (default), "
                           "\"USR1\", \"TERM\" or \"INT\"") from None


def _fields(arg: str) -> list[str]:
    """The placeholder names in one argument (`{{` is a literal brace). Raises CommandError."""
    names = []
    try:
        parsed = list(string.Formatter().parse(arg))
    except ValueError as exc:
        raise CommandError(f"command: argument {arg!r}: {exc}; write a literal brace as {{{{ or }}}}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or spec or conversion:
            raise CommandError(f"command: argument {arg!r}: placeholders are plain names like {{lr}} or "
                               "{run_dir}, without format specs or attributes")
        names.append(name)
    return names


def resolve_params(raw: Mapping[str, Any], workdir: Path) -> dict[str, Any]:
    """Validate one expanded command run's keys (resources already removed) -> its params.

    Checks the command's form, every placeholder, the executable and the script (relative paths
    are from `workdir`, where `jobkit submit` runs). Defaults are written out, so a run's identity
    does not depend on whether a default was spelled.
    """
    params = dict(raw)
    command = params.get("command")
    if command is None:
        raise CommandError('command: missing; give the script as a list, e.g. '
                           'command = ["python", "train.py", "--lr", "{lr}", "--out", "{run_dir}"]')
    if isinstance(command, str):
        raise CommandError(f"command: {command!r} is a string; give a list of arguments (no shell), e.g. "
                           f"{command.split()!r}")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise CommandError(f"command: expected a non-empty list of strings, got {command!r}")
    for key, value in params.items():
        if key in LIST_KEYS:
            continue
        if isinstance(value, (dict, list)) or not isinstance(value, (str, int, float, bool)):
            raise CommandError(f"{key}: a command run's parameter must be a string, number or boolean, "
                               f"got {value!r}")
    steps = params.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise CommandError(f"steps: expected an integer >= 1 (the script's total steps), got {steps!r}")
    resumable = params.setdefault("resumable", False)
    if not isinstance(resumable, bool):
        raise CommandError(f"resumable: expected true or false, got {resumable!r}")
    params["stop_signal"] = stop_signal_of(params.get("stop_signal", DEFAULT_STOP_SIGNAL)).name[3:]
    if "stall_signal" in params:  # sent to the script's process group when it stalls (jobkit.command.stall)
        try:
            params["stall_signal"] = stop_signal_of(params["stall_signal"]).name[3:]
        except CommandError:
            raise CommandError(f"stall_signal: {params['stall_signal']!r} is not a signal name; use e.g. "
                               "\"USR1\" (for a script that registered faulthandler on it)") from None
    for arg in command:
        check_placeholders(params, arg)
    _check_program(command, workdir)
    return params


def check_placeholders(params: Mapping[str, Any], arg: str, key: str = "command") -> None:
    """Every `{name}` in `arg` is a parameter of the run or a builtin (raises CommandError)."""
    known = set(params) | set(BUILTINS)
    for name in _fields(arg):
        if name not in known:
            accepted = ", ".join(sorted(k for k in known if k not in LIST_KEYS))
            raise CommandError(f"{key}: unknown placeholder {{{name}}} in {arg!r}; add a parameter "
                               f"{name} = ... to the run, or use one of: {accepted}")


def _check_program(command: list[str], workdir: Path) -> None:
    exe = command[0]
    if _fields(exe) and exe != "{python}":
        raise CommandError(f"command: the program {exe!r} cannot be a placeholder (only {{python}} can)")
    path = sys.executable if exe == "{python}" else _which(exe, workdir)
    if path is None:
        raise CommandError(f"command: program {exe!r} not found (on PATH or from {workdir}); "
                           "give its path or install it")
    name = Path(exe if exe != "{python}" else sys.executable).name
    if not _INTERPRETER.match(name):
        return
    args = iter(command[1:])
    for arg in args:
        if arg in _WITH_ARG:
            return  # `python -m module` / `-c code`: no script file to check
        if arg.startswith("-"):
            continue
        if _fields(arg):
            return  # the script's path comes from a parameter: checked when it runs
        script = Path(arg) if Path(arg).is_absolute() else workdir / arg
        if not script.is_file():
            raise CommandError(f"command: script {arg!r} not found from {workdir}; "
                               "submit from the folder the command expects, or give an absolute path")
        return


def _which(exe: str, workdir: Path) -> str | None:
    if "/" in exe:
        path = Path(exe) if Path(exe).is_absolute() else workdir / exe
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(exe)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expand(command: list[str], params: Mapping[str, Any], run_dir: Path, python: str = sys.executable) -> list[str]:
    """The argv to execute: each placeholder replaced inside its own argument (one argument stays one)."""
    values = {k: _text(v) for k, v in params.items() if k != "command"}
    values.update(run_dir=str(Path(run_dir).resolve()), python=python)
    return [arg.format_map(values) for arg in command]


def contract_env(run_dir: Path, run_id: str, attempt: int, stop_signal: str) -> dict[str, str]:
    """What the script finds in its environment (the `jobkit.report` helper reads it)."""
    return {"JOBKIT_RUN_DIR": str(Path(run_dir).resolve()), "JOBKIT_RUN_ID": run_id,
            "JOBKIT_ATTEMPT": str(attempt), "JOBKIT_STOP_SIGNAL": stop_signal}


CONTRACT = """\
Bring your own script (workload = "command"):
  command = ["{python}", "train.py", "--lr", "{lr}", "--out", "{run_dir}"]   # a list, no shell
  lr = [1e-3, 3e-4]   steps = 5000   resumable = true   stop_signal = "USR2"
  The script gets JOBKIT_RUN_DIR, JOBKIT_RUN_ID, JOBKIT_ATTEMPT; it runs in the folder you submit from.
  On a stop (time limit, preemption, segment end) jobkit sends stop_signal to its process group and
  waits a bounded time: save a checkpoint in {run_dir}, exit 3 ("resume me"); exit 0 when finished.
  Exit 3 (or killed after the wait) requeues a resumable run; a run that is not resumable and reaches
  its time limit is TIMEOUT with its last output lines; any other exit code is FAILED with its stderr tail.
  from jobkit import report: report.progress(step, total, loss=..., val_loss=...),
  report.stop_requested(), report.checkpoint_saved(step, path); TensorBoard files under {run_dir}/tb.
  A script written before jobkit, unchanged: resume_args = ["--init_from=resume"] (from the 2nd start, or
  while resume_when = "{run_dir}/ckpt.pt" exists), progress = 'iter (?P<step>\\d+): loss (?P<loss>[\\d.]+)',
  checkpoint = "{run_dir}/ckpt.pt", trackers = true|false|["wandb", "mlflow", "tensorboard"].
  A script killed after the signal goes back to its last checkpoint; status says how much work was lost.
  A key the command line never uses that is close to a jobkit key (resumeable) is refused.
  No output line or progress for stall_timeout ("5m"; default from its progress): stacks in {run_dir}/stacks
  (stall_signal = "USR1" is sent first; py-spy dump when installed), then stopped and requeued."""
