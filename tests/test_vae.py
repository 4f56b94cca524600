"""The `vae` workload: sprites factors, MIG, datasets, params, training, artifacts, exact resume.

Fast by design (tiny batches, a few dozen steps, small MIG sets): the whole file runs in seconds.
"""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from jobkit.plan.params import ParamError, resolve
from jobkit.protocol import Workload
from jobs.vae import sprites
from jobs.vae.data import DatasetError, SpritesData, load_dataset, parse_dataset
from jobs.vae.mig import discrete_entropy, discrete_mutual_info, mig_details, mutual_info_gap
from jobs.vae.workload import BetaVAE

DATA = Path(os.environ.get("JOBKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))  # conftest sets it
LFW = DATA / "lfw_faces_25px.npy"
CPU = torch.device("cpu")
FAST = {"preset": "tiny", "batch_size": 8, "val_size": 32, "mig_samples": 300, "latents": 4}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(**raw) -> BetaVAE:
    workload = BetaVAE(resolve(BetaVAE.Params, BetaVAE.presets, {**FAST, **raw}))
    workload.setup(Path("."), CPU)
    return workload


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum())


def centre(pos_x: int, pos_y: int) -> list[float]:
    span = sprites.POS_HI - sprites.POS_LO
    return [sprites.POS_LO + float(sprites.POSITIONS[pos_x]) * span, sprites.POS_LO + float(sprites.POSITIONS[pos_y]) * span]


def one(shape: int, scale: int, orientation: int, pos_x: int, pos_y: int) -> torch.Tensor:
    return sprites.render(torch.tensor([[shape, scale, orientation, pos_x, pos_y]]))[0]


# ------------------------------------------------------------------------------------------- sprites


def test_sprites_are_deterministic_binary_and_labelled():
    assert sprites.FACTOR_SIZES == (3, 6, 40, 32, 32) and sprites.NUM_IMAGES == 737280
    f1 = sprites.sample_factors(200, torch.Generator().manual_seed(3))
    f2 = sprites.sample_factors(200, torch.Generator().manual_seed(3))
    assert torch.equal(f1, f2)
    a, b = sprites.render(f1), sprites.render(f2)
    assert a.shape == (200, 1, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert bool((a.flatten(1).sum(1) > 20).all())  # every image shows a shape
    assert torch.equal(sprites.index_to_factors(sprites.factors_to_index(f1)), f1)
    assert torch.equal(sprites.index_to_factors(torch.tensor([sprites.NUM_IMAGES - 1]))[0], torch.tensor([2, 5, 39, 31, 31]))
    with pytest.raises(ValueError):
        sprites.render(torch.tensor([[3, 0, 0, 0, 0]]))


@pytest.mark.parametrize("k", [0, 7, 23, 39])
def test_heart_at_next_orientation_is_heart_rotated_by_one_step(k):
    pos = (15, 16)
    here, after = one(2, 5, k, *pos), one(2, 5, (k + 1) % 40, *pos)

    def rotated(img, degrees):
        return TF.rotate(img, degrees, interpolation=InterpolationMode.BILINEAR, center=centre(*pos))

    step = 360 / 40
    forward, backward = iou(after, rotated(here, step)), iou(after, rotated(here, -step))
    assert forward > 0.93
    assert forward > iou(after, here) + 0.015 > backward + 0.03
    # ten steps = a quarter turn, counter-clockwise as displayed
    quarter = one(2, 5, (k + 10) % 40, *pos)
    assert iou(quarter, rotated(here, 90.0)) > 0.9 > 0.8 > iou(quarter, rotated(here, -90.0))


def test_symmetries_of_square_and_ellipse_but_not_heart():
    pos = (15, 16)
    assert iou(one(0, 5, 3, *pos), one(0, 5, 13, *pos)) > 0.9  # square: a quarter turn
    assert iou(one(1, 5, 3, *pos), one(1, 5, 23, *pos)) > 0.9  # ellipse: a half turn
    assert iou(one(1, 5, 3, *pos), one(1, 5, 13, *pos)) < 0.5
    assert iou(one(2, 5, 3, *pos), one(2, 5, 23, *pos)) < 0.8  # the heart points the other way


def test_scale_and_position_move_the_shape_as_expected():
    areas = [float(one(2, s, 0, 15, 16).sum()) for s in range(6)]
    assert all(b > a for a, b in zip(areas, areas[1:]))
    assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.15)  # scale 0.5 -> 1: area × 4
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")

    def centroid(img):
        m = img[0]
        return float((xs * m).sum() / m.sum()), float((ys * m).sum() / m.sum())

    pitch = (sprites.POS_HI - sprites.POS_LO) / 31
    x0, y0 = centroid(one(1, 3, 0, 5, 20))
    x1, y1 = centroid(one(1, 3, 0, 15, 20))  # posX + 10: right by 10 pitches, same row
    x2, y2 = centroid(one(1, 3, 0, 5, 30))  # posY + 10: down by 10 pitches, same column
    assert x1 - x0 == pytest.approx(10 * pitch, abs=0.6) and y1 == pytest.approx(y0, abs=0.3)
    assert y2 - y0 == pytest.approx(10 * pitch, abs=0.6) and x2 == pytest.approx(x0, abs=0.3)


# ----------------------------------------------------------------------------------------------- MIG


def test_mutual_information_matches_the_definition():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, 2000)
    b = (a + rng.integers(0, 2, 2000)) % 5
    joint = np.zeros((5, 5))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    expected = sum(joint[i, j] * math.log(joint[i, j] / (pa[i] * pb[j]))
                   for i in range(5) for j in range(5) if joint[i, j] > 0)
    assert discrete_mutual_info(a, b) == pytest.approx(expected, rel=1e-9)
    assert discrete_entropy(np.arange(8).repeat(3)) == pytest.approx(math.log(8))


