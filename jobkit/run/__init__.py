"""What runs inside a job: the training loop, its checkpoints and stop requests, the job entry point."""
