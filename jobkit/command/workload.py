"""The `command` workload: a run that is the user's own script, supervised instead of stepped.

It implements `jobkit.protocol.SelfRunning`: its params are the run's own keys (typed by TOML,
checked by `params.resolve_params`), it has no run settings (the script owns its cadence), it runs
where `jobkit submit` ran, and `run` hands the run folder to the supervisor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from jobkit.command import keys as command_keys
from jobkit.command import params as command_params
from jobkit.command import script as command_script
from jobkit.plan.params import ParamError
from jobkit.protocol import ReportLayout


class Command:
    """`workload = "command"`: `command = ["{python}", "train.py", "--lr", "{lr}"]` and its params."""

    runs_itself: ClassVar[bool] = True
    own_keys: ClassVar[tuple[str, ...]] = command_params.JOBKIT_KEYS
    list_params: ClassVar[tuple[str, ...]] = command_params.LIST_KEYS  # one list value each, not a sweep axis
    report: ClassVar[ReportLayout] = ReportLayout()  # the script's params are the user's: the defaults

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)

    def check_data(self) -> None:
        """Nothing more to check at submit: the program and its script were checked when the sweep was
        read (`resolve_params`), and what the script reads is its own business."""

    @staticmethod
    def resolve_params(raw: Mapping[str, Any], workdir: Path) -> dict[str, Any]:
        """The run's params, defaults written out (raises ValueError naming the key and the fix)."""
        params = command_params.resolve_params(raw, workdir)
        command_script.check(params)
        command_keys.refuse_misspelt(params)
        return params

    @staticmethod
    def unused_keys(runs: list[Mapping[str, Any]]) -> str | None:
        """One warning line naming the keys of these runs that their command lines never use."""
        return command_keys.warning(runs)

    @staticmethod
    def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
        """A command run has no run settings: its script decides its own cadence."""
        for key in settings:
            raise ParamError(key, "this run runs your own command, which decides itself how often it "
                                  "checkpoints, evaluates and logs; change its arguments in a new run")
        return {}

    @staticmethod
    def continues_at_limit(params: Mapping[str, Any]) -> bool:
        """A resumable script continues from its own checkpoint after a time limit (a new segment)."""
        return bool(params.get("resumable"))

    @staticmethod
    def run(run: Any, host: Any, near_limit: Callable[[Any], bool] | None = None) -> dict[str, float]:
        """Run (or continue) the script under the supervisor (`jobkit.command.supervise`)."""
        from jobkit.command import supervise

        return supervise.run(run, host, near_limit=near_limit)
