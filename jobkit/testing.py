"""A harness for workload authors: check that a workload resumes bit-exactly through the runner.

    from jobkit.testing import check_resume_through_runner
    def test_my_workload_resumes(tmp_path):
        check_resume_through_runner(tmp_path, "mypkg.module:MyWorkload", {"steps": 12}, stop_at=(5,))

The same run is trained straight through and stopped (SIGUSR2, as Slurm sends it) at each step in
`stop_at`, resumed from its checkpoint each time; the checkpoints must then hold equal tensors.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Mapping, Sequence

from jobkit.plan import params as params_mod
from jobkit.plan import registry
from jobkit.plan.spec import JobSpec, Resources, split_settings
from jobkit.run import runner
from jobkit.store import RunDir


def make_run(root: Path, workload: str, raw: Mapping[str, Any], cpus: int = 1, sweep: str = "t") -> RunDir:
    """A run folder for `workload` with params resolved from `raw` (preset, then explicit keys)."""
    cls = registry.load(workload)
    resolved = params_mod.resolve(cls.Params, cls.presets, dict(raw))
    params, settings = split_settings(params_mod.identity_dict(resolved))
    spec = JobSpec(sweep=sweep, workload=workload, params=params, settings=settings,
                   name=workload.rsplit(":", 1)[-1].lower(), resources=Resources(cpus=cpus))
    return RunDir.create(Path(root), spec)


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Equal nested state: tensors with torch.equal, containers item by item, the rest with ==."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"tensor differs at {path or '/'}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"keys differ at {path or '/'}"
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"length differs at {path or '/'}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"value differs at {path or '/'}: {a!r} != {b!r}"


def stop_at_steps(steps: Sequence[int]):
    """A runner `on_step` hook sending this process SIGUSR2 after the first of `steps` it reaches."""
    def hook(step: int) -> None:
        if step in steps:
            os.kill(os.getpid(), signal.SIGUSR2)
    return hook


def check_resume_through_runner(root: Path, workload: str, raw: Mapping[str, Any],
                                stop_at: Sequence[int] = (5,)) -> tuple[RunDir, RunDir]:
    """Train straight vs. stopped at each of `stop_at` and resumed; assert identical final state.

    Returns (straight, interrupted) for further checks (metrics, samples).
    """
    straight = make_run(Path(root) / "straight", workload, raw)
    runner.run(straight)
    interrupted = make_run(Path(root) / "interrupted", workload, raw)
    for step in stop_at:
        try:
            runner.run(interrupted, on_step=stop_at_steps([step]))
        except runner.Stopped as stopped:
            assert stopped.step == step, f"stopped at {stopped.step}, asked {step}"
        else:
            raise AssertionError(f"the run did not stop at step {step}")
    runner.run(interrupted)
    a, b = straight.load_checkpoint()[0], interrupted.load_checkpoint()[0]
    assert_same(a["workload"], b["workload"], "workload")
    assert_same(a["rng"], b["rng"], "rng")
    return straight, interrupted
