"""A command run's keys that its command line never uses (no cluster): one close to a key jobkit knows is
refused with the key it probably meant (exit 2, one line, nothing written); the others are named in one
warning line; a key the command does use is a parameter like any other."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from jobkit.cli import cli

MISSPELT = {
    "resumeable = true": "resumable",
    "step = 500": "steps",
    "progres = 'iter (?P<step>\\d+)'": "progress",
    'chekpoint = "{run_dir}/ckpt.pt"': "checkpoint",
    'stop_signl = "TERM"': "stop_signal",
    'partiton = "cpu"': "partition",
    "eval_evry = 100": "eval_every",
}


def submit(tmp_path, monkeypatch, body: str, *extra: str):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.py").write_text("")
    (tmp_path / "s.toml").write_text(f'name = "k"\n[[run]]\nworkload = "command"\n{body}\n')
    root = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["submit", "s.toml", "--executor", "local", "--root", str(root), *extra])
    return result, root


@pytest.mark.parametrize("line", sorted(MISSPELT))
@pytest.mark.parametrize("dry", [True, False], ids=["dry_run", "submit"])
def test_a_misspelt_key_is_refused_with_the_key_it_probably_meant(tmp_path, monkeypatch, line, dry):
    body = f'command = ["{{python}}", "t.py", "{{lr}}"]\nlr = 1\n{line}'
    result, root = submit(tmp_path, monkeypatch, body, *(["--dry-run"] if dry else []))
    assert result.exit_code == 2, result.output
    key = line.split(" =")[0]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: s.toml: run 1 (command): ")
    assert f"{key}: not a key jobkit knows" in result.stderr and f"did you mean {MISSPELT[line]}?" in result.stderr
    assert not root.exists() or not any(root.rglob("spec.json"))


def test_a_close_key_that_the_command_uses_is_a_parameter(tmp_path, monkeypatch):
    result, _ = submit(tmp_path, monkeypatch, 'command = ["{python}", "t.py", "--step={step}"]\nstep = 5',
                       "--dry-run")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_other_unused_keys_are_named_in_one_warning_line(tmp_path, monkeypatch):
    body = ('command = ["{python}", "t.py", "{lr}", "--out={run_dir}"]\nlr = [1, 2, 3]\nnote = "baseline"\n'
            'owner = "ana"\nresume_args = ["--from={tag}"]\ntag = "v1"\nresumable = true')
    for extra in (["--dry-run"], []):
        result, root = submit(tmp_path, monkeypatch, body, *extra)
        assert result.exit_code == 0, result.output
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert warnings == ["warning: s.toml: keys the command line never uses: note, owner; they only name "
                            "the runs (part of their identity) — use them as {key} in command, or remove them"]
    assert len(list(root.rglob("spec.json"))) == 3  # a warning, not a refusal


def test_no_warning_when_every_key_is_used(tmp_path, monkeypatch):
    result, _ = submit(tmp_path, monkeypatch, 'command = ["{python}", "t.py", "{lr}"]\nlr = 1\nresumable = true\n'
                                              'steps = 10\ntime = "00:05:00"', "--dry-run")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
