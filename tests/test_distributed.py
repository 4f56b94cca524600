"""Data-parallel runs without Slurm: ranks started as torchrun would (`jobkit run` with RANK/WORLD_SIZE),
stopped collectively, killed, resumed — and the pure parts (topology, shares, resources, partitions)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from jobkit import testing
from jobkit.plan import choose as cluster
from jobkit.plan import placement, slurmtext
from jobkit.plan.clusterfacts import ClusterFacts
from jobkit.plan.spec import JobSpec, ResourceError, Resources, parse_resources
from jobkit.protocol import RunContext
from jobkit.run import distributed
from jobkit.store import RunDir

# ------------------------------------------------------------------------------------------ pure parts

def test_rank_parts_cover_the_global_batch_once_with_weights_that_average_to_the_mean():
    for world in (1, 2, 3, 4):
        for n in (1, 7, 12, 64):
            if n < world:
                continue
            ctxs = [RunContext(rank=r, world_size=world) for r in range(world)]
            covered = [i for c in ctxs for i in range(n)[c.part(n)]]
            assert covered == list(range(n))
            # DDP averages the ranks' weighted means: sum(share_r * n_r-mean) / world = global mean
            parts = [c.part(n) for c in ctxs]
            assert sum(c.share(n) * (p.stop - p.start) for c, p in zip(ctxs, parts)) / world == pytest.approx(
                sum((p.stop - p.start) ** 2 * world / n for p in parts) / world)
    assert RunContext().share(12) == 1.0 and RunContext().part(12) == slice(0, 12)


def test_topology_from_torchrun_variables_and_a_port_from_the_job_id():
    topo = distributed.Topology.from_environ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                                              "MASTER_ADDR": "n1", "MASTER_PORT": "29400"})
    assert (topo.rank, topo.world_size, topo.is_main, topo.master_addr) == (1, 4, False, "n1")
    assert distributed.Topology.from_environ({}) is None
    assert distributed.port_for("4242") == distributed.port_for("4242")
    assert distributed.port_for("4242") != distributed.port_for("4243")
    assert distributed.PORT_BASE <= distributed.port_for("123_4") < distributed.PORT_BASE + distributed.PORT_SPAN


def test_rank_seeds_keep_rank_zero_on_the_run_seed():
    assert distributed.rank_seed(7, 0) == 7
    assert len({distributed.rank_seed(7, r) for r in range(8)}) == 8


def test_nodes_and_tasks_per_node_resources():
    res = parse_resources({"nodes": 2, "tasks_per_node": 3, "cpus": 2})
    assert (res.nodes, res.tasks, res.world_size) == (2, 3, 6)
    assert parse_resources({"gpus": 4}).tasks == 4  # one task per GPU unless said otherwise
    assert parse_resources({"gpus": 4, "tasks_per_node": 1}).tasks == 1
    assert Resources().world_size == 1
    assert Resources.from_json(res.to_json()) == res
    assert Resources.from_json({"time": "00:30:00", "cpus": 1}).world_size == 1  # specs written before
    for bad in ({"nodes": 0}, {"tasks_per_node": "2"}, {"nodes": True}):
        with pytest.raises(ResourceError):
            parse_resources(bad)


def _partition(name, nodes, cpus, max_nodes=None, gpus=0):
    return cluster.Partition(name=name, state="UP", is_default=False, max_time_min=600, default_time_min=None,
                             priority_tier=1, nodes=nodes, total_cpus=nodes * cpus, max_cpus_per_node=cpus,
                             mem_per_node_mb=8000, gpus_per_node=gpus, preempt_mode="OFF", grace_time_s=0,
                             max_nodes=max_nodes)


def test_the_partition_chooser_counts_nodes_and_the_cpus_of_every_task_on_a_node():
    parts = [_partition("one", 1, 4), _partition("capped", 4, 4, max_nodes=1), _partition("wide", 2, 2)]
    facts = ClusterFacts(partitions=parts)
    choice = placement.place(facts, Resources(nodes=2, cpus=1, mem_mb=1000), groups=set()).choice
    assert choice.partition.name == "wide"
    reasons = {v.partition.name: v.reason for v in choice.verdicts}
    assert "1 < 2 nodes asked" in reasons["one"] and "MaxNodes 1 < 2 nodes asked" in reasons["capped"]
    with pytest.raises(cluster.NoFit, match="2 cpus per node < 4 asked"):
        placement.place(ClusterFacts(partitions=[_partition("wide", 2, 2)]),
                        Resources(tasks_per_node=2, cpus=2, mem_mb=1000), groups=set())
    line = "PartitionName=cpu Nodes=n[1-2] TotalNodes=2 TotalCPUs=4 MaxNodes=1 State=UP MaxTime=01:00:00"
    assert slurmtext.parse_partitions(line)[0].max_nodes == 1


def test_the_job_script_asks_for_nodes_and_tasks(tmp_path):
    from jobkit.submit import submission as submit

    spec = JobSpec(sweep="s", workload="toy", params={"steps": 1},
                   resources=Resources(nodes=2, tasks_per_node=1, partition="cpu"))
    item = submit.PlannedRun(spec=spec, run_dir=tmp_path / "r", action="new", reason="", partition="cpu")
    script = submit.sbatch_script(item, tmp_path)
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    one = submit.sbatch_script(submit.PlannedRun(spec=JobSpec(sweep="s", workload="toy", params={}),
                                                 run_dir=tmp_path / "q", action="new", reason=""), tmp_path)
    assert "--nodes=1" in one or "--nodes" not in one


# ------------------------------------------------------------------------------- ranks as processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(run: RunDir, world: int = 2, timeout_s: float = 30) -> list[subprocess.Popen]:
    """The run's ranks as torchrun starts them: `jobkit run` with RANK, WORLD_SIZE, MASTER_* set."""
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port, JOBKIT_COLLECTIVE_TIMEOUT_S=str(timeout_s))
        procs.append(subprocess.Popen([sys.executable, "-m", "jobkit", "run", str(run.path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def wait_all(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str]]:
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def wait_for(pred, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def events(run: RunDir, kind: str) -> list[dict]:
    return [e for e in run.events() if e.get("event") == kind]


TOY = {"preset": "tiny", "steps": 40, "dim": 64, "hidden": 256, "checkpoint_every": 5, "eval_every": 10,
       "log_every": 1, "step_sleep": 0.05}


@pytest.mark.slow
def test_two_ranks_stop_together_on_a_signal_to_one_and_resume_bit_identical(tmp_path):
    ref = testing.make_run(tmp_path / "ref", "toy", TOY)
    assert [rc for rc, _ in wait_all(launch(ref))] == [0, 0]
    run = testing.make_run(tmp_path / "run", "toy", TOY)
    for n, (rank, after) in enumerate([(1, 7), (0, 23)], start=1):
        procs = launch(run)
        wait_for(lambda: any(e["step"] >= after for e in events(run, "checkpoint")))
        procs[rank].send_signal(signal.SIGUSR2)  # only one rank hears it: the stop is agreed
        results = wait_all(procs)
        assert [rc for rc, _ in results] == [3, 3], results
        stopped = events(run, "stopped")
        assert len(stopped) == n
        stop_ckpt = [e for e in events(run, "checkpoint") if e["reason"] == "stop"][-1]
        assert stop_ckpt["step"] == stopped[-1]["step"] > after - 1
        state, _ = run.load_checkpoint()
        assert len(state["rng_ranks"]) == 2  # every rank's RNG state, gathered into one checkpoint
    assert [rc for rc, _ in wait_all(launch(run))] == [0, 0]
    a, b = ref.load_checkpoint()[0], run.load_checkpoint()[0]
    testing.assert_same(a["workload"], b["workload"], "workload")
    testing.assert_same(a["rng_ranks"], b["rng_ranks"], "rng_ranks")
    assert ref.metrics() == run.metrics()
    assert len(events(run, "started")) == 3 and events(run, "started")[0]["tasks"] == 2


@pytest.mark.slow
def test_two_ranks_match_one_rank_to_a_tolerance(tmp_path):
    """Same global batches (no dropout): only the order of the gradient sums differs, in the last bits."""
    import torch

    raw = {**TOY, "dropout": 0.0, "step_sleep": 0.0, "steps": 30}
    one = testing.make_run(tmp_path / "one", "toy", raw)
    from jobkit.run import runner
    runner.run(one)
    two = testing.make_run(tmp_path / "two", "toy", raw)
    assert [rc for rc, _ in wait_all(launch(two))] == [0, 0]
    a, b = one.load_checkpoint()[0]["workload"]["model"], two.load_checkpoint()[0]["workload"]["model"]
    for key in a:
        # stated tolerance: 30 AdamW steps of float32 sums taken in another order
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_quickly_and_resume_continues(tmp_path):
    run = testing.make_run(tmp_path / "run", "toy", {**TOY, "steps": 400, "checkpoint_every": 5})
    procs = launch(run)
    wait_for(lambda: any(e["step"] >= 10 for e in events(run, "checkpoint")))
    killed_at = time.time()
    procs[1].kill()
    results = wait_all(procs, timeout=60)
    took = time.time() - killed_at
    assert results[0][0] not in (0, 3) and took < 45, (results[0], took)
    failed = events(run, "failed")
    assert len(failed) == 1 and "rank 0" in failed[0]["error"] and "another rank" in failed[0]["error"]
    from jobkit.observe.status import collect_status
    summary = collect_status([run]).summaries[0]
    assert summary.state == "FAILED" and "another rank" in (summary.error or "")
    last = run.load_checkpoint()[1].step
    assert [rc for rc, _ in wait_all(launch(run), timeout=400)] == [0, 0]
    assert events(run, "started")[-1]["step"] == last and events(run, "finished")


@pytest.mark.slow
@pytest.mark.parametrize("workload,raw", [
    ("charlm", {"preset": "tiny", "steps": 6, "eval_every": 3, "checkpoint_every": 3}),
    ("vae", {"preset": "tiny", "steps": 4, "eval_every": 2, "checkpoint_every": 2}),
])
def test_charlm_and_vae_train_data_parallel(tmp_path, workload, raw):
    run = testing.make_run(tmp_path / workload, workload, raw)
    results = wait_all(launch(run))
    assert [rc for rc, _ in results] == [0, 0], results
    assert events(run, "finished") and len(events(run, "started")) == 1
    assert len(events(run, "checkpoint")) == len({e["step"] for e in events(run, "checkpoint")})  # main writes


class _SumOfTwo:
    """A stand-in process group of two ranks whose peer always sends the same values as this one."""

    def __init__(self) -> None:
        self.topo = distributed.Topology(rank=1, world_size=2)
        self.calls: list[str] = []

    def agree(self, values):
        self.calls.append("agree")
        return [2 * v for v in values]

    def gather(self, obj):
        self.calls.append("gather")
        return [obj, obj]

    def barrier(self, what=""):
        self.calls.append("barrier")


def test_ranks_one_task_is_the_plain_loop_and_several_agree_in_one_collective():
    one = distributed.Ranks(distributed.Topology())
    asked: list[str] = []
    metrics = {"loss": 1.0}
    assert one.after_step(metrics, lambda: asked.append("stop") or True, lambda: asked.append("due") or True) is metrics
    assert asked == []  # one task: nothing is asked after a step, no collective
    assert one.stop_agreed(lambda: True) and not one.stop_agreed(lambda: False)
    assert one.where("h", 1) == {} and one.gather_rng("s") is None
    assert one.rng_to_restore({"rng": "main", "rng_ranks": ["r0", "r1"]}) == "main"

    group = _SumOfTwo()
    two = distributed.Ranks(group.topo, group)  # type: ignore[arg-type]
    out = two.after_step({"loss": 3.0}, lambda: True, lambda: False)
    assert out == {"loss": 3.0} and group.calls == ["agree"]  # averaged: (3 + 3) / 2, flags in the same call
    assert two.stop_agreed(lambda: False) and not two.due_agreed(lambda: True)  # what was agreed, not this rank's view
    assert two.rng_to_restore({"rng": "main", "rng_ranks": ["r0", "r1"]}) == "r1"
    assert two.rng_to_restore({"rng": "main", "rng_ranks": ["r0", "r1", "r2"]}) is None  # another world size
    assert two.gather_rng("s") == ["s", "s"] and two.where("h", 7)["ranks"] == [["h", 7], ["h", 7]]
    two.checkpoint_written()
    assert group.calls[-1] == "barrier"
