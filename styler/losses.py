"""The objective L(x; c, s): one definition, used by the solver, the trainer and the evaluation.

    L(x) = w_c · content(x) + w_s · style(x) + w_tv · tv(x)

* content: relative squared error between VGG features of x and the content target at
  ``content_layer`` (the content image's features; the trainer may substitute AdaIN's target).
* style: mean over ``style_layers`` of a relative squared error between feature statistics of x
  and of the style, either channel mean/std ("moments", as in AdaIN) or Gram matrices (Gatys).
* tv: mean absolute difference of neighbouring pixels (off by default).

Every term is a *relative* error (‖a − b‖² / ‖b‖²) because raw Caffe-VGG activations differ by
~20× between relu1_1 and relu4_1; normalising lets each layer count and keeps L comparable across
images. The targets are computed once per (c, s) pair by :meth:`Objective.targets`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from .vgg import LAYERS, VGG19

STYLE_KINDS = ("moments", "gram")
_EPS = 1e-5


@dataclass(frozen=True)
class LossConfig:
    """Weights and layers of L. The defaults are those styler's shipped f_θ was trained on."""

    content_layer: str = "relu4_1"
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    style_kind: str = "moments"
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0

    def __post_init__(self) -> None:
        for layer in (self.content_layer, *self.style_layers):
            if layer not in LAYERS or not layer.startswith("relu"):
                raise ValueError(f"unknown VGG19 layer {layer!r} (use relu1_1 … relu5_4)")
        if self.style_kind not in STYLE_KINDS:
            raise ValueError(f"style_kind must be one of {STYLE_KINDS}, not {self.style_kind!r}")
        if min(self.content_weight, self.style_weight, self.tv_weight) < 0:
            raise ValueError("loss weights must be non-negative")

    @property
    def taps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.style_layers, self.content_layer)))

    @property
    def deepest(self) -> str:
        return max(self.taps, key=LAYERS.index)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LossConfig:
        return cls(**{**d, "style_layers": tuple(d["style_layers"])})


def moments(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over space: (B, C, H, W) → 2 × (B, C)."""
    mean = f.mean(dim=(2, 3))
    std = (f.var(dim=(2, 3), unbiased=False) + _EPS).sqrt()
    return mean, std


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by the number of positions: (B, C, H, W) → (B, C, C)."""
    b, c, h, w = f.shape
    f = f.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Relative squared error per sample, averaged over the batch."""
    dims = tuple(range(1, a.dim()))
    return (((a - b) ** 2).sum(dims) / ((b**2).sum(dims) + _EPS)).mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


@dataclass
class StyleStats:
    """Statistics of one layer's style features; both kinds are kept so both can be reported."""

    mean: torch.Tensor
    std: torch.Tensor
    gram: torch.Tensor

    @classmethod
    def of(cls, f: torch.Tensor) -> StyleStats:
        mean, std = moments(f)
        return cls(mean, std, gram(f))

    @staticmethod
    def mix(stats: list[StyleStats], weights: list[float]) -> StyleStats:
        """Weighted average of several styles' statistics (style interpolation for the solver)."""
        w = torch.tensor(weights, dtype=stats[0].mean.dtype, device=stats[0].mean.device)
        w = w / w.sum()
        pick = lambda name: sum(wi * getattr(s, name) for wi, s in zip(w, stats))  # noqa: E731
        return StyleStats(pick("mean"), pick("std"), pick("gram"))


@dataclass
class Targets:
    """What L compares x against: content features and per-layer style statistics."""

    content: torch.Tensor
    style: dict[str, StyleStats] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Targets:
        style = {k: StyleStats(v.mean.to(device), v.std.to(device), v.gram.to(device)) for k, v in self.style.items()}
        return replace(self, content=self.content.to(device), style=style)


class Objective(nn.Module):
    """L(x; c, s) over a frozen VGG19. Returns every term, so callers can log and compare them."""

    def __init__(self, config: LossConfig | None = None, vgg: VGG19 | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()
        self.vgg = vgg or VGG19(max_layer=self.config.deepest)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.vgg(x, self.config.taps)

    def style_targets(self, feats: dict[str, torch.Tensor]) -> dict[str, StyleStats]:
        return {k: StyleStats.of(feats[k]) for k in self.config.style_layers}

    @torch.no_grad()
    def targets(self, content: torch.Tensor, styles: list[torch.Tensor], weights: list[float] | None = None) -> Targets:
        """Precompute the targets once per (c, s); several styles are mixed by ``weights``."""
        content_feat = self.vgg(content, (self.config.content_layer,))[self.config.content_layer]
        per_style = [self.style_targets(self.vgg(s, self.config.style_layers)) for s in styles]
        weights = weights or [1.0] * len(styles)
        style = {k: StyleStats.mix([p[k] for p in per_style], weights) for k in self.config.style_layers}
        return Targets(content_feat, style)

    def forward(self, x: torch.Tensor, targets: Targets, report: bool = False) -> dict[str, torch.Tensor]:
        """Loss terms of x. ``report`` adds both style variants (``style_moments``, ``style_gram``)."""
        cfg = self.config
        feats = self.features(x)
        terms = {"content": _rel(feats[cfg.content_layer], targets.content)}
        kinds = STYLE_KINDS if report else (cfg.style_kind,)
        for kind in kinds:
            terms[f"style_{kind}"] = torch.stack([self._style(feats[k], targets.style[k], kind) for k in cfg.style_layers]).mean()
        terms["style"] = terms[f"style_{cfg.style_kind}"]
        terms["tv"] = total_variation(x) if cfg.tv_weight else x.new_zeros(())
        terms["total"] = cfg.content_weight * terms["content"] + cfg.style_weight * terms["style"] + cfg.tv_weight * terms["tv"]
        return terms

    @staticmethod
    def _style(f: torch.Tensor, t: StyleStats, kind: str) -> torch.Tensor:
        if kind == "gram":
            return _rel(gram(f), t.gram)
        mean, std = moments(f)
        return _rel(mean, t.mean) + _rel(std, t.std)
