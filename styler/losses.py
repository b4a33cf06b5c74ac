"""The objective L(x; c, s): one definition, used by the solver, the trainer and the evaluation.

    L(x) = w_c · content(x) + w_s · style(x) + w_tv · tv(x)

* content: relative squared error between VGG features of x and the content target at
  ``content_layer`` (the content image's features).
* style: mean over ``style_layers`` of a relative squared error between feature statistics of x
  and of the style, either channel mean/std ("moments", as in AdaIN) or Gram matrices (Gatys).
* tv: mean absolute difference of neighbouring pixels (off by default).

Every term is a *relative* error (‖a − b‖² / ‖b‖²) because raw Caffe-VGG activations differ by
~20× between relu1_1 and relu4_1; normalising lets each layer count and keeps L comparable across
images. The targets are computed once per (c, s) pair by :meth:`Objective.targets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .config import STYLE_KINDS, LossConfig
from .vgg import VGG19

__all__ = ["STYLE_KINDS", "LossConfig", "Objective", "StyleStats", "Targets", "gram", "moments"]
_EPS = 1e-5
RECON_LAYERS = ("relu1_1", "relu2_1", "relu3_1")  # what a reconstruction must preserve


def moments(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over space: (B, C, H, W) → 2 × (B, C), in fp32."""
    f = f.float()
    mean = f.mean(dim=(2, 3))
    std = (f.var(dim=(2, 3), unbiased=False) + _EPS).sqrt()
    return mean, std


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by the number of positions: (B, C, H, W) → (B, C, C)."""
    b, c, h, w = f.shape
    f = f.float().reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Relative squared error per sample, averaged over the batch."""
    a, b = a.float(), b.float()  # bf16 squares lose the small differences that matter here
    dims = tuple(range(1, a.dim()))
    return (((a - b) ** 2).sum(dims) / ((b**2).sum(dims) + _EPS)).mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dy + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def reconstruction_loss(
    vgg: VGG19, out: torch.Tensor, image: torch.Tensor, image_feats: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Stage 1 of training: how well the decoder inverts the encoder (pixels + VGG features).

    A dense signal at every pixel, so a decoder converges in a small fraction of the steps the
    style loss needs. ``image_feats`` holds the input's ``RECON_LAYERS`` features.
    """
    feats = vgg(out, RECON_LAYERS)
    feature = torch.stack([relative_error(feats[k], image_feats[k]) for k in RECON_LAYERS]).mean()
    pixel = (out.float() - image).abs().mean()
    return {"pixel": pixel, "feature": feature, "total": pixel + feature}


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
        pick = lambda name: sum(wi * getattr(s, name) for wi, s in zip(w, stats))
        return StyleStats(pick("mean"), pick("std"), pick("gram"))


@dataclass
class Targets:
    """What L compares x against: content features and per-layer style statistics."""

    content: torch.Tensor
    style: dict[str, StyleStats] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> Targets:
        style = {
            k: StyleStats(v.mean.to(device), v.std.to(device), v.gram.to(device))
            for k, v in self.style.items()
        }
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
    def targets(
        self, content: torch.Tensor, styles: list[torch.Tensor], weights: list[float] | None = None
    ) -> Targets:
        """Precompute the targets once per (c, s); several styles are mixed by ``weights``."""
        content_feat = self.vgg(content, (self.config.content_layer,))[self.config.content_layer]
        layers = self.config.style_layers
        per_style = [self.style_targets(self.vgg(s, layers)) for s in styles]
        weights = weights or [1.0] * len(styles)
        style = {k: StyleStats.mix([p[k] for p in per_style], weights) for k in layers}
        return Targets(content_feat, style)

    def forward(
        self, x: torch.Tensor, targets: Targets, report: bool = False
    ) -> dict[str, torch.Tensor]:
        """Loss terms of x; ``report`` adds both style variants (style_moments, style_gram)."""
        cfg = self.config
        feats = self.features(x)
        terms = {"content": relative_error(feats[cfg.content_layer], targets.content)}
        kinds = STYLE_KINDS if report else (cfg.style_kind,)
        for kind in kinds:
            per_layer = [self._style(feats[k], targets.style[k], kind) for k in cfg.style_layers]
            terms[f"style_{kind}"] = torch.stack(per_layer).mean()
        terms["style"] = terms[f"style_{cfg.style_kind}"]
        terms["tv"] = total_variation(x) if cfg.tv_weight else x.new_zeros(())
        terms["total"] = (
            cfg.content_weight * terms["content"]
            + cfg.style_weight * terms["style"]
            + cfg.tv_weight * terms["tv"]
        )
        return terms

    @staticmethod
    def _style(f: torch.Tensor, t: StyleStats, kind: str) -> torch.Tensor:
        if kind == "gram":
            return relative_error(gram(f), t.gram)
        mean, std = moments(f)
        return relative_error(mean, t.mean) + relative_error(std, t.std)
