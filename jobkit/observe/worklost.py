"""What status says about a `work_lost` event (`jobkit.command.lost`): how far a run went back."""
from __future__ import annotations

from typing import Any, Mapping


def note(ev: Mapping[str, Any]) -> str:
    """What status says about one `work_lost` event."""
    reached, steps, secs = ev.get("reached"), ev.get("lost_steps"), ev.get("lost_s")
    amount = f"{steps} steps" + (f" ({secs:.0f} s)" if isinstance(secs, (int, float)) else "")
    if ev.get("from_scratch"):
        return f"restarted from scratch (resumable = false): {ev.get('cause')} at step {reached}, {amount} lost"
    if steps is None:
        return f"{ev.get('cause')} at step {reached}: resumes from the script's own last checkpoint " \
               "(set checkpoint = \"{run_dir}/...\" to see how much work is lost)"
    if ev.get("checkpoint") is None:
        return f"{ev.get('cause')} at step {reached} before any checkpoint was seen: resumes from step 0, " \
               f"{amount} lost"
    return f"{ev.get('cause')} at step {reached}: resumes from the checkpoint at step {ev.get('step')}, {amount} lost"
