"""The feature transforms of f_θ, as pure functions of feature statistics.

Both transforms are one affine map per image, applied at every position of the content features
(folded into the decoder's first convolution, :func:`fold_affine`):

    t = T f + b,   T = colour(s) · whiten(c),   b = μ_s − T μ_c

* WCT, whitening–colouring (Li et al., *Universal Style Transfer via Feature Transforms*, 2017):
  whiten(c) = Σ_c^(−1/2), colour(s) = Σ_s^(1/2), so t takes the style's covariance.
* AdaIN (Huang & Belongie, 2017): the same with diagonal matrices, σ_c^(−1) and σ_s: only each
  channel's mean and standard deviation are matched.

Because T and b depend on the whole image only through (μ, Σ), the statistics can be gathered
once (over tiles, or cached for a style) and the map applied to any part of the image. A decoder
with skips gets one map per level: this one at E's layer, AdaIN at each skip level (whose
statistics are kept diagonal: AdaIN needs no more).
Statistics and matrices are fp32 whatever precision the networks run in. Also here: the style
weights' normalization and luminance-only transfer (preserve colour), pure math as well.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def exact(fn: F) -> F:
    """Run ``fn`` outside autocast: bf16 matmuls would ruin covariances and their roots."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


CHUNK = 2**18  # values per band of diagonal statistics (1 MB of fp32)
WCT_EPS = 1e-3  # eigenvalue floor, relative to the mean eigenvalue: tames whitening of noise


