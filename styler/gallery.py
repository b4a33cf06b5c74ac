"""Styles to pick: the presets shipped in ``styler/presets`` and a store of uploaded styles.

A :class:`StyleStore` keeps, under its root folder::

    uploads/<id>/meta.json, original, thumb.jpg, code-<key>.safetensors   uploaded styles
    presets/<id>/thumb.jpg, code-<key>.safetensors                        caches for the presets

Every file and every upload appears at once or not at all (written under a temporary name, then
renamed), so several threads or worker processes can share one root.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from . import images
from .files import atomic_write

THUMB_SIDE = 160  # longer side of a thumbnail, px
_UPLOAD_ID = re.compile(r"[0-9a-f]{16}")
_STALE_S = 3600.0  # temporary folders older than this are left-overs of a crash
_files = contextlib.ExitStack()  # keeps preset files extracted if styler is installed zipped
atexit.register(_files.close)


class StyleNotFound(images.ImageError):
    """No style (preset, upload or file) of that name."""


class PresetReadOnly(images.ImageError):
    """Presets ship with styler and cannot be deleted."""


@dataclass(frozen=True)
class Preset:
    id: str
    title: str
    artist: str
    artist_died: int
    year: str
    licence: str
    source: dict[str, str]  # file, repository, path: where the image came from


@dataclass(frozen=True)
class StyleEntry:
    id: str
    name: str
    preset: bool
    path: Path  # the style image
    thumbnail: Path  # a small JPEG
    created: float | None = None  # Unix time of the upload; None for presets
    artist: str | None = None


@cache
def _presets() -> dict[str, Preset]:
    text = (resources.files("styler") / "presets" / "presets.json").read_text("utf-8")
    return {p["id"]: Preset(**p) for p in json.loads(text)["presets"]}


def list_presets() -> list[Preset]:
    """The shipped presets, in presets.json's order."""
    return list(_presets().values())


def _unknown(name: str, what: str) -> StyleNotFound:
    return StyleNotFound(f"{name}: no such {what} (presets: {', '.join(_presets())})")


def preset_path(name: str) -> Path:
    """The image file of preset ``name`` (an id of :func:`list_presets`)."""
    if name not in _presets():
        raise _unknown(name, "preset")
    return _preset_file(name)


@cache
def _preset_file(name: str) -> Path:
    return _files.enter_context(
        resources.as_file(resources.files("styler") / "presets" / f"{name}.jpg")
    )


def resolve_style(arg: str) -> Path:
    """A style argument of the CLI: an existing file, else a preset id."""
    if Path(arg).exists():
        return Path(arg)
    if arg in _presets():
        return preset_path(arg)
    raise _unknown(arg, "file or preset")


def _thumbnail(im: Image.Image) -> bytes:
    im = im.copy()
    im.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return images.encode(im, "JPEG")


