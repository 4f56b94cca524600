"""jobkit.plan: parsing `scontrol show partition -o` and placing runs by partition sizes, MaxTime and preemption (canned text, no Slurm)."""
from __future__ import annotations

import dataclasses
import subprocess

import pytest

from jobkit import slurm
from jobkit.plan import placement, slurmtext
from jobkit.plan.choose import Choice, ClusterError, NoFit
from jobkit.plan.clusterfacts import ClusterFacts
from jobkit.plan.slurmtext import parse_partitions
from jobkit.plan.spec import Resources

# What slurm/up.sh's cluster prints (Slurm 22.05.8), verbatim.
LOCAL = """\
PartitionName=test AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=30 Hidden=NO MaxNodes=UNLIMITED MaxTime=00:10:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=REQUEUE State=UP TotalCPUs=2 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=21694M,node=1,billing=2
PartitionName=submit AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=30 Hidden=NO MaxNodes=UNLIMITED MaxTime=2-00:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=REQUEUE State=UP TotalCPUs=2 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=21694M,node=1,billing=2
PartitionName=preempt AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=10 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=2 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=21694M,node=1,billing=2
"""


def line(name, *, max_time="1:00:00", state="UP", default="NO", tier=1, preempt="OFF", nodes=4,
         cpus=32, mem="128000M", gpus=None, default_time="NONE", grace=0, groups="ALL", extra=""):
    tres = f"cpu={cpus * nodes},mem={mem},node={nodes},billing={cpus * nodes}"
    if gpus is not None:
        tres += f",gres/gpu={gpus}"
    return (f"PartitionName={name} AllowGroups={groups} AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL "
            f"Default={default} QoS=N/A DefaultTime={default_time} GraceTime={grace} MaxNodes=UNLIMITED "
            f"MaxTime={max_time} MinNodes=0 MaxCPUsPerNode=UNLIMITED Nodes=n[01-0{nodes}] PriorityJobFactor=1 "
            f"PriorityTier={tier} RootOnly=NO PreemptMode={preempt} State={state} TotalCPUs={cpus * nodes} "
            f"TotalNodes={nodes} JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
            f"TRES={tres} {extra}").strip()


# A university-like cluster with every MaxTime form, a DOWN partition and GPUs.
UNI = "\n".join([
    line("debug", max_time="30", state="DOWN", default="NO"),            # minutes only, DOWN
    line("short", max_time="04:00:00", default="YES", default_time="01:00:00"),
    line("long", max_time="7-00:00:00", nodes=8, mem="1024G"),           # days, memory in G
    line("gpu", max_time="2-00:00:00", nodes=4, cpus=16, mem="512000M", gpus=16),
    line("huge", max_time="UNLIMITED", nodes=1, cpus=128, mem="2T"),
    line("interactive", max_time="1-12", tier=5),                         # D-HH, higher tier, no victims
])

P = {p.name: p for p in parse_partitions(LOCAL)}
LOCAL_LOW = "\n".join(LOCAL.splitlines()[:2])  # test and submit without `preempt` above them: never preempted


def res(**kw) -> Resources:
    base = dict(time_min=30, cpus=1, mem_mb=1024, gpus=0)
    base.update(kw)
    return Resources(**base)


def choose(text, groups=frozenset({"root"}), **kw) -> Choice:
    facts = ClusterFacts(partitions=parse_partitions(text), preempt_type="preempt/partition_prio")
    return placement.place(facts, res(**kw), groups=set(groups)).choice


# ------------------------------------------------------------------------------------------- parsing

def test_parse_local_cluster():
    assert list(P) == ["test", "submit", "preempt"]
    t, s, pre = P["test"], P["submit"], P["preempt"]
    assert t.is_default and not s.is_default and not pre.is_default
    assert (t.max_time_min, s.max_time_min, pre.max_time_min) == (10, 2 * 1440, None)
    assert t.default_time_min is None
    assert (t.priority_tier, pre.priority_tier) == (1, 10)
    assert (t.preempt_mode, pre.preempt_mode) == ("REQUEUE", "OFF")
    assert (t.grace_time_s, pre.grace_time_s) == (30, 0)
    assert t.state == "UP" and t.up
    assert (t.nodes, t.total_cpus, t.max_cpus_per_node) == (1, 2, 2)
    assert t.mem_per_node_mb == 21694 and t.gpus_per_node == 0
    assert (t.allow_accounts, t.allow_groups, t.allow_qos) == ("ALL", "ALL", "ALL")
    assert pre.max_time == "UNLIMITED" and s.max_time == "2-00:00:00"


