"""VGG19's first layers in int8, for f_θ's frozen encoder on CPUs (oneDNN's int8 convolutions).

Why: the encoder is most of the fast path's arithmetic (VGG19→relu3_1 is 29 GMAC per 512²
image) and on a CPU with VNNI it runs 1.7× faster in int8 than in bf16 (Zen 4, 544²: 0.19 →
0.11 s, the convolutions near the int8 peak).
Weights are quantized per output channel (symmetric, 8 bits); activations per tensor with fixed
scales calibrated once on training images (:func:`calibrate`, shipped in
``weights/vgg19-int8.json``); the input is the image's own 8-bit values (the mean subtraction
moves into the first bias). Used only without autograd, within :func:`enabled` (the engine's
``int8``): the objective, the solver and training keep the float VGG19. The decoder's residual
blocks run in int8 too (:class:`Int8Blocks`, scales per model in its file), its other layers not:
in int8 they cost up to +5.8 % L on a held-out pair at 512 px, the blocks −0.4…+0.2 %.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import torch
from torch import nn

from .config import LAYERS
from .vgg import VGG19, MaxPool, weights_id

CALIBRATION = "vgg19-int8.json"  # in styler/weights
BLOCKS_KEY = "int8_blocks"  # a model's JSON file keeps its blocks' scales under this key
# uint8 steps of an activation: 7 bits, as PyTorch's x86 default. On 8 held-out pairs at 512 px
# against bf16, 255 gave median L +1.2 % and 34 dB PSNR on the worst pair; 127: −0.3 %, 40 dB
LEVELS = 127
_CLIPS = torch.linspace(0.1, 1.0, 91)  # fractions of the largest activation tried as the clip

_ENABLED: ContextVar[bool] = ContextVar("styler_int8", default=False)


@contextmanager
def enabled() -> Iterator[None]:
    """Within this context f_θ's VGG encoder runs in int8 (when no gradient is needed)."""
    token = _ENABLED.set(True)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def active() -> bool:
    return _ENABLED.get() and not torch.is_grad_enabled()


@dataclass(frozen=True)
class Calibration:
    """Activation scales of the quantized layers, for the VGG weights named ``vgg``."""

    vgg: str
    scales: dict[str, float]  # per ReLU: the value of one uint8 step of its output
    images: int  # how many images they were calibrated on


def clip_range(samples: torch.Tensor) -> tuple[float, int]:
    """The uint8 step and zero point for ``samples`` that minimize the round-trip squared error
    (clipping the rare extreme values buys finer steps for all the others); the zero point is 0
    for non-negative samples (ReLU outputs)."""
    lo, hi = samples.min().clamp(max=0), samples.max()
    steps = (hi - lo).clamp_min(1e-6) * _CLIPS / LEVELS
    zeros = (-lo * _CLIPS / steps).round()
    errors = [(((samples / s).round() + z).clamp(0, LEVELS) - z).mul(s).sub(samples).pow(2).mean()
              for s, z in zip(steps, zeros, strict=True)]  # fmt: skip
    best = int(torch.stack(errors).argmin())
    return float(steps[best]), int(zeros[best])


