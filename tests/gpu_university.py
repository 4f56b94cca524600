"""A realistic GPU university cluster, as Slurm 22.05 prints it (`scontrol show partition/node -o`,
`sacctmgr -nP show assoc/qos`, `scontrol show config`), for user `alice`.

- CPU nodes cpu[001-064] (64 cores, 256 GB; features cpu,icelake,ib), bigmem[01-04] (1 TB).
- GPU nodes gpu-a100-[01-08] (4x a100, nvlink) and gpu-v100-[01-16] (4x v100).
- Partitions: debug (1 h, MaxNodes 2), cpu (default, 2 days), cpu-long (7 days, QoS long only),
  bigmem (account genomics only), gpu-short (4 h, QoS short only), gpu (2 days, MaxNodes 4),
  gpu-long (7 days, v100, QoS long only), gpu-lab (a100, 14 days, account ml-lab only).
- QoS normal (MaxWall 2 days, 16 GPUs per user), short (2 h), long (7 days, 8 GPUs per user).
- alice: account physics, QoS normal,short (default normal); no ml-lab, no genomics, no long.

`tests/data/gpu-university.json` is this cluster's profile (`jobkit partitions --save`);
test_placement.py checks that it is what these texts parse to.
"""
from __future__ import annotations

from pathlib import Path

PROFILE = Path(__file__).parent / "data" / "gpu-university.json"


def _part(name, nodes, total_nodes, cpus, max_time, *, default="NO", tier=1, max_nodes="UNLIMITED",
          accounts="ALL", qos="ALL", gpus=0, mem="16384000M"):
    tres = f"cpu={cpus},mem={mem},node={total_nodes},billing={cpus}" + (f",gres/gpu={gpus}" if gpus else "")
    return (f"PartitionName={name} AllowGroups=ALL AllowAccounts={accounts} AllowQos={qos} AllocNodes=ALL "
            f"Default={default} QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 "
            f"Hidden=NO MaxNodes={max_nodes} MaxTime={max_time} MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED "
            f"Nodes={nodes} PriorityJobFactor=1 PriorityTier={tier} RootOnly=NO ReqResv=NO OverSubscribe=NO "
            f"OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs={cpus} TotalNodes={total_nodes} "
            f"SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
            f"TRES={tres}")


PARTITIONS = "\n".join([
    _part("debug", "cpu[001-004]", 4, 256, "01:00:00", tier=2, max_nodes="2"),
    _part("cpu", "cpu[001-064]", 64, 4096, "2-00:00:00", default="YES", max_nodes="16"),
    _part("cpu-long", "cpu[033-064]", 32, 2048, "7-00:00:00", qos="long"),
    _part("bigmem", "bigmem[01-04]", 4, 256, "3-00:00:00", accounts="genomics"),
    _part("gpu-short", "gpu-a100-[01-08],gpu-v100-[01-16]", 24, 1024, "04:00:00", tier=2, qos="short", gpus=96),
    _part("gpu", "gpu-a100-[01-08],gpu-v100-[01-16]", 24, 1024, "2-00:00:00", max_nodes="4", gpus=96),
    _part("gpu-long", "gpu-v100-[01-16]", 16, 512, "7-00:00:00", qos="long", gpus=64),
    _part("gpu-lab", "gpu-a100-[01-08]", 8, 512, "14-00:00:00", accounts="ml-lab", gpus=32),
]) + "\n"


def _node(name, cpus, mem, feats, parts, gres="(null)"):
    tres = f"cpu={cpus},mem={mem}M,billing={cpus}" + (f",gres/gpu={gres.split(':')[2].split('(')[0]}"
                                                       if gres != "(null)" else "")
    return (f"NodeName={name} Arch=x86_64 CoresPerSocket={cpus // 2} CPUAlloc=0 CPUEfctv={cpus} CPUTot={cpus} "
            f"CPULoad=0.01 AvailableFeatures={feats} ActiveFeatures={feats} Gres={gres} NodeAddr={name} "
            f"NodeHostName={name} Version=22.05.8 OS=Linux RealMemory={mem} AllocMem=0 FreeMem={mem} Sockets=2 "
            f"Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A "
            f"Partitions={parts} CfgTRES={tres} AllocTRES=")


NODES = "\n".join(
    [_node(f"cpu{i:03d}", 64, 256000, "cpu,icelake,ib",
           "debug,cpu" if i <= 4 else ("cpu" if i <= 32 else "cpu,cpu-long")) for i in range(1, 65)]
    + [_node(f"bigmem{i:02d}", 64, 1024000, "cpu,icelake,bigmem", "bigmem") for i in range(1, 5)]
    + [_node(f"gpu-a100-{i:02d}", 64, 512000, "gpu,a100,ib,nvlink", "gpu-short,gpu,gpu-lab", "gpu:a100:4(S:0-1)")
       for i in range(1, 9)]
    + [_node(f"gpu-v100-{i:02d}", 32, 384000, "gpu,v100,ib", "gpu-short,gpu,gpu-long", "gpu:v100:4(S:0-1)")
       for i in range(1, 17)]) + "\n"

QOS = """\
normal|0|2-00:00:00||gres/gpu=16|||
short|10|02:00:00|||||DenyOnLimit
long|0|7-00:00:00||gres/gpu=8|4|10|DenyOnLimit
"""

ASSOC = """\
uni|physics|alice||normal,short|normal||||
"""

CONFIG = "AccountingStorageType   = accounting_storage/slurmdbd\nMaxArraySize            = 501\n"


def facts():
    from jobkit.plan.clusterfacts import facts_from_text

    return facts_from_text(PARTITIONS, NODES, QOS, ASSOC, CONFIG)
