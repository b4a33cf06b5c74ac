"""The objective L(x; c, s): its terms, their invariances, gradients, weights and targets."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from core_helpers import FAST_LOSS, pattern_tensor, sample_images, shared_vgg

from styler.losses import LossConfig, Objective, StyleStats, gram, moments, total_variation
from styler.vgg import LAYERS


def objective(**changes) -> Objective:
    """An objective over the shared VGG19, on the cheap shallow layers unless told otherwise."""
    cfg = LossConfig(**{**FAST_LOSS.to_dict(), **changes})
    return Objective(cfg, shared_vgg("relu4_1"))


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    return sample_images()


def shuffle_positions(f: torch.Tensor, seed: int = 0) -> torch.Tensor:
    b, c, h, w = f.shape
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))
    return f.reshape(b, c, h * w)[..., perm].reshape(b, c, h, w)


def test_moments_and_gram_are_invariant_to_permuting_spatial_positions():
    f = torch.randn(2, 8, 5, 7, generator=torch.Generator().manual_seed(1))
    g = shuffle_positions(f)
    assert not torch.equal(f, g)
    for a, b in zip(moments(f), moments(g)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(gram(f), gram(g))


def test_moments_and_gram_values_on_a_known_feature_map():
    f = torch.tensor([[1.0, 3.0], [5.0, 7.0]]).view(1, 1, 2, 2)  # mean 4, variance 5
    mean, std = moments(f)
    torch.testing.assert_close(mean, torch.tensor([[4.0]]))
    torch.testing.assert_close(std, torch.tensor([[5.0]]).sqrt(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gram(f), torch.tensor([[[(1 + 9 + 25 + 49) / 4.0]]]))


def test_content_loss_is_zero_when_x_is_the_content(images):
    obj = objective()
    t = obj.targets(images["content"], [images["style"]])
    terms = obj(images["content"], t)
    assert terms["content"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["style"].item() > 1e-3


@pytest.mark.parametrize("kind", ["moments", "gram"])
def test_style_loss_is_zero_against_its_own_statistics_and_positive_for_another_style(images, kind):
    obj = objective(style_kind=kind)
    x = images["style"]
    own = obj(x, obj.targets(x, [x]))
    assert own["style"].item() == pytest.approx(0.0, abs=1e-6)
    assert own["total"].item() == pytest.approx(0.0, abs=1e-5)
    other = obj(x, obj.targets(x, [images["style2"]]))
    assert other["style"].item() > 1e-3


def test_style_terms_are_relative_errors_of_mean_std_and_gram(images):
    """Doubling a target statistic (a, against x's own b = a/2): ‖b − a‖² / ‖a‖² = 1/4 per layer."""
    obj = objective()
    x = images["style"]
    own = obj.targets(x, [x])
    for field, term in (
        ("mean", "style_moments"),
        ("std", "style_moments"),
        ("gram", "style_gram"),
    ):
        doubled = {k: replace(v, **{field: 2 * getattr(v, field)}) for k, v in own.style.items()}
        terms = obj(x, replace(own, style=doubled), report=True)
        assert terms[term].item() == pytest.approx(0.25, rel=1e-3), field


@pytest.mark.parametrize("kind", ["moments", "gram"])
def test_style_gradients_reach_the_pixels(images, kind):
    obj = objective(style_kind=kind, content_weight=0.0)
    t = obj.targets(images["content"], [images["style"]])
    x = images["content"].clone().requires_grad_(True)
    obj(x, t)["total"].backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().max() > 0


def test_report_adds_both_style_variants(images):
    obj = objective(style_kind="gram")
    t = obj.targets(images["content"], [images["style"]])
    plain = obj(images["content"], t)
    assert set(plain) == {"content", "style_gram", "style", "tv", "total"}
    full = obj(images["content"], t, report=True)
    assert set(full) == {"content", "style_moments", "style_gram", "style", "tv", "total"}
    assert full["style"] == full["style_gram"]
    assert full["style_moments"] != full["style_gram"]
    torch.testing.assert_close(full["total"], plain["total"])


def test_total_is_the_weighted_sum_of_the_terms(images):
    obj = objective(content_weight=2.0, style_weight=3.0, tv_weight=0.5)
    t = obj.targets(images["content"], [images["style"]])
    x = pattern_tensor(32, 32, seed=3)
    terms = obj(x, t)
    assert terms["content"] > 0 and terms["style"] > 0
    torch.testing.assert_close(terms["tv"], total_variation(x))
    torch.testing.assert_close(
        terms["total"], 2.0 * terms["content"] + 3.0 * terms["style"] + 0.5 * terms["tv"]
    )
    assert objective()(x, t)["tv"].item() == 0.0  # off by default


def test_total_variation_of_a_known_image():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)  # vertical: 0, horizontal: 1
    assert total_variation(x).item() == pytest.approx(1.0)
    assert total_variation(torch.full((1, 3, 5, 5), 0.3)).item() == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"content_layer": "relu9_9"},
        {"content_layer": "conv4_1"},
        {"style_layers": ("relu1_1", "pool2")},
        {"style_kind": "wasserstein"},
        {"content_weight": -1.0},
        {"style_weight": -0.1},
        {"tv_weight": -1e-3},
    ],
)
def test_loss_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        LossConfig(**bad)


def test_loss_config_round_trips_and_knows_its_deepest_layer():
    cfg = LossConfig(
        content_layer="relu3_1",
        style_layers=("relu1_1", "relu3_1", "relu4_1"),
        style_kind="gram",
        tv_weight=0.1,
    )
    assert LossConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.taps == ("relu1_1", "relu3_1", "relu4_1")
    assert cfg.deepest == "relu4_1"


def test_objective_builds_a_vgg_only_as_deep_as_its_layers():
    obj = Objective(LossConfig(content_layer="relu2_1", style_layers=("relu1_1",)))
    assert len(obj.vgg.features) == LAYERS.index("relu2_1") + 1


def _assert_same_stats(a: dict[str, StyleStats], b: dict[str, StyleStats]) -> None:
    assert a.keys() == b.keys()
    for k, stats in a.items():
        for field in ("mean", "std", "gram"):
            torch.testing.assert_close(getattr(stats, field), getattr(b[k], field))


def test_mixing_styles_with_weights_1_0_gives_the_first_styles_targets(images):
    obj = objective()
    single = obj.targets(images["content"], [images["style"]])
    mixed = obj.targets(images["content"], [images["style"], images["style2"]], [1.0, 0.0])
    torch.testing.assert_close(mixed.content, single.content)
    _assert_same_stats(mixed.style, single.style)


def test_mixing_weights_are_normalised(images):
    obj = objective()
    a = obj.targets(images["content"], [images["style"]]).style
    b = obj.targets(images["content"], [images["style2"]]).style
    mixed = obj.targets(images["content"], [images["style"], images["style2"]], [3.0, 1.0]).style
    mix = lambda k, f: 0.75 * getattr(a[k], f) + 0.25 * getattr(b[k], f)
    expected = {k: StyleStats(mix(k, "mean"), mix(k, "std"), mix(k, "gram")) for k in a}
    _assert_same_stats(mixed, expected)
