"""The int8 encoder and blocks: close to the float networks, used only where the engine asks and no
gradient flows, and chosen by ``auto`` only on CPUs with int8 dot products."""

from __future__ import annotations

import math

import pytest
import torch

from styler import engine as engine_module
from styler import gallery, images, quant
from styler.config import TrainConfig
from styler.engine import Engine
from styler.model import StyleNet
from styler.net import ENCODER_LAYER, SKIP_LAYERS
from styler.vgg import VGG19

needs_int8 = pytest.mark.skipif(not quant.available(), reason="no oneDNN int8 convolutions")
TAPS = (ENCODER_LAYER, *SKIP_LAYERS)


def _preset(name: str, size: int = 256) -> torch.Tensor:
    return images.read(gallery.preset_path(name), size)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def test_the_clip_gives_up_the_rare_largest_values_for_finer_steps():
    samples = torch.empty(100_000).exponential_(generator=torch.Generator().manual_seed(0))
    step, zero = quant.clip_range(samples)
    assert zero == 0  # ReLU outputs: no zero point
    assert step * quant.LEVELS < 0.9 * samples.max()  # the tail is clipped…

    def error(s: float) -> float:
        return ((samples / s).round().clamp(0, quant.LEVELS) * s - samples).pow(2).mean().item()

    coarse = samples.max().item() / quant.LEVELS
    assert error(step) < error(coarse)  # …because that costs less than coarse steps


def test_signed_activations_get_a_zero_point_that_keeps_zero_exact():
    g = torch.Generator().manual_seed(0)
    samples = torch.cat([torch.randn(90_000, generator=g).abs(), -0.3 * torch.rand(10_000)])
    step, zero = quant.clip_range(samples)
    assert 0 < zero < quant.LEVELS // 4  # few steps below zero: the negative tail is short
    q = quant.quantize(samples, step, zero).float()
    assert q.min() >= 0 and q.max() <= quant.LEVELS
    assert quant.quantize(torch.zeros(1), step, zero).item() == zero
    assert ((q - zero) * step - samples).abs().median() < step


def test_calibration_is_repeatable_and_names_the_vgg_weights():
    vgg = VGG19(max_layer=ENCODER_LAYER)
    pictures = [_preset("sisley-church-at-moret", 96), _preset("degas-three-dancers", 96)]
    a, b = quant.calibrate(vgg, pictures), quant.calibrate(vgg, pictures)
    assert a == b and a.images == 2
    assert a.vgg == quant.shipped_calibration().vgg
    assert set(a.scales) == set(quant.shipped_calibration().scales)
    assert all(s > 0 for s in a.scales.values())


def test_scales_made_for_other_vgg_weights_are_not_used(monkeypatch):
    monkeypatch.setattr(quant, "weights_id", lambda: "other-weights")
    quant.shipped_calibration.cache_clear()
    try:
        assert quant.shipped_calibration() is None
        with pytest.raises(ValueError, match="other-weights"):
            quant.Int8VGG(VGG19(max_layer=ENCODER_LAYER))
    finally:
        monkeypatch.undo()
        quant.shipped_calibration.cache_clear()


@needs_int8
@torch.inference_mode()
def test_int8_features_are_close_to_the_float_ones_and_come_in_the_autocast_dtype():
    vgg = VGG19(max_layer=ENCODER_LAYER)
    x = _preset("pissarro-boulevard-montmartre-at-night")
    ref = vgg(x, TAPS)
    with torch.autocast("cpu", torch.bfloat16):
        got = quant.Int8VGG(vgg)(x, TAPS)
    for t in TAPS:
        assert got[t].dtype == torch.bfloat16 and got[t].shape == ref[t].shape
        assert ((got[t].float() - ref[t]).norm() / ref[t].norm()).item() < 0.08, t
    with pytest.raises(ValueError, match="pool1"):
        quant.Int8VGG(vgg)(x, ("pool1",))


