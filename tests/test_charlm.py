"""The `charlm` workload: data, models, training, samples, resume, parameters (fast, CPU only)."""
from __future__ import annotations

import hashlib
import io
import json
import math
import urllib.error
from pathlib import Path

import pytest
import torch

from jobkit.plan.params import ParamError, resolve
from jobs.charlm import data as data_mod
from jobs.charlm.data import DataError, DataNotFound, load_corpus, val_window_starts
from jobs.charlm.models import build_model, tcn_levels_for, tcn_receptive_field
from jobs.charlm.workload import CharLM, load_model

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not (SHARED_DATA / "tinyshakespeare.txt").is_file():
    SHARED_DATA = Path("/work/shared/data")
MODELS = ("lstm", "tcn", "transformer")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread, and stay fast when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBKIT_DATA", str(SHARED_DATA))
    monkeypatch.setenv("JOBKIT_CACHE", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", no_network)


def make(tmp_path: Path, **raw) -> CharLM:
    params = resolve(CharLM.Params, CharLM.presets, {"preset": "tiny", **raw})
    workload = CharLM(params)
    workload.setup(tmp_path / "run", torch.device("cpu"))
    return workload


# ------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("model", MODELS)
def test_a_few_dozen_steps_lower_the_loss(tmp_path, model):
    torch.manual_seed(0)
    w = make(tmp_path, model=model)
    before = w.evaluate()["val_loss"]
    assert before == pytest.approx(math.log(65), abs=0.3)  # near uniform over 65 characters
    losses = [w.train_step(s)["loss"] for s in range(40)]
    after = w.evaluate()
    assert sum(losses[-5:]) / 5 < losses[0] - 0.7
    assert after["val_loss"] < before - 0.7
    assert after["val_bpc"] == pytest.approx(after["val_loss"] / math.log(2))


def test_train_step_metrics(tmp_path):
    w = make(tmp_path)
    m = w.train_step(0)
    assert {"loss", "lr", "tokens_per_s", "grad_norm"} <= set(m)
    assert m["tokens_per_s"] > 0 and m["lr"] == pytest.approx(3e-3 / 10)  # first warmup step
    assert w.total_steps == 200


def test_warmup_then_cosine_to_min_lr(tmp_path):
    w = make(tmp_path, steps=30, warmup_steps=5, lr=1e-3, min_lr=1e-4)
    lrs = [w.train_step(s)["lr"] for s in range(30)]
    assert lrs[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])
    assert lrs[5] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4, rel=0.05)
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))


def test_setup_writes_the_vocabulary(tmp_path):
    w = make(tmp_path)
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["size"] == 65 and vocab["chars"] == w.vocab.chars
    assert w.vocab.decode(w.vocab.encode("To be, or not")) == "To be, or not"


# ------------------------------------------------------------------------------------------ samples
def test_samples_file_has_prompt_model_and_truth(tmp_path):
    w = make(tmp_path, model="lstm")
    for s in range(5):
        w.train_step(s)

    class Writer:
        calls = []

        def add_text(self, tag, text, step):
            self.calls.append((tag, text, step))

    rng = torch.get_rng_state()
    w.artifacts(5, Writer(), tmp_path / "samples")
    assert torch.equal(rng, torch.get_rng_state())  # no global RNG use
    record = json.loads((tmp_path / "samples" / "step-000005.json").read_text(encoding="utf-8"))
    assert record["step"] == 5 and record["model"] == "lstm" and len(record["samples"]) == 3
    val_text = w.vocab.decode(w.corpus.val)
    markdown = (tmp_path / "samples" / "step-000005.md").read_text(encoding="utf-8").rstrip("\n")
    for s in record["samples"]:
        assert len(s["prompt"]) == 30 and len(s["generated"]) == 64 and len(s["truth"]) == 64
        assert val_text[s["offset"]:s["offset"] + 94] == s["prompt"] + s["truth"]
        assert set(s["generated"]) <= set(w.vocab.chars)
    assert markdown.count("**Initialization**") == 3 and markdown.count("**book**") == 3
    assert markdown.count("**lstm model**") == 3
    assert "↵" not in record["samples"][0]["prompt"]
    assert Writer.calls == [("samples", markdown, 5)]
    assert not [p for p in (tmp_path / "samples").iterdir() if p.name.startswith(".")]  # no temp files left
    # same step, same samples; the prompts do not depend on the model
    w.artifacts(5, None, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "step-000005.json").read_text(encoding="utf-8")) == record
    assert w.prompt_offsets == make(tmp_path / "other", model="tcn").prompt_offsets


