"""Benchmark of the `vae` workload: CPU training throughput, and MIG against β on sprites.

    python bench/bench_vae.py                   # throughput + β=4 vs β=0, 600 steps each
    python bench/bench_vae.py --steps 3000 --betas 0,1,4,8

Prints figures, asserts nothing. The science check: after the same number of steps, MIG should be
higher for β = 4 than for β = 0 (an autoencoder with noise has no pressure to align its latents with
the factors). Short CPU runs are far from converged: expect small MIGs and compare them, not their size.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from jobkit.plan.params import resolve
from jobs.vae import sprites
from jobs.vae.workload import BetaVAE


def build(**raw) -> BetaVAE:
    workload = BetaVAE(resolve(BetaVAE.Params, BetaVAE.presets, {"preset": "cpu-small", **raw}))
    workload.setup(Path("."), torch.device("cpu"))
    return workload


def throughput(batch: int, steps: int) -> None:
    workload = build(batch_size=batch)
    for s in range(3):
        workload.train_step(s)
    t0 = time.perf_counter()
    for s in range(steps):
        workload.train_step(3 + s)
    seconds = time.perf_counter() - t0
    factors = sprites.sample_factors(batch, torch.Generator().manual_seed(0))
    t1 = time.perf_counter()
    for _ in range(steps):
        sprites.render(factors)
    render = time.perf_counter() - t1
    print(f"training step, sprites, batch {batch}, {torch.get_num_threads()} thread(s): "
          f"{steps * batch / seconds:,.0f} images/s ({seconds / steps * 1000:.0f} ms/step); "
          f"rendering alone {steps * batch / render:,.0f} images/s")


def mig_vs_beta(betas: list[float], steps: int, batch: int, lr: float, mig_samples: int, seed: int) -> None:
    print(f"\nMIG on sprites after {steps} steps (batch {batch}, lr {lr}, seed {seed}, {mig_samples} MIG samples, 20 bins)")
    header = f"{'beta':>5} {'MIG':>6} {'shape':>6} {'scale':>6} {'orient':>6} {'posX':>6} {'posY':>6}" \
             f" {'active':>6} {'recon':>7} {'KL':>6} {'rot dim':>7} {'min':>5}"
    print(header)
    for beta in betas:
        t0 = time.perf_counter()
        workload = build(beta=beta, batch_size=batch, lr=lr, mig_samples=mig_samples, seed=seed)
        for s in range(steps):
            workload.train_step(s)
        m = workload.evaluate()
        minutes = (time.perf_counter() - t0) / 60
        print(f"{beta:>5g} {m['mig']:>6.3f} {m['mig_shape']:>6.3f} {m['mig_scale']:>6.3f} "
              f"{m['mig_orientation']:>6.3f} {m['mig_posX']:>6.3f} {m['mig_posY']:>6.3f} "
              f"{int(m['active_units']):>6d} {m['recon']:>7.1f} {m['kl']:>6.2f} {int(m['rotation_dim']):>7d} "
              f"{minutes:>5.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600, help="training steps per β for the MIG comparison")
    ap.add_argument("--betas", default="4,0", help="comma-separated β values")
    ap.add_argument("--batch", type=int, default=64, help="batch size (throughput and MIG runs)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--mig-samples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--throughput-steps", type=int, default=10)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    throughput(args.batch, args.throughput_steps)
    if args.steps > 0:
        mig_vs_beta([float(b) for b in args.betas.split(",")], args.steps, args.batch, args.lr,
                    args.mig_samples, args.seed)


if __name__ == "__main__":
    main()