class StyleStore:
    """Named styles: the presets, then uploads kept ``retention_s`` seconds after their upload."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        retention_s: float,
        max_pixels: int = images.MAX_PIXELS,
    ) -> None:
        """The limits are the server's settings (settings.py), passed in by the service."""
        self.root, self.max_bytes = Path(root), max_bytes
        self.retention_s, self.max_pixels = retention_s, max_pixels
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        (self.root / "presets").mkdir(parents=True, exist_ok=True)

    def add(self, data: bytes, name: str) -> StyleEntry:
        """Check ``data`` is a usable image (bytes and pixels within the limits), store it with a
        thumbnail under a new id. ``name`` is shown to users and names the upload in errors."""
        name = " ".join(name.split())[:100] or "style"
        if len(data) > self.max_bytes:
            raise images.ImageTooLarge(
                f"{name}: {len(data)} bytes, over the limit of {self.max_bytes}"
            )
        im = images.load(data, name, self.max_pixels)
        sid = secrets.token_hex(8)
        tmp = self.root / "uploads" / f".tmp-{sid}"
        tmp.mkdir()
        try:
            (tmp / "original").write_bytes(data)
            (tmp / "thumb.jpg").write_bytes(_thumbnail(im))
            meta = {
                "id": sid,
                "name": name,
                "created": time.time(),
                "bytes": len(data),
                "width": im.width,
                "height": im.height,
            }
            (tmp / "meta.json").write_text(json.dumps(meta), "utf-8")
            os.rename(tmp, self.root / "uploads" / sid)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.get(sid)

    def get(self, sid: str) -> StyleEntry:
        """A preset or an upload, or :class:`StyleNotFound`."""
        if sid in _presets():
            return self._preset_entry(_presets()[sid])
        folder = self._upload_dir(sid)
        try:
            meta = json.loads((folder / "meta.json").read_text("utf-8"))
        except (OSError, ValueError):
            raise _unknown(sid, "style") from None
        return StyleEntry(
            sid, meta["name"], False, folder / "original", folder / "thumb.jpg", meta["created"]
        )

    def list(self) -> list[StyleEntry]:
        """The presets, then the uploads from the oldest."""
        uploads = []
        for folder in (self.root / "uploads").iterdir():
            if _UPLOAD_ID.fullmatch(folder.name):
                with contextlib.suppress(StyleNotFound):  # deleted meanwhile
                    uploads.append(self.get(folder.name))
        presets = [self._preset_entry(p) for p in _presets().values()]
        return presets + sorted(uploads, key=lambda e: (e.created, e.id))

    def delete(self, sid: str) -> None:
        """Remove an upload and its cached codes; presets are :class:`PresetReadOnly`."""
        if sid in _presets():
            raise PresetReadOnly(f"{sid}: a preset, which cannot be deleted")
        folder = self._upload_dir(sid)
        trash = folder.with_name(f".trash-{sid}-{secrets.token_hex(4)}")
        try:
            os.rename(folder, trash)  # gone for readers at once, even if removal takes a while
        except FileNotFoundError:
            raise _unknown(sid, "style") from None
        shutil.rmtree(trash, ignore_errors=True)

    def prune(self, now: float | None = None) -> list[str]:
        """Delete uploads older than the retention and crash left-overs; the deleted ids."""
        now = time.time() if now is None else now
        gone = []
        for entry in self.list():
            if not entry.preset and entry.created < now - self.retention_s:
                with contextlib.suppress(StyleNotFound):
                    self.delete(entry.id)
                    gone.append(entry.id)
        for folder in (self.root / "uploads").glob(".t*-*"):
            with contextlib.suppress(FileNotFoundError):
                if folder.name.startswith(".trash-") or folder.stat().st_mtime < now - _STALE_S:
                    shutil.rmtree(folder, ignore_errors=True)
        return gone

    def save_code(self, sid: str, model_id: str, tensors: dict[str, torch.Tensor]) -> None:
        """Cache what a model computed from style ``sid`` (e.g. its feature statistics)."""
        path = self._code_path(sid, model_id)
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        try:
            atomic_write(path, save(tensors, metadata={"model_id": model_id}))
        except FileNotFoundError:  # the upload was deleted meanwhile
            raise _unknown(sid, "style") from None

    def load_code(self, sid: str, model_id: str) -> dict[str, torch.Tensor] | None:
        """The tensors :meth:`save_code` stored for this style and model, or None."""
        path = self._code_path(sid, model_id)
        try:
            with safe_open(str(path), "pt") as f:
                if (f.metadata() or {}).get("model_id") != model_id:
                    return None
                return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (OSError, SafetensorError):
            return None

    def _upload_dir(self, sid: str) -> Path:
        if not _UPLOAD_ID.fullmatch(sid):  # never a path: "../x" or "a/b" name no upload
            raise _unknown(sid, "style")
        return self.root / "uploads" / sid

    def _code_path(self, sid: str, model_id: str) -> Path:
        key = hashlib.sha256(model_id.encode()).hexdigest()[:16]
        if sid in _presets():
            folder = self.root / "presets" / sid
            folder.mkdir(exist_ok=True)
        else:
            folder = self.get(sid).path.parent
        return folder / f"code-{key}.safetensors"

    def _preset_entry(self, p: Preset) -> StyleEntry:
        path = preset_path(p.id)
        thumb = self.root / "presets" / p.id / "thumb.jpg"
        if not thumb.exists():
            thumb.parent.mkdir(exist_ok=True)
            atomic_write(thumb, _thumbnail(images.load(path)))
        return StyleEntry(p.id, p.title, True, path, thumb, artist=p.artist)