def test_samples_from_a_checkpoint_without_the_corpus(tmp_path):
    w = make(tmp_path)
    buf = io.BytesIO()
    torch.save(w.state_dict(), buf)
    buf.seek(0)
    model, vocab = load_model(w.params, torch.load(buf, weights_only=True))
    assert vocab.chars == w.vocab.chars
    x = vocab.encode("ROMEO:").unsqueeze(0)
    assert model(x).shape == (1, 6, 65)


# ------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("raw", [
    {"model": "lstm"}, {"model": "tcn"}, {"model": "tcn", "kernel": 2, "levels": 3},
    {"model": "transformer"}, {"model": "transformer", "pos": "sinusoidal"},
    {"model": "transformer", "pos": "none", "activation": "gelu"},
], ids=lambda raw: "-".join(str(v) for v in raw.values()))
def test_every_model_is_causal(raw):
    params = resolve(CharLM.Params, CharLM.presets, {"preset": "tiny", **raw})
    torch.manual_seed(0)
    net = build_model(params, 65).eval()
    x = torch.randint(0, 65, (2, 32))
    with torch.no_grad():
        base = net(x)
        for t in (0, 7, 31):
            changed = x.clone()
            changed[:, t] = (changed[:, t] + 1) % 65
            out = net(changed)
            torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
            assert not torch.allclose(out[:, t], base[:, t])


def test_tcn_receptive_field_formula_and_default_levels():
    assert tcn_receptive_field(kernel=2, levels=1) == 3
    assert tcn_receptive_field(kernel=3, levels=5) == 125
    assert tcn_receptive_field(kernel=3, levels=7) == 509
    assert [tcn_levels_for(c, 3) for c in (2, 5, 6, 64, 125, 126, 256)] == [1, 1, 2, 5, 5, 6, 7]
    for context in range(2, 300, 7):
        levels = tcn_levels_for(context, 2)
        assert tcn_receptive_field(2, levels) >= context > tcn_receptive_field(2, levels - 1)
    p = resolve(CharLM.Params, CharLM.presets, {"preset": "cpu-small", "model": "tcn"})
    assert build_model(p, 65).receptive_field == 125  # covers the 64-character context


@pytest.mark.parametrize("kernel,levels", [(2, 3), (3, 2)])
def test_tcn_receptive_field_matches_the_network(kernel, levels):
    params = resolve(CharLM.Params, CharLM.presets, {"preset": "tiny", "model": "tcn", "kernel": kernel,
                                                     "levels": levels})
    torch.manual_seed(0)
    net = build_model(params, 65).eval()
    rf = tcn_receptive_field(kernel, levels)
    x = torch.randint(0, 65, (1, rf + 10))
    last = x.shape[1] - 1
    with torch.no_grad():
        base = net(x)[0, last]
        inside, outside = x.clone(), x.clone()
        inside[0, last - rf + 1] = (inside[0, last - rf + 1] + 1) % 65
        outside[0, last - rf] = (outside[0, last - rf] + 1) % 65
        assert not torch.equal(net(inside)[0, last], base)
        assert torch.equal(net(outside)[0, last], base)


def test_cpu_small_models_have_about_the_same_size():
    counts = {}
    for model in MODELS:
        p = resolve(CharLM.Params, CharLM.presets, {"preset": "cpu-small", "model": model})
        counts[model] = sum(t.numel() for t in build_model(p, 65).parameters())
    assert all(0.75e6 < n < 0.85e6 for n in counts.values()), counts


