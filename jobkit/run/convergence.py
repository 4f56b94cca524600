"""What "converged" means, once, for both the plateau stop and the divergence alarm.

A value *improves* when it beats the best so far by at least `min_delta` relative to the best
(|best| · min_delta). Anything else is no improvement: it is *level* (on the plateau) while it
stays within a band of the best, and *worse* beyond it. The band is the larger of the relative
`min_delta` and the noise the caller measured (the divergence alarm passes a multiple of the
train loss's own spread; the plateau stop watches a deterministic validation metric and passes 0).
A series has converged after `patience` observations without an improvement.

The plateau stop (`stop = "plateau"`) feeds evaluations of the metric the workload is judged by; the
alarm feeds windowed means of the train loss and calls "not converging" only a loss that is
*worse* than its best, never one that is level: a converged loss is never an alarm.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from jobkit.protocol import Metric, ReportLayout

Verdict = Literal["better", "level", "worse"]


def judged_by(workload_cls: Any) -> Metric:
    """The metric a workload is judged by: the first headline metric of its `report` layout (the one
    `jobkit collect` puts first too), else `val_loss`, lower is better."""
    layout = getattr(workload_cls, "report", None)
    headline = layout.headline if isinstance(layout, ReportLayout) else ()
    return headline[0] if headline else Metric("val_loss")


@dataclass
class Plateau:
    """The best value so far and the observations since it last improved by `min_delta` (relative)."""

    patience: int = 5
    min_delta: float = 0.005
    lower_is_better: bool = True
    best: float | None = None
    best_step: int | None = None
    since_best: int = 0
    converged_step: int | None = None  # the step at which `since_best` first reached `patience`

    def band(self, noise: float = 0.0) -> float:
        """How far from the best a value may be and still be level (on the plateau)."""
        return max(self.min_delta * abs(self.best or 0.0), noise)

    def judge(self, value: float, noise: float = 0.0) -> Verdict:
        """Classify `value` against the best without changing any state."""
        if self.best is None:
            return "better"
        gain = self.best - value if self.lower_is_better else value - self.best
        if gain > 0 and gain >= self.min_delta * abs(self.best):
            return "better"
        return "worse" if -gain > self.band(noise) else "level"

    def update(self, step: int, value: float, noise: float = 0.0) -> Verdict:
        """Record one observation at `step`; returns its verdict."""
        verdict = self.judge(value, noise)
        if verdict == "better":
            self.best, self.best_step, self.since_best = float(value), int(step), 0
        else:
            self.since_best += 1
            if self.converged_step is None and self.since_best >= self.patience:
                self.converged_step = int(step)
        return verdict

    @property
    def converged(self) -> bool:
        return self.converged_step is not None

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if hasattr(self, key):
                setattr(self, key, value)

