"""f_θ's networks: the two encoders E and the decoder D (``model.py`` composes them).

LiteEncoder  six convolutions distilled from VGG19→relu3_1 (Wang et al., *Collaborative
             Distillation*, 2020), ≈ 4 % of its cost;
VGGEncoder   VGG19→relu3_1 itself, frozen; with skips, relu2_1 and relu1_1 too (free: they are
             on the way);
Decoder      1/4 resolution → image, trained to invert E, then on the shared L; with skips it
             also adds a 1×1 convolution of each skip level's (AdaIN-mapped) features, with
             blocks it has residual blocks at 1/4 resolution (capacity where pixels are few),
             with experts its first convolution is mixed per style (CondHead), and with film
             its activations are scaled and shifted per style (StyleFiLM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from . import quant
from .function import StyleCode, fold_affine, style_vector
from .vgg import VGG19

ENCODER_LAYER = (
    "relu3_1"  # the VGG19 layer the encoders stand for (the lite one is distilled to it)
)
SKIP_LAYERS = ("relu2_1", "relu1_1")  # the skip levels, in the order the decoder reaches them
STRIDES = {"relu3_1": 4, "relu2_1": 2, "relu1_1": 1}
LITE_WIDTHS = (16, 32, 64, 128)


Affine = tuple[torch.Tensor, torch.Tensor]  # (T, b) of t = T f + b, from function.affine_map
Features = list[torch.Tensor]  # E's output: its layer's features, then each skip level's
Modulation = tuple[torch.Tensor, torch.Tensor]  # (γ, β), each (B, C): x ↦ γ x + β per channel


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


class CondHead(nn.Module):
    """The decoder's first convolution conditioned on the style: its kernel plus a mixture of
    ``experts`` kernels weighted by a small network of the style's statistics (CondConv, Yang
    et al., 2019). Fitted to one pair alone, this convolution takes L most of the way a whole
    decoder does (``eval/ceiling-parts-512``): it is where per-style capacity pays. Mixing costs
    one weighted sum of kernels per style, nothing per pixel. The experts start at zero."""

    HIDDEN = 256

    def __init__(self, code_channels: int, conv: nn.Conv2d, experts: int) -> None:
        super().__init__()
        self.route = nn.Sequential(nn.Linear(2 * code_channels, self.HIDDEN), nn.ReLU(),
                                   nn.Linear(self.HIDDEN, experts))  # fmt: skip
        self.shape = conv.weight.shape
        # flat (experts, kernel): 2-D, so channels_last leaves it alone
        self.weight = nn.Parameter(torch.zeros(experts, conv.weight.numel()))
        self.bias = nn.Parameter(torch.zeros(experts, *conv.bias.shape))

    def forward(self, codes: list[StyleCode], weights: list[float], alpha: float = 1.0
                ) -> Affine:  # fmt: skip
        """The (B, O, I, k, k) kernel and (B, O) bias to add; styles mix as Σ wᵢ aᵢ, ``alpha``
        scales towards none."""
        a = alpha * sum(
            w * self.route(style_vector(c)) for w, c in zip(weights, codes, strict=True)
        )
        a = a.float()
        return (a @ self.weight).view(-1, *self.shape), a @ self.bias


class StyleFiLM(nn.Module):
    """Per-channel scale and shift of the decoder's activations, predicted from the style's
    statistics: the γ, β of conditional instance normalization, as Ghiasi et al. (2017) predict
    them for arbitrary styles. The head (:class:`CondHead`) conditions one convolution; this
    conditions every level down to the pixels, where the fine style layers' errors are made.
    Its output layer starts at zero (γ = 1, β = 0): a decoder that gains it continues from
    exactly its own output."""

    HIDDEN = 256

    def __init__(self, code_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.widths = widths
        self.net = nn.Sequential(nn.Linear(2 * code_channels, self.HIDDEN), nn.ReLU(),
                                 nn.Linear(self.HIDDEN, 2 * sum(widths)))  # fmt: skip
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, codes: list[StyleCode], weights: list[float], alpha: float = 1.0
                ) -> list[Modulation]:  # fmt: skip
        """(γ, β) per modulated layer; styles mix as Σ wᵢ (γᵢ − 1, βᵢ), ``alpha`` scales
        towards none."""
        v = alpha * sum(w * self.net(style_vector(c)) for w, c in zip(weights, codes, strict=True))
        parts = v.float().split(self.widths * 2, dim=1)
        n = len(self.widths)
        return [(1 + g, b) for g, b in zip(parts[:n], parts[n:], strict=True)]


@dataclass
class Conditioning:
    """What the decoder reads of the style besides the mapped features: the head's kernel and
    bias (``experts``), the modulations (``film``); None where the model has none."""

    head: Affine | None = None
    film: list[Modulation] | None = None


def _modulate(x: torch.Tensor, m: Modulation) -> torch.Tensor:
    gamma, beta = (t.to(x.dtype)[:, :, None, None] for t in m)  # fp32 would promote x
    return torch.addcmul(beta, x, gamma)


class Decoder(nn.Module):
    """1/4 resolution → image: nearest upsampling (no checkerboards), most work at 1/4 and 1/2.

    With ``skips``, after each upsampling it adds a 1×1 convolution of that resolution's skip
    features (relu2_1, then relu1_1); these start at zero, so a decoder trained without skips
    continues from exactly its own output. ``blocks`` residual blocks follow the first
    convolution, at 1/4 resolution (each costs ≈ 15–20 ms at 512² in bf16 here), in int8 within
    :func:`quant.enabled` when the model has scales for them (``int8_scales``, from its file).
    With ``experts``, a :class:`CondHead` adds to the first convolution per style; with
    ``film``, a :class:`StyleFiLM` modulates the output of each ReLU and of the blocks.
    """

    SKIP_CHANNELS = (128, 64)
    SKIP_AT = (3, 8)  # indices into ``net`` where each skip is added (right after an upsampling)

    def __init__(self, c_in: int, skips: bool = False, blocks: int = 0, experts: int = 0,
                 film: bool = False) -> None:  # fmt: skip
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
        code = c_in + sum(self.SKIP_CHANNELS) * skips
        self.head = CondHead(code, self.net[0], experts) if experts else None
        relus = [self.net[i - 1].out_channels for i, m in enumerate(self.net) if _is_relu(m)]
        self.film = StyleFiLM(code, (relus[0], *relus)) if film else None  # + after the blocks
        self.int8_scales: list[quant.BlockScales] | None = None
        self.int8: quant.Int8Blocks | None = None  # built on first use, from int8_scales

    def condition(self, codes: list[StyleCode], weights: list[float], alpha: float = 1.0
                  ) -> Conditioning:  # fmt: skip
        """The per-style parts, once per stylization (then shared by every tile)."""
        return Conditioning(self.head(codes, weights, alpha) if self.head else None,
                            self.film(codes, weights, alpha) if self.film else None)  # fmt: skip

    def forward(self, feats: Features, affines: list[Affine] | None = None,
                cond: Conditioning | None = None) -> torch.Tensor:  # fmt: skip
        """D(f), or D(T f + b) with ``affines`` (one (T, b) per level) folded into the first
        convolution of each level; ``cond`` from :meth:`condition`."""
        cond = cond or Conditioning()
        maps = affines or [None] * len(feats)
        skips = dict(zip(self.SKIP_AT, zip(self.skips or (), feats[1:], maps[1:])))
        mods = iter(cond.film or ())
        x = _affine_conv(self.net[0], feats[0], maps[0], cond.head)
        for i, layer in enumerate(self.net[1:], start=1):
            if i in skips:
                conv, f, a = skips[i]
                x = x + _affine_conv(conv, f, a)
            x = layer(x)
            if cond.film and _is_relu(layer):
                x = _modulate(x, next(mods))
            if i == 1:
                x = self._blocks(x)
                x = _modulate(x, next(mods)) if cond.film else x
        return x

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8_scales and quant.active() and x.device.type == "cpu":
            self.int8 = self.int8 or quant.Int8Blocks(self.blocks, self.int8_scales)
            return self.int8(x)
        return self.blocks(x)


def _is_relu(m: nn.Module) -> bool:
    return isinstance(m, nn.ReLU)


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
