"""Writing files so that a crash never leaves half of one (every file styler reads back: models,
checkpoints, images, caches), and styler's per-user cache folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a uniquely named temporary file beside ``path``, then rename it over
    ``path``; concurrent writers never share a temporary file, and nothing is left on failure."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cache_dir() -> Path:
    """styler's per-user folder (kept measurements, the daemon's socket and log):
    ``$XDG_CACHE_HOME/styler``, or ``~/.cache/styler``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path(os.path.expanduser("~")) / ".cache"
    return Path(root) / "styler"
