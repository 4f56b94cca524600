"""Kept for scripts that import it from here: the supervisor lives in `jobkit.command.supervise`."""
from jobkit.command.supervise import *  # noqa: F401,F403
from jobkit.command.supervise import EXIT_STOPPED, POLL_S, TAIL_LINES, current_step, run, stop_wait_s  # noqa: F401