def test_mig_of_true_factors_is_about_one_and_of_random_codes_about_zero():
    factors = sprites.sample_factors(10000, torch.Generator().manual_seed(0)).numpy()
    codes = factors.astype(np.float64)
    # 20 bins cannot separate 32 positions or 40 orientations, so the ceiling is ~0.9 ...
    assert 0.85 < mutual_info_gap(codes, factors, bins=20) <= 1.0
    # ... with as many bins as values it is 1 up to sampling noise, whatever the codes' scale and sign
    assert mutual_info_gap(codes, factors, bins=40) > 0.98
    assert mutual_info_gap(codes * np.array([-3.0, 0.1, 7.0, -0.5, 2.0]) + 5.0, factors, bins=40) > 0.98
    noise = np.random.default_rng(0).normal(size=(10000, 10))
    assert mutual_info_gap(noise, factors) < 0.02
    # a factor encoded twice has no gap; one that takes a single value is skipped
    details = mig_details(np.concatenate([codes, codes[:, :1]], 1), factors, bins=40)
    assert details["per_factor"][0] < 0.02 and details["per_factor"][1] > 0.98
    constant = np.concatenate([factors, np.zeros((10000, 1), dtype=factors.dtype)], 1)
    assert mig_details(codes, constant, bins=40)["per_factor"][-1] is None


# -------------------------------------------------------------------------------------------- params


def test_params_presets_and_validation(tmp_path):
    p = resolve(BetaVAE.Params, BetaVAE.presets, {})
    assert (p.preset, p.dataset, p.latents, p.beta, p.traversal_steps, p.mig_samples, p.mig_bins,
            p.num_samples, p.rotation_dim) == ("default", "sprites", 10, 4.0, 9, 10000, 20, 16, -1)
    assert set(BetaVAE.presets) >= {"tiny", "cpu-small", "default"}
    tiny = resolve(BetaVAE.Params, BetaVAE.presets, {"preset": "tiny", "beta": 0})
    assert tiny.steps < 100 and tiny.beta == 0.0 and BetaVAE(tiny).total_steps == tiny.steps
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((2, 8, 8), np.uint8))
    assert resolve(BetaVAE.Params, BetaVAE.presets, {"dataset": f"npy:{npy}"}).dataset == f"npy:{npy}"
    bad = [
        ({"dataset": "mnist"}, "dataset", "accepted values"),
        ({"dataset": "npy:"}, "dataset", "path"),
        ({"beta": -1}, "beta", ">= 0"),
        ({"latents": 4, "rotation_dim": 4}, "rotation_dim", "latents=4"),
        ({"likelihood": "poisson"}, "likelihood", "bernoulli"),
        ({"download": True}, "download", "celeba"),
        ({"lr": 0}, "lr", "> 0"),
        ({"beta": "big"}, "beta", "float"),
        ({"preset": "huge"}, "preset", "tiny"),
        ({"latent": 3}, "latent", "accepted keys"),
    ]
    for raw, key, text in bad:
        with pytest.raises(ParamError) as err:
            resolve(BetaVAE.Params, BetaVAE.presets, raw)
        assert err.value.key == key and text in str(err.value), (raw, str(err.value))


