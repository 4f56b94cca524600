"""`jobkit collect` and `jobkit tb` on run directories written the way the runner writes them.

The runs are built directly (spec.json, events, real TensorBoard event files, sample json/md/png):
fast, no training. Each sweep has finished runs, a running one and (vae) a pending one.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from demo_runs import make_charlm, make_vae

from jobkit.cli.collect_cmd import collect as collect_cmd
from jobkit.cli.tb_cmd import tb as tb_cmd
from jobkit.collect import CollectError, collect, gather
from jobkit.collect.plots import Series, bar_chart, line_chart, nice_ticks
from jobkit.collect.scalars import read_scalars
from jobkit.store import RunDir


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, {"charlm-demo": make_charlm(root), "vae-demo": make_vae(root)}


@pytest.fixture
def root_copy(demo, tmp_path):
    """A private copy of the demo runs, for tests that damage them."""
    root, ids = demo
    dest = tmp_path / "runs"
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns("report"))
    return dest, ids


def by_id(summary):
    return {r["run_id"]: r for r in summary["runs"]}


# --- the summary ------------------------------------------------------------------------------------
def test_charlm_report_content(demo, tmp_path):
    root, ids = demo
    report = collect(root, "charlm-demo", out=tmp_path / "rep")
    s = report.summary
    runs = by_id(s)
    assert sorted(runs) == sorted(ids["charlm-demo"])
    lstm, tcn, tf = (next(r for r in s["runs"] if r["params"]["model"] == m) for m in ("lstm", "tcn", "transformer"))
    assert s["workloads"]["charlm"]["key_params"] == ["model"]
    assert lstm["key_values"] == {"model": "lstm"} and lstm["label"] == "model=lstm"
    assert (lstm["state"], tcn["state"], tf["state"]) == ("COMPLETED", "COMPLETED", "RUNNING")
    assert (tcn["requeues"], tcn["segments"], tcn["requeue_reasons"]) == (1, 2, {"timeout": 1})
    assert tf["step"] == 300 and tf["total"] == 600
    assert lstm["run_seconds"] > 0
    # Curves come from the TensorBoard files: train every 20 steps, val every 100 and at the end.
    assert lstm["curves"]["train/loss"]["points"] == 31
    assert lstm["curves"]["val/val_loss"]["points"] == 7
    assert tf["curves"]["train/loss"]["last_step"] == 300
    # The tcn run resumed at step 300 with purge_step: one point per step, no doubled segment.
    tcn_curve = read_scalars(Path(tcn["path"]) / "tb")["train/loss"]
    steps = [st for st, _ in tcn_curve]
    assert steps == sorted(set(steps)) == list(range(0, 601, 20))
    # best and final metrics
    assert lstm["best"]["val_loss"]["step"] == 600
    assert math.isclose(lstm["final"]["val_loss"], lstm["best"]["val_loss"]["value"], rel_tol=1e-5)
    assert {"loss", "val_loss", "val_bpc"} <= set(lstm["final"])
    assert "val_loss" in tf["final"]  # newest logged value while running (no metrics.json yet)
    # missing: only the running transformer
    assert s["complete"] is False
    assert all(m.startswith(tf["run_id"]) for m in s["missing"])
    assert any("still running: step 300 of 600" in m for m in s["missing"])
    assert any("no metrics.json yet" in m for m in s["missing"])
    # samples side by side: newest of each run, and per step
    ts = s["text_samples"]["charlm"]
    assert ts["runs"] == [lstm["run_id"], tcn["run_id"], tf["run_id"]]
    assert ts["latest"]["steps"] == {lstm["run_id"]: 600, tcn["run_id"]: 600, tf["run_id"]: 300}
    assert len(ts["latest"]["prompts"]) == 3
    for p in ts["latest"]["prompts"]:
        assert set(p["by_run"]) == set(ts["runs"]) and p["truth"]
    assert [st["step"] for st in ts["steps"]] == [300, 600]
    assert ts["steps"][1]["runs"] == [lstm["run_id"], tcn["run_id"]]
    # files
    html = (report.out / "index.html").read_text()
    md = (report.out / "summary.md").read_text()
    assert json.loads((report.out / "summary.json").read_text())["runs"][0]["run_id"] == s["runs"][0]["run_id"]
    for rid in ids["charlm-demo"]:
        assert rid in html and rid in md
    assert html.count("<polyline") >= 6  # train + val for each of 3 runs
    assert "true continuation" in html and "through yonder window breaks?" in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not load anything from the network"
    assert "<script" not in html


def test_vae_report_content(demo, tmp_path):
    root, ids = demo
    report = collect(root, "vae-demo", out=tmp_path / "rep")
    s = report.summary
    assert sorted(by_id(s)) == sorted(ids["vae-demo"])
    assert s["workloads"]["vae"]["key_params"] == ["dataset", "beta"]
    grid = s["image_grids"]["vae"]
    assert grid["group_by"] == "dataset" and grid["kinds"] == ["prior", "recon", "traversal", "rotation"]
    datasets = {d["group"]: d["runs"] for d in grid["groups"]}
    assert [e["value"] for e in datasets["dsprites"]] == [1.0, 4.0, 16.0]
    assert [e["value"] for e in datasets["shapes3d"]] == [4.0, 8.0]
    b1, b4, b16 = datasets["dsprites"]
    assert set(b1["images"]) == {"prior", "recon", "traversal", "rotation"} and b1["step"] == 400
    assert set(b16["images"]) == {"prior"} and b16["state"] == "RUNNING"
    assert b1["metrics"]["mig"] < b4["metrics"]["mig"] and b1["metrics"]["active_units"] == 3
    assert len(b1["data"]["kl_per_dim"]) == 6
    assert b1["label"] == "β=1"
    for e in datasets["dsprites"] + datasets["shapes3d"]:
        for img in e["images"].values():
            copied = report.out / img["src"]
            assert copied.is_file() and img["width"] > 0 and img["height"] > 0
    assert datasets["shapes3d"][1]["images"] == {} and datasets["shapes3d"][1]["state"] == "PENDING"
    missing = "\n".join(s["missing"])
    assert "not started yet (PENDING)" in missing
    assert "samples step 200: no recon, traversal, rotation image" in missing
    assert s["runs"][0]["best"]["mig"]["value"] > 0
    html = (report.out / "index.html").read_text()
    assert "MIG per β" in html and html.count("<img ") == 13  # dsprites 4 + 4 + 1 (β=16: prior only), shapes3d 4
    assert "not written yet" in html


def test_running_sweep_with_damaged_files_still_reports(root_copy, tmp_path):
    root, ids = root_copy
    runs = {r.run_id: r for r in (RunDir(p.parent) for p in (root / "charlm-demo").glob("*/spec.json"))}
    lstm = next(r for rid, r in runs.items() if "lstm" in rid)
    tcn = next(r for rid, r in runs.items() if "tcn" in rid)
    tf = next(r for rid, r in runs.items() if "transformer" in rid)
    (lstm.samples_dir / "step-000600.json").write_text('{"step": 600, "samp')  # torn file
    (lstm.samples_dir / "step-000900.md").write_text("text without json\n")
    ev = sorted(tcn.tb_dir.glob("events.out.tfevents.*"))[-1]
    ev.write_bytes(ev.read_bytes()[:-7])  # torn last record
    shutil.rmtree(tf.tb_dir)
    shutil.rmtree(tf.samples_dir)
    with open(tf.events_path, "a") as f:
        f.write('{"t": 17000, "event": "check')  # torn last event line
    s = collect(root, "charlm-demo", out=tmp_path / "rep").summary
    missing = "\n".join(s["missing"])
    assert f"{lstm.run_id}: samples/step-000600.json: unreadable" in missing
    assert "step-000900.md has no .json beside it" in missing
    assert f"{tf.run_id}: no TensorBoard event files in tb/" in missing
    assert f"{tf.run_id}: no samples yet" in missing
    assert by_id(s)[tcn.run_id]["curves"]["train/loss"]["points"] >= 30
    assert by_id(s)[lstm.run_id]["state"] == "COMPLETED"
    assert s["text_samples"]["charlm"]["latest"]["steps"][lstm.run_id] == 300  # falls back to the readable one
    assert (tmp_path / "rep" / "index.html").is_file()


def test_broken_image_is_reported_not_copied(root_copy, tmp_path):
    root, _ = root_copy
    prior = next((root / "vae-demo").glob("*beta4*/samples/step-000400-prior.png"))
    prior.write_bytes(b"\x89PNG\r\n\x1a\n half a png")
    s = collect(root, "vae-demo", out=tmp_path / "rep").summary
    assert any("step-000400-prior.png: not a readable image" in m for m in s["missing"])
    assert not list((tmp_path / "rep" / "img").glob(f"{prior.parent.parent.name}/step-000400-prior.png"))


def test_recollect_replaces_images_and_refuses_foreign_folder(demo, tmp_path):
    root, _ = demo
    out = tmp_path / "rep"
    collect(root, "vae-demo", out=out)
    stale = out / "img" / "stale.png"
    stale.write_bytes(b"old")
    collect(root, "vae-demo", out=out)
    assert not stale.exists() and (out / "index.html").is_file()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(CollectError, match="not empty"):
        collect(root, "vae-demo", out=foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_unknown_sweep_names_the_known_ones(demo):
    root, _ = demo
    with pytest.raises(CollectError, match=r"no sweep named 'nope' .*charlm-demo, vae-demo"):
        gather(root, "nope")


# --- the CLI ----------------------------------------------------------------------------------------
def test_cli_collect_prints_the_report_path(demo, tmp_path):
    root, ids = demo
    res = CliRunner().invoke(collect_cmd, ["charlm-demo", "--root", str(root), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(tmp_path / "r" / "index.html")
    assert "3 runs (2 completed, 1 running)" in res.stdout


def test_cli_collect_default_out_and_json(demo):
    root, ids = demo
    res = CliRunner().invoke(collect_cmd, ["vae-demo", "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["report"] == str(root / "vae-demo" / "report" / "index.html")
    assert sorted(r["run_id"] for r in summary["runs"]) == sorted(ids["vae-demo"])
    assert (root / "vae-demo" / "report" / "summary.md").is_file()
    # the report folder is not mistaken for a run
    res = CliRunner().invoke(collect_cmd, ["vae-demo", "--root", str(root), "--json"])
    assert len(json.loads(res.stdout)["runs"]) == len(ids["vae-demo"])


def test_cli_collect_accepts_the_sweep_folder(demo, tmp_path, monkeypatch):
    root, _ = demo
    monkeypatch.delenv("JOBKIT_ROOT", raising=False)
    res = CliRunner().invoke(collect_cmd, [str(root / "charlm-demo"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("args", [["nope"], ["charlm-demo", "--root", "/nonexistent/runs"], ["a/b/c"]])
def test_cli_collect_bad_sweep_is_one_line_exit_2(demo, args):
    root, _ = demo
    if "--root" not in args:
        args = [*args, "--root", str(root)] if "/" not in args[0] else args
    res = CliRunner().invoke(collect_cmd, args)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output


def test_cli_collect_foreign_out_folder_exit_2(demo, tmp_path):
    root, _ = demo
    (tmp_path / "x.txt").write_text("x")
    res = CliRunner().invoke(collect_cmd, ["charlm-demo", "--root", str(root), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "not empty" in res.stderr


def test_cli_help_has_an_example():
    for cmd in (collect_cmd, tb_cmd):
        res = CliRunner().invoke(cmd, ["--help"])
        assert res.exit_code == 0 and "Examples:" in res.output and "jobkit " in res.output


# --- jobkit tb --------------------------------------------------------------------------------------
def test_tb_print_command(demo):
    root, ids = demo
    res = CliRunner().invoke(tb_cmd, ["vae-demo", "--root", str(root), "--port", "6123", "--print-command"])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip()
    assert "-m tensorboard.main" in line and "--host 127.0.0.1" in line and "--port 6123" in line
    spec = line.split("--logdir_spec ", 1)[1].split(" ", 1)[0].strip("'")
    pairs = dict(part.split(":", 1) for part in spec.split(","))
    assert sorted(pairs) == sorted(ids["vae-demo"])
    for rid, path in pairs.items():
        assert Path(path) == (root / "vae-demo" / rid / "tb").resolve()
    res = CliRunner().invoke(tb_cmd, ["vae-demo", "--root", str(root), "--dry-run"])
    assert "--port default" in res.stdout


def test_tb_unknown_sweep_exit_2(demo):
    root, _ = demo
    res = CliRunner().invoke(tb_cmd, ["nope", "--root", str(root)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1


def test_tb_serves_every_run_separately_on_localhost(demo, tmp_path):
    """Start the real thing on a free port; TensorBoard lists each run id (and the hparams plugin)."""
    root, ids = demo
    code = ("import sys; from jobkit.cli.tb_cmd import tb; "
            "tb(['charlm-demo', '--root', sys.argv[1], '--port', '0', '--reload-interval', '1'])")
    before = set(Path(tempfile.gettempdir()).glob("jobkit-tb-*"))  # another process's (or a killed one's): not ours
    # started as a script's `jobkit tb &` starts it: SIGINT ignored from the start (what a non-interactive
    # shell gives a background command); Ctrl-C must stop it all the same
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://(localhost|127\.0\.0\.1):\d+/", url), (url, proc.stderr.read() if proc.poll() else "")
        deadline, runs = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url + "data/runs", timeout=10) as resp:
                runs = json.load(resp)
            if set(ids["charlm-demo"]) <= set(runs):
                break
            time.sleep(0.5)
        assert set(runs) == set(ids["charlm-demo"]), runs  # bare run ids, one entry each
        with urllib.request.urlopen(url + "data/plugins_listing", timeout=10) as resp:
            plugins = json.load(resp)
        assert plugins["scalars"]["enabled"] and plugins["hparams"]["enabled"], plugins
        links = [p for p in set(Path(tempfile.gettempdir()).glob("jobkit-tb-*")) - before
                 if (p / ids["charlm-demo"][0]).is_symlink()]
        assert links
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, proc.stderr.read()
    assert not any(p.exists() for p in links), "the link folder is removed on Ctrl-C"
    assert (root / "charlm-demo" / ids["charlm-demo"][0] / "tb").is_dir()  # ... and not what it pointed to


# --- charts -----------------------------------------------------------------------------------------
def test_line_chart_skips_non_finite_and_handles_empty():
    svg = line_chart([Series("a", [(0, 1.0), (10, float("nan")), (20, 0.5)]), Series("b", [])], title="t")
    assert svg.count("<polyline") == 1 and "nan" not in svg.lower().replace("aria-label", "")
    assert "no data yet" in line_chart([Series("a", [])], title="t")
    assert "(log)" in line_chart([Series("a", [(0, 1000.0), (1, 1.0)])], title="t", y_label="loss")
    assert "<rect" in bar_chart([("β=1", 0.1, "#000"), ("β=4", None, "#111")], title="MIG")


def test_nice_ticks():
    assert nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(1.3, 4.4)[0] >= 1.3 and nice_ticks(5, 5)


# --- against the real runner ------------------------------------------------------------------------
def test_collect_reads_what_the_runner_writes(tmp_path):
    """Two toy runs trained by `jobkit.run.runner` (one stopped twice and resumed): the curves have one
    point per logged step, the runner's hparam/* scalars stay out of the charts, both runs complete."""
    from jobkit.plan import params as params_mod
    from jobkit.plan import registry
    from jobkit.plan.spec import JobSpec, Resources
    from jobkit.run import runner

    cls = registry.load("toy")
    runs = []
    for lr in (1e-2, 3e-3):
        p = params_mod.resolve(cls.Params, cls.presets, {"preset": "tiny", "steps": 30, "lr": lr, "log_every": 2})
        spec = JobSpec(sweep="toys", workload="toy", params=params_mod.to_dict(p),
                       name=f"toy-lr{lr}", resources=Resources(cpus=1))
        runs.append(RunDir.create(tmp_path, spec))
    runner.run(runs[0])
    for stop_at in (7, 19):
        def hook(step: int, stop_at=stop_at) -> None:
            if step == stop_at:
                os.kill(os.getpid(), signal.SIGUSR2)
        with pytest.raises(runner.Stopped):
            runner.run(runs[1], on_step=hook)
    mid = collect(tmp_path, "toys", out=tmp_path / "mid").summary  # a run stopped half way
    assert any(runs[1].run_id in m for m in mid["missing"])
    runner.run(runs[1])
    report = collect(tmp_path, "toys")
    s = report.summary
    assert report.out == tmp_path / "toys" / "report"
    assert s["workloads"]["toy"]["key_params"] == ["lr"]
    assert [r["state"] for r in s["runs"]] == ["COMPLETED", "COMPLETED"]
    resumed = by_id(s)[runs[1].run_id]
    assert resumed["segments"] == 3
    steps = [st for st, _ in read_scalars(runs[1].tb_dir)["train/loss"]]
    assert steps == sorted(set(steps)) and len(steps) == 15  # every 2nd step, none doubled by the resumes
    assert resumed["final"]["val_loss"] == pytest.approx(runs[1].metrics()["val_loss"])
    assert s["missing"] == [] and s["complete"] is True
    html = (report.out / "index.html").read_text()
    assert "hparam/" not in html.split("<section id=\"curves\">", 1)[1].split("</section>", 1)[0]