def quantize(x: torch.Tensor, scale: float, zero: int = 0) -> torch.Tensor:
    """Float ``x`` → uint8 steps of ``scale`` above ``zero`` (in ``x``'s memory format)."""
    steps = x.to(torch.float32, copy=True).mul_(1 / scale).round_()
    return steps.add_(zero).clamp_(0, LEVELS).to(torch.uint8)


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output channel, symmetric: int8 weights and their scales."""
    scale = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127
    return (w / scale.view(-1, 1, 1, 1)).round().clamp(-127, 127).to(torch.int8), scale


def _sample(t: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    flat = t.detach().float().flatten()
    return flat[torch.randint(0, flat.numel(), (n,), generator=g)]


@torch.no_grad()
def calibrate(vgg: VGG19, images: Iterable[torch.Tensor], samples: int = 200_000) -> Calibration:
    """Scales for every ReLU of ``vgg`` from RGB ``images`` (1, 3, H, W in [0, 1]), each
    sampled at ``samples`` random positions (seeded: the same images give the same scales)."""
    g = torch.Generator().manual_seed(0)
    relus = [i for i, m in enumerate(vgg.features) if isinstance(m, nn.ReLU)]
    kept: dict[int, list[torch.Tensor]] = {i: [] for i in relus}
    n = 0
    for x in images:
        h = vgg.preprocess(x.float())
        for i, layer in enumerate(vgg.features):
            h = layer(h)
            if i in kept:
                kept[i].append(_sample(h, samples, g))
        n += 1
    scales = {LAYERS[i]: round(clip_range(torch.cat(v))[0], 5) for i, v in kept.items()}
    return Calibration(weights_id(), scales, n)


def calibration_file() -> Traversable:
    return resources.files("styler") / "weights" / CALIBRATION


@functools.cache
def shipped_calibration() -> Calibration | None:
    """The shipped scales, if they were made for the VGG weights installed here."""
    text = calibration_file().read_text()
    cal = Calibration(**json.loads(text))
    return cal if cal.vgg == weights_id() else None


@dataclass(frozen=True)
class _Conv:
    """One convolution (and its ReLU) prepacked for oneDNN, with its quantization."""

    packed: torch.Tensor
    w_scale: torch.Tensor  # per output channel (symmetric: zero points ``w_zero``)
    w_zero: torch.Tensor
    bias: torch.Tensor | None
    padding: int
    x_scale: float  # the input's uint8 step…
    out_scale: float
    x_zero: int = 0  # …and its zero point
    relu: bool = True

    @classmethod
    def pack(cls, w_q: torch.Tensor, w_scale: torch.Tensor,
             bias: torch.Tensor | None, padding: int, x_scale: float, out_scale: float,
             x_zero: int = 0, relu: bool = True) -> _Conv:  # fmt: skip
        """Prepack int8 weights ``w_q`` (out, in, 3, 3) for inputs of step ``x_scale``."""
        packed = torch.ops.onednn.qconv_prepack(
            w_q.contiguous(memory_format=torch.channels_last), w_scale, x_scale, x_zero, [1, 1],
            [padding, padding], [1, 1], 1, None,
        )  # fmt: skip
        w_zero = torch.zeros(len(w_scale), dtype=torch.long)
        return cls(packed, w_scale, w_zero, bias, padding, x_scale, out_scale, x_zero, relu)

    @classmethod
    def of(cls, conv: nn.Conv2d, x_scale: float, out_scale: float, x_zero: int = 0,
           relu: bool = True) -> _Conv:  # fmt: skip
        """A float convolution's int8 counterpart, for inputs of step ``x_scale``."""
        w_q, w_scale = quantize_weight(conv.weight.detach().float().cpu())
        bias = conv.bias.detach().float().cpu()
        return cls.pack(w_q, w_scale, bias, conv.padding[0], x_scale, out_scale, x_zero, relu)

    def __call__(self, h: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """conv (+ ReLU) of uint8 ``h``: uint8 out (``dtype`` None) or dequantized in ``dtype``."""
        scale = self.out_scale if dtype is None else 1.0
        pad = [self.padding, self.padding]
        return torch.ops.onednn.qconv2d_pointwise(
            h, self.x_scale, self.x_zero, self.packed, self.w_scale, self.w_zero, self.bias,
            [1, 1], pad, [1, 1], 1, scale, 0, dtype, "relu" if self.relu else "none", [], "",
        )  # fmt: skip


class Int8VGG:
    """``vgg``'s layers up to its deepest ReLU in int8: called as ``VGG19`` is, for the taps at
    its ReLUs, float features out (in the autocast dtype)."""

    def __init__(self, vgg: VGG19, cal: Calibration | None = None) -> None:
        cal = cal or shipped_calibration()
        if cal is None:
            raise ValueError(f"no int8 calibration for the VGG19 weights {weights_id()}")
        self.vgg = vgg
        self.convs: list[tuple[int, _Conv]] = []  # with their indices in ``vgg.features``
        x_scale = 1.0  # the input is the image's 0…255 BGR values themselves
        for i, m in enumerate(vgg.features):
            if not isinstance(m, nn.Conv2d):
                continue
            w, bias = m.weight.detach().float().cpu(), m.bias.detach().float().cpu()
            padding = 1
            if i == 0:  # vgg.preprocess's mean subtraction moves into the bias (and the padding)
                bias = bias - (w.sum(dim=(2, 3)) * vgg.mean.view(1, -1).cpu()).sum(dim=1)
                padding = 0
            w_q, w_scale = quantize_weight(w)
            out_scale = cal.scales[LAYERS[i + 1]]
            self.convs.append((i, _Conv.pack(w_q, w_scale, bias, padding, x_scale, out_scale)))
            x_scale = out_scale

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] → BGR 0…255 in uint8, with the one-pixel border VGG's first convolution
        pads with: the mean colour (zero after the mean subtraction the float network does)."""
        mean = self.vgg.mean.cpu()
        bgr = nn.functional.pad(x.flip(1).float() * 255 - mean, (1, 1, 1, 1)) + mean
        h = bgr.round_().clamp_(0, 255).to(torch.uint8)
        return h.contiguous(memory_format=torch.channels_last)

    def __call__(
        self, x: torch.Tensor, taps: tuple[str, ...] | list[str]
    ) -> dict[str, torch.Tensor]:
        wanted = {LAYERS.index(t): t for t in taps}
        autocast = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu") if autocast else torch.float32
        h, out, deepest = self._input(x), {}, max(wanted)
        for i, c in self.convs:
            if i > deepest:
                break
            if i and isinstance(self.vgg.features[i - 1], MaxPool):
                h = self.vgg.features[i - 1](h)
            tap = wanted.get(i + 1)
            if tap and (i + 1 == deepest or i == 0):
                # float out of the convolution itself: for the deepest tap nothing follows, and
                # the first convolution (3 input channels) costs less than dequantizing its output
                out[tap] = c(h, dtype)
                if i + 1 == deepest:
                    break
            h = c(h)
            if tap and tap not in out:  # uint8 steps times the step, in one pass
                out[tap] = torch.mul(h, torch.tensor(c.out_scale, dtype=dtype))
        if missing := set(taps) - out.keys():
            raise ValueError(f"the int8 VGG19 has no tap {sorted(missing)}: only its ReLUs")
        return {t: out[t] for t in taps}


@dataclass(frozen=True)
class BlockScales:
    """One residual block's activations: its input x (signed, so with a zero point) and the ReLU
    output h between its two convolutions."""

    x_scale: float
    x_zero: int
    h_scale: float


def block_scales(raw: object, blocks: int) -> list[BlockScales]:
    """Scales as a model's JSON file keeps them (``BLOCKS_KEY``); ValueError if malformed."""
    try:
        scales = [BlockScales(**r) for r in raw]  # type: ignore[attr-defined]
        if len(scales) == blocks and all(
            type(s.x_zero) is int and 0 <= s.x_zero <= LEVELS
            and all(math.isfinite(v) and v > 0 for v in (s.x_scale, s.h_scale)) for s in scales
        ):  # fmt: skip
            return scales
    except TypeError:
        pass
    raise ValueError(f"{BLOCKS_KEY!r} is not a list of {blocks} block scales")


