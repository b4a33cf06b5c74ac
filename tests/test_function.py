"""The feature transforms: WCT gives the style's covariance, AdaIN its channel moments."""

from __future__ import annotations

import pytest
import torch

from styler.function import FeatureStats, StyleCode, affine_map, style_code


def features(seed: int, c: int = 8, hw: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g)
    return torch.einsum("ij,bjhw->bihw", mix, torch.randn(1, c, hw, hw, generator=g)) + seed


def transfer(content: torch.Tensor, style: torch.Tensor, kind: str, alpha: float = 1.0):
    code = style_code([FeatureStats.of(style)], kind)
    t, b = affine_map(FeatureStats.of(content), [code], [1.0], kind, alpha)
    return torch.einsum("bij,bjhw->bihw", t, content) + b[:, :, None, None]


def test_wct_gives_the_styles_mean_and_covariance():
    c, s = features(1), features(2)
    out, want = FeatureStats.of(transfer(c, s, "wct")), FeatureStats.of(s)
    torch.testing.assert_close(out.mean, want.mean, atol=1e-3, rtol=0)
    torch.testing.assert_close(out.cov, want.cov, atol=0.05 * want.cov.abs().max().item(), rtol=0)


def test_adain_gives_each_channels_mean_and_std_but_not_the_covariance():
    c, s = features(1), features(2)
    out, want = FeatureStats.of(transfer(c, s, "adain")), FeatureStats.of(s)
    torch.testing.assert_close(out.mean, want.mean, atol=1e-3, rtol=0)
    diag = lambda m: m.diagonal(dim1=1, dim2=2)
    torch.testing.assert_close(diag(out.cov), diag(want.cov), rtol=1e-3, atol=1e-3)
    assert (out.cov - want.cov).abs().max() > 0.1 * want.cov.abs().max()


@pytest.mark.parametrize("kind", ["wct", "adain"])
def test_alpha_zero_is_the_identity(kind):
    c = features(3)
    torch.testing.assert_close(transfer(c, features(4), kind, alpha=0.0), c, atol=1e-4, rtol=0)


def test_statistics_of_parts_add_up_to_those_of_the_whole():
    f = features(5)
    whole = FeatureStats.of(f)
    parts = FeatureStats.of(f[..., :10]) + FeatureStats.of(f[..., 10:])
    assert parts.count == whole.count
    torch.testing.assert_close(parts.mean, whole.mean)
    torch.testing.assert_close(parts.cov, whole.cov, atol=1e-3, rtol=1e-4)


def test_unknown_transform_is_rejected():
    with pytest.raises(ValueError, match="transform"):
        style_code([FeatureStats.of(features(1))], "gatys")


def test_diagonal_statistics_are_the_diagonal_of_the_full_ones_and_add_up_too():
    f = features(6)
    full = FeatureStats.of(f)
    diag = FeatureStats.of(f[..., :10], diagonal=True) + FeatureStats.of(f[..., 10:], diagonal=True)
    assert diag.outer.shape == full.total.shape  # (B, C): no C × C products
    torch.testing.assert_close(diag.mean, full.mean)
    torch.testing.assert_close(diag.cov, torch.diag_embed(full.cov.diagonal(dim1=1, dim2=2)),
                               atol=1e-3, rtol=1e-4)  # fmt: skip


def test_a_style_code_with_skips_survives_its_tensors():
    levels = [FeatureStats.of(features(7)), FeatureStats.of(features(8, c=4), diagonal=True)]
    code = style_code(levels, "wct")
    assert len(code.skips) == 1 and code.skips[0].colour.shape == (1, 4, 4)
    back = StyleCode.from_tensors(code.tensors("x"), "x")
    assert back is not None and len(back.skips) == 1
    torch.testing.assert_close(back.skips[0].colour, code.skips[0].colour)
    torch.testing.assert_close(back.colour, code.colour)
    assert StyleCode.from_tensors(code.tensors("x"), "y") is None
