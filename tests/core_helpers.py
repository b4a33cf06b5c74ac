"""Small shared helpers for the core unit tests (a plain module, imported by the test files).

Everything here is tiny on purpose: images of a few dozen pixels and one frozen VGG19 per depth,
loaded once per test session (loading the weights takes about a second).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styler.cli import main
from styler.config import Architecture
from styler.images import to_tensor
from styler.losses import LossConfig
from styler.model import StyleNet
from styler.vgg import VGG19

# A cheap objective for the solver and loss tests: shallow layers, same code paths as the default.
FAST_LOSS = LossConfig(content_layer="relu2_1", style_layers=("relu1_1", "relu2_1"))


def pattern(w: int, h: int, seed: int = 0) -> Image.Image:
    """A colourful RGB test image: smooth stripes (different per channel and seed) plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    f = 3.0 + seed
    base = np.stack([np.sin(xx / f), np.cos(yy / (f + 1)), np.sin((xx + 2 * yy) / (f + 2))], -1)
    a = base * 90 + 128 + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGB")


def image_folder(folder: Path, names: list[str], seed: int = 0) -> Path:
    """``folder`` with a test picture under each of ``names``, each of another size."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pattern(40 + 8 * i, 48 - 4 * i, seed + i).save(folder / name)
    return folder


def pattern_tensor(w: int, h: int, seed: int = 0) -> torch.Tensor:
    """:func:`pattern` as a (1, 3, h, w) tensor in [0, 1]."""
    return to_tensor(pattern(w, h, seed))


def sample_images() -> dict[str, torch.Tensor]:
    """A content and two styles of different sizes and patterns, as (1, 3, h, w) tensors."""
    return {
        "content": pattern_tensor(32, 32, 0),
        "style": pattern_tensor(28, 36, 5),
        "style2": pattern_tensor(32, 24, 9),
    }


@cache
def shared_vgg(max_layer: str = "relu4_1") -> VGG19:
    """One frozen Caffe VGG19 per depth for the whole session (it is never modified)."""
    return VGG19(max_layer=max_layer)


def vgg_net(**parts) -> StyleNet:
    """An untrained f_θ on the shared VGG19 (to relu3_1), with these decoder ``parts``."""
    return StyleNet.build(Architecture("vgg", **parts), vgg=shared_vgg("relu3_1"))


def tame_net(seed: int = 0, encoder: str = "lite", skips: bool = False, experts: int = 0,
             linear: int = 0, route_content: bool = False,
             blend: bool = False) -> StyleNet:  # fmt: skip
    """An untrained f_θ whose output sits mostly inside [0, 1] (≈ 0.5 ± 0.1), so little is clamped.

    A freshly initialised decoder outputs values around 0, which the model clamps; that would hide
    differences between styles and make colour checks meaningless. Skips (which start at zero)
    experts, the routing's content inputs, the linear correction and the blend (zero at the start
    too) get random weights, so that their path shows.
    """
    vgg = shared_vgg("relu3_1") if encoder == "vgg" else None
    arch = Architecture(encoder, skips=skips, experts=experts, linear=linear,
                        route_content=route_content, blend=blend)  # fmt: skip
    net = StyleNet.build(arch, seed=seed, vgg=vgg)
    last = net.decoder.net[-1]
    with torch.no_grad():
        for conv in net.decoder.skips or ():
            conv.weight.normal_(0, 0.3)
        if net.decoder.head:
            net.decoder.head.weight.normal_(0, 0.01)
            net.decoder.head.route[0].weight.normal_(0, 0.1)
        if net.decoder.linear:
            net.decoder.linear.up.normal_(0, 0.1)
        if net.decoder.blend:
            net.decoder.blend.predict[2].weight.normal_(0, 0.01)
        spread = net.decode(*net.encode(pattern_tensor(32, 32, 7))).std()
        last.weight.mul_(0.1 / spread)
        last.bias.fill_(0.5)
    return net.eval()


def pixels(im: Image.Image) -> list[tuple[int, ...]]:
    return [tuple(px) for px in np.asarray(im).reshape(im.width * im.height, -1).tolist()]


def saved(im: Image.Image, path: Path, **options) -> Path:
    im.save(path, **options)
    return path


def run(args: list, capsys) -> tuple[int, str, str]:
    """``styler ARGS`` in-process: its exit code, stdout and stderr."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err
