"""The blend (``--blend``): each level keeps a learned share of the content's own features."""

from __future__ import annotations

import pytest
import torch
from core_helpers import FAST_LOSS, pattern_tensor, shared_vgg, tame_net, vgg_net
from test_train import grown, run_config

from styler.function import blend_maps
from styler.lineage import start_from
from styler.losses import Objective
from styler.model import StyleNet
from styler.stages import NEW_LR_SCALE, StyleStage


def test_blended_maps_are_the_blend_of_the_features_and_their_map():
    """t + k ⊙ (f − t) for any f: k = 0 keeps the map, k = 1 gives f itself."""
    g = torch.Generator().manual_seed(0)
    t, b = torch.randn(2, 5, 5, generator=g), torch.randn(2, 5, generator=g)
    f = torch.randn(2, 5, 7, generator=g)
    k = torch.rand(2, 5, generator=g)
    ((t2, b2),) = blend_maps([(t, b)], [k])
    mapped = t @ f + b[:, :, None]
    want = mapped + k[:, :, None] * (f - mapped)
    torch.testing.assert_close(t2 @ f + b2[:, :, None], want)
    ((t1, b1),) = blend_maps([(t, b)], [torch.ones(2, 5)])
    torch.testing.assert_close(t1, torch.eye(5).expand(2, 5, 5))
    assert not b1.any()


@torch.no_grad()
def test_the_blend_keeps_through_the_file_and_is_set_per_pair(tmp_path):
    """The amounts depend on the content as well as the style (two contents, one style); with
    them at zero (the start) the output is the model's without the blend; alpha 0 undoes it."""
    model = tame_net(encoder="vgg", skips=True, blend=True)
    model.save(tmp_path / "blend.safetensors")
    back = StyleNet.load(tmp_path / "blend", vgg=shared_vgg("relu3_1"))
    assert back.blend and str(back.architecture).endswith("/skips/blend")
    c, s = pattern_tensor(40, 32, 1), pattern_tensor(32, 32, 2)
    torch.testing.assert_close(back(c, [s]), model(c, [s]), atol=2e-3, rtol=0)
    plain = vgg_net(skips=True).eval()
    plain.load_state_dict(back.trained_state(), strict=False)
    assert (back(c, [s]) - plain(c, [s])).abs().max() > 1e-3
    torch.testing.assert_close(back(c, [s], alpha=0.0), plain(c, [s], alpha=0.0))
    code = back.style_code(s)
    stats = [back.encode_content(x).stats for x in (c, pattern_tensor(40, 32, 5))]
    first, second = (back.decoder.blend([code], [1.0], st) for st in stats)
    assert [k.shape[1] for k in first] == [256, 128, 64]
    assert (first[0] - second[0]).abs().max() > 1e-4
    back.decoder.blend.predict[2].weight.zero_()
    torch.testing.assert_close(back(c, [s]), plain(c, [s]))


def test_init_adds_the_blend_at_zero_that_learns_faster_and_is_never_dropped(tmp_path):
    """A model that gains the blend keeps its output and trains it at NEW_LR_SCALE times its lr;
    a later --init cannot take it away."""
    model = grown(tmp_path, tame_net(encoder="vgg", skips=True), blend=True)
    assert not model.decoder.blend.predict[2].weight.any()
    groups = StyleStage(model, Objective(FAST_LOSS, shared_vgg("relu2_1"))).trainable(1e-5)
    assert set(groups[1]["params"]) == set(model.decoder.blend.parameters())
    assert groups[1]["lr"] == 1e-5 * NEW_LR_SCALE
    model.save(tmp_path / "blend.safetensors")
    back = run_config(tmp_path, encoder="vgg", skips=True, init=str(tmp_path / "blend"))
    with pytest.raises(ValueError, match=r"skips/blend model, but .* \(set .*--blend"):
        start_from(vgg_net(skips=True), back, shared_vgg("relu3_1"))
