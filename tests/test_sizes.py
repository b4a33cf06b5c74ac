"""Sizes: resizing, the output size and its cap, the style's working size (stroke size)."""

from __future__ import annotations

import pytest
import torch
from core_helpers import pattern

from styler import images
from styler.images import fit_content, output_size, resize, resize_to, style_size


@pytest.mark.parametrize(
    ("size", "max_side", "wh", "expected"),
    [
        (24, None, (64, 48), (32, 24)),
        (15, None, (30, 60), (15, 30)),
        (32, None, (64, 48), (43, 32)),
        (None, 60, (100, 50), (60, 30)),
        (40, 60, (100, 50), (60, 30)),  # the cap wins over the shorter side
        (40, 100, (100, 50), (80, 40)),
        (None, None, (33, 17), (33, 17)),
        (None, 200, (33, 17), (33, 17)),  # a cap never enlarges
    ],
)
def test_resize_shorter_side_and_longer_side_cap(size, max_side, wh, expected):
    assert resize(pattern(*wh), size, max_side).size == expected


def test_limits_are_documented_constants():
    assert images.MAX_PIXELS == 40_000_000 and images.MAX_SIDE == 4096


@pytest.mark.parametrize(
    ("wh", "size", "max_side", "expected", "capped"),
    [
        ((640, 480), None, 4096, (640, 480), False),  # original size by default
        ((6000, 4000), None, 4096, (4096, 2731), True),
        ((6000, 4000), 0, 4096, (4096, 2731), True),  # 0 means "keep" too (CLI's --size 0)
        ((640, 480), 240, 4096, (320, 240), False),
        ((640, 480), 960, 4096, (1280, 960), False),  # a requested size may enlarge
        ((4000, 1000), 2000, 4096, (4096, 1024), True),  # the cap wins over the request
        ((512, 512), None, None, (512, 512), False),
    ],
)
def test_output_size_keeps_the_original_within_the_cap(wh, size, max_side, expected, capped):
    assert output_size(wh, size, max_side) == (expected, capped)


def test_fit_content_works_on_images_and_tensors():
    im, capped = fit_content(pattern(64, 32), max_side=32)
    assert im.size == (32, 16) and capped
    same, capped = fit_content(pattern(64, 32))
    assert same.size == (64, 32) and not capped
    x, capped = fit_content(torch.rand(1, 3, 32, 64), size=16)
    assert x.shape == (1, 3, 16, 32) and not capped and 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize(
    ("style_wh", "content_wh", "scale", "expected"),
    [
        ((400, 300), (1000, 500), 1.0, (667, 500)),  # shorter sides match
        ((400, 300), (1000, 500), 0.5, (333, 250)),
        ((400, 300), (1000, 500), 2.0, (1333, 1000)),  # strokes twice as big
        ((400, 300), (100, 80), 0.1, (85, 64)),  # never under 64 px
        ((400, 300), (4000, 3000), 4.0, (4096, 3072)),  # never over MAX_SIDE
        ((1000, 100), (1000, 1000), 1.0, (4096, 410)),  # the longer side's cap wins
    ],
)
def test_style_size_follows_the_content_and_the_scale(style_wh, content_wh, scale, expected):
    assert style_size(style_wh, content_wh, scale) == expected


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_style_scale_must_be_positive(bad):
    with pytest.raises(ValueError, match="style_scale"):
        style_size((100, 100), (100, 100), bad)


def test_styles_resize_to_their_working_size_as_images_and_tensors():
    assert resize_to(pattern(80, 60), style_size((80, 60), (400, 200), 0.5)).size == (133, 100)
    x = torch.rand(1, 3, 60, 80)
    assert resize_to(x, style_size((80, 60), (200, 100), 2.0)).shape == (1, 3, 200, 267)
