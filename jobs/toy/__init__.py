"""`toy`: a small real regression workload for exercising the toolkit and the cluster in seconds."""