def test_collector_follows_the_workloads_own_layout(tmp_path):
    """A workload the collector has never heard of gets its images compared as its layout says."""
    from jobkit import atomic
    from jobkit.collect.layout import layout_of
    from jobkit.plan.spec import JobSpec
    from jobkit.state import Event
    from jobkit.store import RunDir

    workload = "layout_workload:Painter"
    (tmp_path / "layout_workload.py").write_text(
        "from jobkit.protocol import BaseParams, ImageKind, Metric, ReportLayout\n"
        "from dataclasses import dataclass\n"
        "@dataclass\nclass P(BaseParams):\n    brush: int = 1\n    style: str = 'oil'\n"
        "class Painter:\n    Params = P\n    presets = {'default': {}}\n"
        "    report = ReportLayout(key_params=('style', 'brush'), headline=(Metric('beauty', True, 'Beauty'),),\n"
        "                          images=(ImageKind('canvas', 'Canvases'),), group_images_by='style',\n"
        "                          compare_by='brush', compare_label='b', chart='beauty')\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        assert layout_of(workload).chart == "beauty"
        root = tmp_path / "runs"
        from PIL import Image
        for brush, beauty in ((10, 0.9), (2, 0.4)):
            spec = JobSpec(sweep="art", workload=workload, params={"brush": brush, "style": "oil", "steps": 1},
                           name=f"painter-b{brush}")
            run = RunDir.create(root, spec)
            run.event(Event.SUBMITTED, executor="local")
            run.event(Event.STARTED, step=0)
            run.event(Event.FINISHED, step=1)
            run.samples_dir.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(run.samples_dir / "step-000001-canvas.png")
            atomic.write_json(run.samples_dir / "step-000001.json", {"beauty": beauty})
        s = collect(root, "art", out=tmp_path / "rep").summary
    finally:
        sys.path.remove(str(tmp_path))
    grid = s["image_grids"][workload]
    (group,) = grid["groups"]
    assert group["group"] == "oil" and [e["value"] for e in group["runs"]] == [2, 10]  # numeric order
    assert [e["metrics"]["beauty"] for e in group["runs"]] == [0.4, 0.9] and group["runs"][0]["label"] == "b=2"
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Beauty per b" in html and "Canvases" in html and html.count("<img ") == 2
    assert "highest for Beauty" in html
