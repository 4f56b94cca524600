"""charlm's `autocast` (issue 27, item 4): "auto" keeps each device's precision and the run ids made
before the key existed; "bf16" runs CPU forward passes in bfloat16, trains, and resumes bit-exact."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch

import jobkit.torchutil as tu
from jobkit.plan import sweep
from jobkit.plan.params import ParamError, resolve
from jobs.charlm.workload import CharLM

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
ROOT = Path(__file__).resolve().parents[1]
RAW = {"preset": "tiny", "model": "transformer", "dropout": 0.1, "steps": 12}


def make(tmp_path: Path, **raw) -> CharLM:
    workload = CharLM(resolve(CharLM.Params, CharLM.presets, {**RAW, **raw}))
    workload.setup(tmp_path, torch.device("cpu"))
    return workload


def test_autocast_values_and_the_run_ids(tmp_path):
    assert resolve(CharLM.Params, CharLM.presets, {}).autocast == "auto"
    with pytest.raises(ParamError, match="autocast.*accepted values: auto, bf16, off"):
        resolve(CharLM.Params, CharLM.presets, {"autocast": "fp16"})
    path = ROOT / "jobs" / "sweeps" / "smoke.toml"
    text = path.read_text()
    before = {s.run_id for s in sweep.load(path).specs}
    for value, same in (("auto", True), ("bf16", False)):
        changed = tmp_path / f"{value}.toml"
        changed.write_text(text.replace('steps = 300', f'steps = 300\nautocast = "{value}"'))
        charlm = {s.run_id for s in sweep.load(changed).specs if s.workload == "charlm"}
        assert len(charlm) == 3 and (charlm <= before) is same and (not charlm & before) is not same


def test_auto_is_float32_on_cpu_and_bf16_computes_in_bfloat16(tmp_path):
    ids = torch.zeros(2, 8, dtype=torch.long)
    losses = {}
    for value in ("auto", "off", "bf16"):
        w = make(tmp_path / value, autocast=value)
        with w._autocast():
            dtype = w.model(ids).dtype
        assert dtype == (torch.bfloat16 if value == "bf16" else torch.float32)
        torch.manual_seed(0)
        losses[value] = [w.train_step(s)["loss"] for s in range(40)]
    assert losses["auto"] == losses["off"]
    assert losses["bf16"] != losses["off"]  # really another precision, yet it learns as well
    assert sum(losses["bf16"][-5:]) / 5 < losses["bf16"][0] - 0.5
    assert abs(losses["bf16"][-1] - losses["off"][-1]) < 0.1


def test_bf16_resume_is_bit_exact(tmp_path):
    n, k = 12, 5
    torch.manual_seed(123)
    straight = make(tmp_path / "a", autocast="bf16")
    for s in range(n):
        straight.train_step(s)
    torch.manual_seed(123)
    first = make(tmp_path / "b", autocast="bf16")
    for s in range(k):
        first.train_step(s)
    buf = io.BytesIO()
    torch.save({"workload": first.state_dict(), "rng": torch.get_rng_state()}, buf)
    torch.manual_seed(999)
    resumed = make(tmp_path / "c", autocast="bf16")
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed.load_state_dict(ckpt["workload"])
    torch.set_rng_state(ckpt["rng"])
    for s in range(k, n):
        resumed.train_step(s)
    for key, value in straight.model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, resumed.model.state_dict()[key]), key
    assert straight.evaluate() == resumed.evaluate()


def test_bf16_on_a_cpu_without_native_bf16_warns_once_and_trains(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tu, "_cpu_has_native_bf16", lambda: False)
    caplog.set_level(logging.WARNING)
    w = make(tmp_path, autocast="bf16")
    w.train_step(0)
    lines = [r.getMessage() for r in caplog.records if "autocast = bf16" in r.getMessage()]
    assert len(lines) == 1 and "no native bfloat16" in lines[0]
    caplog.clear()
    make(tmp_path / "off", autocast="off").train_step(0)
    assert not [r for r in caplog.records if "autocast" in r.getMessage()]
