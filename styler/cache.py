"""A bounded least-recently-used cache of tensors, for the server's style codes and encodings.

Moving the alpha slider or trying another photo with a style already seen then costs one
decode: the style's code and the content's encoding are kept, keyed by a hash of the image
bytes and everything else the value depends on (model identity, working size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import torch


def nbytes(value: Any) -> int:
    """Bytes held by the tensors in a value (a tensor, a dataclass, or a list/tuple of them)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if dataclasses.is_dataclass(value):
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class LRUCache:
    """Thread-safe; evicts the least recently used entries beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.used = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any) -> Any:
        size = nbytes(value)
        with self._lock:
            if key in self._items:
                self.used -= self._items.pop(key)[1]
            if size <= self.max_bytes:
                self._items[key] = (value, size)
                self.used += size
            while self.used > self.max_bytes:
                self.used -= self._items.popitem(last=False)[1][1]
        return value

    def __len__(self) -> int:
        return len(self._items)