def test_check_data_is_cheap_and_names_key_path_and_what_was_expected(tmp_path):
    from jobkit.plan.datacheck import DataProblem

    def check(dataset: str, **kw) -> None:
        BetaVAE(resolve(BetaVAE.Params, BetaVAE.presets, {"dataset": dataset, **kw})).check_data()

    np.save(tmp_path / "ok.npy", np.zeros((2, 8, 8), np.uint8))
    np.save(tmp_path / "flat.npy", np.zeros((2, 8), np.uint8))
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), np.uint8))
    (tmp_path / "junk.npy").write_bytes(b"not an array at all")
    (tmp_path / "noimages").mkdir()
    (tmp_path / "noimages" / "a.txt").write_text("x")
    check(f"npy:{tmp_path / 'ok.npy'}")
    check("sprites")
    cases = [
        (f"npy:{tmp_path / 'missing.npy'}", "no such file"),
        (f"npy:{tmp_path / 'flat.npy'}", "shape (2, 8)"),
        (f"npy:{tmp_path / 'empty.npy'}", "empty array"),
        (f"npy:{tmp_path / 'junk.npy'}", "not a .npy file"),
        (f"folder:{tmp_path / 'nope'}", "no such directory"),
        (f"folder:{tmp_path / 'noimages'}", "no image files"),
    ]
    for dataset, text in cases:
        with pytest.raises(DataProblem) as err:
            check(dataset)
        assert err.value.key == "dataset" and text in str(err.value) and "expected" in str(err.value), str(err.value)
    with pytest.raises(DataProblem, match="img_align_celeba.*no such directory"):
        check("celeba", data_dir=str(tmp_path))


def test_registered_and_implements_the_protocol():
    from jobkit.plan import registry

    assert registry.load("jobs.vae.workload:BetaVAE") is BetaVAE
    assert "vae = jobs.vae.workload:BetaVAE" in (Path(__file__).resolve().parents[1] / "setup.cfg").read_text()
    assert registry.load("vae") is BetaVAE and BetaVAE.report.chart == "mig"
    assert isinstance(BetaVAE(resolve(BetaVAE.Params, BetaVAE.presets, {"preset": "tiny"})), Workload)


# ------------------------------------------------------------------------------------------ datasets


@pytest.mark.skipif(not LFW.is_file(), reason=f"{LFW} not present")
def test_npy_faces_are_resized_to_64():
    assert parse_dataset(f"npy:{LFW}") == ("npy", str(LFW))
    data = load_dataset(f"npy:{LFW}", val_size=1000)
    assert data.channels == 1 and not data.binary and not data.has_factors
    assert data.val.shape == (10, 1, 64, 64) and data.val.dtype == torch.uint8  # 10% of 100
    assert len(data.train) == 90
    x = data.train_batch(torch.Generator().manual_seed(0), 5, CPU)
    assert x.shape == (5, 1, 64, 64) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.05
    raw = np.load(LFW)
    assert abs(float(x.mean()) - raw.mean() / 255) < 0.1


def test_bad_arrays_and_folders_give_clear_errors(tmp_path):
    cases = {
        "flat.npy": (np.zeros((4, 9), np.uint8), "N×H×W"),
        "four.npy": (np.zeros((2, 8, 8, 4), np.uint8), "C = 1 or 3"),
        "empty.npy": (np.zeros((0, 8, 8), np.uint8), "empty"),
        "range.npy": (np.full((2, 8, 8), 2.0, np.float32), "[0, 1]"),
        "wide.npy": (np.full((2, 8, 8), 300, np.int32), "0..255"),
    }
    for name, (array, text) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(DatasetError, match=None) as err:
            load_dataset(f"npy:{tmp_path / name}")
        assert text in str(err.value) and "\n" not in str(err.value), name
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(DatasetError, match="cannot load"):
        load_dataset(f"npy:{tmp_path / 'junk.npy'}")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(f"npy:{tmp_path / 'missing.npy'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(DatasetError, match="no such directory"):
        load_dataset(f"folder:{tmp_path / 'missing'}")


def test_folder_of_images(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8)).save(tmp_path / "sub" / "b.jpg")
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "c.bmp")
    data = load_dataset(f"folder:{tmp_path}", workers=2)
    assert data.channels == 3 and data.val.shape == (1, 3, 64, 64)
    x = data.train_batch(torch.Generator().manual_seed(0), 6, CPU)
    assert x.shape == (6, 3, 64, 64) and float(x.max()) <= 1.0