def test_parse_time_formats_state_and_gpus():
    p = {x.name: x for x in parse_partitions(UNI)}
    assert p["debug"].max_time_min == 30 and p["debug"].state == "DOWN" and not p["debug"].up
    assert p["short"].max_time_min == 240 and p["short"].default_time_min == 60 and p["short"].is_default
    assert p["long"].max_time_min == 7 * 1440
    assert p["huge"].max_time_min is None
    assert p["interactive"].max_time_min == 36 * 60
    assert p["long"].mem_per_node_mb == 1024 * 1024 // 8
    assert p["huge"].mem_per_node_mb == 2 * 1024 * 1024 and p["huge"].max_cpus_per_node == 128
    assert p["gpu"].gpus_per_node == 4 and p["gpu"].max_cpus_per_node == 16
    assert p["short"].gpus_per_node == 0


def test_parse_typed_gpus_caps_and_junk():
    text = "\n".join([
        "",
        "some banner without pairs",
        line("a100", cpus=64, nodes=2, gpus=None, extra="").replace(
            "billing=128", "billing=128,gres/gpu:a100=8"),
        line("capped", cpus=64, nodes=1, mem="256000M").replace("MaxCPUsPerNode=UNLIMITED", "MaxCPUsPerNode=8")
        .replace("MaxMemPerNode=UNLIMITED", "MaxMemPerNode=16G"),
    ])
    p = {x.name: x for x in parse_partitions(text)}
    assert list(p) == ["a100", "capped"]
    assert p["a100"].gpus_per_node == 4
    assert p["capped"].max_cpus_per_node == 8 and p["capped"].mem_per_node_mb == 16 * 1024


def test_parse_with_node_lines_uses_the_largest_node():
    parts = line("mixed", nodes=2, cpus=8, mem="48000M", gpus=4)  # averages: 8 cpus, 24000M, 2 gpus
    nodes = "\n".join([
        "NodeName=a1 Arch=x86_64 CoresPerSocket=4 CPUAlloc=0 CPUTot=4 Gres=gpu:a100:4(S:0-1) "
        "RealMemory=16000 Partitions=mixed,other State=IDLE CfgTRES=cpu=4,mem=16000M,billing=4,gres/gpu=4",
        "NodeName=a2 CPUTot=12 Gres=(null) RealMemory=32000 Partitions=mixed State=IDLE CfgTRES=cpu=12,mem=32000M,billing=12",
    ])
    (p,) = parse_partitions(parts, nodes)
    assert (p.max_cpus_per_node, p.mem_per_node_mb, p.gpus_per_node) == (12, 32000, 4)


def test_gres_forms():
    assert slurmtext.gres_gpus("gpu:4") == 4
    assert slurmtext.gres_gpus("gpu:a100:2(S:0-1),gpu:v100:2") == 4
    assert slurmtext.gres_gpus("(null)") == 0
    assert slurmtext.gres_gpus("mps:100,gpu:1") == 1
    assert slurmtext.tres_gpus(slurmtext.parse_tres("cpu=2,gres/gpu:a=1,gres/gpu:b=2")) == 3


# ------------------------------------------------------------------------------------------- choosing

def test_short_run_goes_to_test():
    """The local layout: test and submit (PreemptMode REQUEUE) lie below `preempt` (PriorityTier 10), so
    their jobs can be preempted: a run goes there only with preemptible = true (these runs resume)."""
    c = choose(LOCAL, time_min=5, preemptible=True)
    assert c.partition.name == "test" and c.segments == 1 and c.time_min == 5
    assert "shortest limit that fits" in c.reason
    v = {x.partition.name: x for x in c.verdicts}
    assert v["test"].fits and v["submit"].fits and v["preempt"].fits


def test_a_run_that_must_not_be_preempted_avoids_the_preemptible_partitions():
    c = choose(LOCAL, time_min=5)
    assert c.partition.name == "preempt"  # the high tier: an ordinary, safe choice
    v = {x.partition.name: x for x in c.verdicts}
    assert not v["test"].fits and "its jobs can be preempted (PreemptMode=REQUEUE" in v["test"].reason
    assert "preemptible = true" in v["submit"].reason


def test_long_run_goes_to_submit_not_test():
    c = choose(LOCAL, time_min=30, preemptible=True)
    assert c.partition.name == "submit"
    v = {x.partition.name: x for x in c.verdicts}
    assert not v["test"].fits and v["test"].reason == "MaxTime 00:10:00 < 00:30:00 asked"
    assert "shortest limit that fits" in c.reason


def test_preempt_partition_only_when_named():
    c = choose(LOCAL, time_min=30, partition="preempt")
    assert c.partition.name == "preempt" and "named" in c.reason
    v = {x.partition.name: x for x in c.verdicts}
    assert len(v) == 3 and v["preempt"].fits and v["test"].reason == v["submit"].reason == "not named"


