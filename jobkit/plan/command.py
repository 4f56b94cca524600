"""Kept for scripts that import it from here: a command run's params live in `jobkit.command.params`."""
from jobkit.command.params import *  # noqa: F401,F403
from jobkit.command.params import _check_program, _fields  # noqa: F401
