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