def test_too_long_without_chunk_names_every_limit():
    with pytest.raises(NoFit) as e:
        choose(LOCAL_LOW, time_min=3 * 1440)
    msg = str(e.value)
    assert "\n" not in msg
    assert "test: MaxTime 00:10:00 < 3-00:00:00 asked" in msg
    assert "submit: MaxTime 2-00:00:00 < 3-00:00:00 asked" in msg
    assert "--chunk" in msg
    assert len(e.value.verdicts) == 2 and isinstance(e.value, ClusterError)


def test_too_long_with_chunk_uses_longest_maxtime():
    c = choose(LOCAL_LOW, time_min=5 * 1440, chunk=True)
    assert c.partition.name == "submit" and c.time_min == 2 * 1440 and c.segments == 3
    assert "chunked into 3 segments" in c.reason


def test_total_time_is_split_into_segments_of_time():
    c = choose(LOCAL_LOW, time_min=10, total_time_min=45)
    assert c.partition.name == "test" and c.time_min == 10 and c.segments == 5
    c = choose(LOCAL_LOW, time_min=24 * 60, total_time_min=5 * 1440, chunk=True)
    assert c.partition.name == "submit" and c.segments == 5
    # total not above time: one job
    assert choose(LOCAL_LOW, time_min=10, total_time_min=10).segments == 1


def test_total_time_with_too_long_time_chunks_on_longest():
    c = choose(LOCAL_LOW, time_min=3 * 1440, total_time_min=10 * 1440, chunk=True)
    assert c.partition.name == "submit" and c.time_min == 2 * 1440 and c.segments == 5


def test_down_partition_is_skipped():
    c = choose(UNI, time_min=20)
    assert c.partition.name == "short"  # debug (MaxTime 30) is DOWN
    v = {x.partition.name: x for x in c.verdicts}
    assert not v["debug"].fits and "State=DOWN" in v["debug"].reason


def test_days_and_unlimited_ordering():
    assert choose(UNI, time_min=5 * 60).partition.name == "interactive"   # 1-12 < 2-00 (gpu has gpus but fits too)
    assert choose(UNI, time_min=3 * 1440).partition.name == "long"
    assert choose(UNI, time_min=30 * 1440).partition.name == "huge"      # only UNLIMITED fits
    c = choose(UNI, time_min=30 * 1440, total_time_min=60 * 1440)
    assert c.partition.name == "huge" and c.segments == 2


def test_gpus_pick_gpu_partition_and_refuse_too_many():
    c = choose(UNI, time_min=60, gpus=2)
    assert c.partition.name == "gpu"
    with pytest.raises(NoFit) as e:
        choose(UNI, time_min=60, gpus=8)
    assert "4 gpus per node < 8 asked" in str(e.value)
    assert "--chunk" not in str(e.value)  # time is not the problem


def test_cpus_and_memory_per_node():
    assert choose(UNI, time_min=60, cpus=100).partition.name == "huge"
    assert choose(UNI, time_min=60, mem_mb=200 * 1024).partition.name == "huge"
    with pytest.raises(NoFit, match="21694M memory per node < 30720M asked"):
        choose(LOCAL, time_min=5, mem_mb=30 * 1024)
    with pytest.raises(NoFit, match="2 cpus per node < 4 asked"):
        choose(LOCAL, time_min=5, cpus=4)


def test_higher_tier_wins_a_maxtime_tie_when_it_preempts_nobody():
    text = "\n".join([line("a", max_time="04:00:00", tier=1), line("b", max_time="04:00:00", tier=3)])
    c = choose(text, time_min=60)
    assert c.partition.name == "b" and "PriorityTier" in c.reason


def test_default_partition_wins_a_full_tie():
    text = "\n".join([line("a", max_time="04:00:00"), line("b", max_time="04:00:00", default="YES")])
    assert choose(text, time_min=60).partition.name == "b"


def test_a_preempting_partition_is_an_ordinary_choice_and_the_preemptible_one_needs_consent():
    text = "\n".join([line("low", max_time="2-00:00:00", preempt="REQUEUE"),
                      line("high", max_time="01:00:00", tier=10, preempt="OFF")])
    assert choose(text, time_min=30).partition.name == "high"
    with pytest.raises(NoFit, match="low: its jobs can be preempted"):
        choose(text, time_min=180)
    assert choose(text, time_min=180, preemptible=True).partition.name == "low"
    assert choose(text, time_min=180, partition="low").partition.name == "low"


def test_allow_groups():
    text = "\n".join([line("staff", max_time="01:00:00", groups="staff,admin"),
                      line("all", max_time="1-00:00:00")])
    assert choose(text, time_min=30, groups={"students"}).partition.name == "all"
    assert choose(text, time_min=30, groups={"students", "staff"}).partition.name == "staff"


