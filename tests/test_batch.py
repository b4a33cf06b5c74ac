"""``styler fast`` at the content's own size, with presets, over folders and globs, and
``styler styles``: on small generated images and an untrained model."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_helpers import pattern, run
from PIL import Image

from styler import tiles
from styler.gallery import list_presets
from styler.model import StyleNet

PRESET = list_presets()[0].id


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch-model") / "tiny.safetensors"
    StyleNet.build(seed=0).save(path)
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder: two photos, a transparent PNG, a broken file, and a text file not named as an
    image (ignored when the folder is given)."""
    d = tmp_path / "photos"
    d.mkdir()
    pattern(56, 40, 1).save(d / "a.jpg")
    pattern(40, 48, 2).save(d / "b.png")
    rgba = pattern(36, 32, 3).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(d / "c.png")
    (d / "broken.jpg").write_bytes(b"not a jpeg at all")
    (d / "notes.txt").write_text("hello")
    return d


def fast(args: list, model: Path, capsys) -> tuple[int, str, str]:
    return run(["fast", *args, "--weights", model], capsys)


def test_fast_keeps_the_original_size_by_default(photos, model, tmp_path, capsys):
    out = tmp_path / "out.png"
    code, stdout, _ = fast([photos / "a.jpg", photos / "b.png", "-o", out], model, capsys)
    assert code == 0 and Image.open(out).size == (56, 40) and "56×40" in stdout
    assert "scaled" not in stdout
    code, _, _ = fast([photos / "a.jpg", photos / "b.png", "-o", out, "--size", 20], model, capsys)
    assert code == 0 and Image.open(out).size == (28, 20)


def test_fast_scales_down_over_the_longer_side_cap_and_says_so(model, tmp_path, capsys):
    wide = tmp_path / "wide.png"
    pattern(4200, 24, 1).save(wide)
    out = tmp_path / "out.png"
    code, stdout, _ = fast([wide, PRESET, "-o", out], model, capsys)
    assert code == 0 and Image.open(out).size == (4096, 23)
    assert stdout.count("scaled down 4200x24->4096x23") == 1
    code, stdout, _ = run(["slow", wide, PRESET, "-o", out, "--size", 0, "--iters", 0], capsys)
    assert code == 0 and Image.open(out).size == (4096, 23)
    assert stdout.count("scaled down 4200x24->4096x23") == 1  # the solver's commands say so too


def test_large_images_show_a_tile_progress_bar(photos, model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tiles, "TILE_PIXELS", 100)  # tile everything, in 16 px tiles
    monkeypatch.setattr(tiles, "TILE", 16)
    out = tmp_path / "out.png"
    code, _, err = fast([photos / "a.jpg", PRESET, "-o", out], model, capsys)
    assert code == 0 and "/12 [" in err and "tile/s" in err  # 4 × 3 tiles
    assert Image.open(out).size == (56, 40)


def test_preset_ids_work_as_styles_and_unknown_ones_are_one_line(photos, model, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert fast([photos / "a.jpg", PRESET, "-o", out], model, capsys)[0] == 0
    code, _, err = fast([photos / "a.jpg", "no-such-style", "-o", out], model, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no-such-style: no such file or preset" in err and PRESET in err


def test_styles_lists_the_presets(capsys):
    code, stdout, _ = run(["styles"], capsys)
    assert code == 0
    for p in list_presets():
        line = next(line for line in stdout.splitlines() if line.startswith(p.id))
        assert p.title in line and p.artist in line and p.year in line


def test_batch_folder_skips_broken_files_and_never_overwrites_inputs(photos, model, capsys):
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    style = photos / "b.png"  # also a content: its output must not overwrite it
    code, stdout, err = fast([photos, "--style", style, "--out-dir", photos], model, capsys)
    assert code == 1
    assert err.count("skipped") == 1 and "broken.jpg: not an image" in err
    assert "failed" in err and "3 of 4 images written" in stdout and "images/s" in stdout
    for name, data in before.items():
        assert (photos / name).read_bytes() == data, f"{name} was overwritten"
    assert Image.open(photos / "a.png").size == (56, 40)
    assert Image.open(photos / "b-styled.png").size == (40, 48)
    assert Image.open(photos / "c-styled.png").mode == "RGBA"  # transparency kept
    assert not (photos / "notes.png").exists()


def test_batch_of_globs_and_files_into_a_new_folder(photos, model, tmp_path, capsys):
    out_dir = tmp_path / "out"
    args = [f"{photos}/[ab].*", photos / "c.png", PRESET, "--out-dir", out_dir, "--format", "jpg"]
    code, stdout, err = fast(args, model, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.jpg", "b.jpg", "c.jpg"]
    assert "3 of 3 images written" in stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["a.jpg", "b.png", "-o", "a.jpg"], "is an input image"),
        (["a.jpg", "c.png", "--style", PRESET, "-o", "x.png"], "-o writes one image"),
        (["nothing-*.jpg", PRESET, "--out-dir", "out"], "no images found"),
    ],
)
def test_fast_refuses_bad_requests_in_one_line(photos, model, capsys, monkeypatch, args, fragment):
    monkeypatch.chdir(photos)
    code, _, err = fast(args, model, capsys)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
