"""Spot a training loss that spikes or stops converging (the report's TCN at epoch ~100), and nothing else.

Works on the train loss alone, so it serves every workload. Both checks compare the loss with its
own recent spread (median and MAD of the last `window` losses), not only with its level, so the
ordinary noise of a small converged loss (a 0.02 MSE that swings to 0.05) is not an alarm:

- **spike**: one loss above the recent median by more than `spike_z` robust standard deviations
  *and* more than `spike_factor` times the median;
- **not converging**: the mean of a block of `window` losses is *worse* than the best block's mean,
  in the sense of `jobkit.run.convergence` (beyond both `min_delta` relative and `rise_z` times the
  spread measured at the best block), for two blocks in a row. A loss that is level with its best
  is converged, which is what the plateau stop calls it too.

Its state is checkpointed, so a resumed run raises the same alarms as an uninterrupted one.
"""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from statistics import median

from jobkit.run.convergence import Plateau

MAD_TO_SD = 1.4826  # MAD x this = standard deviation, for normal noise


def _sorted_median(ordered: list[float]) -> float:
    """statistics.median of an already sorted list, without sorting it again."""
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def robust_spread(values: list[float]) -> tuple[float, float]:
    """(median, robust standard deviation) of `values`; the spread is floored at 0.1 % of |median|."""
    mid = median(values)
    mad = median(abs(v - mid) for v in values) * MAD_TO_SD
    return mid, max(mad, 1e-3 * abs(mid), 1e-12)


@dataclass
class DivergenceMonitor:
    warmup: int = 50  # observations before any alarm
    window: int = 100  # recent losses behind the median/spread; also the block size of the rise check
    spike_z: float = 12.0  # a spike is this many robust standard deviations above the recent median...
    spike_factor: float = 1.5  # ...and this many times the median
    rise_z: float = 1.0  # a block mean this many (best block's) standard deviations above the best: worse
    min_delta: float = 0.005  # relative; the same meaning as the plateau stop's (jobkit.run.convergence)
    cooldown: int = 200  # observations between two alarms of one kind
    seen: int = 0
    recent: list[float] = field(default_factory=list)  # the last `window` losses
    block: list[float] = field(default_factory=list)  # losses of the current block
    best_spread: float = 0.0  # the robust spread of the block that set the best mean
    worse_blocks: int = 0
    blocks: dict = field(default_factory=dict)  # Plateau state over block means
    last_alarm: dict[str, int] = field(default_factory=dict)

    def update(self, step: int, loss: float) -> list[tuple[str, str]]:
        """Feed one loss; returns alarms as (kind, message).

        Called every step, so the common case is cheap: the median comes from a sorted copy of the
        window, and the spread (a second pass) is computed only for a loss already `spike_factor`
        times above it — the same decision as computing both every time.
        """
        alarms: list[tuple[str, str]] = []
        self.seen += 1
        ordered = self._ordered()
        if self.seen > self.warmup and len(self.recent) >= min(self.window, self.warmup):
            mid = _sorted_median(ordered)
            excess = loss - mid
            if excess > (self.spike_factor - 1.0) * abs(mid):
                _, spread = robust_spread(self.recent)
                if excess > self.spike_z * spread:
                    alarms.append(("spike", f"loss spike at step {step}: {loss:.4g} vs recent median {mid:.4g} "
                                   f"± {spread:.2g} ({excess / spread:.0f} spreads above)"))
        self.recent.append(loss)
        bisect.insort(ordered, loss)
        for gone in self.recent[:-self.window]:
            del ordered[bisect.bisect_left(ordered, gone)]
        del self.recent[:-self.window]
        self.block.append(loss)
        if len(self.block) >= self.window:
            alarms += self._close_block(step)
        out = []
        for kind, message in alarms:
            if self.seen - self.last_alarm.get(kind, -10**9) >= self.cooldown:
                self.last_alarm[kind] = self.seen
                out.append((kind, message))
        return out

    def _ordered(self) -> list[float]:
        """The window sorted, kept beside `recent` (derived from it, so never part of the state)."""
        cached = self.__dict__.get("_sorted")
        if cached is None or len(cached) != len(self.recent):
            cached = self.__dict__["_sorted"] = sorted(self.recent)
        return cached

    def _close_block(self, step: int) -> list[tuple[str, str]]:
        mean = sum(self.block) / len(self.block)
        _, spread = robust_spread(self.block)
        self.block = []
        plateau = Plateau(patience=1, min_delta=self.min_delta)
        plateau.load_state_dict(self.blocks)
        verdict = plateau.update(step, mean, noise=self.rise_z * self.best_spread)
        self.blocks = plateau.state_dict()
        if verdict == "better":
            self.best_spread, self.worse_blocks = spread, 0
            return []
        if verdict == "level":  # converged, or still converging slowly: fine
            self.worse_blocks = 0
            return []
        self.worse_blocks += 1
        if self.worse_blocks < 2 or self.seen <= self.warmup:
            return []
        return [("oscillation", f"loss not converging by step {step}: mean {mean:.4g} over the last "
                 f"{self.window} steps vs best {plateau.best:.4g} (step {plateau.best_step}), "
                 f"beyond its band ± {plateau.band(self.rise_z * self.best_spread):.2g}")]

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.pop("_sorted", None)
        for key, value in state.items():
            if hasattr(self, key):
                setattr(self, key, type(getattr(self, key))(value)
                        if isinstance(getattr(self, key), (dict, list)) else value)
