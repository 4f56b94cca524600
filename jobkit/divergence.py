"""Spot a training loss that spikes or oscillates instead of converging (the report's TCN at epoch ~100).

Works on the train loss alone, so it serves every workload. Its state is checkpointed, so a resumed
run raises the same alarms as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class DivergenceMonitor:
    warmup: int = 50  # observations before any alarm
    spike_factor: float = 1.5  # loss > factor x running mean: a spike
    window: int = 100  # observations per window for the oscillation check
    rise_factor: float = 1.05  # a window whose mean exceeds the best window's by this: not converging
    cooldown: int = 200  # observations between two alarms of one kind
    ema_decay: float = 0.98
    seen: int = 0
    ema: float = 0.0
    best_window: float = float("inf")
    window_sum: float = 0.0
    window_n: int = 0
    rising_windows: int = 0
    last_alarm: dict[str, int] = field(default_factory=dict)

    def update(self, step: int, loss: float) -> list[tuple[str, str]]:
        """Feed one loss; returns alarms as (kind, message)."""
        alarms: list[tuple[str, str]] = []
        self.seen += 1
        if self.seen == 1:
            self.ema = loss
        if self.seen > self.warmup and loss > self.spike_factor * self.ema:
            alarms.append(("spike", f"loss spike at step {step}: {loss:.3f} vs running mean {self.ema:.3f}"))
        self.ema = self.ema_decay * self.ema + (1 - self.ema_decay) * loss
        self.window_sum += loss
        self.window_n += 1
        if self.window_n >= self.window:
            mean = self.window_sum / self.window_n
            if mean > self.rise_factor * self.best_window:
                self.rising_windows += 1
                if self.rising_windows >= 2:
                    alarms.append(("oscillation", f"loss not converging by step {step}: mean {mean:.3f} over "
                                   f"the last {self.window_n} steps vs best {self.best_window:.3f}"))
            else:
                self.rising_windows = 0
            self.best_window = min(self.best_window, mean)
            self.window_sum, self.window_n = 0.0, 0
        out = []
        for kind, message in alarms:
            if self.seen - self.last_alarm.get(kind, -10**9) >= self.cooldown:
                self.last_alarm[kind] = self.seen
                out.append((kind, message))
        return out

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            if hasattr(self, key):
                setattr(self, key, dict(value) if key == "last_alarm" else value)
