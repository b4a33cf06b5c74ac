"""The server's statistics cache: style codes and content encodings kept in bounded LRU caches,
and the codes of named styles (presets, uploads) kept on disk in the style store.

Moving the alpha slider or trying another photo with a style already seen then costs a decode:

* a style's code is keyed by the model's identity, a digest of the style's bytes, the content's
  shorter side and ``style_scale`` (which set the style's working size) — a hit skips even the
  style's decoding;
* a content's encoding by the model's identity, a digest of its bytes and its working size; only
  for images that run untiled (a tiled image's features are never held whole).

Each lookup says how it went (``hit``, ``stored``: from the style store's disk, ``miss``, ``off``:
not cached), for the ``X-Styler-Cache`` header.
"""

from __future__ import annotations

import torch

from . import pipeline
from .cache import LRUCache, digest
from .engine import Engine
from .function import StyleCode
from .gallery import StyleStore
from .images import size_of
from .model import Encoded, StyleNet
from .params import Inputs, Source
from .tiles import TILE_PIXELS

STYLE_SHARE = 16  # style codes get 1/16 of the cache (a code is ~70 kB, an encoding MBs)
STORED_SIZES = 8  # working sizes of one named style whose codes are kept on disk


class Stats:
    """The two caches (``max_bytes`` in all) and the style store for named styles' codes."""

    def __init__(self, max_bytes: int, store: StyleStore) -> None:
        self.codes = LRUCache(max_bytes // STYLE_SHARE)
        self.encodings = LRUCache(max_bytes - max_bytes // STYLE_SHARE)
        self.store = store

    def encoding(self, model: StyleNet, engine: Engine, data: bytes,
                 content: pipeline.Content) -> tuple[Encoded | None, str]:  # fmt: skip
        """The content's encoding (None for a tiled size) and how the cache did."""
        w, h = content.size
        if w * h > TILE_PIXELS:
            return None, "off"
        key = (model.identity, digest(data), content.size)
        if (enc := self.encodings.get(key)) is not None:
            return enc, "hit"
        return self.encodings.put(key, pipeline.encode_content(model, engine, content.rgb)), "miss"

    def code(self, model: StyleNet, engine: Engine, style: Source, content_wh: tuple[int, int],
             req: Inputs, limits: pipeline.Limits) -> tuple[StyleCode, str]:  # fmt: skip
        """A style's code at its working size for this content, and how the caches did."""
        short = min(content_wh)  # the style's working size follows the content's shorter side
        key = (model.identity, digest(style.data), short, req.style_scale, limits.max_side)
        if (code := self.codes.get(key)) is not None:
            return code, "hit"
        im = pipeline.load_style(style, limits)
        fitted = pipeline.fit_style(im, content_wh, req, limits)
        code, how = None, "miss"
        if style.id:
            code = self._load(style.id, model.identity, size_of(fitted), engine.device)
            how = "stored" if code else how
        if code is None:
            code = pipeline.style_codes(model, engine, [fitted])[0]
            if style.id:
                self._save(style.id, model.identity, size_of(fitted), code)
        return self.codes.put(key, code), how

    def _load(self, sid: str, model_id: str, wh: tuple[int, int],
              device: torch.device) -> StyleCode | None:  # fmt: skip
        code = StyleCode.from_tensors(self.store.load_code(sid, model_id) or {}, f"{wh[0]}x{wh[1]}")
        return code.to(device) if code else None

    def _save(self, sid: str, model_id: str, wh: tuple[int, int], code: StyleCode) -> None:
        """Add this size's code to the style's stored codes (a few sizes; the newest wins)."""
        tensors = self.store.load_code(sid, model_id) or {}
        if len({k.split(".")[0] for k in tensors}) >= STORED_SIZES:
            tensors = {}
        tensors |= code.tensors(f"{wh[0]}x{wh[1]}")
        self.store.save_code(sid, model_id, tensors)


def result_header(content: str, styles: list[str]) -> str:
    """``style=hit,content=miss``: ``style`` is the worst of the styles' outcomes."""
    order = ("miss", "stored", "hit")
    style = min(styles, key=order.index) if styles else "off"
    return f"style={style},content={content}"