def test_named_partition_checks():
    with pytest.raises(NoFit) as e:
        choose(LOCAL, time_min=30, partition="test", preemptible=True)
    msg = str(e.value)
    assert "partition 'test' cannot take 00:30:00" in msg and "MaxTime 00:10:00 < 00:30:00 asked" in msg
    assert "fits: submit, preempt" in msg and "--chunk" in msg
    with pytest.raises(NoFit, match=r"partition 'gpu' does not exist \(partitions: test MaxTime 00:10:00"):
        choose(LOCAL, time_min=5, partition="gpu")
    with pytest.raises(NoFit, match="State=DOWN"):
        choose(UNI, time_min=5, partition="debug")
    with pytest.raises(NoFit, match="0 gpus per node < 1 asked"):
        choose(LOCAL, time_min=5, gpus=1, partition="submit")


def test_named_partition_with_chunk():
    c = choose(LOCAL, time_min=30, partition="test", chunk=True)
    assert c.partition.name == "test" and c.time_min == 10 and c.segments == 3
    c = choose(LOCAL, time_min=10, total_time_min=25, partition="test")
    assert c.segments == 3 and c.time_min == 10


def test_no_partitions():
    with pytest.raises(NoFit):
        choose("", groups={"root"})


def test_one_json_shape_the_dataclass_fields():
    d = dataclasses.asdict(P["submit"])
    assert P["submit"].max_time == "2-00:00:00" and d["max_time_min"] == 2880 and d["is_default"] is False


# ------------------------------------------------------------------------------------------- reading

def test_read_partitions_errors(monkeypatch):
    monkeypatch.setattr(slurm, "check_conf", lambda: None)
    def missing(*a, **k):
        raise FileNotFoundError("scontrol")

    monkeypatch.setattr(subprocess, "run", missing)
    with pytest.raises(ClusterError, match="scontrol not found: is Slurm installed"):
        slurm.read_partitions()

    def slow(argv, **k):
        raise subprocess.TimeoutExpired(argv, k.get("timeout"))

    monkeypatch.setattr(subprocess, "run", slow)
    with pytest.raises(ClusterError, match="did not answer in 3 s"):
        slurm.read_partitions(timeout=3)

    def failing(argv, **k):
        return subprocess.CompletedProcess(argv, 1, "", "slurm_load_partitions: Unable to contact slurm controller (connect failure)\n")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(ClusterError, match="Unable to contact slurm controller"):
        slurm.read_partitions()


def test_read_partitions_uses_argv_and_node_sizes(monkeypatch):
    monkeypatch.setattr(slurm, "check_conf", lambda: None)
    calls = []

    def fake(argv, **k):
        calls.append((argv, k.get("shell", False)))
        out = LOCAL if argv[2] == "partition" else (
            "NodeName=vm CPUTot=2 RealMemory=21694 Partitions=test,submit,preempt CfgTRES=cpu=2,mem=21694M,billing=2\n")
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(subprocess, "run", fake)
    parts = slurm.read_partitions()
    assert [p.name for p in parts] == ["test", "submit", "preempt"]
    assert calls[0] == (["scontrol", "show", "partition", "-o"], False)
    assert parts[0].mem_per_node_mb == 21694


# ------------------------------------------------------------------------------------------- live

@pytest.mark.slurm
def test_live_partitions(slurm_cluster):
    parts = {p.name: p for p in slurm.read_partitions()}
    assert {"test", "submit", "preempt"} <= set(parts)
    t, s, pre = parts["test"], parts["submit"], parts["preempt"]
    assert t.is_default and t.max_time_min == 10 and t.grace_time_s == 30 and t.up
    assert s.max_time_min == 2 * 1440 and s.grace_time_s == 30
    assert pre.priority_tier == 10 and pre.preempt_mode == "OFF" and pre.priority_tier > t.priority_tier
    assert t.preempt_mode == "REQUEUE"
    assert t.max_cpus_per_node >= 1 and t.mem_per_node_mb and t.gpus_per_node == 0
    # test, submit and cpu share n1 with `preempt` (PriorityTier 10): their jobs can be preempted, so only
    # runs that allow it (preemptible = true) go there; the rest go to `preempt`, where nothing preempts them
    facts = slurm.read_facts()
    for minutes, where in ((5, "test"), (2000, "submit")):
        assert placement.place(facts, Resources(time_min=minutes, preemptible=True)).partition == where
    # express (1 h) would be shorter than cpu (1 day), but it admits QoS short only
    assert placement.place(facts, Resources(time_min=60, preemptible=True)).choice.partition.name == "cpu"
    assert placement.place(facts, Resources(time_min=60)).choice.partition.name == "preempt"


def test_missing_conf_is_reported_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "nope.conf"))
    with pytest.raises(ClusterError, match="nope.conf does not exist"):
        slurm.read_partitions()
