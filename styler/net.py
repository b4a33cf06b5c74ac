"""f_θ's networks: the two encoders E and the decoder D (``model.py`` composes them).

LiteEncoder  six convolutions distilled from VGG19→relu3_1 (Wang et al., *Collaborative
             Distillation*, 2020), ≈ 4 % of its cost;
VGGEncoder   VGG19→relu3_1 itself, frozen;
Decoder      1/4 resolution → image, trained to invert E, then on the shared L.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .function import fold_affine
from .vgg import VGG19

ENCODER_LAYER = (
    "relu3_1"  # the VGG19 layer the encoders stand for (the lite one is distilled to it)
)
LITE_WIDTHS = (16, 32, 64, 128)


Affine = tuple[torch.Tensor, torch.Tensor]  # (T, b) of t = T f + b, from function.affine_map


def _conv(c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride, padding=1)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class LiteEncoder(nn.Module):
    """Six 3×3 convolutions to 1/4 resolution, ≈ 4 % of VGG19→relu3_1's cost."""

    def __init__(self, widths: tuple[int, ...] = LITE_WIDTHS) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.channels = w4
        self.net = nn.Sequential(
            *_conv(3, w1), *_conv(w1, w2, 2), *_conv(w2, w2),
            *_conv(w2, w3, 2), *_conv(w3, w3), *_conv(w3, w4),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


class VGGEncoder(nn.Module):
    """VGG19 to relu3_1, frozen, scaled to about unit RMS (Caffe's activations are ~200 there)."""

    channels = 256
    scale = 1 / 128  # WCT and AdaIN are scale-equivariant: only the decoder's input range changes

    def __init__(self, vgg: VGG19 | None = None) -> None:
        super().__init__()
        self.vgg = vgg or VGG19(max_layer=ENCODER_LAYER)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vgg(x, (ENCODER_LAYER,))[ENCODER_LAYER] * self.scale


class Decoder(nn.Module):
    """1/4 resolution → image: nearest upsampling (no checkerboards), most work at 1/4 and 1/2."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")
        self.net = nn.Sequential(
            *_conv(c_in, 128), up(), *_conv(128, 64), *_conv(64, 64),
            up(), *_conv(64, 32), *_conv(32, 3, relu=False),
        )  # fmt: skip

    def forward(self, f: torch.Tensor, affine: Affine | None = None) -> torch.Tensor:
        """D(f), or D(T f + b) with ``affine`` = (T, b) folded into the first convolution."""
        if affine is None:
            return self.net(f)
        first = self.net[0]
        weights, biases = fold_affine(first.weight, first.bias, *affine)
        pairs = zip(f.split(1), weights, biases, strict=True)
        x = torch.cat([F.conv2d(fi, w, bias, padding=1) for fi, w, bias in pairs])
        return self.net[1:](x)