@torch.no_grad()
def calibrate_blocks(blocks: Sequence[nn.Module], inputs: Iterable[torch.Tensor],
                     samples: int = 200_000) -> list[BlockScales]:  # fmt: skip
    """Scales for residual blocks ``x + b(relu(a(x)))`` (``net.ResBlock``) from the tensors
    that enter the first (seeded sampling: the same inputs give the same scales)."""
    g = torch.Generator().manual_seed(0)
    xs: list[list[torch.Tensor]] = [[] for _ in blocks]
    hs: list[list[torch.Tensor]] = [[] for _ in blocks]
    for x in inputs:
        x = x.float()
        for i, block in enumerate(blocks):
            h = torch.relu(block.a(x))
            xs[i].append(_sample(x, samples, g))
            hs[i].append(_sample(h, samples, g))
            x = x + block.b(h)
    ranges = [(*clip_range(torch.cat(x)), clip_range(torch.cat(h))[0]) for x, h in zip(xs, hs)]
    return [BlockScales(round(step, 6), zero, round(h_step, 6)) for step, zero, h_step in ranges]


class Int8Blocks:
    """Residual blocks ``x + b(relu(a(x)))`` with ``a`` and ``b`` in int8: x is quantized for
    ``a``, whose ReLU output stays uint8 for ``b``; the sum is kept in x's float dtype."""

    def __init__(self, blocks: Sequence[nn.Module], scales: Sequence[BlockScales]) -> None:
        self.convs = [(_Conv.of(b.a, s.x_scale, s.h_scale, s.x_zero),
                       _Conv.of(b.b, s.h_scale, 1.0, relu=False))
                      for b, s in zip(blocks, scales, strict=True)]  # fmt: skip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for a, b in self.convs:
            h = a(quantize(x, a.x_scale, a.x_zero))
            x = x + b(h, x.dtype)
        return x


@functools.cache
def available() -> bool:
    """Whether this torch runs oneDNN's int8 convolutions and the shipped scales fit its VGG."""
    if shipped_calibration() is None:
        return False
    try:
        one = torch.ones(1)
        conv = _Conv.pack(torch.ones(1, 1, 3, 3, dtype=torch.int8), one, None, 1, 1.0, 1.0)
        conv(torch.ones(1, 1, 4, 4, dtype=torch.uint8))
    except (AttributeError, RuntimeError):
        return False
    return True
