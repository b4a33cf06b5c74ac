"""The style store: uploads checked, stored atomically with thumbnails, listed after the presets,
deleted, pruned, and per-model codes cached next to them."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from core_helpers import pattern
from PIL import Image

from styler import images
from styler.gallery import THUMB_SIDE, PresetReadOnly, StyleNotFound, StyleStore, list_presets

LIMITS = {"max_bytes": 100_000, "retention_s": 3600.0}


def jpeg(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    pattern(w, h, seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def leftovers(store: StyleStore) -> list[str]:
    return [p.name for p in store.root.rglob("*") if p.name.startswith(".")]


@pytest.fixture
def store(tmp_path: Path) -> StyleStore:
    return StyleStore(tmp_path / "styles", **LIMITS)


def test_add_stores_the_original_and_a_thumbnail(store):
    data = jpeg(320, 200)
    entry = store.add(data, "  my   painting ")
    assert len(entry.id) == 16 and entry.name == "my painting" and not entry.preset
    assert entry.path.read_bytes() == data
    thumb = Image.open(entry.thumbnail)
    assert thumb.format == "JPEG" and thumb.size == (THUMB_SIDE, 100)
    assert abs(entry.created - time.time()) < 60
    assert store.get(entry.id) == entry
    assert images.load(entry.path).size == (320, 200)
    assert leftovers(store) == []


def test_list_shows_the_presets_first_then_the_uploads_oldest_first(store):
    first = store.add(jpeg(seed=1), "first")
    second = store.add(jpeg(seed=2), "second")
    entries = store.list()
    presets = list_presets()
    assert [e.id for e in entries] == [p.id for p in presets] + [first.id, second.id]
    for entry, preset in zip(entries, presets):
        assert entry.preset and entry.name == preset.title and entry.artist == preset.artist
        assert entry.created is None and entry.path.exists()
        assert max(Image.open(entry.thumbnail).size) == THUMB_SIDE
    assert store.get(presets[0].id) == entries[0]


@pytest.mark.parametrize(
    ("data", "error", "says"),
    [
        (b"not an image at all", images.ImageError, "not an image"),
        (jpeg()[:300], images.ImageError, "truncated"),
        (b"x" * 100_001, images.ImageTooLarge, "over the limit of 100000"),
        (jpeg(400, 300), images.ImageTooLarge, "megapixels"),
    ],
)
def test_bad_uploads_are_refused_naming_the_upload_and_leave_nothing(tmp_path, data, error, says):
    store = StyleStore(tmp_path, **LIMITS, max_pixels=100_000)
    with pytest.raises(error, match=says) as err:
        store.add(data, "upload.jpg")
    assert str(err.value).startswith("upload.jpg: ")
    assert not list((tmp_path / "uploads").iterdir())
    assert [e for e in store.list() if not e.preset] == []


def test_delete_removes_an_upload_and_refuses_presets(store):
    entry = store.add(jpeg(), "gone soon")
    store.save_code(entry.id, "model", {"mean": torch.zeros(3)})
    store.delete(entry.id)
    assert not entry.path.parent.exists() and leftovers(store) == []
    with pytest.raises(StyleNotFound, match=entry.id):
        store.get(entry.id)
    with pytest.raises(StyleNotFound):
        store.delete(entry.id)
    preset = list_presets()[0].id
    with pytest.raises(PresetReadOnly, match=preset):
        store.delete(preset)
    assert store.get(preset).path.exists()


@pytest.mark.parametrize("bad", ["../uploads", "..", "a/b", "", "0123456789ABCDEF", "x" * 16])
def test_ids_that_are_not_ids_are_unknown_never_paths(store, bad):
    for call in (store.get, store.delete, lambda s: store.load_code(s, "m")):
        with pytest.raises(StyleNotFound):
            call(bad)


def test_prune_deletes_uploads_past_the_retention_and_crash_leftovers(store):
    old = store.add(jpeg(seed=1), "old")
    meta = old.path.parent / "meta.json"
    meta.write_text(meta.read_text().replace(str(old.created), str(old.created - 7200)))
    new = store.add(jpeg(seed=2), "new")
    crashed = store.root / "uploads" / ".tmp-0123456789abcdef"
    crashed.mkdir()
    assert store.prune() == [old.id]
    assert crashed.exists()  # could be an upload in progress
    assert [e.id for e in store.list() if not e.preset] == [new.id]
    assert store.prune(now=time.time() + 3600 + 60) == [new.id]
    assert not crashed.exists() and leftovers(store) == []
    assert len(store.list()) == len(list_presets())


def test_codes_round_trip_per_model_identity(store):
    entry = store.add(jpeg(), "coded")
    tensors = {"relu4_1.mean": torch.rand(512), "relu4_1.std": torch.rand(1, 512).t()}
    assert store.load_code(entry.id, "adain@abc") is None
    store.save_code(entry.id, "adain@abc", tensors)
    loaded = store.load_code(entry.id, "adain@abc")
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert store.load_code(entry.id, "adain@other") is None
    store.save_code(entry.id, "adain@abc", {"x": torch.ones(2)})  # replaced
    assert list(store.load_code(entry.id, "adain@abc")) == ["x"]
    assert leftovers(store) == []


def test_presets_have_codes_too_kept_in_the_data_directory(store):
    preset = list_presets()[-1].id
    store.save_code(preset, "m", {"a": torch.arange(4.0)})
    assert torch.equal(store.load_code(preset, "m")["a"], torch.arange(4.0))
    assert not list(store.get(preset).path.parent.glob("*.safetensors"))  # not in the package


def test_a_corrupt_code_file_is_ignored(store):
    entry = store.add(jpeg(), "coded")
    store.save_code(entry.id, "m", {"a": torch.ones(3)})
    (code,) = entry.path.parent.glob("code-*.safetensors")
    code.write_bytes(code.read_bytes()[:20])
    assert store.load_code(entry.id, "m") is None


def test_codes_of_a_deleted_style_are_refused(store):
    entry = store.add(jpeg(), "gone")
    store.delete(entry.id)
    with pytest.raises(StyleNotFound):
        store.save_code(entry.id, "m", {"a": torch.ones(1)})


def test_concurrent_adds_deletes_and_lists_stay_consistent(tmp_path):
    stores = [StyleStore(tmp_path, **LIMITS) for _ in range(4)]  # "workers" sharing one root
    data = [jpeg(seed=i) for i in range(4)]

    def work(i: int) -> list[str]:
        added = []
        for _ in range(5):
            entry = stores[i].add(data[i], f"style {i}")
            assert entry in stores[(i + 1) % 4].list()
            stores[(i + 2) % 4].delete(entry.id)
            added += [entry.id, stores[i].add(data[i], f"kept {i}").id]
        return added

    with ThreadPoolExecutor(4) as pool:
        added = [sid for ids in pool.map(work, range(4)) for sid in ids]  # re-raises failures
    assert len(set(added)) == 40
    kept = [e for e in StyleStore(tmp_path, **LIMITS).list() if not e.preset]
    assert len(kept) == 20 and {e.name for e in kept} == {f"kept {i}" for i in range(4)}
    assert [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")] == []
