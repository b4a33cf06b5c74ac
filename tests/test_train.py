"""Amortized training: the step lowers L, a run writes and resumes its files, held-out images stay out."""

from __future__ import annotations

import csv
import json
import signal
import warnings
from pathlib import Path

import pytest
import torch
from core_helpers import pattern, pattern_tensor, shared_vgg

from styler.data import PairStream, list_images
from styler.losses import LossConfig, Objective, moments
from styler.model import StyleNet, adain
from styler.train import TrainConfig, holdout_names, resolve_device, train, train_step


def make_folder(folder: Path, names: list[str], seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pattern(40 + 8 * i, 48 - 4 * i, seed + i).save(folder / name)
    return folder


@pytest.fixture(autouse=True)
def restore_sigterm_handler():
    """train() installs a SIGTERM handler; keep it from leaking into the rest of the test session."""
    before = signal.getsignal(signal.SIGTERM)
    yield before
    signal.signal(signal.SIGTERM, before)


def run_config(tmp_path: Path, **changes) -> TrainConfig:
    """A tiny CPU run on a few generated images in ``tmp_path`` (content a–c, styles s1–s2)."""
    contents = make_folder(tmp_path / "content", ["a.jpg", "b.png", "c.png"])
    styles = make_folder(tmp_path / "style", ["s1.png", "s2.jpg"], seed=10)
    cfg = dict(content_dir=str(contents), style_dir=str(styles), out=str(tmp_path / "run"), batch=2, size=32)
    cfg.update(workers=0, ckpt_every=2, log_every=1, device="cpu")
    return TrainConfig(**{**cfg, **changes})


def log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_few_adam_steps_lower_the_training_loss():
    torch.manual_seed(0)
    vgg = shared_vgg("relu4_1")
    model, objective = StyleNet(vgg), Objective(LossConfig(), vgg)
    content = torch.cat([pattern_tensor(48, 48, 0), pattern_tensor(48, 48, 1)])
    style = torch.cat([pattern_tensor(48, 48, 5), pattern_tensor(48, 48, 6)])
    # The trainer's default lr: at 1e-3 the first Adam step on raw Caffe-VGG features (~10² in size)
    # sends L up by ~10⁶ before it recovers, and the end point is barely below the start.
    opt = torch.optim.Adam(model.decoder.parameters(), lr=TrainConfig.lr)
    model.decoder.train()
    losses = []
    for _ in range(15):
        terms = train_step(model, objective, content, style)
        assert {"content", "style", "total"} <= set(terms)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        losses.append(terms["total"].item())
    with torch.no_grad():
        final = train_step(model, objective, content, style)["total"].item()
    assert final < 0.5 * losses[0]
    assert not any(p.grad is not None for p in vgg.parameters())  # the encoder stays frozen


@torch.no_grad()
def test_train_step_scores_the_decoded_image_against_adains_target():
    """The documented surrogate: content is measured against t = AdaIN(E(c), E(s)), style as the solver does."""
    torch.manual_seed(1)
    vgg = shared_vgg("relu4_1")
    model, objective = StyleNet(vgg), Objective(LossConfig(), vgg)
    c, s = pattern_tensor(32, 32, 2), pattern_tensor(32, 32, 7)
    terms = train_step(model, objective, c, s)
    t = adain(model.encode(c), *moments(model.encode(s)))
    out = model.decoder(t)
    expected_content = ((model.encode(out) - t) ** 2).sum() / (t**2).sum()
    expected_style = objective(out, objective.targets(c, [s]))["style"]
    assert terms["content"].item() == pytest.approx(expected_content.item(), rel=1e-4)
    assert terms["style"].item() == pytest.approx(expected_style.item(), rel=1e-4)


def test_content_target_content_trains_on_exactly_the_solvers_objective():
    """With content_target="content" the step's loss is L(f_θ(c, s); c, s) as the solver and the evaluation score it."""
    torch.manual_seed(1)
    vgg = shared_vgg("relu4_1")
    model, objective = StyleNet(vgg), Objective(LossConfig(), vgg)
    c, s = pattern_tensor(32, 32, 2), pattern_tensor(32, 32, 7)
    terms = train_step(model, objective, c, s, "content")
    decoded = model.decoder(adain(model.encode(c), *moments(model.encode(s))))  # f_θ's output before clamping to [0, 1]
    expected = objective(decoded, objective.targets(c, [s]))
    for key in ("total", "content", "style"):
        assert terms[key].item() == pytest.approx(expected[key].item(), rel=1e-4), key
    assert terms["content"].item() != pytest.approx(train_step(model, objective, c, s, "adain")["content"].item(), rel=1e-3)


def test_train_config_rejects_an_unknown_content_target(tmp_path):
    with pytest.raises(ValueError, match="content_target"):
        run_config(tmp_path, content_target="pixels")


def test_train_writes_its_run_folder_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    exported = train(run_config(tmp_path, steps=3))
    assert exported == run / "model.safetensors"
    for name in ("checkpoint.pt", "log.csv", "loss.png", "model.safetensors", "model.json"):
        assert (run / name).is_file(), name
    assert [int(r["step"]) for r in log_rows(run)] == [1, 2, 3]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3
    model = StyleNet.load(exported, vgg=shared_vgg("relu4_1"))
    assert model.config["trained"]["steps"] == 3
    assert model.config["loss"] == json.loads(json.dumps(LossConfig().to_dict()))
    assert "content_dir" not in model.config["training"]  # no machine-specific paths in a shared model
    assert "steps" not in model.config["training"]  # the plan; the steps trained are under "trained"
    with torch.no_grad():
        out = model(pattern_tensor(32, 32), [pattern_tensor(32, 32, 5)])
    assert out.shape == (1, 3, 32, 32)
    capsys.readouterr()

    with (run / "log.csv").open("a") as f:  # a crash after step 3's checkpoint had logged step 4
        f.write("4,9.9,0.0001,1.0,1.0,1.0\n")
    train(run_config(tmp_path, steps=5))
    assert "resuming" in capsys.readouterr().out
    assert [int(r["step"]) for r in log_rows(run)] == [1, 2, 3, 4, 5]  # step 4 once: the crashed run's row is gone
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 5
    assert json.loads((run / "model.json").read_text())["trained"]["steps"] == 5

    train(run_config(tmp_path, steps=5))  # already done: nothing more is trained or logged
    assert "already at step 5" in capsys.readouterr().out
    assert len(log_rows(run)) == 5


def test_resume_with_changed_settings_says_so_and_uses_them(tmp_path, capsys):
    train(run_config(tmp_path, steps=2, lr=1e-3, lr_decay=0.0))
    capsys.readouterr()
    train(run_config(tmp_path, steps=3, lr=2e-4, lr_decay=0.0, content_target="content"))
    out = capsys.readouterr().out
    assert "changed settings: lr 0.001 → 0.0002; content_target adain → content" in out
    assert [float(r["lr"]) for r in log_rows(tmp_path / "run")] == pytest.approx([1e-3, 1e-3, 2e-4])  # not the checkpoint's lr


def test_train_leaves_the_sigterm_handler_as_it_found_it(tmp_path, restore_sigterm_handler):
    train(run_config(tmp_path, steps=1, batch=1, ckpt_every=1))
    assert signal.getsignal(signal.SIGTERM) == restore_sigterm_handler


def test_holdout_names_read_the_evaluation_split(tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"content": ["b.png"], "style": ["s1.png", "s9.png"]}))
    assert holdout_names(str(split)) == ({"b.png"}, {"s1.png", "s9.png"})
    assert holdout_names(None) == (set(), set())


