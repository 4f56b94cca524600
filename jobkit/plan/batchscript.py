"""The batch script's text: what `jobkit.slurm` hands submitit, and how `--dry-run --show-script`
shows it (the same parameters, so the two cannot drift apart). Only text here; no command runs."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

NOT_SBATCH = {"setup", "signal_delay_s", "additional_parameters", "srun_args", "stderr_to_stdout"}

# Exported by every batch script before srun: `<job id as submitit names it>/<restart count>`, inherited
# by every process of the job (jobkit.run.leftovers narrows it per rank and finds leftovers by it).
MARKER_SETUP = ('export JOBKIT_RUN_MARKER="${SLURM_ARRAY_TASK_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"; '
                'export JOBKIT_RUN_MARKER="${JOBKIT_RUN_MARKER:-$SLURM_JOB_ID}/${SLURM_RESTART_COUNT:-0}"')


def with_job_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """The marker line after the site's setup; with several tasks, `--kill-on-bad-exit=1`: a rank that
    crashes ends the whole step at once, instead of its peers waiting in a collective."""
    out = {**params, "setup": [*(params.get("setup") or []), MARKER_SETUP]}
    if int(params.get("nodes") or 1) * int(params.get("ntasks_per_node") or 1) > 1:
        out["srun_args"] = [*(params.get("srun_args") or []), "--kill-on-bad-exit=1"]
    return out


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
    params = with_job_defaults(params)
    lines = ["#!/bin/bash", "", "# Parameters"]
    lines += [f"#SBATCH --{k}" if v is True else f"#SBATCH --{k}={v}" for k, v in sorted(flags.items())]
    if params.get("setup"):
        lines += ["", "# setup", *params["setup"]]
    srun = ["srun", "--unbuffered", "--output", str(folder / "%j_%t_log.out"),
            "--error", str(folder / "%j_%t_log.err"), *(params.get("srun_args") or [])]
    lines += ["", "# command", "export SUBMITIT_EXECUTOR=slurm",
              f"{shlex.join(srun)} {python} -u -m submitit.core._submit {folder}", ""]
    return "\n".join(lines)
