"""The shipped style presets: small public-domain files with their metadata, found by id."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from styler import images
from styler.gallery import StyleNotFound, list_presets, preset_path, resolve_style

REPO = Path(__file__).resolve().parent.parent
PRESETS = resources.files("styler") / "presets"


def test_there_are_8_to_12_presets_with_complete_metadata():
    presets = list_presets()
    assert 8 <= len(presets) <= 12
    assert len({p.id for p in presets}) == len(presets)
    for p in presets:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)+", p.id), p.id
        assert p.title and p.artist and p.year and p.source["file"] and p.source["repository"]
        assert p.artist_died < 1926 and "public domain" in p.licence


def test_every_preset_is_a_small_image_and_the_folder_holds_nothing_else():
    ids = {p.id for p in list_presets()}
    files = {f.name for f in PRESETS.iterdir() if not f.name.startswith((".", "__"))}
    assert files == {f"{i}.jpg" for i in ids} | {"presets.json"}
    for i in ids:
        path = preset_path(i)
        assert path.stat().st_size <= 150_000, path
        im = images.load(path)
        assert min(im.size) >= 256, path


def test_no_preset_is_a_held_out_evaluation_image():
    candidates = (REPO / "styler" / "split.json", REPO / "eval" / "split.json")  # new, old place
    split = next(p for p in candidates if p.exists())
    held_out = set(json.loads(split.read_text())["style"])
    assert held_out
    assert not {Path(p.source["file"]).name for p in list_presets()} & held_out


def test_resolve_style_takes_a_file_then_a_preset_id(tmp_path, monkeypatch):
    preset = list_presets()[0].id
    assert resolve_style(preset) == preset_path(preset)
    mine = tmp_path / "mine.jpg"
    mine.write_bytes(b"x")
    assert resolve_style(str(mine)) == mine
    monkeypatch.chdir(tmp_path)
    (tmp_path / preset).write_bytes(b"x")  # a file named like a preset wins
    assert resolve_style(preset) == Path(preset)


@pytest.mark.parametrize("call", [resolve_style, preset_path])
def test_an_unknown_style_names_itself_and_lists_the_presets(call):
    with pytest.raises(StyleNotFound) as err:
        call("monet-nope")
    message = str(err.value)
    assert message.startswith("monet-nope: no such") and "\n" not in message
    assert all(p.id in message for p in list_presets())
    assert isinstance(err.value, images.ImageError)  # the CLI's one-line error, exit code 2
