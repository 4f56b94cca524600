"""Workloads: the science side of jobkit, one package per workload (see `jobkit.protocol`).

Nothing here imports Slurm or submitit; each workload is registered by name in setup.cfg.
"""