@needs_int8
def test_the_int8_fast_path_looks_like_bf16_and_runs_only_when_asked():
    content, style = _preset("sisley-church-at-moret"), _preset("degas-three-dancers")
    outs = {}
    for precision in ("bf16", "int8"):
        engine = Engine.create("cpu", precision)
        model = engine.module(StyleNet.load())
        with torch.inference_mode(), engine.autocast():
            outs[precision] = model(engine.tensor(content), [engine.tensor(style)])
        assert (model.encoder.int8 is not None) == (precision == "int8")
        assert (model.decoder.int8 is not None) == (precision == "int8")
    assert _psnr(outs["bf16"], outs["int8"]) >= 35


@needs_int8
def test_int8_stays_out_where_gradients_flow():
    model = StyleNet.load()
    x = _preset("durer-erasmus", 64).requires_grad_()
    with quant.enabled():
        f, _ = model.encode(x)
    assert model.encoder.int8 is None
    f[0].sum().backward()  # the float encoder, differentiable
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("vnni", [True, False])
def test_auto_runs_the_encoder_in_int8_on_cpus_with_vnni(monkeypatch, vnni):
    monkeypatch.setattr(engine_module, "cpu_has_vnni", lambda: vnni)
    engine = Engine.create("cpu", "auto")
    int8 = vnni and quant.available()
    assert engine.int8 == int8 and engine.precision in ("bf16", "fp32")
    assert engine.setting == ("int8" if int8 else engine.precision)
    assert ("int8" in engine.describe(("encoder",))) == int8
    assert not Engine.create("cpu", "bf16").int8


def test_the_description_names_only_the_parts_a_model_runs_in_int8(monkeypatch):
    monkeypatch.setattr(quant, "available", lambda: True)
    engine = Engine.create("cpu", "int8")
    shipped = StyleNet.load()
    assert engine.describe(shipped.int8_parts).endswith(" + int8 encoder and blocks")
    shipped.decoder.int8_scales = None  # a model trained without calibration: blocks in float
    assert engine.describe(shipped.int8_parts).endswith(" + int8 encoder")
    assert StyleNet.build().int8_parts == ()  # no VGG encoder to quantize
    assert "int8" not in Engine.create("cpu", "bf16").describe(shipped.int8_parts)


def test_int8_without_the_means_is_refused_and_training_stays_float(monkeypatch):
    monkeypatch.setattr(quant, "available", lambda: False)
    with pytest.raises(ValueError, match="int8 runs on CPUs only"):
        Engine.create("cpu", "int8")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig("content", "style", precision="int8")


def _block_inputs(model: StyleNet, *pairs: tuple[str, str]) -> list[torch.Tensor]:
    """What enters the decoder's blocks when ``model`` stylizes ``pairs`` of presets (float)."""
    inputs: list[torch.Tensor] = []
    hook = model.decoder.blocks.register_forward_pre_hook(lambda _, a: inputs.append(a[0]))
    with torch.inference_mode():
        for content, style in pairs:
            model(_preset(content, 128), [_preset(style, 128)])
    hook.remove()
    return inputs


def test_block_calibration_is_repeatable_and_gives_the_relu_input_no_zero_point():
    model = StyleNet.load()
    inputs = _block_inputs(model, ("durer-erasmus", "sisley-snow-at-louveciennes"))
    a = quant.calibrate_blocks(model.decoder.blocks, inputs)
    assert a == quant.calibrate_blocks(model.decoder.blocks, inputs) and len(a) == 3
    assert a[0].x_zero == 0  # the first block's input comes out of a ReLU
    assert all(s.x_scale > 0 and s.h_scale > 0 for s in a)


@needs_int8
@torch.inference_mode()
def test_int8_blocks_are_close_to_the_float_ones():
    model = StyleNet.load()
    x = _block_inputs(model, ("modigliani-jean-cocteau", "rublev-saviour-in-glory"))[0]
    x = x.contiguous(memory_format=torch.channels_last)
    ref = model.decoder.blocks(x)
    got = quant.Int8Blocks(model.decoder.blocks, model.decoder.int8_scales)(x)
    assert got.dtype == x.dtype and got.shape == ref.shape
    assert ((got - ref).norm() / ref.norm()).item() < 0.05
