"""`compile = true` (issue 27, item 4): validated like any bool, left out of run ids at its default,
falling back to eager with one warning when torch.compile is unavailable or fails, and never
changing what a checkpoint holds."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from jobkit.plan import sweep
from jobkit.plan.params import ParamError, resolve
from jobkit.torchutil import Stepper
from jobs.charlm.workload import CharLM
from jobs.toy.workload import Toy
from jobs.vae.workload import BetaVAE

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
ROOT = Path(__file__).resolve().parents[1]
WARNING = "torch.compile is unavailable or failed here"


def charlm(tmp_path: Path, **raw) -> CharLM:
    workload = CharLM(resolve(CharLM.Params, CharLM.presets, {"preset": "tiny", "model": "transformer", **raw}))
    workload.setup(tmp_path / "run", torch.device("cpu"))
    return workload


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and WARNING in r.getMessage()]


# -------------------------------------------------------------------------------------- params
@pytest.mark.parametrize("workload", [CharLM, BetaVAE, Toy])
def test_compile_is_a_bool_defaulting_to_false(workload):
    assert resolve(workload.Params, workload.presets, {}).compile is False
    assert resolve(workload.Params, workload.presets, {"compile": True}).compile is True
    with pytest.raises(ParamError, match="compile"):
        resolve(workload.Params, workload.presets, {"compile": "yes"})


def test_compile_false_keeps_the_run_ids_and_true_makes_new_ones(tmp_path):
    smoke = (ROOT / "jobs" / "sweeps" / "smoke.toml").read_text()
    before = [s.run_id for s in sweep.load(ROOT / "jobs" / "sweeps" / "smoke.toml").specs]
    off, on = (tmp_path / "off.toml"), (tmp_path / "on.toml")
    off.write_text(smoke.replace('preset = "tiny"', 'preset = "tiny"\ncompile = false'))
    on.write_text(smoke.replace('preset = "tiny"', 'preset = "tiny"\ncompile = true'))
    assert [s.run_id for s in sweep.load(off).specs] == before
    assert "charlm-transformer-91cb2742" in before  # the id the runs made before `compile` existed have
    compiled = sweep.load(on).specs
    assert all(s.params["compile"] is True for s in compiled)
    assert not {s.run_id for s in compiled} & set(before)


# ------------------------------------------------------------------------------------ fallback
def test_compile_raising_falls_back_with_one_warning_and_trains(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no backend for this platform\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    caplog.set_level(logging.WARNING)
    torch.manual_seed(0)
    w = charlm(tmp_path, compile=True)
    losses = [w.train_step(s)["loss"] for s in range(30)]
    assert not w.stepper.compiled
    lines = warnings_of(caplog)
    assert len(lines) == 1 and "no backend for this platform" in lines[0] and "second line" not in lines[0]
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5


def test_a_failing_first_compiled_step_is_run_again_eagerly(tmp_path, monkeypatch, caplog):
    """Compilation is lazy (first forward, first backward): a failure there warns once and the step
    is redone without compiling, so the run equals an uncompiled one step for step."""
    class FailsWhenCalled:
        def __init__(self, module):
            self.calls = 0

        def __call__(self, *args, **kwargs):
            self.calls += 1
            raise RuntimeError("inductor: C++ compiler not found")

    made: list[FailsWhenCalled] = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: made.append(FailsWhenCalled(module)) or made[-1])
    caplog.set_level(logging.WARNING)
    torch.manual_seed(0)
    w = charlm(tmp_path / "a", compile=True)
    got = [w.train_step(s)["loss"] for s in range(5)]
    torch.manual_seed(0)
    plain = charlm(tmp_path / "b")
    want = [plain.train_step(s)["loss"] for s in range(5)]
    assert got == want and made[0].calls == 1
    assert len(warnings_of(caplog)) == 1 and "C++ compiler not found" in warnings_of(caplog)[0]
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, w.model.state_dict()[key]), key


def test_an_unsupported_platform_warns_once_without_trying(monkeypatch, caplog):
    import jobkit.torchutil as tu

    monkeypatch.setattr(tu, "compile_unsupported", lambda: "Python 3.99 is not supported by dynamo")
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("must not be called"))
    caplog.set_level(logging.WARNING)
    module = torch.nn.Linear(2, 1)
    stepper = Stepper(module, True, logging.getLogger("t"))
    assert stepper.fn is module and not stepper.compiled
    assert len(warnings_of(caplog)) == 1 and "Python 3.99" in warnings_of(caplog)[0]


def test_compile_false_never_touches_torch_compile(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("must not be called"))
    caplog.set_level(logging.WARNING)
    w = charlm(tmp_path)
    w.train_step(0)
    assert w.stepper.fn is w.model and not warnings_of(caplog)


# ----------------------------------------------------------------------------- real compilation
def test_compiled_checkpoints_have_the_plain_keys_and_load_across_compile(tmp_path, caplog):
    """With torch.compile working (or not: then the fallback), the checkpoint is the plain module's:
    no `_orig_mod.` keys, and it loads into a run with compile = false and back, bit-exact."""
    caplog.set_level(logging.WARNING)
    torch.manual_seed(0)
    on = charlm(tmp_path / "on", compile=True, steps=20)
    for s in range(3):
        on.train_step(s)
    state = on.state_dict()
    assert not any(k.startswith("_orig_mod.") for k in state["model"])
    off = charlm(tmp_path / "off", steps=20)
    assert state["model"].keys() == off.model.state_dict().keys()
    off.load_state_dict(state)
    for key, value in state["model"].items():
        assert torch.equal(off.model.state_dict()[key], value), key
    again = charlm(tmp_path / "again", compile=True, steps=20)
    again.load_state_dict(off.state_dict())
    again.train_step(3)  # trains on from the loaded state (compiled, or eager after one warning)
    assert len(warnings_of(caplog)) <= 2


@pytest.mark.parametrize("workload,raw", [
    (BetaVAE, {"preset": "tiny", "batch_size": 8, "val_size": 32, "mig_samples": 300, "latents": 4}),
    (Toy, {"preset": "tiny"}),
])
def test_vae_and_toy_train_through_the_fallback(workload, raw, monkeypatch, caplog, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("compile disabled for this test")

    monkeypatch.setattr(torch, "compile", broken)
    caplog.set_level(logging.WARNING)
    torch.manual_seed(0)
    w = workload(resolve(workload.Params, workload.presets, {**raw, "compile": True}))
    w.setup(tmp_path, torch.device("cpu"))
    first = w.train_step(0)["loss"]
    for s in range(1, 20):
        last = w.train_step(s)["loss"]
    assert len(warnings_of(caplog)) == 1
    assert last < first
