"""Files: writing them so that a crash never leaves half of one (every file styler reads back:
models, checkpoints, images, caches), the image files of a folder, and styler's cache folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .config import IMAGE_SUFFIXES


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a uniquely named temporary file beside ``path``, then rename it over
    ``path``; concurrent writers never share a temporary file, and nothing is left on failure."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, ``config.IMAGE_SUFFIXES``), by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def cache_dir() -> Path:
    """styler's per-user folder (kept measurements, the daemon's socket and log):
    ``$XDG_CACHE_HOME/styler``, or ``~/.cache/styler``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path(os.path.expanduser("~")) / ".cache"
    return Path(root) / "styler"
