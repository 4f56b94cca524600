"""The one contract between the toolkit and the science: what a workload must provide.

`jobs/` implements it without importing Slurm or submitit; `jobkit.run.runner` drives it without
importing a model. A workload class is registered by name (see `jobkit.plan.registry`). Most workloads are stepped
by the runner (`Workload`); one that runs itself as a supervised process (the user's own script)
implements `SelfRunning` instead, and the run's entry point (`jobkit.run.launch`) picks between them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch only types the protocol; importing it would slow every CLI command
    import torch


MAX_STEPS = 10**9  # a billion steps: beyond any real run, far below what overflows a counter
MAX_BATCH = 1 << 20  # upper bound for workloads' batch sizes


@dataclass
class BaseParams:
    """Parameters every workload understands; a workload's own `Params` dataclass subclasses this.

    Every field needs a default. Field metadata may hold `choices` (a list), `min` / `max` (numbers),
    `allow_nonfinite` (a float field that may be nan/inf), `help` (one line) and `identity` ("when-set":
    a key added later, left out of the run id while at its default); `jobkit.plan.params` uses them to
    validate sweep files before anything runs.
    """

    preset: str = field(default="default", metadata={"help": "named bundle of defaults"})
    steps: int = field(default=1000, metadata={"min": 1, "max": MAX_STEPS, "help": "optimisation steps in total"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seeds every RNG"})
    checkpoint_every: int | Literal["auto"] = field(default=500, metadata={
        "min": 0, "help": "steps between checkpoints (0: off; 'auto': Young/Daly from the measured checkpoint "
                          "time and the run's interruptions)"})
    checkpoint_minutes: float = field(default=10.0, metadata={"min": 0, "max": 10**6, "help": "minutes between checkpoints (0: off)"})
    eval_every: int = field(default=250, metadata={"min": 0, "help": "steps between evaluations (0: end only)"})
    sample_every: int = field(default=0, metadata={"min": 0, "help": "steps between samples (0: end only)"})
    log_every: int = field(default=10, metadata={"min": 1, "help": "steps between logged train metrics"})
    keep_checkpoints: int = field(default=2, metadata={"min": 1, "max": 1000, "help": "checkpoints kept on disk"})
    async_checkpoint: bool = field(default=True, metadata={
        "identity": "when-set", "help": "write periodic checkpoints in the background (costs one copy of the "
                                        "state in memory while a write is in flight); false: in the loop"})
    stop: str = field(default="steps", metadata={
        "choices": ["steps", "plateau"],
        "help": "'plateau': stop once the target metric (val_loss) stops improving; steps stays the upper bound"})
    patience: int = field(default=5, metadata={
        "min": 1, "max": 10000, "help": "evaluations without an improvement of min_delta before a plateau stop"})
    min_delta: float = field(default=0.005, metadata={
        "min": 0.0, "max": 0.5, "help": "smallest relative improvement that counts (0.005 = 0.5 %)"})

    def check(self) -> None:
        """Cross-field validation; raise `jobkit.plan.params.ParamError(key, message)` on bad values."""


@dataclass(frozen=True)
class Metric:
    """A metric a workload is judged by (a validation metric's name, as `evaluate()` returns it)."""

    name: str
    higher_is_better: bool = False
    label: str = ""  # how reports title it; the name when empty

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ImageKind:
    """Images a workload writes as `samples/step-NNNNNN-<name>.png`, and how a report lays them out."""

    name: str
    title: str
    layout: str = "grid"  # grid: small squares side by side · wide: one wide image per run · strip: full width


@dataclass(frozen=True)
class ReportLayout:
    """How a workload's runs are compared in `jobkit collect`; the collector knows no workload by name.

    - `key_params`: the params that tell runs apart, coarsest first: columns of the report and of
      `jobkit status` when they differ, and (but for `compare_by`) always in the run names; a workload
      that declares none is told apart by `model` and `dataset`, the coarse keys most have;
    - `headline`: metrics that get a "best during training" column, in this order;
    - `images`: the image kinds the workload writes, compared across runs side by side;
    - `group_images_by`: one block of images per value of this param (e.g. a dataset);
    - `compare_by` / `compare_label`: the param that orders runs within a block, and its symbol;
    - `chart`: a headline metric drawn as bars per run in each block.
    """

    key_params: tuple[str, ...] = ("model", "dataset")
    headline: tuple[Metric, ...] = (Metric("val_loss"),)
    images: tuple[ImageKind, ...] = ()
    group_images_by: str | None = None
    compare_by: str | None = None
    compare_label: str = ""
    chart: str | None = None


@dataclass(frozen=True)
class RunContext:
    """Where a workload's process stands in a run of several tasks (data-parallel training).

    A workload whose `setup` takes a `ctx` argument gets one and can run on several tasks: it draws
    its part of every global batch (`part`), weights its loss by `share` so the averaged gradient is
    the global batch's, wraps its model with `data_parallel`, and sums evaluation sums with
    `all_sum`. With one task all of these are the identity: the run is exactly a one-process run.
    Only the main rank's TensorBoard writer and `artifacts()` are called; the runner writes the rest.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: Any = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's contiguous share of `n` items (shares differ by at most one item)."""
        return slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def share(self, n: int) -> float:
        """Factor for this rank's mean loss over its part of `n`, so that DDP's average over ranks is
        the mean over all `n` (1.0 with one task, and for equal parts)."""
        p = self.part(n)
        return (p.stop - p.start) * self.world_size / n

    def all_sum(self, tensor: "torch.Tensor") -> "torch.Tensor":
        """Sum `tensor` over ranks in place (evaluation sums); the identity with one task."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def data_parallel(self, module: "torch.nn.Module") -> "torch.nn.Module":
        """`module` wrapped in DistributedDataParallel when there are several tasks, else itself.

        Keep the bare module for evaluation, sampling and `state_dict()`: only training steps
        go through the wrapper (its forward and backward are collectives)."""
        if self.world_size <= 1:
            return module
        import warnings

        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if str(self.device).startswith("cuda") else None
        with warnings.catch_warnings():  # torch 2.14 renames it; the old name is the one that skips syncing
            warnings.simplefilter("ignore", FutureWarning)
            return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


@runtime_checkable
class Workload(Protocol):
    """One training job. Constructed as `Workload(params)` with its validated `Params` instance.

    Optional: a class attribute `report = ReportLayout(...)` tells `jobkit collect` how to compare
    the workload's runs (without one, by `val_loss`).

    Determinism contract (what makes resume bit-exact): all training randomness comes from the
    global RNGs (which the runner seeds and checkpoints) or from generators kept in `state_dict()`;
    `evaluate()` and `artifacts()` must not consume the global RNGs (use a local `torch.Generator`).
    """

    Params: ClassVar[type[BaseParams]]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]]  # preset name -> field overrides

    total_steps: int

    def check_data(self) -> None:
        """Cheap check, at submit, that the data this run will read is there and usable.

        Existence, readability, size, a format's header — never a full read. Raise
        `jobkit.plan.datacheck.DataProblem(key, path, problem, expected)`. A workload without data
        (or without this method) is not checked. Runs with `check_data = false` skip it.
        """

    def setup(self, run_dir: Path, device: "torch.device") -> None:
        """Load data, build the model and optimizer. Called once per process, before any resume.

        A workload that trains data-parallel declares `setup(self, run_dir, device, ctx: RunContext)`;
        one without `ctx` runs on one task only (the runner refuses several)."""

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step (`step` counts from 0); returns metrics, `loss` among them."""

    def evaluate(self) -> dict[str, float]:
        """Validation metrics (e.g. `val_loss`); no global-RNG use, no gradient."""

    def artifacts(self, step: int, writer: Any, out_dir: Path) -> dict[str, float]:
        """Write samples (files under `out_dir`, images/text to the TensorBoard `writer`).

        Returns extra metrics worth logging (may be empty).
        """

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimizer, scheduler, scaler, data generators.

        Must load with `torch.load(weights_only=True)`: tensors, numbers, strings, lists, dicts.
        """

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned."""


@runtime_checkable
class SelfRunning(Protocol):
    """A workload that runs itself as a supervised process instead of being stepped by the runner.

    It says so with `runs_itself = True`. Its params are the run's own keys, checked by
    `resolve_params` (no `Params` dataclass, no presets, no run settings); it runs in the folder
    `jobkit submit` ran in; `run` plays the runner's part and raises the runner's `Stopped` /
    `RunFailed`, so the job requeues it like any run. `report` is its `ReportLayout`.
    """

    runs_itself: ClassVar[bool]
    own_keys: ClassVar[tuple[str, ...]]  # the keys jobkit reads; any other key of a run is a param too
    list_params: ClassVar[tuple[str, ...]]  # params whose value is a list, not a sweep axis

    def __init__(self, params: Mapping[str, Any]) -> None: ...

    def check_data(self) -> None:
        """As `Workload.check_data`: cheap, at submit."""

    @staticmethod
    def resolve_params(raw: Mapping[str, Any], workdir: Path) -> dict[str, Any]:
        """One expanded run's keys (resources removed) -> its params, defaults written out; raises
        ValueError naming the key and the fix. `workdir`: where `jobkit submit` runs."""

    @staticmethod
    def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
        """Run settings from `resume --set`, checked (raise `jobkit.plan.params.ParamError`)."""

    @staticmethod
    def continues_at_limit(params: Mapping[str, Any]) -> bool:
        """Whether a stop at the job's time limit continues in a new segment (requeued) for this run."""

    @staticmethod
    def run(run: Any, host: Any, near_limit: Callable[[Any], bool] | None = None) -> dict[str, float]:
        """Run (or continue) the run in `run` (a `jobkit.store.RunDir`) on `host` (a `Host`); the final
        metrics. `near_limit(stop)`: whether a stop was the job's time limit."""
