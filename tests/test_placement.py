"""Queue selection on a real university cluster (issue 11): accounts, QoS, typed GPUs, node features,
site configuration and offline planning against a saved profile. No Slurm needed: the facts are the
canned Slurm output in tests/gpu_university.py and its profile tests/data/gpu-university.json."""
from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import gpu_university as uni
import pytest
from click.testing import CliRunner

from jobkit import slurm
from jobkit.cli import cli
from jobkit.plan import clusterfacts, placement, siteconfig
from jobkit.plan.choose import NoFit
from jobkit.plan.spec import JobSpec, Resources, parse_resources
from jobkit.submit import submission as submit_mod

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "jobs" / "sweeps" / "seed.toml"
GROUPS = {"alice"}


@pytest.fixture(scope="module")
def facts() -> clusterfacts.ClusterFacts:
    return clusterfacts.load_profile(uni.PROFILE)


def res(**kw) -> Resources:
    base = {"time": "04:00:00", "cpus": 8, "mem": "32G", "gpus": 1}
    base.update(kw)
    return parse_resources(base)


def place(facts, **kw) -> placement.Placement:
    never = kw.pop("never", ())
    return placement.place(facts, res(**kw), never=never, groups=GROUPS)


def verdicts(p: placement.Placement) -> dict[str, str]:
    return {v.partition.name: v.reason for v in p.choice.verdicts}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# ------------------------------------------------------------------------------------ the profile

def test_profile_is_what_slurms_text_parses_to_and_round_trips(facts):
    assert facts.to_json() == uni.facts().to_json()
    again = clusterfacts.ClusterFacts.from_json(json.loads(json.dumps(facts.to_json())))
    assert again.to_json() == facts.to_json()
    assert [p.name for p in facts.partitions] == ["debug", "cpu", "cpu-long", "bigmem", "gpu-short", "gpu",
                                                  "gpu-long", "gpu-lab"]
    assert facts.gpu_types() == ["a100", "v100"]
    assert facts.max_array_size == 501 and facts.accounting
    assert facts.qos["short"].max_wall_min == 120 and facts.qos["normal"].max_gpus() == 16
    a100 = next(t for t in facts.node_types if "a100" in t.features)
    assert len(a100.names) == 8 and a100.gpus == (("a100", 4),) and a100.cpus == 64
    assert facts.access_of("gpu-lab").allow_accounts == "ml-lab"
    assert facts.access_of("gpu").max_nodes == 4 and len(facts.access_of("gpu").node_names) == 24


