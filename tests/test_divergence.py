"""The divergence alarm: spikes and a loss that stops converging are caught; healthy training is not."""
from __future__ import annotations

import math

from rich.console import Console

from jobkit.cli.status_cmd import status_table
from jobkit.divergence import DivergenceMonitor
from jobkit.runstate import summarize
from jobkit.status import collect_status
from jobkit.testing import make_run


def feed(monitor: DivergenceMonitor, losses, start: int = 1) -> list[tuple[int, str, str]]:
    out = []
    for step, loss in enumerate(losses, start=start):
        out += [(step, kind, msg) for kind, msg in monitor.update(step, loss)]
    return out


def healthy(n: int) -> list[float]:
    return [1.5 + 2.5 * math.exp(-i / 300) + 0.05 * math.sin(i) for i in range(n)]


def test_healthy_training_raises_no_alarm():
    assert feed(DivergenceMonitor(), healthy(3000)) == []


def test_a_spike_is_caught_once_per_cooldown():
    losses = healthy(1000)
    losses[600] = 9.0
    losses[610] = 9.0
    alarms = feed(DivergenceMonitor(), losses)
    assert [(s, k) for s, k, _ in alarms] == [(601, "spike")]
    assert "loss spike at step 601: 9.000" in alarms[0][2]


def test_oscillation_that_stops_converging_is_caught():
    """The report's TCN: converging, then from ~step 1000 swinging ever higher instead of settling."""
    losses = healthy(1000) + [2.0 + 0.002 * i + 0.8 * (i % 2) for i in range(1000)]
    alarms = feed(DivergenceMonitor(), losses)
    kinds = [k for _, k, _ in alarms]
    assert "oscillation" in kinds
    first = next(s for s, k, _ in alarms if k == "oscillation")
    assert 1000 < first <= 1400
    assert "not converging" in next(m for _, k, m in alarms if k == "oscillation")


def test_state_round_trips_so_a_resumed_run_alarms_the_same():
    losses = healthy(1000) + [2.0 + 0.002 * i + 0.8 * (i % 2) for i in range(1000)]
    straight = feed(DivergenceMonitor(), losses)
    first = DivergenceMonitor()
    part = feed(first, losses[:1200])
    second = DivergenceMonitor()
    second.load_state_dict(first.state_dict())
    assert part + feed(second, losses[1200:], start=1201) == straight


def test_status_shows_the_alarm(tmp_path):
    run = make_run(tmp_path, "toy", {"preset": "tiny"})
    run.event("started", step=0, executor="foreground", pid=None, host=None)
    run.event("alarm", step=120, kind="oscillation", message="loss not converging by step 120")
    assert summarize(run).alarms == ["step 120: loss not converging by step 120"]
    console = Console(width=200, record=True)
    console.print(status_table(collect_status([run], use_slurm=False)))
    assert "alarm: step 120: loss not converging" in console.export_text()
