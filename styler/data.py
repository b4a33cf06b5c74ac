"""Training pairs: an endless stream of random (content crop, style crop) from two image folders."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import IterableDataset, get_worker_info

from .files import images_in
from .images import ImageError, load, to_tensor
from .split import read_split


def list_images(folder: str | Path, exclude: set[str] | frozenset[str] = frozenset()) -> list[Path]:
    """Image files directly in ``folder`` (sorted, minus names in ``exclude``); errors if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    files = [p for p in images_in(folder) if p.name not in exclude]
    if not files:
        raise FileNotFoundError(f"{folder}: no images (.jpg, .png, .webp …) found")
    return files


class PairStream(IterableDataset):
    """Infinite shuffled (content, style, content name, style name); each DataLoader worker (and
    rank) its own order.

    Images are resized to ``resize`` on the shorter side, then cropped to ``size``: the scale
    users stylize at (512 px and above), seen through crops that keep training cheap.
    """

    def __init__(self, contents: list[Path], styles: list[Path], size: int, resize: int,
                 seed: int = 0, fixed: bool = False) -> None:  # fmt: skip
        self.contents, self.styles, self.seed = contents, styles, seed
        self.size, self.resize, self.fixed = size, resize, fixed

    def crop(self, x: torch.Tensor, name: str, rng: random.Random) -> torch.Tensor:
        """A random crop and flip, or with ``fixed`` always the same one for a file (so targets
        computed for it can be cached)."""
        x = resize_shorter(x, self.resize)
        rng = random.Random(name) if self.fixed else rng
        x = square_crop(x, self.size, rng)
        return x.flip(-1) if rng.random() < 0.5 else x

    def _images(self, files: list[Path], rng: random.Random):
        while True:
            order = files[:]
            rng.shuffle(order)
            for f in order:
                try:
                    yield self.crop(to_tensor(load(f))[0], f.name, rng), f.name
                except ImageError as e:
                    warnings.warn(f"skipping {e}", stacklevel=1)

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info else 0
        rng = random.Random(self.seed * 1000 + wid)
        torch.manual_seed(self.seed * 1000 + wid)
        for (c, c_name), (s, s_name) in zip(self._images(self.contents, rng),
                                            self._images(self.styles, rng)):  # fmt: skip
            yield c, s, c_name, s_name


def resize_shorter(x: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) with the shorter side resized to ``size`` (bilinear, antialiased; the longer
    side truncated), as torchvision's ``Resize(size)`` does: the cached targets depend on it."""
    h, w = x.shape[-2:]
    hw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    if hw == (h, w):
        return x
    return F.interpolate(x[None], size=hw, mode="bilinear", antialias=True)[0]


def square_crop(x: torch.Tensor, size: int, rng: random.Random | None = None) -> torch.Tensor:
    """A ``size``² crop: random with ``rng``, else the centre one (as torchvision rounds it)."""
    top, left = (rng.randint(0, d - size) if rng else round((d - size) / 2) for d in x.shape[-2:])
    return x[..., top : top + size, left : left + size]


def fixed_pairs(content_dir: str, style_dir: str, split: str, n: int, size: int
                ) -> tuple[torch.Tensor, torch.Tensor] | None:  # fmt: skip
    """The first ``n`` held-out (content, style) pairs of ``split`` found in the folders,
    centre-cropped to ``size``: a fixed set on which training measures held-out L as it goes.
    None when the folders hold none of the split's files (another data set)."""
    s = read_split(split)
    found = {key: [Path(folder) / f for f in sorted(names) if (Path(folder) / f).is_file()]
             for key, folder, names in (("content", content_dir, s.content),
                                        ("style", style_dir, s.style))}  # fmt: skip
    k = min(n, len(found["content"]), len(found["style"]))
    if k == 0:
        return None
    crop = lambda f: square_crop(resize_shorter(to_tensor(load(f))[0], size), size)
    pick = lambda key: torch.stack([crop(f) for f in found[key][:k]])
    return pick("content"), pick("style")
