"""Where f_θ's pixels come from: the reflection padding around an image and exact tiles.

f_θ's receptive radius is finite, so a tile that carries ``HALO`` pixels of context around its
core produces exactly the untiled output on that core; the statistics T and b depend on are
summed over all tiles first (``model.StyleNet.stylize``). Memory is then bounded by the tile.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

PAD = 16  # pixels of reflection around the image (a multiple of the encoder's stride, 4)
HALO = 48  # pixels of context around a tile: more than f_θ's receptive radius, so tiles are exact
TILE = 1024  # side of a tile's core
TILE_PIXELS = 2 * 1024 * 1024  # images above this many pixels run in tiles (memory ∝ tile)


def pad_image(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad by PAD (more at the bottom/right to reach a multiple of 4)."""
    h, w = x.shape[-2:]
    bottom, right = PAD + (-h) % 4, PAD + (-w) % 4
    mode = "reflect" if max(PAD, bottom) < h and max(PAD, right) < w else "replicate"
    return nn.functional.pad(x, (PAD, right, PAD, bottom), mode=mode), (h, w)


Slices = tuple[slice, slice]


def picture(hw: tuple[int, int]) -> Slices:
    """Where the picture's own pixels are in its padded image."""
    return slice(PAD, PAD + hw[0]), slice(PAD, PAD + hw[1])


def features_at(f: torch.Tensor, px: Slices, stride: int = 4) -> torch.Tensor:
    """The features (at ``stride``) of the pixels ``px`` (slices starting at multiples of 4)."""
    rows, cols = (slice(s.start // stride, math.ceil(s.stop / stride)) for s in px)
    return f[..., rows, cols]


def interior(f: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """The features of the picture itself, without those of the padding."""
    return features_at(f, picture(hw))


def auto_tile(x: torch.Tensor) -> int | None:
    """The tile side for an image this large, None when it runs whole."""
    return TILE if x.shape[-2] * x.shape[-1] > TILE_PIXELS else None


def tiles(padded: torch.Tensor, hw: tuple[int, int], tile: int
          ) -> Iterator[tuple[torch.Tensor, tuple[slice, slice, Slices]]]:  # fmt: skip
    """Tiles of a padded image: (region with halo, (where the core's pixels go in the output,
    where they are in the region: :func:`features_at` gives its features there))."""
    tile = max(4, tile - tile % 4)
    for y0 in range(0, hw[0], tile):
        for x0 in range(0, hw[1], tile):
            y1, x1 = min(y0 + tile, hw[0]), min(x0 + tile, hw[1])
            ry, rx = max(0, PAD + y0 - HALO), max(0, PAD + x0 - HALO)
            ry1 = min(padded.shape[-2], PAD + y1 + HALO + (-(PAD + y1 + HALO)) % 4)
            rx1 = min(padded.shape[-1], PAD + x1 + HALO + (-(PAD + x1 + HALO)) % 4)
            at = (slice(PAD + y0 - ry, PAD + y1 - ry), slice(PAD + x0 - rx, PAD + x1 - rx))
            yield padded[..., ry:ry1, rx:rx1], (slice(y0, y1), slice(x0, x1), at)
