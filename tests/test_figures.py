"""docs/figures.py, which rebuilds docs/RESULTS.md's pictures and tables, on a small real sweep.

Three tiny runs trained through the runner (a charlm Transformer stopped on a plateau, a sprites VAE
at 32×32, a faces VAE), then the script: every picture exists and every table names what the run
folders say. Seconds on a CPU.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from jobkit import testing
from jobkit.run import runner

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("figures", ROOT / "docs" / "figures.py")
figures = importlib.util.module_from_spec(spec)
sys.modules["figures"] = figures  # dataclasses look their module up there
spec.loader.exec_module(figures)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_copying_counts_only_long_verbatim_matches():
    train = "the quick brown fox jumps over the lazy dog, and then the quick brown fox sleeps."
    grams = {train[i:i + figures.COPY_MIN] for i in range(len(train) - figures.COPY_MIN + 1)}
    copied = "xx" + train[4:34] + "yy"  # 30 characters straight from the text
    fraction, longest = figures.copying(copied, train, grams)
    assert longest == 30 and fraction == pytest.approx(30 / 34)
    assert figures.copying("the quick brown zzz and the lazy dog", train, grams) == (0.0, 0)


def test_figures_and_tables_from_a_finished_sweep(tmp_path, capsys):
    root, sweep = tmp_path / "runs", tmp_path / "runs" / "mini"  # make_run puts runs under root/<sweep>/
    lm = {"preset": "tiny", "model": "transformer", "steps": 400, "eval_every": 20, "sample_every": 100,
          "stop": "plateau", "patience": 2, "min_delta": 0.2, "val_windows": 8, "sample_len": 40}
    vae = {"preset": "tiny", "batch_size": 8, "val_size": 32, "mig_samples": 300, "latents": 4,
           "steps": 20, "eval_every": 10, "sample_every": 10}
    runs = [testing.make_run(root, "charlm", lm, sweep="mini"),
            testing.make_run(root, "vae", {**vae, "image_size": 32, "beta": 4}, sweep="mini"),
            testing.make_run(root, "vae", {**vae, "dataset": f"npy:{figures.data_dir()}/lfw_faces_25px.npy"},
                             sweep="mini")]
    for run in runs:
        runner.run(run)
    converged = [json.loads(line) for line in runs[0].events_path.read_text().splitlines()
                 if '"converged"' in line]
    assert converged, "the plateau (min_delta 20 %) should stop the tiny model well before 400 steps"

    figures.main(sweep, tmp_path / "img", copy_prompts=4)
    out = capsys.readouterr().out
    names = {p.name for p in (tmp_path / "img").iterdir()}
    assert {"charlm-val.svg", "sprites-mig.svg", "sprites-prior.png", "sprites-traversal.png",
            "sprites-rotation.png", "faces-prior.png"} <= names
    assert f"| {converged[0]['step']} |" in out  # the stop step, as the converged event says
    assert f"{converged[0]['best_step']}: {converged[0]['best']:.3f}" in out
    assert "## Copying" in out and "## Sprites" in out and "## Faces" in out
    assert "<style>" in (tmp_path / "img" / "charlm-val.svg").read_text()