def test_list_images_skips_held_out_and_non_image_files(tmp_path):
    folder = make_folder(tmp_path / "c", ["b.png", "a.JPG", "c.webp"])
    (folder / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(folder)] == ["a.JPG", "b.png", "c.webp"]
    assert [p.name for p in list_images(folder, {"b.png", "x.png"})] == ["a.JPG", "c.webp"]


def test_list_images_of_a_missing_or_empty_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        list_images(make_folder(tmp_path / "held", ["only.png"]), {"only.png"})


def test_train_never_uses_held_out_images(tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"content": ["a.jpg", "b.png", "c.png"], "style": []}))
    with pytest.raises(FileNotFoundError, match="no images"):
        train(run_config(tmp_path, holdout=str(split)))


def test_pair_stream_yields_square_crops_and_skips_unreadable_files(tmp_path):
    contents = make_folder(tmp_path / "c", ["a.png", "b.png"])
    (contents / "broken.png").write_text("not an image")
    styles = make_folder(tmp_path / "s", ["s.png"])
    stream = iter(PairStream(list_images(contents), list_images(styles), size=24, seed=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = [next(stream) for _ in range(4)]
    assert any("broken.png" in str(w.message) for w in caught)
    for c, s in pairs:
        assert c.shape == s.shape == (3, 24, 24)
        assert 0 <= c.min() and c.max() <= 1


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="CUDA"):
            resolve_device("cuda")