# ------------------------------------------------------------------------------------------ resume
def _train(w: CharLM, steps: range, side_effects: bool, tmp_path: Path) -> None:
    for s in steps:
        w.train_step(s)
        if side_effects and s in (1, 6):  # evaluate/artifacts must not perturb training
            w.evaluate()
            w.artifacts(s, None, tmp_path / "samples")


@pytest.mark.parametrize("model", MODELS)
def test_resume_is_bit_exact(tmp_path, model):
    raw = {"model": model, "dropout": 0.1, "steps": 12}
    n, k = 12, 5
    torch.manual_seed(123)
    straight = make(tmp_path / "a", **raw)
    _train(straight, range(n), True, tmp_path)

    torch.manual_seed(123)
    first = make(tmp_path / "b", **raw)
    _train(first, range(k), False, tmp_path)
    buf = io.BytesIO()
    torch.save({"workload": first.state_dict(), "rng": torch.get_rng_state()}, buf)
    del first
    torch.manual_seed(999)  # a new process: different global RNG until the runner restores it
    resumed = make(tmp_path / "c", **raw)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed.load_state_dict(ckpt["workload"])
    torch.set_rng_state(ckpt["rng"])
    _train(resumed, range(k, n), False, tmp_path)

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(straight.batch_generator.get_state(), resumed.batch_generator.get_state())


def test_through_the_runner_stopped_and_resumed_equals_uninterrupted(tmp_path):
    from jobkit.plan import registry
    from jobkit.testing import check_resume_through_runner

    name = "charlm" if "charlm" in registry.available() else "jobs.charlm.workload:CharLM"
    raw = {"preset": "tiny", "model": "transformer", "steps": 12, "dropout": 0.1, "eval_every": 6,
           "sample_every": 6, "checkpoint_every": 4, "log_every": 2, "val_windows": 8, "sample_len": 16}
    straight, resumed = check_resume_through_runner(tmp_path, name, raw, stop_at=(3, 7))
    assert straight.metrics()["val_loss"] == resumed.metrics()["val_loss"]
    for sample in ("step-000006.json", "step-000012.json", "step-000012.md"):
        assert (straight.samples_dir / sample).read_text(encoding="utf-8") == \
            (resumed.samples_dir / sample).read_text(encoding="utf-8")
    assert json.loads((resumed.path / "vocab.json").read_text(encoding="utf-8"))["size"] == 65


def test_resume_refuses_a_different_vocabulary(tmp_path):
    w = make(tmp_path)
    state = w.state_dict()
    other = make(tmp_path / "lower", lowercase=True)
    with pytest.raises(ValueError, match="vocabulary"):
        other.load_state_dict(state)


# ------------------------------------------------------------------------------------------ params
def test_presets_and_overrides():
    p = resolve(CharLM.Params, CharLM.presets, {"preset": "cpu-small"})
    assert (p.model, p.layers, p.heads, p.width, p.context, p.batch_size) == ("transformer", 4, 4, 128, 64, 12)
    assert (p.lr, p.min_lr, p.warmup_steps, p.dropout, p.steps) == (1e-3, 1e-4, 100, 0.0, 2000)
    p = resolve(CharLM.Params, CharLM.presets, {"preset": "cpu-small", "context": 32, "model": "lstm"})
    assert (p.context, p.model, p.batch_size) == (32, "lstm", 12)
    default = resolve(CharLM.Params, CharLM.presets, {})
    assert (default.preset, default.layers, default.width, default.context) == ("default", 6, 384, 256)
    assert default.model == "transformer" and default.data == "tinyshakespeare" and default.val_fraction == 0.1
    assert (default.num_prompts, default.prompt_len, default.sample_len) == (3, 30, 128)


