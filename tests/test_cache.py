"""The LRU cache: bounded bytes, least recently used evicted first, and a hit skips the encoder."""

from __future__ import annotations

import torch
from core_helpers import pattern_tensor, tame_net

from styler.cache import LRUCache, digest, nbytes
from styler.function import StyleCode


def test_entries_beyond_the_byte_budget_are_evicted_least_recently_used_first():
    cache = LRUCache(max_bytes=3 * 400)  # room for three 100-float tensors
    for k in "abc":
        cache.put(k, torch.zeros(100))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", torch.zeros(100))
    assert cache.get("b") is None and cache.get("a") is not None
    assert len(cache) == 3 and cache.used == 1200
    cache.put("huge", torch.zeros(1000))  # larger than the whole budget: not kept
    assert cache.get("huge") is None and cache.used <= 1200


def test_nbytes_counts_the_tensors_of_a_style_code():
    code = StyleCode(torch.zeros(1, 8), torch.zeros(1, 8, 8))
    assert nbytes(code) == (8 + 64) * 4
    assert digest(b"x") == digest(b"x") != digest(b"y")


@torch.no_grad()
def test_a_cached_encoding_and_code_give_the_same_image_without_the_encoder():
    net = tame_net()
    content, style = pattern_tensor(40, 32, 1), pattern_tensor(32, 32, 2)
    encoded, code = net.encode_content(content), net.style_code(style)
    calls = []
    hook = net.encoder.register_forward_hook(lambda *a: calls.append(1))
    out = net.stylize(content, [code], alpha=0.5, encoded=encoded)
    hook.remove()
    assert calls == []
    torch.testing.assert_close(out, net(content, [style], alpha=0.5))
