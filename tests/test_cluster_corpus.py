"""Plans on real clusters (issue 21): each profile in tests/clusters/ was transcribed from a site's public
documentation, and its `<site>.expected.toml` says what a careful user would plan there for a fixed set
of job shapes — written from the site's rules, never from jobkit's output. Each case plans a one-run
sweep with `jobkit submit --dry-run --json --cluster PROFILE` and compares the first array's partition,
account, QoS and segments with the table, or checks that the run is refused (exit 2, one line naming
the binding limit). tests/clusters/README.md lists the sites and the shapes."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobkit.cli import cli
from jobkit.plan.clusterfacts import load_profile

CORPUS = Path(__file__).parent / "clusters"
PROFILES = sorted(CORPUS.glob("*.json"))

# The fixed job shapes (Resources-like: `cpus` per task, `gpus` per node, `mem` per node).
SHAPES: dict[str, dict[str, Any]] = {
    "cpu-30m": {"cpus": 4, "mem": "16G", "time": "00:30:00", "gpus": 0, "nodes": 1},
    "cpu-3d": {"cpus": 8, "mem": "32G", "time": "3-00:00:00", "gpus": 0, "nodes": 1},
    "gpu1-2h": {"cpus": 8, "mem": "32G", "time": "02:00:00", "gpus": 1, "nodes": 1},
    "gpu4-2d": {"cpus": 8, "mem": "128G", "time": "2-00:00:00", "gpus": 4, "nodes": 1},
    "2node-4gpu": {"cpus": 8, "mem": "128G", "time": "12:00:00", "gpus": 4, "nodes": 2},
    "gpu-type-missing": {"cpus": 8, "mem": "32G", "time": "02:00:00", "gpus": "mi250:1", "nodes": 1},
    "account-missing": {"cpus": 4, "mem": "16G", "time": "00:30:00", "gpus": 0, "nodes": 1,
                        "account": "nosuchlab"},
}
EXPECT_KEYS = {"shape", "ask", "partition", "account", "qos", "segments", "arrays", "refused"}


def _table(profile: Path) -> dict[str, dict[str, Any]]:
    return tomllib.loads(profile.with_suffix(".expected.toml").read_text(encoding="utf-8"))


def _cases() -> list[Any]:
    cases = []
    for profile in PROFILES:
        for name, expected in _table(profile).items():
            cases.append(pytest.param(profile, name, expected, id=f"{profile.stem}-{name}"))
    return cases


def _toml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, bool, int)) else repr(value)


def _sweep(name: str, expected: dict[str, Any]) -> str:
    """A one-run toy sweep (`runs = N` in `ask`: N runs) asking the shape's resources."""
    ask = {**SHAPES[expected.get("shape", name)], **expected.get("ask", {})}
    runs = ask.pop("runs", 1)
    lines = ['name = "corpus"', "[defaults]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in ask.items()]
    lines += ["[[run]]", 'workload = "toy"']
    if runs > 1:
        lines.append(f"seed = {list(range(runs))}")
    return "\n".join(lines) + "\n"


def test_every_profile_has_a_source_and_loads():
    assert len(PROFILES) >= 8
    for profile in PROFILES:
        data = json.loads(profile.read_text(encoding="utf-8"))
        source = data.get("source")
        assert isinstance(source, dict), profile
        assert source.get("urls") and all(u.startswith("https://") for u in source["urls"]), profile
        assert source.get("read") and source.get("notes"), profile
        facts = load_profile(profile)
        assert facts.site["urls"] == source["urls"]
        assert facts.partitions and facts.node_types, profile
        nodes = {n for t in facts.node_types for n in t.names}
        for p in facts.partitions:  # every partition's nodes are described by a node type
            assert set(facts.access_of(p.name).node_names) <= nodes, (profile, p.name)
            assert p.nodes == len(facts.access_of(p.name).node_names), (profile, p.name)


def test_every_table_covers_the_fixed_shapes():
    for profile in PROFILES:
        table = _table(profile)
        assert set(SHAPES) <= set(table), profile
        for name, expected in table.items():
            assert set(expected) <= EXPECT_KEYS, (profile, name)
            assert expected.get("shape", name) in SHAPES, (profile, name)
            assert ("refused" in expected) != ("partition" in expected), (profile, name)
            if "partition" in expected:
                assert "account" in expected, (profile, name)  # "" = no account passed


def test_the_corpus_covers_every_kind():
    facts = [load_profile(p) for p in PROFILES]

    def scavenger(f) -> bool:  # a low-tier preemptible partition over every node
        every = {n for t in f.node_types for n in t.names}
        low = min(p.priority_tier for p in f.partitions)
        return f.preempt_type == "preempt/partition_prio" and any(
            p.preempt_mode != "OFF" and p.priority_tier == low and set(f.access_of(p.name).node_names) == every
            for p in f.partitions)

    kinds = {
        "scavenger (low tier, PreemptMode REQUEUE, every node)": any(scavenger(f) for f in facts),
        "owners preempt a shared partition by QoS": any(
            f.preempt_type == "preempt/qos" and any(q.preempt for q in f.qos.values())
            and any(a.qos for a in f.access.values()) for f in facts),
        "wall time set by QoS": any(
            any(p.max_time_min is None for p in f.partitions) and any(q.max_wall_min for q in f.qos.values())
            for f in facts),
        "GPU type as a feature": any(
            any(t.gpus and all(k == "" for k, _ in t.gpus) and any(x.startswith("gpu_") for x in t.features)
                for t in f.node_types) for f in facts),
        "accounts required, no default": any(f.default_account is None and len(f.accounts()) > 1 for f in facts),
        "partition by time class": any(f.partition_routing == "time" for f in facts),
        "small MaxArraySize": any(f.max_array_size is not None and f.max_array_size <= 100 for f in facts),
        "no accounting": any(not f.accounting for f in facts),
    }
    assert all(kinds.values()), [k for k, ok in kinds.items() if not ok]


@pytest.mark.parametrize("profile, name, expected", _cases())
def test_plan_matches_the_sites_rules(tmp_path, profile, name, expected):
    sweep = tmp_path / "corpus.toml"
    sweep.write_text(_sweep(name, expected))
    result = CliRunner().invoke(cli, ["submit", str(sweep), "--dry-run", "--json", "--cluster", str(profile),
                                      "--root", str(tmp_path / "runs")])
    assert "Traceback" not in result.output
    if "refused" in expected:
        message = result.stderr.strip()
        assert result.exit_code == 2, f"planned instead of refused: {result.stdout[:400]}"
        assert message.count("\n") == 0 and message, message
        missing = [s for s in expected["refused"] if s not in message]
        assert not missing, f"{message!r} does not name {missing}"
        return
    assert result.exit_code == 0, result.stderr.strip()
    plan = json.loads(result.stdout)
    first = plan["arrays"][0]
    choices = expected["partition"] if isinstance(expected["partition"], list) else [expected["partition"]]
    got = {"partition": first["partition"], "account": first["account"] or ""}
    want = {"partition": first["partition"] if first["partition"] in choices else choices, "account": expected["account"]}
    for key in ("qos", "segments"):
        if key in expected:
            got[key], want[key] = first[key], expected[key]
    if "arrays" in expected:
        got["arrays"], want["arrays"] = len(plan["arrays"]), expected["arrays"]
    assert got == want, first
