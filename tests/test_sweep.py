"""Sweep files -> specs: expansion, identity, overrides and the errors users see."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobkit.plan import sweep
from jobkit.plan.slurmtime import format_time, parse_mem, parse_time
from jobkit.plan.spec import JobSpec, Resources, parse_resources, readable_name


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


TOY = """
name = "demo"
[defaults]
time = "00:30:00"
cpus = 2
mem = "4G"
[[run]]
workload = "toy"
dropout = [0.0, 0.1]
hidden = [8, 16]
steps = 20
"""


def test_lists_expand_to_the_cartesian_product(tmp_path):
    sw = sweep.load(write(tmp_path, TOY))
    assert sw.name == "demo"
    assert len(sw.specs) == 4
    assert {(s.params["dropout"], s.params["hidden"]) for s in sw.specs} == {(0.0, 8), (0.0, 16), (0.1, 8), (0.1, 16)}
    assert all(s.resources == Resources(time_min=30, cpus=2, mem_mb=4096) for s in sw.specs)
    # the listed keys name the runs, in the file's order
    assert sorted(s.run_id.rsplit("-", 1)[0] for s in sw.specs) == [
        "toy-dropout0-hidden16", "toy-dropout0-hidden8", "toy-dropout0.1-hidden16", "toy-dropout0.1-hidden8"]


def test_run_ids_are_readable_and_stable(tmp_path):
    a = sweep.load(write(tmp_path, TOY)).specs
    b = sweep.load(write(tmp_path, TOY)).specs
    assert [s.run_id for s in a] == [s.run_id for s in b]
    assert a[0].run_id.startswith("toy-dropout0.0-hidden8-") or a[0].run_id.startswith("toy-dropout0-hidden8-")
    assert len(a[0].run_id.rsplit("-", 1)[1]) == 8
    assert len({s.run_id for s in a}) == 4


def test_resources_do_not_change_identity_but_params_do(tmp_path):
    base = sweep.load(write(tmp_path, TOY)).specs
    moved = sweep.load(write(tmp_path, TOY), overrides=["time=02:00:00", "partition=submit"]).specs
    assert [s.run_id for s in base] == [s.run_id for s in moved]
    assert moved[0].resources.time_min == 120 and moved[0].resources.partition == "submit"
    changed = sweep.load(write(tmp_path, TOY), overrides=["steps=21"]).specs
    assert not {s.run_id for s in base} & {s.run_id for s in changed}


def test_set_lists_expand_and_scope(tmp_path):
    specs = sweep.load(write(tmp_path, TOY), overrides=["hidden=[4,5,6]"]).specs
    assert len(specs) == 6
    specs = sweep.load(write(tmp_path, TOY), overrides=["toy.lr=0.5"]).specs
    assert all(s.params["lr"] == 0.5 for s in specs)


def test_only_filters_by_id(tmp_path):
    specs = sweep.load(write(tmp_path, TOY), only="*hidden16*").specs
    assert len(specs) == 2 and all(s.params["hidden"] == 16 for s in specs)


def test_preset_then_explicit_values(tmp_path):
    path = write(tmp_path, '[[run]]\nworkload = "toy"\npreset = "tiny"\nsteps = 7\n')
    (spec,) = sweep.load(path).specs
    assert spec.params["steps"] == 7 and spec.settings["checkpoint_every"] == 10
    assert spec.sweep == "s"  # the file's stem without a name key


@pytest.mark.parametrize("text, overrides, expect", [
    ('[[run]]\nworkload = "nope"\n', [], "workload: unknown workload 'nope'; accepted values:"),
    ('[[run]]\nsteps = 3\n', [], "workload: missing"),
    ('[[run]]\nworkload = "toy"\nbogus = 1\n', [], "bogus: unknown parameter; accepted keys:"),
    ('[[run]]\nworkload = "toy"\nsteps = "ten"\n', [], "steps: expected int, got 'ten'"),
    ('[[run]]\nworkload = "toy"\nsteps = 0\n', [], "steps: got 0; must be >= 1"),
    ('[[run]]\nworkload = "toy"\npreset = "huge"\n', [], "preset: got 'huge'; accepted values: default, tiny"),
    ('[[run]]\nworkload = "toy"\ntime = "soon"\n', [], "time: not a Slurm time"),
    ('[[run]]\nworkload = "toy"\ncpus = 0\n', [], "cpus: expected an integer >= 1"),
    ('[[run]]\nworkload = "toy"\nmem = "lots"\n', [], "mem: not a memory size"),
    ('[[run]]\nworkload = "toy"\npartition = "a;rm -rf /"\n', [], "partition: expected a partition name"),
    ('[[run]]\nworkload = "toy"\ncpus = [1, 2]\n', [], "cpus: resource keys take one value"),
    ('[[run]]\nworkload = "toy"\nhidden = []\n', [], "hidden: an empty list expands to no runs"),
    ('name = "bad name!"\n[[run]]\nworkload = "toy"\n', [], "name: 'bad name!' is not a valid sweep name"),
    ('colour = 1\n[[run]]\nworkload = "toy"\n', [], "unknown top-level key 'colour'"),
    ('[defaults]\n', [], "no [[run]] tables"),
    ('[[run]]\nworkload = "toy"\n[[run]]\nworkload = "toy"\n', [], "two runs resolve to the same parameters"),
    ('[[run]]\nworkload = "toy"\n', ["steps"], "--set 'steps': expected key=value"),
    ('[[run]]\nworkload = "toy"\n', ["nosuch=1"], "--set nosuch: no workload"),
    ('[[run]]\nworkload = "toy"\n', ["vae.beta=1"], "--set vae.beta: no run of workload 'vae'"),
    ('[[run]]\nworkload = "toy"\n', ["toy.nosuch=1"], "--set toy.nosuch: unknown parameter"),
    ('[[run]]\nworkload = "toy"\nfail_at = 50\nsteps = 10\n', [], "fail_at: must be < steps"),
    ('[[run]]\nworkload = "toy"\ndropout = true\n', [], "dropout: expected float, got True"),
])
def test_bad_input_names_file_run_and_key(tmp_path, text, overrides, expect):
    path = write(tmp_path, text)
    with pytest.raises(sweep.SweepError) as err:
        sweep.load(path, overrides=overrides)
    message = str(err.value)
    assert expect in message
    assert "\n" not in message


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(sweep.SweepError, match="no such sweep file"):
        sweep.load(tmp_path / "none.toml")
    with pytest.raises(sweep.SweepError, match="not valid TOML"):
        sweep.load(write(tmp_path, "[[run]\nworkload="))


@pytest.mark.parametrize("text, minutes", [
    ("10", 10), ("10:30", 11), ("01:00:00", 60), ("2-00:00:00", 2880), ("1-12", 2160), ("1-00:30", 1470),
    ("UNLIMITED", None), ("infinite", None),
])
def test_slurm_time_formats(text, minutes):
    assert parse_time(text) == minutes


def test_time_and_mem_round_trip():
    assert format_time(2880) == "2-00:00:00" and format_time(90) == "01:30:00" and format_time(None) == "UNLIMITED"
    assert parse_mem("4G") == 4096 and parse_mem("500M") == 500 and parse_mem(64) == 64
    with pytest.raises(ValueError):
        parse_time("1:2:3:4")


def test_spec_json_round_trip():
    spec = JobSpec(sweep="s", workload="toy", params={"steps": 3}, name="toy",
                   resources=parse_resources({"time": "00:10:00", "total_time": "01:00:00", "chunk": True}))
    again = JobSpec.from_json(spec.to_json())
    assert again == spec and again.run_id == spec.run_id


def test_names_tell_apart_runs_of_different_blocks(tmp_path):
    path = write(tmp_path, '[[run]]\nworkload = "toy"\nhidden = [8, 16]\n[[run]]\nworkload = "toy"\nhidden = 8\ndim = 4\n')
    names = [s.name for s in sweep.load(path).specs]
    assert names == ["toy-hidden8-dim16", "toy-hidden16-dim16", "toy-hidden8-dim4"]


def test_readable_names():
    assert readable_name("charlm", {"model": "lstm"}) == "charlm-lstm"
    assert readable_name("vae", {"beta": 4}) == "vae-beta4"
    assert readable_name("vae", {"dataset": "npy:/x/lfw_faces.npy", "beta": 20.0}) == "vae-lfw-faces-beta20"


def test_settings_are_not_identity(tmp_path):
    """How often a run checkpoints, evaluates or logs does not make it another run."""
    base = sweep.load(write(tmp_path, TOY)).specs
    other = sweep.load(write(tmp_path, TOY), overrides=["checkpoint_every=7", "eval_every=3", "log_every=2",
                                                         "sample_every=5", "keep_checkpoints=4",
                                                         "checkpoint_minutes=1.5"]).specs
    assert [s.run_id for s in base] == [s.run_id for s in other]
    assert all(s.settings["checkpoint_every"] == 7 and "checkpoint_every" not in s.params for s in other)
    changed = sweep.load(write(tmp_path, TOY), overrides=["steps=11"]).specs
    assert {s.run_id for s in changed}.isdisjoint(s.run_id for s in base)


def test_spec_json_round_trip_keeps_settings_and_legacy_ids():
    spec = JobSpec(sweep="s", workload="toy", params={"steps": 3}, settings={"eval_every": 2}, name="toy")
    again = JobSpec.from_json(spec.to_json())
    assert again == spec and again.run_id == spec.run_id and again.workload_values == {"steps": 3, "eval_every": 2}
    legacy = spec.to_json()
    legacy["params"] = {"steps": 3, "eval_every": 2}
    del legacy["settings"]
    old = JobSpec.from_json(legacy)  # written before settings existed: its id is kept
    assert old.params == {"steps": 3, "eval_every": 2} and old.settings == {}


def test_a_key_added_to_a_workload_at_its_default_keeps_the_run_ids(tmp_path):
    """`vae.image_size` came after these runs existed ("identity": "when-set"): left at its default
    it is not hashed, so the smoke sweep's ids are those the previous version gave (a resubmit resumes
    them); set, it makes another run."""
    root = Path(__file__).resolve().parents[1]
    ids = [s.run_id for s in sweep.load(root / "jobs" / "sweeps" / "smoke.toml").specs
           if "lfw" not in s.run_id]  # the faces ids hash $JOBKIT_DATA's path
    assert ids == ["charlm-lstm-6949ba63", "charlm-tcn-dde30e44", "charlm-transformer-91cb2742",
                   "vae-sprites-beta0-f06350ff", "vae-sprites-beta1-5311356f", "vae-sprites-beta4-9a5d01ed",
                   "vae-sprites-beta20-d450cccb"]
    spec = next(s for s in sweep.load(root / "jobs" / "sweeps" / "smoke.toml").specs if "sprites-beta4" in s.run_id)
    assert "image_size" not in spec.params
    text = (root / "jobs" / "sweeps" / "smoke.toml").read_text()
    small = sweep.load(write(tmp_path, text.replace('dataset = "sprites"', 'dataset = "sprites"\nimage_size = 32')),
                       only="vae-sprites-*").specs
    assert [s.params["image_size"] for s in small] == [32] * 4
    assert not {s.run_id for s in small} & set(ids)