@pytest.mark.parametrize("raw,key,text", [
    ({"model": "gru"}, "model", "accepted values: lstm, tcn, transformer"),
    ({"pos": "rotary"}, "pos", "learned, sinusoidal, none"),
    ({"activation": "tanh"}, "activation", "swiglu, gelu, relu"),
    ({"preset": "huge"}, "preset", "tiny, cpu-small, cpu-converge, default"),
    ({"width": 130, "heads": 4}, "heads", "must divide width=130"),
    ({"lr": 1e-4, "min_lr": 1e-3}, "min_lr", "must be <= lr"),
    ({"val_fraction": 0.0}, "val_fraction", ">= 0.001"),
    ({"context": 1}, "context", ">= 2"),
    ({"dropout": "high"}, "dropout", "expected float"),
    ({"hiddne": 10}, "hiddne", "unknown parameter"),
])
def test_bad_params_are_named(raw, key, text):
    with pytest.raises(ParamError) as err:
        resolve(CharLM.Params, CharLM.presets, raw)
    assert err.value.key == key and text in str(err.value)


# ------------------------------------------------------------------------------------------ data
def test_split_is_contiguous_90_10():
    corpus = load_corpus("tinyshakespeare")
    assert corpus.path == SHARED_DATA / "tinyshakespeare.txt"
    assert (len(corpus.train), len(corpus.val), len(corpus.vocab)) == (1_003_854, 111_540, 65)
    text = (SHARED_DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    assert corpus.vocab.decode(corpus.val[-20:]) == text[-20:]
    assert len(load_corpus("tinyshakespeare", lowercase=True).vocab) < 65


def test_validation_windows_are_fixed():
    assert val_window_starts(1000, 64, 0).tolist() == list(range(0, 936, 64))
    assert val_window_starts(1000, 64, 3).tolist() == [0, 467, 935]


def test_tinyshakespeare_found_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JOBKIT_DATA", str(tmp_path / "empty"))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tinyshakespeare.txt").write_text("hello world\n" * 20)
    assert load_corpus("tinyshakespeare").path == cache / "tinyshakespeare.txt"


def test_download_is_checked_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("JOBKIT_DATA", str(tmp_path / "empty"))
    payload = b"some text\n" * 50
    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(data_mod.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    monkeypatch.setitem(data_mod.KNOWN_CORPORA, "tinyshakespeare", ("tinyshakespeare.txt", "https://example/x", sha))
    assert load_corpus("tinyshakespeare").path == tmp_path / "cache" / "tinyshakespeare.txt"
    assert (tmp_path / "cache" / "tinyshakespeare.txt").read_bytes() == payload

    dest = tmp_path / "bad" / "file.txt"
    with pytest.raises(DataError, match="sha256"):
        data_mod.download("https://example/x", dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []  # nothing half-written left behind

    def offline(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", offline)
    with pytest.raises(DataNotFound, match="JOBKIT_DATA"):
        data_mod.download("https://example/x", dest, "0" * 64)
    assert list(dest.parent.iterdir()) == []


def _setup_error(tmp_path, path, **raw):
    with pytest.raises(DataError) as err:
        make(tmp_path, data=str(path), **raw)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return err


def test_data_errors_name_the_file_and_the_fix(tmp_path):
    err = _setup_error(tmp_path, tmp_path / "missing.txt")
    assert isinstance(err.value, FileNotFoundError) and "no such file" in str(err.value)

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "empty" in str(_setup_error(tmp_path, empty).value)

    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café au lait, déjà vu\n".encode("latin-1") * 20)
    assert "not UTF-8" in str(_setup_error(tmp_path, latin).value)

    short = tmp_path / "short.txt"
    short.write_text("a short text, " * 20)  # 280 chars: 28 for validation < context + 1
    assert "smaller context" in str(_setup_error(tmp_path, short).value)

    assert "not a regular file" in str(_setup_error(tmp_path, tmp_path).value)


def test_a_custom_utf8_text_trains(tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("Ünïcödé lines — with dashes, and «quotes».\n" * 40, encoding="utf-8")
    w = make(tmp_path, data=str(text), sample_len=8)
    assert "«" in w.vocab.chars
    w.train_step(0)
    w.artifacts(1, None, tmp_path / "s")
    record = json.loads((tmp_path / "s" / "step-000001.json").read_text(encoding="utf-8"))
    assert len(record["samples"][0]["generated"]) == 8