def test_missing_celeba_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("celeba", data_dir=str(tmp_path))
    message = str(err.value)
    assert "CelebA not found" in message and str(tmp_path / "celeba") in message
    assert "download" in message and "\n" not in message
    workload = BetaVAE(resolve(BetaVAE.Params, BetaVAE.presets, {"preset": "tiny", "dataset": "celeba",
                                                                  "data_dir": str(tmp_path)}))
    with pytest.raises(DatasetError, match="CelebA not found"):
        workload.setup(tmp_path, CPU)


# ---------------------------------------------------------------------------------- training, resume


def test_loss_falls_over_a_few_dozen_steps():
    workload = make(batch_size=16, lr=2e-3)
    losses = [workload.train_step(s)["loss"] for s in range(30)]
    metrics = workload.train_step(30)
    assert {"loss", "recon", "kl", "images_per_s"} <= set(metrics)
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def _rng_snapshot():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def test_evaluate_and_artifacts(tmp_path):
    workload = make(latents=4, traversal_steps=5)
    for s in range(3):
        workload.train_step(s)
    torch.manual_seed(123)
    before = _rng_snapshot()

    class Writer:
        images: dict = {}

        def add_image(self, tag, image, step):
            self.images[tag] = (tuple(image.shape), step)

    writer = Writer()
    metrics = workload.evaluate()
    extra = workload.artifacts(3, writer, tmp_path / "samples")
    after = _rng_snapshot()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    assert {"val_loss", "recon", "kl", "active_units", "mig", "rotation_dim"} <= set(metrics)
    assert {f"kl_dim{d}" for d in range(4)} <= set(metrics)
    assert 0.0 <= metrics["mig"] <= 1.0 and 0 <= metrics["rotation_dim"] < 4
    assert metrics["val_loss"] == pytest.approx(metrics["recon"] + 4.0 * metrics["kl"])
    assert extra["mig"] == metrics["mig"] and extra["rotation_dim"] == metrics["rotation_dim"]
    files = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert files == ["step-000003-prior.png", "step-000003-recon.png", "step-000003-rotation.png",
                     "step-000003-traversal.png", "step-000003.json"]
    size = {name: Image.open(tmp_path / "samples" / name).size for name in files if name.endswith(".png")}
    cell = 64 + 2
    assert size["step-000003-prior.png"] == (4 * cell + 2, 4 * cell + 2)  # 16 samples, 4×4
    assert size["step-000003-recon.png"] == (8 * cell + 2, 2 * cell + 2)  # 8 inputs above 8 reconstructions
    assert size["step-000003-traversal.png"] == (5 * cell + 2, 4 * cell + 2)  # a row per latent
    assert size["step-000003-rotation.png"] == (5 * cell + 2, cell + 2)  # one strip on sprites
    summary = json.loads((tmp_path / "samples" / "step-000003.json").read_text())
    assert summary["step"] == 3 and summary["beta"] == 4.0 and summary["dataset"] == "sprites"
    assert summary["rotation_dim"] == metrics["rotation_dim"] and summary["mig"] == pytest.approx(metrics["mig"])
    assert sorted(summary["kl_order"]) == [0, 1, 2, 3] and len(summary["kl_per_dim"]) == 4
    kl = summary["kl_per_dim"]
    assert [kl[d] for d in summary["kl_order"]] == sorted(kl, reverse=True)
    assert summary["active_units"] == metrics["active_units"]
    assert set(writer.images) == {"vae/prior", "vae/recon", "vae/traversal", "vae/rotation"}
    assert writer.images["vae/prior"] == ((3, 4 * cell + 2, 4 * cell + 2), 3)
    assert not [p for p in (tmp_path / "samples").iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.skipif(not LFW.is_file(), reason=f"{LFW} not present")
def test_faces_use_gaussian_loss_and_top_kl_rotation_rows(tmp_path):
    workload = make(dataset=f"npy:{LFW}", latents=5, traversal_steps=3, num_samples=4)
    assert workload.model.likelihood == "gaussian"
    workload.train_step(0)
    metrics = workload.evaluate()
    assert "mig" not in metrics and "rotation_dim" not in metrics
    workload.artifacts(1, None, tmp_path)
    summary = json.loads((tmp_path / "step-000001.json").read_text())
    assert summary["rotation_dim"] is None and summary["mig"] is None
    assert summary["rotation_dims"] == summary["kl_order"][:3]
    assert Image.open(tmp_path / "step-000001-rotation.png").size == (3 * 66 + 2, 3 * 66 + 2)
    assert Image.open(tmp_path / "step-000001-prior.png").size == (2 * 66 + 2, 2 * 66 + 2)
    named = make(dataset=f"npy:{LFW}", latents=5, rotation_dim=2)
    assert named.evaluate()["rotation_dim"] == 2.0


def test_resume_from_state_dict_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    straight = make()
    for s in range(6):
        straight.train_step(s)

    torch.manual_seed(0)
    first = make()
    for s in range(3):
        first.train_step(s)
    first.evaluate()  # evaluation in between must not change the training trajectory
    first.artifacts(3, None, tmp_path / "samples")
    torch.save({"workload": first.state_dict(), "rng": torch.get_rng_state()}, tmp_path / "ckpt.pt")
    torch.manual_seed(999)  # a new process: other RNG state, freshly built workload
    resumed = make()
    resumed.train_step(0)  # and some other history, overwritten by the checkpoint
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed.load_state_dict(state["workload"])
    torch.set_rng_state(state["rng"])
    for s in range(3, 6):
        resumed.train_step(s)

    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert straight.evaluate() == resumed.evaluate()


def test_sprites_mig_set_is_fixed_and_cached():
    data = SpritesData(val_size=8)
    f1, x1 = data.mig_set(100)
    assert data.mig_set(100)[1] is x1
    f2, x2 = SpritesData(val_size=8).mig_set(100)
    assert torch.equal(f1, f2) and torch.equal(x1, x2) and x1.shape == (100, 1, 64, 64)


def test_through_the_runner_stopped_and_resumed_equals_uninterrupted(tmp_path):
    from jobkit.testing import check_resume_through_runner

    raw = {**FAST, "steps": 12, "eval_every": 6, "sample_every": 6, "checkpoint_every": 4, "log_every": 2}
    ref, run = check_resume_through_runner(tmp_path, "vae", raw, stop_at=(5,))
    assert ref.metrics()["mig"] == run.metrics()["mig"]
    names = {p.name for p in run.samples_dir.iterdir()}
    assert {"step-000006-prior.png", "step-000012-rotation.png", "step-000012.json"} <= names


def test_sprites_at_32_are_the_64_sprites_averaged_and_train(tmp_path):
    """image_size = 32: the same factors, each 2×2 block of the 64×64 sprite averaged; the model is
    built for 32×32 and trains, evaluates (MIG) and draws its pictures at that size."""
    factors = torch.tensor([[2, 5, 7, 3, 29], [0, 0, 0, 31, 0]])
    small = SpritesData(8, image_size=32)
    pooled = torch.nn.functional.avg_pool2d(sprites.render(factors), 2)
    assert torch.equal(small.render(factors), pooled) and small.render(factors).shape == (2, 1, 32, 32)
    assert set(small.val.unique().tolist()) <= {0, 64, 128, 191, 255}
    workload = make(image_size=32)
    losses = [workload.train_step(s)["loss"] for s in range(30)]
    assert sum(losses[-5:]) < sum(losses[:5])
    metrics = workload.evaluate()
    assert 0.0 <= metrics["mig"] <= 1.0 and math.isfinite(metrics["val_loss"])
    pictures = workload.pictures()
    assert pictures["prior"].shape[-1] == 4 * (32 + 2) + 2  # 16 prior samples, 4 a row, 2 px padding
    assert pictures["traversal"].shape[-1] == 9 * (32 + 2) + 2


def test_image_size_is_32_or_64_and_32_only_for_sprites():
    assert resolve(BetaVAE.Params, BetaVAE.presets, {"image_size": 32}).image_size == 32
    with pytest.raises(ParamError, match="image_size.*64 or 32"):
        resolve(BetaVAE.Params, BetaVAE.presets, {"image_size": 48})
    with pytest.raises(ParamError, match="image_size.*sprites only"):
        resolve(BetaVAE.Params, BetaVAE.presets, {"image_size": 32, "dataset": f"npy:{LFW}"})
