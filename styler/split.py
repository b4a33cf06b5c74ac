"""The held-out split: the file names training leaves out and the pairs the evaluation scores.

One JSON file (``styler/split.json`` by default) read here for training, its held-out curve and
the evaluation alike, so a malformed file is one clear error wherever it is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import default_split


@dataclass(frozen=True)
class Split:
    content: tuple[str, ...]
    style: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...] = ()


def _names(d: dict, key: str) -> tuple[str, ...]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(n, str) for n in v):
        raise TypeError(f"'{key}' is not a list of file names")
    return tuple(v)


def read_split(path: str | Path | None = None) -> Split:
    """The split in ``path`` (None: the one shipped with styler); ValueError naming the file when
    it is missing or is not ``{"content": [names], "style": [names], "pairs": [[c, s], …]}``."""
    source = Path(path or default_split())
    if not source.is_file():
        raise ValueError(f"{source}: split file not found")
    try:
        d = json.loads(source.read_text())
        if not isinstance(d, dict):
            raise TypeError("not a JSON object")
        pairs = d.get("pairs", [])
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p)
            for p in pairs
        ):
            raise TypeError("'pairs' is not a list of [content, style] names")
        return Split(_names(d, "content"), _names(d, "style"), tuple(map(tuple, pairs)))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{source}: not a split file ({e})") from None
