"""Check every run's data at submit, before anything is written, so no job queues only to crash.

Each workload's `check_data()` (see `jobkit.protocol.Workload`) does the cheap part: the file or
folder exists, is readable, is large enough and starts with the right header. A run whose data exists
only on the compute nodes opts out with the run setting `check_data = false` (not part of its identity).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from jobkit.plan import params as params_mod
from jobkit.plan import registry
from jobkit.plan.spec import JobSpec


class DataProblem(ValueError):
    """A run's data is missing or unusable: which key, which path, what is wrong, what was expected."""

    def __init__(self, key: str, path: str, problem: str, expected: str) -> None:
        super().__init__(f"{key}: {path}: {problem}; expected {expected}")
        self.key, self.path, self.problem, self.expected = key, path, problem, expected


@dataclass
class DataReport:
    skipped: list[JobSpec] = field(default_factory=list)  # runs with check_data = false

    def warnings(self) -> list[tuple[str, str]]:
        return [(s.run_id, "check_data = false: its data is not checked before submitting; "
                           "the job fails at start if it is missing on the compute node") for s in self.skipped]


class DataCheckFailed(ValueError):
    """One line: the sweep (or run folder), the run, the key, the path and what was expected."""


def check_specs(specs: Iterable[JobSpec], source: str) -> DataReport:
    """Call `check_data()` of every run's workload (once per distinct workload + params).

    Raises DataCheckFailed on the first problem; returns which runs were not checked.
    """
    report = DataReport()
    seen: set[str] = set()
    classes: dict[str, type] = {}  # one registry lookup per workload: 10,000 runs are one or a few
    for spec in specs:
        if not spec.resources.check_data:
            report.skipped.append(spec)
            continue
        if spec.signature in seen:
            continue
        seen.add(spec.signature)
        try:
            cls = classes.get(spec.workload) or classes.setdefault(spec.workload, registry.load(spec.workload))
        except registry.UnknownWorkload as exc:
            raise DataCheckFailed(f"{source}: run {spec.run_id}: {exc}") from None
        check = getattr(cls, "check_data", None)
        if check is None:
            continue
        try:
            workload = registry.instance(cls, spec.workload_values)
        except params_mod.ParamError as exc:
            raise DataCheckFailed(f"{source}: run {spec.run_id}: spec.json: {exc}") from None
        try:
            workload.check_data()
        except DataProblem as exc:
            raise DataCheckFailed(f"{source}: run {spec.run_id}: {exc} "
                                  "(or set check_data = false for data that exists only on the compute nodes)"
                                  ) from None
    return report
