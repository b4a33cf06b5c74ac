"""Stroke size: a style worked at a larger scale gives coarser texture in f_θ's output."""

from __future__ import annotations

import torch

from styler import gallery, pipeline
from styler.engine import Engine
from styler.params import FastRequest, Source


def high_frequency_energy(x: torch.Tensor) -> float:
    """Mean squared difference of neighbouring pixels: fine texture raises it."""
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return (dx.pow(2).mean() + dy.pow(2).mean()).item()


def test_a_larger_style_scale_gives_coarser_texture():
    engine = Engine.create("cpu", "fp32")
    model = pipeline.load_model(None, engine)  # the shipped model: texture comes from training
    content = Source("content", gallery.preset_path("sisley-church-at-moret"))
    style = Source("style", gallery.preset_path("caravaggio-calling-of-saint-matthew"))
    energy = {}
    for scale in (0.5, 2.0):
        req = FastRequest(size=256, style_scale=scale, precision="fp32")
        pair = pipeline.read_pair(content, [style], req)
        assert min(pair.styles[0].shape[-2:]) == round(256 * scale)
        energy[scale] = high_frequency_energy(pipeline.stylize(model, engine, pair, req))
    assert energy[2.0] < energy[0.5]
