"""f_θ's networks: the two encoders E and the decoder D (``model.py`` composes them).

LiteEncoder  six convolutions distilled from VGG19→relu3_1 (Wang et al., *Collaborative
             Distillation*, 2020), ≈ 4 % of its cost;
VGGEncoder   VGG19→relu3_1 itself, frozen; with skips, relu2_1 and relu1_1 too (free: they are
             on the way);
Decoder      1/4 resolution → image, trained to invert E, then on the shared L; with skips it
             also adds a 1×1 convolution of each skip level's (AdaIN-mapped) features, with
             blocks it has residual blocks at 1/4 resolution (capacity where pixels are few),
             with experts its first convolution is mixed per style (CondHead), and with
             linear WCT's matrix is corrected per pair (LinearCorrection).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from . import quant
from .function import FeatureStats, StyleCode, exact, fold_affine, stats_vector, style_vector
from .vgg import VGG19

ENCODER_LAYER = (
    "relu3_1"  # the VGG19 layer the encoders stand for (the lite one is distilled to it)
)
SKIP_LAYERS = ("relu2_1", "relu1_1")  # the skip levels, in the order the decoder reaches them
STRIDES = {"relu3_1": 4, "relu2_1": 2, "relu1_1": 1}
LITE_WIDTHS = (16, 32, 64, 128)


Affine = tuple[torch.Tensor, torch.Tensor]  # (T, b) of t = T f + b, from function.affine_map
Features = list[torch.Tensor]  # E's output: its layer's features, then each skip level's


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

    strides = (4,)

    def forward(self, x: torch.Tensor) -> Features:
        return [self.net(x * 2 - 1)]


class VGGEncoder(nn.Module):
    """VGG19 to relu3_1, frozen, scaled to about unit RMS (Caffe's activations are ~200 there);
    in int8 within :func:`quant.enabled` when no gradient is needed (built on first use)."""

    channels = 256
    # WCT and AdaIN are scale-equivariant: only the decoder's input range changes
    scales: ClassVar = {"relu3_1": 1 / 128, "relu2_1": 1 / 128, "relu1_1": 1 / 32}

    def __init__(self, vgg: VGG19 | None = None, skips: bool = False) -> None:
        super().__init__()
        self.vgg = vgg or VGG19(max_layer=ENCODER_LAYER)
        self.layers = (ENCODER_LAYER, *(SKIP_LAYERS if skips else ()))
        self.strides = tuple(STRIDES[k] for k in self.layers)
        self.int8: quant.Int8VGG | None = None

    def forward(self, x: torch.Tensor) -> Features:
        if quant.active() and x.device.type == "cpu":
            self.int8 = self.int8 or quant.Int8VGG(self.vgg)
            feats = self.int8(x, self.layers)
        else:
            feats = self.vgg(x, self.layers)
        return [feats[k] * self.scales[k] for k in self.layers]


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))), its second convolution zero at the start: a decoder that gains
    blocks continues from exactly its own output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 3, padding=1)
        self.b = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.b.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.relu(self.a(x)))


def _per_style(net: nn.Module, codes: list[StyleCode], weights: list[float],
              content: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Σ wᵢ net(sᵢ) over the styles' vectors (:func:`style_vector`), each beside the content's
    (``content``, a :func:`stats_vector`) when given: what reads the pair, mixed as styles mix."""

    def vector(code: StyleCode) -> torch.Tensor:
        style = style_vector(code)
        if content is None:
            return style
        return torch.cat(torch.broadcast_tensors(style, content), dim=1)

    return sum(w * net(vector(c)) for w, c in zip(weights, codes, strict=True))


class CondHead(nn.Module):
    """The decoder's first convolution conditioned on the style: its kernel plus a mixture of
    ``experts`` kernels weighted by a small network of the style's statistics (CondConv, Yang
    et al., 2019), and with ``content`` of the content's too (the mixture is then per pair, as
    the per-pair fits that motivated it were). Fitted to one pair alone, this convolution takes
    L most of the way a whole decoder does (``eval/ceiling-parts-512``): it is where per-style
    capacity pays. Mixing costs one weighted sum of kernels per image, nothing per pixel. The
    experts and the routing's content inputs start at zero."""

    HIDDEN = 256

    def __init__(self, code_channels: int, conv: nn.Conv2d, experts: int,
                 content: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.content = content
        self.route = nn.Sequential(nn.Linear(2 * code_channels * (1 + content), self.HIDDEN),
                                   nn.ReLU(), nn.Linear(self.HIDDEN, experts))  # fmt: skip
        if content:
            nn.init.zeros_(self.route[0].weight[:, 2 * code_channels :])
        self.shape = conv.weight.shape
        # flat (experts, kernel): 2-D, so channels_last leaves it alone
        self.weight = nn.Parameter(torch.zeros(experts, conv.weight.numel()))
        self.bias = nn.Parameter(torch.zeros(experts, *conv.bias.shape))

    def forward(self, codes: list[StyleCode], weights: list[float], content: list[FeatureStats],
                alpha: float = 1.0) -> Affine:  # fmt: skip
        """The (B, O, I, k, k) kernel and (B, O) bias to add; styles mix as Σ wᵢ aᵢ, ``alpha``
        scales towards none. ``content``: the content's statistics per level."""
        seen = stats_vector(content) if self.content else None
        a = (alpha * _per_style(self.route, codes, weights, seen)).float()
        return (a @ self.weight).view(-1, *self.shape), a @ self.bias


class LinearCorrection(nn.Module):
    """WCT's matrix corrected per pair, T = colour_s (I + U M V) whiten_c, where the r × r
    matrix M is predicted from the content's and the style's covariances, compressed to r
    channels (after Li et al., *Learning Linear Transformations for Fast Image and Video Style
    Transfer*, 2019, who predict the whole transform from them). Trained on L, it may move the
    features off the style's exact covariance where that makes D's output closer to it. U
    starts at zero: a model that gains the correction continues from its own output. It is
    folded into D's first convolution with T, so it costs nothing per pixel."""

    HIDDEN = 512

    def __init__(self, channels: int, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.compress = nn.Parameter(torch.randn(rank, channels) / channels**0.5)
        self.predict = nn.Sequential(nn.Linear(2 * rank * rank, self.HIDDEN), nn.ReLU(),
                                     nn.Linear(self.HIDDEN, rank * rank))  # fmt: skip
        self.down = nn.Parameter(torch.randn(rank, channels) / channels**0.5)
        self.up = nn.Parameter(torch.zeros(channels, rank))

    @exact
    def forward(self, content: FeatureStats, code: StyleCode) -> StyleCode:
        """``code`` with its colouring matrix (one per content image) times I + U M V."""
        c, s = (self._squeeze(cov) for cov in (content.cov, code.colour @ code.colour))
        c, s = torch.broadcast_tensors(c, s)
        m = self.predict(torch.cat([c, s], dim=1)).view(-1, self.rank, self.rank)
        return replace(code, colour=code.colour + code.colour @ (self.up @ m @ self.down))

    def _squeeze(self, cov: torch.Tensor) -> torch.Tensor:
        """(B, r²): P Σ Pᵀ over its mean diagonal (the scale is WCT's business)."""
        small = self.compress @ cov @ self.compress.T
        scale = small.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)
        return (small / scale[:, None, None]).flatten(1)


class Blend(nn.Module):
    """How much of the content's own features each level keeps, per channel and per pair: the
    amounts k of :func:`~styler.function.blend_maps`, t + k ⊙ (f − t), predicted from both
    statistics. WCT's content–style blend α (Li et al., 2017) is one number a user picks; the
    solver's per-pair balance of content and style is not. Folded into D with T, it costs
    nothing per pixel. k starts at zero: a model that gains it continues from its own output."""

    HIDDEN = 256

    def __init__(self, code_channels: int, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = levels
        self.predict = nn.Sequential(nn.Linear(4 * code_channels, self.HIDDEN), nn.ReLU(),
                                     nn.Linear(self.HIDDEN, sum(levels)))  # fmt: skip
        nn.init.zeros_(self.predict[2].weight)
        nn.init.zeros_(self.predict[2].bias)

    @exact
    def forward(self, codes: list[StyleCode], weights: list[float],
                content: list[FeatureStats]) -> list[torch.Tensor]:  # fmt: skip
        """k per level, (B, C) each; styles mix as Σ wᵢ kᵢ."""
        k = _per_style(self.predict, codes, weights, stats_vector(content))
        return list(k.split(self.levels, dim=1))


class Decoder(nn.Module):
    """1/4 resolution → image: nearest upsampling (no checkerboards), most work at 1/4 and 1/2.

    With ``skips``, after each upsampling it adds a 1×1 convolution of that resolution's skip
    features (relu2_1, then relu1_1); these start at zero, so a decoder trained without skips
    continues from exactly its own output. ``blocks`` residual blocks follow the first
    convolution, at 1/4 resolution (each costs ≈ 15–20 ms at 512² in bf16 here), in int8 within
    :func:`quant.enabled` when the model has scales for them (``int8_scales``, from its file).
    With ``experts``, a :class:`CondHead` adds to the first convolution per style; with
    ``linear``, a :class:`LinearCorrection` of that rank and with ``blend`` a :class:`Blend` are
    kept here for the model to apply.
    """

    SKIP_CHANNELS = (128, 64)
    SKIP_AT = (3, 8)  # indices into ``net`` where each skip is added (right after an upsampling)

    def __init__(self, c_in: int, skips: bool = False, blocks: int = 0, experts: int = 0,
                 linear: int = 0, route_content: bool = False,
                 blend: bool = False) -> None:  # fmt: skip
        super().__init__()
        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")
        self.net = nn.Sequential(
            *_conv(c_in, 128), up(), *_conv(128, 64), *_conv(64, 64),
            up(), *_conv(64, 32), *_conv(32, 3, relu=False),
        )  # fmt: skip
        self.blocks = nn.Sequential(*(ResBlock(128) for _ in range(blocks)))
        self.skips = (
            nn.ModuleList(nn.Conv2d(c, c, 1) for c in self.SKIP_CHANNELS) if skips else None
        )
        for conv in self.skips or ():
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        levels = (c_in, *self.SKIP_CHANNELS) if skips else (c_in,)
        code = sum(levels)  # channels of a style code's levels
        self.head = CondHead(code, self.net[0], experts, route_content) if experts else None
        self.linear = LinearCorrection(c_in, linear) if linear else None
        self.blend = Blend(code, levels) if blend else None
        self.int8_scales: list[quant.BlockScales] | None = None
        self.int8: quant.Int8Blocks | None = None  # built on first use, from int8_scales

    def forward(self, feats: Features, affines: list[Affine] | None = None,
                head: Affine | None = None) -> torch.Tensor:  # fmt: skip
        """D(f), or D(T f + b) with ``affines`` (one (T, b) per level) folded into the first
        convolution of each level; ``head`` from :class:`CondHead`."""
        maps = affines or [None] * len(feats)
        first = _affine_conv(self.net[0], feats[0], maps[0], head)
        x, start = self._blocks(self.net[1](first)), 2
        for conv, stop, f, a in zip(self.skips or (), self.SKIP_AT, feats[1:], maps[1:]):
            x = self.net[start:stop](x) + _affine_conv(conv, f, a)
            start = stop
        return self.net[start:](x)

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8_scales and quant.active() and x.device.type == "cpu":
            self.int8 = self.int8 or quant.Int8Blocks(self.blocks, self.int8_scales)
            return self.int8(x)
        return self.blocks(x)


def _affine_conv(conv: nn.Conv2d, f: torch.Tensor, affine: Affine | None,
                 extra: Affine | None = None) -> torch.Tensor:  # fmt: skip
    """conv(f), or conv(T f + b) per image through :func:`fold_affine`; ``extra`` adds a kernel
    and bias per image to the convolution's."""
    if affine is None and extra is None:
        return conv(f)
    n = f.shape[0]
    weights, biases = conv.weight.expand(n, *conv.weight.shape), conv.bias.expand(n, -1)
    if extra is not None:
        weights, biases = weights + extra[0], biases + extra[1]
    if affine is not None:
        weights, biases = fold_affine(weights, biases, *affine)
    pairs = zip(f.split(1), weights, biases, strict=True)
    outs = [F.conv2d(fi, w, bias, padding=conv.padding) for fi, w, bias in pairs]
    return torch.cat(outs) if len(outs) > 1 else outs[0]  # cat would copy a lone image