@dataclass
class FeatureStats:
    """Running first and second moments of features, summed over positions: (B, C) and either
    (B, C, C) outer products or, ``diagonal``, (B, C) squares (all AdaIN needs, far cheaper)."""

    total: torch.Tensor
    outer: torch.Tensor
    count: int

    @classmethod
    @exact
    def of(cls, f: torch.Tensor, diagonal: bool = False) -> FeatureStats:
        if diagonal:  # band by band of rows, each in cache and in NCHW order (a channels_last
            # band sums 2.5× slower): relu1_1 of a 512² picture 50 → 19 ms
            total = f.new_zeros(f.shape[:2], dtype=torch.float32)
            squares = total.clone()
            for band in f.split(max(1, CHUNK // (f.shape[1] * f.shape[3])), dim=2):
                x = band.to(torch.float32, memory_format=torch.contiguous_format)
                total += x.sum((2, 3))
                squares += (x * x).sum((2, 3))
            return cls(total, squares, f.shape[2] * f.shape[3])
        flat = f.float().flatten(2)
        return cls(flat.sum(2), flat @ flat.transpose(1, 2), flat.shape[2])

    def __add__(self, other: FeatureStats) -> FeatureStats:
        return FeatureStats(
            self.total + other.total, self.outer + other.outer, self.count + other.count
        )

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.count

    @property
    def cov(self) -> torch.Tensor:
        """(B, C, C); diagonal statistics give the diagonal matrix of the variances."""
        m = self.mean
        if self.outer.dim() == 2:
            return torch.diag_embed(self.outer / self.count - m * m)
        return self.outer / self.count - m[:, :, None] * m[:, None, :]


@exact
def _sqrt_matrices(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ^(1/2) and Σ^(−1/2) of symmetric PSD matrices (B, C, C), eigenvalues floored."""
    eigvals, eigvecs = torch.linalg.eigh(cov.double())
    floor = WCT_EPS * eigvals.mean(-1, keepdim=True).clamp_min(1e-12)
    root = eigvals.clamp_min(0).add(floor).sqrt()
    sqrt = (eigvecs * root[:, None, :]) @ eigvecs.transpose(1, 2)
    inv_sqrt = (eigvecs / root[:, None, :]) @ eigvecs.transpose(1, 2)
    return sqrt.float(), inv_sqrt.float()


def whiten_colour(stats: FeatureStats, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(colour, whiten) matrices of one image's features for transform ``kind`` (wct or adain)."""
    if kind == "wct":
        return _sqrt_matrices(stats.cov)
    if kind == "adain":
        std = stats.cov.diagonal(dim1=1, dim2=2).clamp_min(0).add(1e-5).sqrt()
        return torch.diag_embed(std), torch.diag_embed(1 / std)
    raise ValueError(f"unknown transform {kind!r} (use wct or adain)")


@dataclass
class StyleCode:
    """What f_θ needs of a style: its feature mean (B, C) and colouring matrix (B, C, C) at E's
    layer, and one AdaIN code per skip level of a decoder with skips."""

    mean: torch.Tensor
    colour: torch.Tensor
    skips: tuple[StyleCode, ...] = ()

    def to(self, device: torch.device | str) -> StyleCode:
        skips = tuple(s.to(device) for s in self.skips)
        return StyleCode(self.mean.to(device), self.colour.to(device), skips)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """Flat names → tensors (for safetensors files); :meth:`from_tensors` reads them back."""
        out = {f"{prefix}.mean": self.mean, f"{prefix}.colour": self.colour}
        for i, skip in enumerate(self.skips):
            out |= skip.tensors(f"{prefix}.skip{i}")
        return out

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], prefix: str) -> StyleCode | None:
        if f"{prefix}.mean" not in tensors:
            return None
        skips: list[StyleCode] = []
        while skip := cls.from_tensors(tensors, f"{prefix}.skip{len(skips)}"):
            skips.append(skip)
        return cls(tensors[f"{prefix}.mean"], tensors[f"{prefix}.colour"], tuple(skips))


def style_code(stats: list[FeatureStats], kind: str) -> StyleCode:
    """A style's code from its statistics per level: ``kind`` at E's layer, AdaIN at skips."""
    skips = tuple(StyleCode(s.mean, whiten_colour(s, "adain")[0]) for s in stats[1:])
    return StyleCode(stats[0].mean, whiten_colour(stats[0], kind)[0], skips)


def style_vector(code: StyleCode) -> torch.Tensor:
    """(B, 2·ΣC): each level's mean and log colour diagonal, what a network reads of a style."""
    levels = (code, *code.skips)
    diag = [c.colour.diagonal(dim1=1, dim2=2).clamp_min(1e-6).log() for c in levels]
    return torch.cat([c.mean for c in levels] + diag, dim=1)


def stats_vector(stats: list[FeatureStats]) -> torch.Tensor:
    """(B, 2·ΣC): each level's mean and log standard deviation, what a network reads of a
    content image (in the layout of :func:`style_vector`)."""
    logstd = [s.cov.diagonal(dim1=1, dim2=2).clamp_min(1e-12).log() / 2 for s in stats]
    return torch.cat([s.mean for s in stats] + logstd, dim=1)


def affine_maps(content: list[FeatureStats], styles: list[StyleCode], weights: list[float],
                kind: str, alpha: float = 1.0) -> list[tuple[torch.Tensor, ...]]:  # fmt: skip
    """One map per level (E's layer, then each skip): ``kind`` first, AdaIN at the skips."""
    maps = [affine_map(content[0], styles, weights, kind, alpha)]
    for i, stats in enumerate(content[1:]):
        maps.append(affine_map(stats, [s.skips[i] for s in styles], weights, "adain", alpha))
    return maps


@exact
def affine_map(
    content: FeatureStats,
    styles: list[StyleCode],
    weights: list[float],
    kind: str,
    alpha: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """T (B, C, C) and b (B, C) such that t = T f + b; several styles mix as Σ wᵢ (Tᵢ f + bᵢ).

    ``alpha`` blends with the identity: α t + (1 − α) f, still one affine map.
    """
    whiten = whiten_colour(content, kind)[1]
    colour = sum(w * s.colour for w, s in zip(weights, styles))
    mean_s = sum(w * s.mean for w, s in zip(weights, styles))
    t = colour @ whiten
    b = mean_s - (t @ content.mean[:, :, None])[:, :, 0]
    eye = torch.eye(t.shape[-1], dtype=t.dtype, device=t.device)
    return alpha * t + (1 - alpha) * eye, alpha * b


@exact
def blend_maps(maps: list[tuple[torch.Tensor, ...]],
               amounts: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Each level's t = T f + b blended with f per channel, t + k ⊙ (f − t), by amounts k
    (B, C): still one affine map, (I − diag k) T + diag k and (1 − k) b."""
    out = []
    for (t, b), k in zip(maps, amounts, strict=True):
        keep = 1 - k
        out.append((keep[:, :, None] * t + torch.diag_embed(k), keep * b))
    return out


@exact
def fold_affine(
    weight: torch.Tensor, bias: torch.Tensor, t: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution of t = T f + b as one of f: per image, W' = W T and bias' = bias + Σ W b.

    The C × C × positions product T f is never formed (it cost as much as a decoder layer). The
    two differ only on the outermost ring of positions, where zero padding drops the taps of b;
    the caller crops that ring away. ``weight`` and ``bias`` are per image, (B, O, C, k, k) and
    (B, O); so are the results.
    """
    w = weight.float()
    folded = torch.einsum("boikl,bij->bojkl", w, t)
    return folded, bias.float() + torch.einsum("boikl,bi->bo", w, b)


def normalize_weights(weights: list[float] | None, n: int) -> list[float]:
    """Validate style weights (one per style, non-negative, not all zero) and make them sum to 1."""
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} style weights for {n} style images")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("style weights must be finite, non-negative and not all zero")
    total = sum(weights)
    return [w / total for w in weights]


_RGB2YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436],
                         [0.615, -0.51499, -0.10001]])  # fmt: skip


def keep_colors(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer (Gatys et al., 2016): the stylized Y with the content's U and V."""
    m = _RGB2YUV.to(stylized)
    yuv_s = torch.einsum("ij,bjhw->bihw", m, stylized)
    yuv_c = torch.einsum("ij,bjhw->bihw", m, content.float())
    yuv = torch.cat([yuv_s[:, :1], yuv_c[:, 1:]], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), yuv)
