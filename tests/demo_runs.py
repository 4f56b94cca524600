"""Build small, fake-but-faithful sweeps (the runner's file contract, no training) to test or preview
the report: `python tests/demo_runs.py ROOT` writes `ROOT/charlm-demo` and `ROOT/vae-demo`.

Every file is what the runner writes: spec.json (via `RunDir.create`), events.jsonl, progress.json,
metrics.json, real TensorBoard event files (torch's SummaryWriter, with a resumed segment using
`purge_step`), and samples (charlm text json/md; vae PNG grids made with torchvision + json).
Each sweep has finished runs and one still running, so the report's "missing" list has content.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from jobkit import atomic
from jobkit.plan.spec import JobSpec, readable_name
from jobkit.state import Event
from jobkit.store import RunDir

T0 = 1_700_000_000.0
PROMPTS = [("ROMEO:\nBut soft, what light ", "through yonder window breaks?\nIt is the east"),
           ("First Citizen:\nBefore we proceed ", "any further, hear me speak.\n\nAll:\nSpeak, speak."),
           ("KING HENRY:\nOnce more unto the ", "breach, dear friends, once more;\nOr close the wall")]


def _event(run: RunDir, t: float, kind: str, **fields: Any) -> None:
    atomic.append_line(run.events_path, json.dumps({"t": t, "event": kind, **fields}, sort_keys=True))


def _make_run(root: Path, sweep: str, workload: str, params: dict[str, Any], varying: dict[str, Any]) -> RunDir:
    spec = JobSpec(sweep=sweep, workload=workload, params=params, name=readable_name(workload, varying))
    return RunDir.create(root, spec)


def _log(run: RunDir, segments: list[tuple[int, int]], curves: dict[str, Any], every: dict[str, int],
         hparams: dict[str, Any] | None = None, final: dict[str, float] | None = None) -> None:
    """Scalars for steps [a, b) per segment; a later segment starts at its resume step (purge_step)."""
    from torch.utils.tensorboard import SummaryWriter

    for i, (a, b) in enumerate(segments):
        writer = SummaryWriter(log_dir=str(run.tb_dir), purge_step=a if i else None)
        for tag, fn in curves.items():
            k = every[tag.split("/")[0]]
            for step in range(a, b):
                if step % k == 0 or step == b - 1 and tag.startswith("val/") and b == segments[-1][1]:
                    writer.add_scalar(tag, fn(step), step)
        writer.flush()
        writer.close()
    if hparams is not None and final is not None:
        writer = SummaryWriter(log_dir=str(run.tb_dir))
        writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in final.items()}, run_name=".")
        writer.close()


def _lifecycle(run: RunDir, *, segments: int, finished_step: int | None, total: int, step_s: float) -> None:
    t = T0
    _event(run, t, Event.SUBMITTED, job_id="1001_0", partition="gpu", executor="slurm")
    per = total // segments
    for seg in range(segments):
        t += 5
        start = seg * per
        _event(run, t, Event.STARTED, attempt=seg + 1, job_id="1001_0", step=start, host="node1", pid=1000 + seg)
        end = min(total, start + per) if finished_step is not None or seg < segments - 1 else start + per // 2
        t += (end - start) * step_s
        _event(run, t, Event.CHECKPOINT, step=end, file=f"step-{end:06d}.pt", seconds=0.2, step_seconds=step_s)
        if seg < segments - 1:
            _event(run, t + 1, Event.REQUEUED, step=end, reason="timeout")
            t += 1
    if finished_step is not None:
        _event(run, t + 1, Event.FINISHED, step=finished_step, metrics={})


def make_charlm(root: Path, sweep: str = "charlm-demo", steps: int = 600) -> list[str]:
    ids = []
    for i, model in enumerate(("lstm", "tcn", "transformer")):
        params = {"model": model, "steps": steps, "seed": 0, "lr": 1e-3, "log_every": 20, "eval_every": 100,
                  "sample_every": 300, "data": "tinyshakespeare"}
        run = _make_run(root, sweep, "charlm", params, {"model": model})
        ids.append(run.run_id)
        done = model != "transformer"  # the transformer is still running (half way)
        reach = steps if done else steps // 2
        floor = 1.35 + 0.1 * i
        curves = {"train/loss": lambda s, f=floor: f + 2.9 * math.exp(-s / 120) + 0.03 * math.sin(s / 7),
                  "train/lr": lambda s: 1e-3 * min(1.0, (s + 1) / 100),
                  "val/val_loss": lambda s, f=floor: f + 0.08 + 2.9 * math.exp(-s / 120),
                  "val/val_bpc": lambda s, f=floor: (f + 0.08 + 2.9 * math.exp(-s / 120)) / math.log(2)}
        segs = [(0, 400), (300, reach + 1)] if model == "tcn" else [(0, reach + 1)]
        final = {"val_loss": curves["val/val_loss"](reach), "val_bpc": curves["val/val_bpc"](reach)}
        _log(run, segs, curves, {"train": 20, "val": 100}, hparams={"model": model, "lr": 1e-3} if done else None,
             final=final)
        _lifecycle(run, segments=2 if model == "tcn" else 1, finished_step=steps if done else None,
                   total=steps, step_s=0.5 + 0.2 * i)
        atomic.write_json(run.progress_path, {"step": reach, "loss": curves["train/loss"](reach),
                                              "t": T0 + 5 + reach * (0.5 + 0.2 * i), "steps_per_s": 2.0})
        if done:
            atomic.write_json(run.metrics_path, {"step": steps, **final})
        for step in range(300, reach + 1, 300):
            samples = [{"prompt": p, "generated": f"[{model} @ {step}] " + truth[: 20 + i * 5][::-1], "truth": truth}
                       for p, truth in PROMPTS]
            atomic.write_json(run.samples_dir / f"step-{step:06d}.json",
                              {"step": step, "model": model, "samples": samples})
            md = "\n\n".join(f"**{s['prompt']}**{s['generated']}" for s in samples)
            atomic.write_text(run.samples_dir / f"step-{step:06d}.md", md + "\n")
    return ids


def _png(path: Path, images: Any, nrow: int) -> None:
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, str(path), nrow=nrow, padding=2)


def make_vae(root: Path, sweep: str = "vae-demo", steps: int = 400) -> list[str]:
    import torch

    ids = []
    cases = [("dsprites", 1.0, "done"), ("dsprites", 4.0, "done"), ("dsprites", 16.0, "running"),
             ("shapes3d", 4.0, "done"), ("shapes3d", 8.0, "pending")]
    for i, (dataset, beta, how) in enumerate(cases):
        params = {"dataset": dataset, "beta": beta, "steps": steps, "seed": 0, "latents": 6, "log_every": 20,
                  "eval_every": 100, "sample_every": 200}
        run = _make_run(root, sweep, "vae", params, {"dataset": dataset, "beta": beta})
        ids.append(run.run_id)
        if how == "pending":
            _event(run, T0, Event.SUBMITTED, job_id=f"1002_{i}", partition="gpu", executor="slurm")
            continue
        reach = steps if how == "done" else steps // 2
        mig = 0.05 + 0.12 * math.log(1 + beta)
        curves = {"train/loss": lambda s, b=beta: 40 + 400 * math.exp(-s / 40) + 2 * b,
                  "val/val_loss": lambda s, b=beta: 45 + 380 * math.exp(-s / 40) + 2 * b,
                  "val/recon": lambda s, b=beta: 35 + 380 * math.exp(-s / 40) + b,
                  "val/kl": lambda s, b=beta: 10 - b / 4 + 0 * s,
                  "val/mig": lambda s, m=mig: m * min(1.0, s / 200)}
        for d in range(3):
            curves[f"val/kl_dim{d}"] = lambda s, d=d: 2.0 / (d + 1)
        final = {k.split("/")[1]: fn(reach) for k, fn in curves.items() if k.startswith("val/")}
        _log(run, [(0, reach + 1)], curves, {"train": 20, "val": 100},
             hparams={"beta": beta, "dataset": dataset} if how == "done" else None, final=final)
        _lifecycle(run, segments=1, finished_step=steps if how == "done" else None, total=steps, step_s=0.3)
        atomic.write_json(run.progress_path, {"step": reach, "loss": curves["train/loss"](reach),
                                              "t": T0 + 5 + reach * 0.3})
        if how == "done":
            atomic.write_json(run.metrics_path, {"step": steps, **final})
        gen = torch.Generator().manual_seed(i)
        for step in range(200, reach + 1, 200):
            base = run.samples_dir / f"step-{step:06d}"
            tint = torch.tensor([0.3 + 0.1 * i, 0.6, 1.0 - 0.1 * i]).view(1, 3, 1, 1)
            _png(Path(f"{base}-prior.png"), torch.rand(16, 3, 32, 32, generator=gen) * tint, nrow=4)
            if how == "running":
                continue  # the running run has written only its prior grid so far
            _png(Path(f"{base}-recon.png"), torch.rand(16, 3, 32, 32, generator=gen), nrow=8)
            ramp = torch.linspace(0, 1, 8).view(1, 8, 1, 1, 1).expand(6, 8, 3, 32, 32).reshape(48, 3, 32, 32)
            _png(Path(f"{base}-traversal.png"), ramp * tint, nrow=8)
            _png(Path(f"{base}-rotation.png"), torch.rand(12, 3, 32, 32, generator=gen), nrow=12)
            kl = [round(2.0 / (d + 1), 3) for d in range(6)]
            atomic.write_json(Path(f"{base}.json"), {
                "step": step, "beta": beta, "dataset": dataset, "rotation_dim": 0, "kl_order": list(range(6)),
                "mig": round(mig * min(1.0, step / 200), 4), "kl_per_dim": kl, "active_units": sum(k > 0.5 for k in kl)})
    return ids


def main(argv: list[str] | None = None) -> None:
    root = Path((argv or sys.argv[1:] or ["runs"])[0])
    print("charlm-demo:", ", ".join(make_charlm(root)))
    print("vae-demo:", ", ".join(make_vae(root)))


if __name__ == "__main__":
    main()
