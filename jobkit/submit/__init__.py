"""Turning planned runs into scheduler jobs (one array per resource shape), and cancelling them."""
