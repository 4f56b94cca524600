"""Small torch helpers every workload needs the same way (no model here: `jobkit` knows none)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def eval_mode(module: Any) -> Iterator[None]:
    """Put `module` in eval mode for a block (dropout off) and give it back the mode it had.

    Evaluation and sampling must not change how the next training step behaves, so the previous
    mode is restored, not assumed to be `train()`.
    """
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def compile_unsupported() -> str | None:
    """Why `torch.compile` cannot run here (one line), or None when it can be tried."""
    import torch

    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:
        from torch._dynamo.eval_frame import check_if_dynamo_supported
        check_if_dynamo_supported()
    except Exception as exc:  # e.g. a Python version dynamo does not support yet
        return _first_line(exc)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class Stepper:
    """Runs a training step's forward and backward through `torch.compile(module)` when asked and
    possible, else through `module` itself — falling back with one warning line.

    The model stays a plain `nn.Module`: only training steps go through the compiled wrapper, and
    checkpoints save the module itself, so their keys (no `_orig_mod.` prefix) and contents do not
    depend on `compile`. Compilation happens lazily at the first forward and first backward, so the
    first step is guarded: if it raises, the step is run again without compiling.
    """

    def __init__(self, module: Any, compile: bool, log: Any) -> None:
        self.module, self.log = module, log
        self.fn: Any = module
        self.pending = False  # the compiled path has not completed a step yet
        if compile:
            reason = compile_unsupported()
            if reason is None:
                import torch
                try:
                    self.fn, self.pending = torch.compile(module), True
                except Exception as exc:
                    reason = _first_line(exc)
            if reason is not None:
                self._warn(reason)

    @property
    def compiled(self) -> bool:
        return self.fn is not self.module

    def _warn(self, reason: str) -> None:
        self.log.warning("compile = true: torch.compile is unavailable or failed here (%s); training "
                         "without it", reason)

    def run(self, body: Any) -> Any:
        """`body(model)`: the step's forward and backward (it must zero the gradients first)."""
        if not self.pending:
            return body(self.fn)
        try:
            out = body(self.fn)
        except Exception as exc:
            self.fn, self.pending = self.module, False
            self._warn(_first_line(exc))
            return body(self.module)
        self.pending = False
        return out


def autocast_dtype(mode: str, device_type: str, log: Any) -> Any:
    """The dtype forward passes autocast to for `autocast = mode` on this device, or None (float32).

    "auto" keeps each device's usual choice (bfloat16 on CUDA, float32 on CPU); "bf16" asks for
    bfloat16 on a CPU too, which pays off only where the CPU multiplies bf16 natively (AVX512-BF16,
    AMX): elsewhere it is emulated and slower, said in one warning line; "off" is float32 everywhere.
    """
    import torch

    if mode == "off" or (mode == "auto" and device_type != "cuda"):
        return None
    if device_type == "cpu" and not _cpu_has_native_bf16():
        log.warning("autocast = bf16: this CPU has no native bfloat16 matrix multiply (AVX512-BF16 or "
                    "AMX); training runs, probably slower than with autocast = \"off\"")
    return torch.bfloat16


def _cpu_has_native_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