def test_bad_profile_is_one_line(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"version": 1}')
    with pytest.raises(ValueError, match="partitions"):
        clusterfacts.load_profile(bad)
    with pytest.raises(ValueError, match="no such file"):
        clusterfacts.load_profile(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------ seed.toml on it

def test_seed_plan_on_the_gpu_university_profile(tmp_path):
    """The expected plan of jobs/sweeps/seed.toml: every run on `gpu` under the default QoS `normal`,
    4-hour jobs; charlm (8 h) in 2 segments, the VAEs (1 day) in 6; one array per shape."""
    out = invoke("submit", SEED, "--dry-run", "--json", "--cluster", uni.PROFILE, "--root", tmp_path / "runs")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    runs = data["runs"]
    assert len(runs) == 11
    plan = {(r["run_id"].split("-")[0], r["partition"], r["qos"], r["account"], r["time"], r["gpus"], r["segments"])
            for r in runs}
    assert plan == {("charlm", "gpu", "normal", "physics", "04:00:00", 1, 2), ("vae", "gpu", "normal", "physics", "04:00:00", 1, 6)}
    assert data["cluster"] == str(uni.PROFILE)
    assert sorted(a["runs"] for a in data["arrays"]) == [3, 8]
    reasons = {v["partition"]: v["reason"] for v in runs[0]["verdicts"]}
    assert "AllowQos=short" in reasons["gpu-short"] and 'qos = "short"' in reasons["gpu-short"]
    assert "AllowAccounts=ml-lab" in reasons["gpu-lab"] and "AllowAccounts=genomics" in reasons["bigmem"]
    assert "0 gpus per node" in reasons["cpu"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("profile", ["mizzou-mill", "njit-wulver", "nmsu-discovery", "scu-wave", "tud-lichtenberg"])
def test_seed_on_corpus_gpu_sites_goes_to_a_gpu_partition_not_preempted(tmp_path, profile):
    """The issue's "Done when": seed.toml on a GPU university profile (mill's default partition
    `requeue` is preemptible; wulver's `low` QoS is) lands where jobs are not preempted, with QoS and account."""
    from jobkit.plan.preemption import preemption_risk

    path = REPO / "tests" / "clusters" / f"{profile}.json"
    out = invoke("submit", SEED, "--dry-run", "--json", "--cluster", path, "--root", tmp_path / "runs")
    assert out.exit_code == 0, out.output
    facts = clusterfacts.load_profile(path)
    by_name = {q.name: q for q in facts.partitions}
    for array in json.loads(out.output)["arrays"]:
        p = by_name[array["partition"]]
        assert array["account"] == facts.default_account and array["qos"] in facts.qos, array
        assert preemption_risk(facts, p, array["qos"]) is None, array
        assert any(t.gpu_count() for t in facts.nodes_of(p.name)), array
    risky = [q for q in facts.partitions if preemption_risk(facts, q, None) or preemption_risk(facts, q, "low")]
    assert profile not in ("mizzou-mill", "njit-wulver") or risky  # the sites where it matters have them


def test_seed_explain_names_account_qos_and_gpu_reasons(tmp_path):
    out = invoke("submit", SEED, "--dry-run", "--explain", "--cluster", uni.PROFILE, "--root", tmp_path,
                 "--set", "gpus=a100:1", "--only", "charlm-lstm")
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "gpu (chosen)" in text and "QoS normal" in text
    assert "no node with 1 a100 GPUs (GPU types here: v100)" in text  # gpu-long has v100 only
    assert "gpus a100:1" in text


def test_cluster_profile_needs_dry_run(tmp_path):
    out = invoke("submit", SEED, "--cluster", uni.PROFILE, "--root", tmp_path)
    assert out.exit_code == 2 and "--dry-run" in out.output


# ------------------------------------------------------------------------------------ QoS

def test_default_qos_is_used_and_qos_only_partitions_need_it_asked(facts):
    p = place(facts)
    assert (p.partition, p.qos, p.account) == ("gpu", "normal", "physics")  # the only account, passed
    assert "your default QoS normal is not allowed" in verdicts(p)["gpu-short"]


def test_asking_qos_short_opens_gpu_short_and_its_maxwall_caps_the_limit(facts):
    p = place(facts, qos="short", time="01:30:00")
    assert (p.partition, p.qos) == ("gpu-short", "short")  # shorter limit than gpu, higher tier
    assert p.choice.time_min == 90 and p.choice.segments == 1
    assert "limit 02:00:00" in verdicts(p)["gpu-short"]  # min(MaxTime 04:00:00, MaxWall 02:00:00)


def test_chunked_run_under_a_short_qos_is_cut_into_segments_of_its_maxwall(facts):
    p = place(facts, qos="short", total_time="08:00:00", chunk=True)
    assert p.qos == "short" and p.choice.time_min == 120 and p.choice.segments == 4


def test_qos_maxwall_below_the_time_without_chunk_refuses_with_a_hint(facts):
    with pytest.raises(NoFit, match="--chunk"):
        place(facts, qos="short", time="03:00:00")


def test_default_qos_too_short_picks_the_shortest_allowed_qos_that_fits(facts):
    f = replace(facts, associations=[replace(facts.associations[0], qos=("normal", "short", "long"),
                                             default_qos="short")])
    assert place(f, time="01:00:00").qos == "short"
    p = place(f, time="3-00:00:00")  # short (2 h) and normal (2 days) cannot: long (7 days)
    assert (p.partition, p.qos) == ("gpu-long", "long")


def test_qos_gpu_limit(facts):
    f = replace(facts, associations=[replace(facts.associations[0], qos=("normal", "short", "long"))])
    with pytest.raises(NoFit, match=r"gpu-long: QoS long MaxTRESPU gres/gpu=8 < 12 GPUs asked"):
        place(f, qos="long", gpus=3, nodes=4, time="3-00:00:00", cpus=1)


# ------------------------------------------------------------------------------------ accounts

def test_account_restricted_partition_opens_to_its_account(facts):
    lab = clusterfacts.Association(account="ml-lab", user="alice", qos=("normal", "long"), default_qos="normal")
    f = replace(facts, associations=[*facts.associations, lab])
    p = place(f, account="ml-lab", gpus="a100:2", time="5-00:00:00")
    assert (p.partition, p.account, p.qos) == ("gpu-lab", "ml-lab", "long")  # normal's MaxWall is 2 days
    # physics may not use gpu-lab: its 5-day run has nowhere to go
    with pytest.raises(NoFit, match="AllowAccounts=ml-lab"):
        place(f, account="physics", gpus="a100:2", time="5-00:00:00")


def test_association_bound_to_a_partition(facts):
    only_cpu = clusterfacts.Association(account="physics", user="alice", partition="cpu", qos=("normal",),
                                        default_qos="normal")
    f = replace(facts, associations=[only_cpu])
    p = place(f, gpus=0, time="10:00:00")
    assert p.partition == "cpu"
    assert "no association of account physics" in verdicts(p)["debug"]


# ------------------------------------------------------------------------------------ GPUs, features, nodes

def test_typed_gpus_match_node_gres(facts):
    assert place(facts, gpus="a100:4").partition == "gpu"
    with pytest.raises(NoFit, match="no node with 5 a100 GPUs"):
        place(facts, gpus="a100:5")


def test_constraint_matches_node_features(facts):
    assert place(facts, constraint="v100&ib").partition == "gpu"
    with pytest.raises(NoFit, match="no node with features v100"):
        place(facts, gpus="a100:1", constraint="v100")
    p = place(facts, gpus=0, cpus=4, mem="8G", time="00:30:00", constraint="icelake&ib")
    assert p.partition == "debug"


def test_exclude_removes_nodes(facts):
    with pytest.raises(NoFit, match="every node excluded"):
        place(facts, gpus="a100:1", exclude="gpu-a100-[01-08],gpu-v100-[01-16]")
    assert place(facts, gpus="a100:1", exclude="gpu-v100-[01-16]").partition == "gpu"


def test_nodes_above_maxnodes(facts):
    assert place(facts, nodes=4).partition == "gpu"
    p = place(facts, nodes=6, gpus=0)
    assert p.partition == "cpu" and "MaxNodes 2 < 6 nodes asked" in verdicts(p)["debug"]
    with pytest.raises(NoFit, match="gpu: MaxNodes 4 < 6 nodes asked"):
        place(facts, nodes=6)


def test_never_partitions_are_not_chosen_unless_named(facts):
    assert place(facts, gpus=0, time="10:00:00").partition == "cpu"
    p = place(facts, never=("cpu",), gpus=0, time="10:00:00")
    assert p.partition == "gpu" and "never_partitions" in verdicts(p)["cpu"]
    with pytest.raises(NoFit, match="gpu: never_partitions in the site config"):
        place(facts, never=("gpu",))
    assert place(facts, never=("gpu",), partition="gpu").partition == "gpu"


# ------------------------------------------------------------------------------------ bad input: exit 2, one line

@pytest.mark.parametrize("setting, expected", [
    ("account=geology", "your accounts: physics"),
    ("qos=premium", "QoS on this cluster: long, normal, short"),
    ("qos=long", "granted: normal, short"),
    ("gpus=h100:1", "GPU types: a100, v100"),
    ("constraint=a100&infiniband", "node features: a100, bigmem"),
    ("nodes=40", "above every partition's MaxNodes"),
    ("sbatch={output=\"x\"}", "allowed: begin"),
    ("sbatch={mail-user=\"a;b\"}", "no spaces, quotes or shell characters"),
    ("constraint=a100 && v100", "features joined by & or |"),
    ("gpus=a100:x", "TYPE:COUNT"),
    ("exclude=n1 n2", "node names"),
])
def test_bad_cluster_input_exits_2_with_one_line(tmp_path, setting, expected):
    out = invoke("submit", SEED, "--dry-run", "--cluster", uni.PROFILE, "--root", tmp_path, "--set", setting)
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], out.output


def test_large_arrays_are_split_at_maxarraysize(tmp_path, facts):
    spec = JobSpec(sweep="big", workload="toy", params={"seed": 0}, resources=res())
    specs = [replace(spec, params={"seed": i}) for i in range(1200)]
    planned = submit_mod.plan(specs, tmp_path, "slurm", summaries={}, facts=facts)
    sizes = [len(a) for a in submit_mod.arrays(planned, facts.max_array_size)]
    assert sizes == [501, 501, 198]


# ------------------------------------------------------------------------------------ resources

def test_resource_keys_parse_and_never_change_identity():
    r = parse_resources({"gpus": "a100:2", "account": "physics", "qos": "short", "constraint": "a100|v100",
                         "nodes": 2, "exclude": "n[1-3]", "sbatch": {"mail-type": "END,FAIL", "exclusive": True}})
    assert (r.gpus, r.gpu_type, r.gpus_text, r.nodes) == (2, "a100", "a100:2", 2)
    assert r.sbatch == (("exclusive", "true"), ("mail-type", "END,FAIL"))
    assert Resources.from_json(r.to_json()) == r
    a = JobSpec(sweep="s", workload="toy", params={"x": 1})
    assert a.run_id == a.with_resources(r).run_id
    assert parse_resources({"gpus": "2"}).gpus == 2 and parse_resources({"gpus": 0}).gpu_type is None


def test_sbatch_script_carries_account_qos_gres_constraint_setup_and_python(tmp_path, facts):
    spec = JobSpec(sweep="s", workload="toy", params={},
                   resources=res(gpus="a100:1", account="physics", constraint="nvlink",
                                 sbatch={"mail-type": "END"}))
    site = siteconfig.SiteConfig(setup=("module load cuda/12.1", "source ~/venvs/dl/bin/activate"),
                                 python="/opt/dl/bin/python")
    planned = submit_mod.plan([spec], tmp_path, "slurm", summaries={}, facts=facts, site=site)
    script = submit_mod.sbatch_script(planned[0], tmp_path, site)
    for line in ("#SBATCH --account=physics", "#SBATCH --qos=normal", "#SBATCH --gpus-per-node=a100:1",
                 "#SBATCH --constraint=nvlink", "#SBATCH --partition=gpu", "#SBATCH --mail-type=END",
                 "module load cuda/12.1", "/opt/dl/bin/python -u -m submitit.core._submit"):
        assert line in script, script
    assert script.index("module load") < script.index("submitit.core._submit")


# ------------------------------------------------------------------------------------ site config

def test_site_config_nearest_file_wins_and_says_where(tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "jobkit").mkdir(parents=True)
    (home / ".config" / "jobkit" / "config.toml").write_text(
        'account = "physics"\nqos = "normal"\npython = "/usr/bin/python3"\n')
    env_file = tmp_path / "env.toml"
    env_file.write_text('qos = "short"\nnever_partitions = ["gpu-lab"]\n')
    project = tmp_path / "proj" / "sweeps"
    project.mkdir(parents=True)
    (tmp_path / "proj" / "jobkit.toml").write_text('setup = ["module load cuda/12.1"]\naccount = "ml-lab"\n')
    cfg = siteconfig.load(project, env={"HOME": str(home), "JOBKIT_CONFIG": str(env_file)})
    assert (cfg.account, cfg.qos, cfg.python) == ("ml-lab", "short", "/usr/bin/python3")
    assert cfg.setup == ("module load cuda/12.1",) and cfg.never_partitions == ("gpu-lab",)
    assert cfg.sources["account"].endswith("proj/jobkit.toml") and cfg.sources["qos"] == str(env_file)
    assert cfg.sources["python"].endswith(".config/jobkit/config.toml")


@pytest.mark.parametrize("text, expected", [
    ('setup = ["echo a\\necho b"]', "line break"),
    ('setup = ["echo \\u0000"]', "NUL"),
    ('acount = "x"', "unknown key 'acount'"),
    ('account = "a b"', "account:"),
    ('never_partitions = "gpu"', "list of partition names"),
])
def test_bad_site_config_is_one_line(tmp_path, text, expected):
    (tmp_path / "jobkit.toml").write_text(text)
    with pytest.raises(siteconfig.ConfigError, match=expected):
        siteconfig.load(tmp_path, env={})


def test_config_command_and_site_defaults_reach_the_plan(tmp_path):
    (tmp_path / "jobkit.toml").write_text('account = "physics"\nqos = "short"\nsetup = ["module load cuda"]\n')
    sweep = tmp_path / "s.toml"
    sweep.write_text('[defaults]\ntime = "01:00:00"\ngpus = "v100:1"\n[[run]]\nworkload = "toy"\n')
    out = invoke("config", tmp_path, "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["values"]["qos"] == "short" and data["sources"]["setup"] == str(tmp_path / "jobkit.toml")
    out = invoke("submit", sweep, "--dry-run", "--json", "--show-script", "--cluster", uni.PROFILE,
                 "--root", tmp_path / "runs")
    assert out.exit_code == 0, out.output
    run = json.loads(out.output)["runs"][0]
    assert (run["partition"], run["account"], run["qos"], run["gpus"]) == ("gpu-short", "physics", "short", "v100:1")
    script = next(iter(json.loads(out.output)["scripts"].values()))
    assert "module load cuda" in script and "--account=physics" in script


def test_resume_takes_resource_keys_only(tmp_path):
    out = invoke("resume", "--root", tmp_path, "--set", "steps=5")
    assert out.exit_code == 2


# ------------------------------------------------------------------------------------ reading Slurm

def _fake_bin(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_read_facts_with_and_without_accounting(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    texts = tmp_path / "t"
    texts.mkdir()
    (texts / "p").write_text(uni.PARTITIONS)
    (texts / "n").write_text(uni.NODES)
    (texts / "c").write_text(uni.CONFIG)
    (texts / "q").write_text(uni.QOS)
    (texts / "a").write_text(uni.ASSOC)
    log = tmp_path / "calls"
    _fake_bin(bindir, "scontrol", f'echo scontrol >> {log}\ncase "$2" in partition) cat {texts}/p;; '
                                  f'node) cat {texts}/n;; config) cat {texts}/c;; esac\n')
    _fake_bin(bindir, "sacctmgr", f'echo sacctmgr >> {log}\ncase "$3" in user) sed "s/$/|physics/" {texts}/a;; '
                                  f'qos) cat {texts}/q;; esac\n')
    _fake_bin(bindir, "squeue", f'echo squeue >> {log}\nprintf "long|physics\\nlong|physics\\nnormal|bio\\n"\n')
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.setattr("jobkit.slurm.check_conf", lambda: None)
    f = slurm.read_facts()
    mine = {"user": "", "default_account": None}
    assert f.accounting and {**f.to_json(), **mine} == {**uni.facts().to_json(), **mine} and not f.notes
    assert f.default_account == "physics" and f.queued_jobs == {"long": 2, "normal": 1}  # QoS long has MaxSubmitPU
    assert f.queued_by_account == {"physics": 2, "bio": 1}
    assert log.read_text().split().count("sacctmgr") == 2 and log.read_text().split().count("squeue") == 1
    log.write_text("")
    _fake_bin(bindir, "sacctmgr", f'echo sacctmgr >> {log}\necho "sacctmgr: error: Problem talking to the database" >&2\nexit 1\n')
    f = slurm.read_facts()
    assert not f.accounting and len(f.notes) == 1 and "no accounting" in f.notes[0]
    assert log.read_text().split().count("sacctmgr") == 1
    # partition facts alone: qos-only partitions need the qos asked, account-only ones the account
    p = placement.place(f, res(), groups=GROUPS)
    assert p.partition == "gpu" and p.qos is None
    assert "AllowAccounts=ml-lab" in verdicts(p)["gpu-lab"]
