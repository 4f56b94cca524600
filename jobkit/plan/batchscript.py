"""The batch script and job folder layout jobkit's Slurm jobs use: text only, no Slurm command.

`jobkit/slurm.py` re-exports these (`slurm.render_script`, `slurm.job_folder`): the submission renders
`--dry-run --show-script` from the same parameters submitit is given, so the two cannot drift apart.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

NOT_SBATCH = {"setup", "signal_delay_s", "additional_parameters", "srun_args", "stderr_to_stdout", "array_parallelism"}


def job_folder(sweep_dir: Path, job_id: str = "%j") -> Path:
    """submitit's folder for one job of a sweep (pickles, logs); `%j` is the template submitit fills."""
    return Path(sweep_dir) / ".submitit" / job_id


def job_log_paths(sweep_dir: Path, job_id: str, task: int = 0) -> tuple[Path, Path]:
    """(stdout, stderr) that submitit writes for one task of the job (task 0: the main rank)."""
    folder = job_folder(sweep_dir, job_id)
    return folder / f"{job_id}_{task}_log.out", folder / f"{job_id}_{task}_log.err"


def render_script(params: dict[str, Any], folder: Path, python: str) -> str:
    """The batch script for executor `params`, laid out as submitit writes it: one `#SBATCH` line per
    parameter (and the log paths, signal and open mode it adds), the setup lines, then `srun` running
    submitit's entry point. Values were validated when parsed, so none needs quoting; the site's
    `setup` lines and `python` are the site's own shell text."""
    flags = {k.replace("_", "-"): v for k, v in params.items() if k not in NOT_SBATCH}
    flags.update({"nodes": params.get("nodes", 1), "wckey": "submitit", "open-mode": "append",
                  "signal": f"USR2@{params.get('signal_delay_s', 90)}",
                  "output": str(folder / "%j_0_log.out"), "error": str(folder / "%j_0_log.err")})
    flags.update(params.get("additional_parameters") or {})
    lines = ["#!/bin/bash", "", "# Parameters"]
    lines += [f"#SBATCH --{k}" if v is True else f"#SBATCH --{k}={v}" for k, v in sorted(flags.items())]
    if params.get("setup"):
        lines += ["", "# setup", *params["setup"]]
    srun = ["srun", "--unbuffered", "--output", str(folder / "%j_%t_log.out"),
            "--error", str(folder / "%j_%t_log.err"), *(params.get("srun_args") or [])]
    lines += ["", "# command", "export SUBMITIT_EXECUTOR=slurm",
              f"{shlex.join(srun)} {python} -u -m submitit.core._submit {folder}", ""]
    return "\n".join(lines)
