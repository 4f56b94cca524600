"""What a run is doing: its folder's record, the scheduler's view, its logs."""
