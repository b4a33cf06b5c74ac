"""Training data: image listing, the crop stream, and the on-disk target cache."""

from __future__ import annotations

import warnings

import pytest
import torch
from core_helpers import FAST_LOSS, image_folder, pattern_tensor, shared_vgg, tame_net

from styler.data import PairStream, list_images
from styler.losses import Objective
from styler.model import StyleNet
from styler.stages import style_loss
from styler.targets import TargetCache


def test_list_images_skips_held_out_and_non_image_files(tmp_path):
    folder = image_folder(tmp_path / "c", ["b.png", "a.JPG", "c.webp"])
    (folder / "notes.txt").write_text("not an image")
    (folder / "d.jpg").mkdir()  # a folder named like an image is not one
    assert [p.name for p in list_images(folder)] == ["a.JPG", "b.png", "c.webp"]
    assert [p.name for p in list_images(folder, {"b.png", "x.png"})] == ["a.JPG", "c.webp"]


def test_list_images_of_a_missing_or_empty_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(tmp_path / "empty")


def test_pair_stream_yields_square_crops_and_skips_unreadable_files(tmp_path):
    contents = image_folder(tmp_path / "c", ["a.png", "b.png"])
    (contents / "broken.png").write_text("not an image")
    styles = image_folder(tmp_path / "s", ["s.png"])
    stream = iter(PairStream(list_images(contents), list_images(styles), size=24, resize=30,
                             seed=3))  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = [next(stream) for _ in range(4)]
    assert any("broken.png" in str(w.message) for w in caught)
    for c, s, c_name, s_name in pairs:
        assert c.shape == s.shape == (3, 24, 24)
        assert 0 <= c.min() and c.max() <= 1
        assert c_name in {"a.png", "b.png"} and s_name == "s.png"


def test_fixed_crops_are_the_same_every_time_a_file_comes_round(tmp_path):
    contents = image_folder(tmp_path / "c", ["a.png", "b.png"])
    styles = image_folder(tmp_path / "s", ["s.png"])
    stream = iter(PairStream(list_images(contents), list_images(styles), size=24, resize=40,
                             seed=3, fixed=True))  # fmt: skip
    seen: dict[str, torch.Tensor] = {}
    for c, _, name, _ in (next(stream) for _ in range(6)):
        assert torch.equal(seen.setdefault(name, c), c)
    assert len(seen) == 2


@pytest.mark.parametrize("skips", [False, True])
def test_cached_targets_give_the_same_loss_and_are_read_back(tmp_path, skips):
    model = tame_net(encoder="vgg", skips=True) if skips else StyleNet.build(seed=0)
    objective = Objective(FAST_LOSS, shared_vgg("relu4_1"))
    cache = TargetCache(tmp_path / "targets", objective, model)
    content = torch.cat([pattern_tensor(32, 32, 1), pattern_tensor(32, 32, 3)])
    style = torch.cat([pattern_tensor(32, 32, 2), pattern_tensor(32, 32, 4)])
    names = (["a.png", "b.png"], ["s.png", "t.png"])
    with torch.no_grad():
        plain = style_loss(model, objective, content, style)["total"]
        first = style_loss(model, objective, content, style, cache, names)["total"]
        calls = []
        hook = objective.vgg.register_forward_hook(lambda *a: calls.append(1))
        again = style_loss(model, objective, content, style, cache, names)["total"]
        hook.remove()
    assert sorted(p.name for p in (tmp_path / "targets" / "style").iterdir()) == [
        "s.png.safetensors",
        "t.png.safetensors",
    ]
    assert calls == [1]  # only the output is scored: no VGG pass for the targets
    torch.testing.assert_close(first, plain, rtol=1e-3, atol=0)
    torch.testing.assert_close(again, first)
