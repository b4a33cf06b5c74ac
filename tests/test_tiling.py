"""Tiled inference: statistics over the whole image, exact tiles, no seams, memory per tile."""

from __future__ import annotations

import math

import pytest
import torch
from core_helpers import pattern_tensor, tame_net


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


TILED = [("lite", False, 0), ("vgg", False, 0), ("vgg", True, 0), ("vgg", True, 2)]


@pytest.mark.parametrize(("encoder", "skips", "experts"), TILED)
@torch.no_grad()
def test_tiled_and_untiled_outputs_agree(encoder, skips, experts):
    net = tame_net(encoder=encoder, skips=skips, experts=experts)
    content, style = pattern_tensor(203, 150, 3), pattern_tensor(64, 64, 4)
    whole = net(content, [style])
    calls = []
    tiled = net.stylize(content, [net.style_code(style)], tile=64,
                        progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert tiled.shape == whole.shape
    assert psnr(tiled, whole) >= 35
    assert calls == [(i, 12) for i in range(1, 13)]  # 3 × 4 tiles of 64 px, reported one by one


@torch.no_grad()
def test_no_seam_on_tile_borders():
    net = tame_net(encoder="lite")
    content, style = pattern_tensor(256, 192, 5), pattern_tensor(64, 64, 6)
    out = net.stylize(content, [net.style_code(style)], tile=64)
    dx = (out[..., :, 1:] - out[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # per column boundary
    borders = dx[[63, 127, 191]]  # between columns 63|64, 127|128, 191|192
    assert borders.mean() <= dx.mean() * 1.5


@torch.no_grad()
@pytest.mark.parametrize("skips", [False, True])
def test_style_statistics_gathered_in_tiles_equal_the_whole_images(skips):
    net = tame_net(encoder="vgg" if skips else "lite", skips=skips)
    style = pattern_tensor(150, 130, 7)
    whole, tiled = net.style_code(style), net.style_code(style, tile=48)
    assert len(tiled.skips) == len(whole.skips) == 2 * skips
    for t, w in zip((tiled, *tiled.skips), (whole, *whole.skips), strict=True):
        torch.testing.assert_close(t.mean, w.mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(t.colour, w.colour, atol=1e-3, rtol=1e-3)
