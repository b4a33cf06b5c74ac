"""Training pairs: an endless stream of random (content crop, style crop) from two image folders."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info
from torchvision.transforms import v2

from .images import ImageError, load, to_tensor

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def list_images(folder: str | Path, exclude: set[str] | frozenset[str] = frozenset()) -> list[Path]:
    """Image files directly in ``folder`` (sorted, minus names in ``exclude``); errors if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.name not in exclude)
    if not files:
        raise FileNotFoundError(f"{folder}: no images (.jpg, .png, .webp …) found")
    return files


class PairStream(IterableDataset):
    """Infinite shuffled (content, style) crops; each DataLoader worker draws its own order."""

    def __init__(self, contents: list[Path], styles: list[Path], size: int, seed: int = 0) -> None:
        self.contents, self.styles, self.seed = contents, styles, seed
        self.crop = v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ])  # fmt: skip

    def _images(self, files: list[Path], rng: random.Random):
        while True:
            order = files[:]
            rng.shuffle(order)
            for f in order:
                try:
                    yield self.crop(to_tensor(load(f))[0])
                except ImageError as e:
                    warnings.warn(f"skipping {e}", stacklevel=1)

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info else 0
        rng = random.Random(self.seed * 1000 + wid)
        torch.manual_seed(self.seed * 1000 + wid)
        yield from zip(self._images(self.contents, rng), self._images(self.styles, rng))
