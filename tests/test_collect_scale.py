"""`collect` of a large sweep: the lean TensorBoard reader agrees with TensorBoard's own, and a sweep
above LARGE_ABOVE runs gets a compact index, a page per run and curve chunks (the browser side is in
test_browser.py)."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from demo_runs import make_charlm, make_vae
from synthetic_runs import make_sweep

from jobkit.collect import bigpage, collect, runpages
from jobkit.collect.scalars import event_files, read_scalars


def accumulator(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard's EventAccumulator reads (as the collector did before), for comparison."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out: dict[str, dict[int, float]] = {}
    for tag in acc.Tags()["scalars"]:
        for ev in acc.Scalars(tag):
            out.setdefault(tag, {})[ev.step] = ev.value
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            for ev in acc.Tensors(tag):
                out.setdefault(tag, {})[ev.step] = float(tensor_util.make_ndarray(ev.tensor_proto).reshape(()))
    return {t: sorted(p.items()) for t, p in sorted(out.items())}


def _same(a, b) -> bool:
    norm = lambda c: {t: [(s, "nan" if math.isnan(v) else pytest.approx(v, rel=1e-6)) for s, v in p]  # noqa: E731
                      for t, p in c.items()}
    return norm(a) == norm(b)


def test_reader_agrees_with_tensorboard_on_resumed_new_style_and_torn_files(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    tb = tmp_path / "tb"
    w = SummaryWriter(log_dir=str(tb))
    for s in range(0, 50):
        w.add_scalar("train/loss", 3.0 - s / 25, s)
        w.add_scalar("val/acc", s / 50, s, new_style=True)
    w.close()
    w = SummaryWriter(log_dir=str(tb), purge_step=30)  # resumed at step 30: 30..49 of the first are void
    for s in range(30, 40):
        w.add_scalar("train/loss", 10.0 + s, s)
    w.close()
    got = read_scalars(tb)
    theirs = accumulator(tb)
    assert _same({"train/loss": got["train/loss"]}, {"train/loss": theirs["train/loss"]})
    assert [s for s, _ in got["train/loss"]] == list(range(40)) and got["train/loss"][35][1] == 45.0
    # scalars written as tensors are purged too (EventAccumulator purges only its `scalars`: it keeps 50)
    assert [s for s, _ in got["val/acc"]] == list(range(30)) and len(theirs["val/acc"]) == 50
    assert got["val/acc"] == theirs["val/acc"][:30]
    newest = event_files(tb)[-1]  # a run still writing: its last record cut short
    newest.write_bytes(newest.read_bytes()[:-7])
    torn = read_scalars(tb)
    assert torn["train/loss"] == got["train/loss"][:-1]  # all but the torn record


def test_reader_agrees_with_tensorboard_on_the_demo_runs(tmp_path):
    make_charlm(tmp_path)
    make_vae(tmp_path)
    dirs = sorted(tmp_path.glob("*/*/tb"))
    assert len(dirs) == 8
    for tb in dirs:
        assert _same(read_scalars(tb), accumulator(tb)), tb


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = make_sweep(root, 120, sweep="big")
    return root, runs, collect(root, "big")


def _data(index: Path) -> dict:
    text = index.read_text()
    block = re.search(r'<script type="application/json" id="jobkit-data">(.*?)</script>', text, re.S)
    return json.loads(block.group(1))


def test_large_sweep_gets_a_compact_index_a_page_per_run_and_curve_chunks(large):
    root, runs, report = large
    ids = {r.run_id for r in runs}
    data = _data(report.index)
    names = [c["name"] for c in data["columns"]]
    assert {row[0] for row in data["rows"]} == ids
    assert {"lr", "hidden", "state", "best val_loss", "val_loss"} <= set(names)
    lr = names.index("lr")
    assert all(isinstance(row[lr], float) for row in data["rows"])
    html = report.index.read_text()
    markup = re.sub(r"<script.*?</script>", "", html, flags=re.S)  # rows and curves: drawn by the script
    assert "<tbody id=\"rows\"></tbody>" in markup and markup.count("<tr") == 2  # the table's two head rows
    pages = {p.stem for p in (report.out / "runs").glob("*.html")}
    assert pages == ids
    loaded: dict[str, dict] = {}
    for chunk in sorted((report.out / "curves").glob("c*.js")):
        n, body = re.fullmatch(r"jobkitCurves\((\d+),(.*)\);\n", chunk.read_text(), re.S).groups()
        for rid, tags in json.loads(body).items():
            assert data["chunk"][[row[0] for row in data["rows"]].index(rid)] == int(n)
            loaded[rid] = tags
    assert set(loaded) == ids
    one = next(r for r in runs if (r.path / "metrics.json").is_file())
    steps, values = loaded[one.run_id]["train/loss"]
    truth = read_scalars(one.tb_dir)["train/loss"]
    assert steps == [s for s, _ in truth] and values == pytest.approx([v for _, v in truth], rel=1e-4)
    page = (report.out / runpages.page_name(one.run_id)).read_text()
    assert one.run_id in page and "<polyline" in page and 'href="../index.html"' in page
    assert report.summary["run_pages"] == "runs"


def test_default_groups_leave_out_the_seed_and_the_searched_key(large):
    _, _, report = large
    assert bigpage.default_groups(report.summary, ["lr", "hidden", "dropout", "seed"]) == ["hidden", "dropout"]


def test_chunks_thin_long_curves_and_keep_the_last_point():
    curve = [(s, 1.0 / (s + 1)) for s in range(5000)] + [(5000, math.nan)]
    thin = runpages.thin(curve, runpages.CHUNK_POINTS)
    assert len(thin) == runpages.CHUNK_POINTS and thin[-1] == (4999, 1.0 / 5000) and thin[0] == (0, 1.0)
    assert [s for s, _ in thin] == sorted({s for s, _ in thin})


def test_recollect_drops_pages_of_runs_gone_and_small_sweeps_keep_one_page(large, tmp_path):
    root, runs, _ = large
    copy = tmp_path / "runs"
    shutil.copytree(root, copy)
    out = tmp_path / "report"
    collect(copy, "big", out=out)
    shutil.rmtree(copy / "big" / runs[0].run_id)
    collect(copy, "big", out=out)
    assert not (out / runpages.page_name(runs[0].run_id)).exists()
    assert (out / runpages.page_name(runs[1].run_id)).exists()
    for r in runs[bigpage.LARGE_ABOVE:]:  # now a small sweep: today's single page, no leftovers
        shutil.rmtree(copy / "big" / r.run_id)
    small = collect(copy, "big", out=out)
    assert not (out / "runs").exists() and not (out / "curves").exists()
    assert "<svg" in small.index.read_text() and "jobkit-data" not in small.index.read_text()
