"""The chooser's rules, each on a small cluster built as a profile (issue 21): node-level fit, GPU type as a
node feature, preemption by partition tier and by QoS, purpose, the binding limit, the default account,
per-user limits, time routing, Slurm's expected start. No Slurm needed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobkit.plan import clusterfacts, placement
from jobkit.plan.choose import NoFit
from jobkit.plan.clusterfacts import ClusterFacts
from jobkit.plan.slurmtext import parse_sbatch_test_only
from jobkit.plan.spec import JobSpec, ResourceError, parse_resources
from jobkit.submit import submission as submit_mod

DAY = 1440


def part(name, nodes, max_time, *, tier=1, mode="OFF", default=False, qos=None, allow_qos="ALL",
         accounts="ALL", groups="ALL"):
    return {"name": name, "state": "UP", "is_default": default, "max_time_min": max_time, "default_time_min": None,
            "priority_tier": tier, "nodes": len(nodes), "total_cpus": 0, "max_cpus_per_node": 0,
            "mem_per_node_mb": None, "gpus_per_node": 0, "preempt_mode": mode, "grace_time_s": 0,
            "allow_accounts": accounts, "allow_groups": groups, "allow_qos": allow_qos, "qos": qos,
            "node_names": list(nodes)}


def nodes(names, parts, *, cpus=64, mem=256000, gpus=(), features=(), state="IDLE"):
    return {"names": list(names), "cpus": cpus, "mem_mb": mem, "gpus": [list(g) for g in gpus],
            "features": list(features), "partitions": list(parts), "state": state}


def qos(name, wall=None, **kw):
    return {"name": name, "max_wall_min": wall, "max_tres": kw.get("tres", ""), "max_tres_pu": kw.get("tres_pu", ""),
            "max_jobs_pu": None, "max_submit_pu": kw.get("submit_pu"), "flags": "",
            "preempt": list(kw.get("preempt", ())), "preempt_mode": kw.get("mode", "")}


CPU = [f"c{i}" for i in range(1, 5)]
A100 = ["g1", "g2"]
V100 = ["g3", "g4"]


def scavenger_site(scavenger=True, normal_wall=None, extra_qos=(), grant=("normal",)) -> ClusterFacts:
    """The issue's university: default CPU partition, GPU partitions with different node types, a partition
    reserved to another account, and (optionally) a low-tier REQUEUE `scavenger` over all nodes."""
    parts = [part("cpu", CPU, 3 * DAY, default=True), part("gpu", A100 + V100, 2 * DAY),
             part("gpu-short", A100 + V100, 240), part("lab", A100, 14 * DAY, accounts="lab")]
    if scavenger:
        parts.append(part("scavenger", CPU + A100 + V100, 3 * DAY, tier=0, mode="REQUEUE"))
    types = [nodes(CPU, ["cpu", "scavenger"], features=["cpu"]),
             nodes(A100, ["gpu", "gpu-short", "lab", "scavenger"], cpus=32, mem=512000, gpus=[("a100", 4)], features=["a100"]),
             nodes(V100, ["gpu", "gpu-short", "scavenger"], cpus=64, mem=512000, gpus=[("v100", 4)], features=["v100"])]
    data = {"version": 1, "accounting": True, "partitions": parts, "node_types": types,
            "qos": [qos("normal", normal_wall), *extra_qos],
            "associations": [{"account": "physics", "user": "alice", "qos": list(grant), "default_qos": "normal"}],
            "preempt_type": "preempt/partition_prio", "user": "alice", "default_account": "physics"}
    return ClusterFacts.from_json(data, source="profile")


def place(facts, never=(), starts=None, **kw) -> placement.Placement:
    base = {"time": "02:00:00", "cpus": 4, "mem": "16G", "gpus": 0}
    base.update(kw)
    return placement.place(facts, parse_resources(base), never=never, starts=starts)


def reasons(p: placement.Placement) -> dict[str, str]:
    return {v.partition.name: v.reason for v in p.choice.verdicts}


# ------------------------------------------------------------------------------------ preemption

def test_scavenger_layout_sends_runs_to_the_normal_partitions():
    f = scavenger_site()
    assert place(f).partition == "cpu"
    assert place(f, gpus=1).partition == "gpu-short"
    assert place(f, gpus=1, time="1-00:00:00").partition == "gpu"
    why = reasons(place(f))["scavenger"]
    assert "its jobs can be preempted (PreemptMode=REQUEUE, PriorityTier 0 below cpu" in why
    assert "preemptible = true" in why
    # never_partitions = ["scavenger"] leaves the normal ones
    assert place(f, never=["scavenger"], gpus=1).partition == "gpu-short"


def test_scavenger_only_with_consent_or_by_name():
    f = scavenger_site()
    with pytest.raises(NoFit, match="scavenger: its jobs can be preempted") as e:
        place(f, gpus=1, time="2-12:00:00")  # only scavenger allows 2.5 days on a GPU
    assert str(e.value).endswith("— set preemptible = true to accept preemption (scavenger would take it), or name one")
    assert place(f, gpus=1, time="2-12:00:00", preemptible=True).partition == "scavenger"
    assert place(f, gpus=1, partition="scavenger").partition == "scavenger"
    # consent does not make the preemptible one preferred among equal limits
    assert place(f, time="2-12:00:00", preemptible=True).partition == "cpu"


def test_preemption_by_qos():
    f = scavenger_site(scavenger=False, extra_qos=[qos("low", preempt=()), qos("high", preempt=("low",))],
                       grant=("normal", "low"))
    f.partitions.append(clusterfacts.Partition(**{k: v for k, v in part("free", CPU, 7 * DAY, mode="REQUEUE").items()
                                                  if k not in ("qos", "node_names")}))
    f.access["free"] = clusterfacts.PartitionAccess(qos="low", node_names=tuple(CPU))
    f.preempt_type = "preempt/qos"
    p = place(f, time="5-00:00:00", cpus=1, never=(), preemptible=True)
    assert p.partition == "free"
    with pytest.raises(NoFit, match=r"free: its jobs can be preempted \(QoS low is preemptable by high\)"):
        place(f, time="5-00:00:00", cpus=1)
    # the same partitions with preempt/none: nothing is at risk
    f.preempt_type = "preempt/none"
    assert place(f, time="5-00:00:00", cpus=1).partition == "free"


# ------------------------------------------------------------------------------------ limits

def test_a_qos_bound_refusal_names_the_qos():
    f = scavenger_site(scavenger=False, normal_wall=DAY)
    with pytest.raises(NoFit) as e:
        place(f, gpus=1, time="3-00:00:00")
    msg = str(e.value)
    assert "\n" not in msg
    assert "gpu: QoS normal MaxWall 1-00:00:00 < 3-00:00:00 asked (partition gpu allows 2-00:00:00)" in msg
    assert "gpu-short: MaxTime 04:00:00 < 3-00:00:00 asked" in msg
    # a longer QoS the user has is chosen when the run needs it
    f = scavenger_site(scavenger=False, normal_wall=DAY, extra_qos=[qos("long", 7 * DAY)], grant=("normal", "long"))
    p = place(f, gpus=1, time="1-12:00:00")
    assert (p.partition, p.qos) == ("gpu", "long")
    assert "limit 2-00:00:00" in p.choice.reason


def test_gpus_per_job_per_user():
    f = scavenger_site(scavenger=False)
    f.qos["normal"] = clusterfacts.Qos("normal", max_tres_pu="gres/gpu=4", max_submit_pu=10)
    with pytest.raises(NoFit, match=r"QoS normal MaxTRESPU gres/gpu=4 < 8 GPUs asked"):
        place(f, gpus=4, nodes=2, cpus=1)
    assert place(f, gpus=4, cpus=1).partition == "gpu-short"


def test_association_limits_gpus_per_job():
    text = ("c|physics|alice||normal|normal||10|20|gres/gpu=2|physics\n"
            "c|lab|alice|gpu|normal|normal|1-00:00:00||||physics\n")
    a, b = clusterfacts.parse_associations(text)
    assert (a.max_jobs, a.max_submit, a.max_gpus(), a.max_wall_min) == (10, 20, 2, None)
    assert (b.partition, b.max_submit, b.max_gpus(), b.max_wall_min) == ("gpu", None, None, DAY)
    f = scavenger_site(scavenger=False)
    f.associations[0] = clusterfacts.Association("physics", "alice", qos=("normal",), default_qos="normal",
                                                 max_submit=5, max_tres="gres/gpu=2")
    assert place(f, gpus=2, cpus=1).partition == "gpu-short"
    with pytest.raises(NoFit, match=r"association physics MaxTRES gres/gpu=2 < 4 GPUs asked"):
        place(f, gpus=4, cpus=1)
    f.qos["normal"] = clusterfacts.Qos("normal", max_tres="gres/gpu=1")  # the tighter one is named
    with pytest.raises(NoFit, match=r"QoS normal MaxTRES gres/gpu=1 < 2 GPUs asked"):
        place(f, gpus=2, cpus=1)


def test_a_sweep_over_the_association_max_submit_sends_what_fits_and_the_rest_waits(tmp_path: Path):
    from click.testing import CliRunner

    from jobkit.cli import cli

    f = scavenger_site(scavenger=False)
    f.associations[0] = clusterfacts.Association("physics", "alice", qos=("normal",), default_qos="normal",
                                                 max_submit=3)
    clusterfacts.save_profile(f, tmp_path / "site.json")
    sweep = tmp_path / "s.toml"
    for runs, sent in ((3, 3), (4, 2)):  # 4 > MaxSubmit 3: 2 go, one slot is the feeder's, 2 wait
        sweep.write_text(f'name = "s"\n[defaults]\ntime = "01:00:00"\n[[run]]\nworkload = "toy"\n'
                         f"seed = {list(range(runs))}\n")
        result = CliRunner().invoke(cli, ["submit", str(sweep), "--dry-run", "--cluster", str(tmp_path / "site.json"),
                                          "--root", str(tmp_path / "runs"), "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert sum(a["runs"] for a in data["arrays"]) == sent and data["waiting"] == runs - sent
    waiting = [r for r in data["runs"] if r["action"] == "waiting"]
    assert [r["run_id"].split("-")[1] for r in waiting] == ["seed2", "seed3"]  # sweep order
    assert "association physics MaxSubmit 3" in waiting[0]["reason"]
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------ nodes

def test_node_level_fit_needs_one_node_with_everything():
    f = scavenger_site(scavenger=False)
    with pytest.raises(NoFit, match="no single node has a100:1 gpus, 48 cpus"):
        place(f, gpus="a100:1", cpus=48)  # a100 nodes have 32 cpus; v100 nodes have 64
    p = place(f, gpus="a100:1", cpus=16)
    assert "fits 2 of 4 nodes (g1, g2)" in reasons(p)[p.partition]


def test_down_and_drained_nodes_do_not_count():
    f = scavenger_site(scavenger=False)
    f.node_types[1] = clusterfacts.NodeType(("g1",), 32, 256000, (("a100", 4),), ("a100",), ("gpu", "gpu-short", "lab"),
                                            "IDLE+DRAIN")
    f.node_types.append(clusterfacts.NodeType(("g2",), 32, 256000, (("a100", 4),), ("a100",),
                                              ("gpu", "gpu-short", "lab"), "DOWN*"))
    with pytest.raises(NoFit, match="every node is down or drained"):
        place(f, gpus="a100:1", partition="lab")
    with pytest.raises(NoFit, match=r"only 2 nodes fit \(g3, g4\) < 3 asked"):
        place(f, gpus=1, nodes=3, cpus=1)


def test_gpu_type_as_a_node_feature_asks_untyped_gpus_plus_a_constraint(tmp_path):
    f = scavenger_site(scavenger=False)
    f.node_types[1] = clusterfacts.NodeType(tuple(A100), 32, 256000, (("", 4),), ("a100", "ib"),
                                            ("gpu", "gpu-short", "lab"))
    p = place(f, gpus="a100:1")
    assert p.gpu_feature and p.constraint == "a100" and "fits 2 of 4 nodes (g1, g2)" in reasons(p)[p.partition]
    res = parse_resources({"gpus": "a100:1", "constraint": "ib|nvlink"})
    job = placement.with_placement(res, placement.place(f, res), 60)
    assert job.gpu_type is None and job.gpus == 1 and job.constraint == "ib&a100|nvlink&a100"
    item = submit_mod.PlannedRun(JobSpec("s", "toy", {}), tmp_path, "new", "", partition=p.partition, job_res=job)
    script = submit_mod.sbatch_script(item, tmp_path)
    assert "#SBATCH --gpus-per-node=1\n" in script and "#SBATCH --constraint=ib&a100|nvlink&a100" in script
    with pytest.raises(NoFit, match="no node has GPU type 'h100'"):
        place(f, gpus="h100:1")


def test_cpu_runs_avoid_gpu_only_partitions_while_a_cpu_partition_fits():
    f = scavenger_site(scavenger=False)
    p = place(f, time="01:00:00")  # gpu-short (4 h) is shorter than cpu (3 days), but all GPU nodes
    assert p.partition == "cpu" and "CPU nodes for a CPU-only run" in p.choice.reason
    assert place(f, time="01:00:00", cpus=64, mem="200G", partition=None).partition == "cpu"
    assert place(f, time="01:00:00", mem="300000M").partition == "gpu-short"  # no CPU node has the memory


def test_cpu_runs_prefer_cpu_partitions_then_mixed_ones_and_chunk_by_the_same_rules():
    f = scavenger_site(scavenger=False)
    mixed = part("all", CPU + A100, DAY)  # shorter than cpu, but holds GPU nodes too
    f.partitions.append(clusterfacts.ClusterFacts.from_json({"partitions": [mixed]}).partitions[0])
    f.access["all"] = clusterfacts.PartitionAccess(node_names=tuple(CPU + A100))
    p = place(f, time="01:00:00")
    assert p.partition == "cpu" and "all mixes CPU and GPU nodes" in p.choice.reason
    assert place(f, time="01:00:00", mem="300000M").partition == "all"  # mixed before all-GPU gpu-short
    assert place(f, time="01:00:00", gpus=1).partition == "gpu-short"  # a GPU run: no purpose order
    # chunked: the longest limit, then the same ranking (purpose, default partition) as unchunked
    twin = part("bulk", CPU, 3 * DAY)
    f.partitions.append(clusterfacts.ClusterFacts.from_json({"partitions": [twin]}).partitions[0])
    p = place(f, time="4-00:00:00", chunk=True)
    assert (p.partition, p.choice.segments) == ("cpu", 2)  # the default partition, not bulk by name


def test_a_profiles_groups_are_checked_against_allow_groups(tmp_path: Path):
    f = scavenger_site(scavenger=False)
    f.partitions[0] = clusterfacts.Partition(**{**f.partitions[0].__dict__, "allow_groups": "physicists"})
    f.groups = ["alice", "students"]
    with pytest.raises(NoFit, match=r"cpu: AllowGroups=physicists \(you are in none\)"):
        place(f, time="2-12:00:00")
    f.groups.append("physicists")
    assert place(f, time="2-12:00:00").partition == "cpu"
    clusterfacts.save_profile(f, tmp_path / "p.json")
    assert clusterfacts.load_profile(tmp_path / "p.json").groups == ["alice", "students", "physicists"]


def test_default_account_refused_by_a_partition_names_the_account_that_may_use_it():
    f = scavenger_site(scavenger=False)
    f.associations.append(clusterfacts.Association("lab", "alice", qos=("normal",), default_qos="normal"))
    with pytest.raises(NoFit) as e:
        place(f, gpus="a100:1", time="5-00:00:00")  # only `lab` allows 5 days, and only account lab
    msg = str(e.value)
    assert "\n" not in msg and "lab does not allow your default account physics" in msg
    assert 'your account lab may use it: set account = "lab"' in msg
    assert place(f, gpus="a100:1", time="5-00:00:00", account="lab").account == "lab"
    with pytest.raises(NoFit, match="MaxTime"):  # a CPU run is not pointed at another account's GPU nodes
        place(f, time="5-00:00:00")


# ------------------------------------------------------------------------------------ accounts, routing, ranking

def test_account_is_the_default_or_the_only_one_and_several_without_default_is_refused():
    f = scavenger_site(scavenger=False)
    assert place(f).account == "physics"
    f.associations.append(clusterfacts.Association("lab", "alice", qos=("normal",), default_qos="normal"))
    assert place(f).account == "physics"  # DefaultAccount
    f.default_account = None
    with pytest.raises(NoFit, match=r"several accounts \(lab, physics\) and no default account"):
        place(f)
    assert place(f, account="lab", gpus="a100:1", time="5-00:00:00").partition == "lab"


def test_a_profile_does_not_check_allow_groups_against_the_local_user():
    f = scavenger_site(scavenger=False)
    f.partitions[0] = clusterfacts.Partition(**{**f.partitions[0].__dict__, "allow_groups": "physicists"})
    assert place(f).partition == "cpu"  # the profile's user is alice, not whoever runs jobkit here
    with pytest.raises(NoFit, match="AllowGroups=physicists"):
        placement.place(f, parse_resources({"time": "2-12:00:00"}), groups={"students"})


def test_time_routing_predicts_the_partition_without_passing_it(tmp_path):
    f = scavenger_site(scavenger=False)
    f.partition_routing = "time"
    p = place(f)
    assert p.partition == "cpu" and not p.pass_partition
    assert place(f, partition="cpu").pass_partition
    item = submit_mod.PlannedRun(JobSpec("s", "toy", {}), tmp_path, "new", "", partition="cpu", routed=True)
    assert "--partition" not in submit_mod.sbatch_script(item, tmp_path)


def test_slurms_expected_start_ranks_equally_fitting_partitions():
    f = scavenger_site(scavenger=False)
    f.partitions[1] = clusterfacts.Partition(**{**f.partitions[1].__dict__, "max_time_min": 240})  # gpu = gpu-short
    assert place(f, gpus=1).partition == "gpu"  # name order among equals
    p = place(f, gpus=1, starts={"gpu": "2026-12-05T09:00:00", "gpu-short": "2026-12-04T22:00:00"})
    assert p.partition == "gpu-short" and "Slurm expects it to start first" in p.choice.reason
    assert "Slurm: start 2026-12-05T09:00:00" in reasons(p)["gpu"]
    assert [name for name, _ in p.candidates] == ["gpu-short", "gpu"]


def test_sbatch_test_only_answers_are_parsed():
    ok = parse_sbatch_test_only(0, "sbatch: Job 1234 to start at 2026-12-04T21:50:00 using 2 processors on "
                                   "nodes n1 in partition test\n")
    assert ok.ok and ok.start == "2026-12-04T21:50:00" and ok.partition == "test"
    bad = parse_sbatch_test_only(1, "sbatch: error: Job submit/allocate failed: Requested node configuration is "
                                    "not available\n")
    assert not bad.ok and bad.message == "Job submit/allocate failed: Requested node configuration is not available"


def test_preemptible_is_a_validated_resource_key():
    assert parse_resources({"preemptible": True}).preemptible
    assert not parse_resources({}).preemptible
    with pytest.raises(ResourceError, match="preemptible: expected true or false"):
        parse_resources({"preemptible": "yes"})


def test_qos_preempt_columns_and_preempt_type_are_read():
    q = clusterfacts.parse_qos("normal||1-00:00:00|||||DenyOnLimit|scav|cluster\nscav|||||||||REQUEUE\n")
    assert q["normal"].preempt == ("scav",) and q["normal"].preempt_mode == ""
    assert q["scav"].preempt_mode == "REQUEUE"
    assert clusterfacts.parse_preempt_type("PreemptMode = REQUEUE\nPreemptType = preempt/qos\n") == "preempt/qos"
    assert clusterfacts.parse_default_account("jobkit|physics|root||normal|normal||||physics\n") == "physics"


def test_the_profile_schema_round_trips_the_new_keys(tmp_path: Path):
    f = scavenger_site()
    f.partition_routing = "time"
    clusterfacts.save_profile(f, tmp_path / "p.json")
    again = clusterfacts.load_profile(tmp_path / "p.json")
    assert again.to_json() == f.to_json() and again.preempt_type == "preempt/partition_prio"


# ------------------------------------------------------------------------------------ Slurm as the judge

def _fake_slurm(tmp_path: Path, monkeypatch, sbatch_body: str) -> Path:
    """scontrol/sacctmgr/squeue answering as the GPU university, and an sbatch given `sbatch_body`."""
    import os

    import gpu_university as uni

    bindir, texts = tmp_path / "bin", tmp_path / "t"
    bindir.mkdir()
    texts.mkdir()
    for name, text in (("p", uni.PARTITIONS), ("n", uni.NODES), ("c", uni.CONFIG), ("q", uni.QOS), ("a", uni.ASSOC)):
        (texts / name).write_text(text)
    bins = {
        "scontrol": f'case "$1 $2" in "ping "*) exit 0;; "show partition") cat {texts}/p;; "show node") cat {texts}/n;; '
                    f'"show config") cat {texts}/c;; esac\n',
        "sacctmgr": f'case "$3" in user) sed "s/$/|physics/" {texts}/a;; qos) cat {texts}/q;; esac\n',
        "squeue": "exit 0\n",
        "sbatch": f"cat > {tmp_path}/script.$$\necho \"$@\" >> {tmp_path}/sbatch.log\n{sbatch_body}",
    }
    for name, body in bins.items():
        (bindir / name).write_text("#!/bin/sh\n" + body)
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.setattr("jobkit.slurm.check_conf", lambda: None)
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "judged"\n[defaults]\ngpus = 1\ntime = "01:00:00"\n'
                     '[[run]]\nworkload = "toy"\npreset = "tiny"\nseed = [1, 2]\n')
    return sweep


def test_a_plan_slurm_refuses_stops_before_anything_is_written(tmp_path, monkeypatch):
    from jobkit.plan import sweep as sweep_mod
    from jobkit.submit.submit_runs import SubmitProblem, submit_runs

    sweep = _fake_slurm(tmp_path, monkeypatch, 'echo "sbatch: error: Batch job submission failed: Invalid qos '
                                               'specification" >&2\nexit 1\n')
    specs = sweep_mod.load(sweep).specs
    with pytest.raises(SubmitProblem) as e:
        submit_runs(specs, tmp_path / "runs", "slurm", dry_run=False)
    assert e.value.code == 2 and "\n" not in str(e.value)
    assert str(e.value) == ("Slurm refuses 2 runs on partition gpu (sbatch --test-only): Batch job submission failed: "
                            "Invalid qos specification; nothing was submitted")
    assert not (tmp_path / "runs").exists()
    calls = (tmp_path / "sbatch.log").read_text().splitlines()
    assert calls == ["--test-only --array=0-1"]  # one call for the one array shape
    script = next(tmp_path.glob("script.*")).read_text()
    for line in ("--partition=gpu", "--account=physics", "--qos=normal", "--gpus-per-node=1", "--time=60"):
        assert f"#SBATCH {line}\n" in script, line


def test_explain_on_a_live_cluster_ranks_by_slurms_expected_start(tmp_path, monkeypatch):
    from jobkit.plan import sweep as sweep_mod
    from jobkit.submit.submit_runs import submit_runs

    # with qos short both gpu-short and gpu have a 2 h limit; the rules alone pick gpu-short (PriorityTier 2),
    # but Slurm says gpu-short starts tomorrow and gpu now
    sweep = _fake_slurm(tmp_path, monkeypatch, 'p=$(grep -o "partition=[a-z-]*" ' + str(tmp_path) + '/script.$$ | cut -d= -f2)\n'
                        'case "$p" in gpu-short) t=2026-12-05T09:00:00;; *) t=2026-12-04T22:00:00;; esac\n'
                        'echo "sbatch: Job 7 to start at $t using 1 processors on nodes x in partition $p" >&2\n')
    specs = [s.with_resources(parse_resources({"gpus": 1, "time": "01:00:00", "qos": "short"}))
             for s in sweep_mod.load(sweep).specs]
    out = submit_runs(specs, tmp_path / "runs", "slurm", dry_run=True, explain=True)
    item = out.planned[0]
    assert item.partition == "gpu" and item.starts["gpu-short"] == "2026-12-05T09:00:00"
    assert "Slurm: start 2026-12-05T09:00:00" in {v.partition.name: v.reason for v in item.verdicts}["gpu-short"]
    assert "Slurm expects it to start first" in item.partition_reason
    rules_only = submit_runs(specs, tmp_path / "runs", "slurm", dry_run=True)
    assert rules_only.planned[0].partition == "gpu-short"
    assert not (tmp_path / "runs").exists()
