"""jobkit: run deep-learning experiments as Slurm batch jobs that survive time limits and preemption."""

__version__ = "0.1.0"
