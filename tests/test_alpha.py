"""Transparency kept: RGBA, LA, palette and tRNS inputs keep their alpha through load, read_content
and save; JPEG output drops it on white, with a warning when it was not opaque."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from core_helpers import pattern, pixels, saved
from PIL import Image

from styler.images import AlphaDropped, load_rgba, save, to_pil
from styler.params import Inputs, Source
from styler.pipeline import Limits, read_content


def rgba_pattern(w: int, h: int) -> Image.Image:
    """:func:`pattern` with an alpha ramp: transparent on the left, opaque on the right."""
    im = pattern(w, h).convert("RGBA")
    ramp = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    im.putalpha(Image.fromarray(ramp, "L"))
    return im


def test_load_rgba_splits_colour_and_alpha(tmp_path):
    im = Image.new("RGBA", (3, 1))
    im.putdata([(0, 0, 0, 0), (200, 10, 20, 255), (40, 50, 60, 128)])
    rgb, alpha = load_rgba(saved(im, tmp_path / "a.png"))
    assert rgb.mode == "RGB" and alpha.mode == "L"
    assert pixels(rgb) == [(255, 255, 255), (200, 10, 20), (40, 50, 60)]  # straight colour
    assert [px[0] for px in pixels(alpha)] == [0, 255, 128]


@pytest.mark.parametrize("kind", ["la", "palette", "rgb-trns"])
def test_other_transparent_modes_keep_their_alpha(tmp_path, kind):
    if kind == "la":
        im, options = Image.new("LA", (2, 1)), {}
        im.putdata([(50, 255), (90, 0)])
    elif kind == "palette":
        im, options = Image.new("P", (2, 1)), {"transparency": 1}
        im.putpalette([50, 50, 50, 0, 0, 255] + [0] * 762)
        im.putdata([0, 1])
    else:
        im, options = Image.new("RGB", (2, 1)), {"transparency": (0, 0, 255)}
        im.putdata([(50, 50, 50), (0, 0, 255)])
    rgb, alpha = load_rgba(saved(im, tmp_path / f"{kind}.png", **options))
    assert pixels(rgb) == [(50, 50, 50), (255, 255, 255)]
    assert [px[0] for px in pixels(alpha)] == [255, 0]


def test_opaque_images_have_no_alpha(tmp_path):
    assert load_rgba(saved(pattern(4, 3), tmp_path / "rgb.png"))[1] is None
    opaque = pattern(4, 3).convert("RGBA")  # an alpha channel, all 255
    assert load_rgba(saved(opaque, tmp_path / "rgba.png"))[1] is None


def test_a_content_gives_colour_and_alpha_tensors_of_the_same_size(tmp_path):
    path = saved(rgba_pattern(60, 40), tmp_path / "t.png")
    d = read_content(Source("t.png", path), Inputs(size=0))
    assert d.rgb.shape == (1, 3, 40, 60) and d.alpha.shape == (1, 1, 40, 60)
    assert d.size == d.original == (60, 40) and d.scaled is None
    assert d.alpha[0, 0, 0, 0] == 0 and d.alpha[0, 0, 0, -1] == 1
    small = read_content(Source("t.png", path.read_bytes()), Inputs(size=20))
    assert small.rgb.shape == (1, 3, 20, 30) and small.alpha.shape == (1, 1, 20, 30)
    assert small.original == (60, 40) and small.scaled is None
    capped = read_content(Source("t.png", path), Inputs(size=0), Limits(max_side=30))
    assert capped.size == (30, 20) and capped.alpha.shape[-2:] == (20, 30)
    assert capped.scaled == "60x40->30x20"
    opaque = saved(pattern(16, 16), tmp_path / "o.jpg")
    assert read_content(Source("o.jpg", opaque), Inputs(size=0)).alpha is None


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_alpha_round_trips_through_png_and_webp(tmp_path, suffix):
    source = rgba_pattern(48, 32)
    d = read_content(Source("in.png", saved(source, tmp_path / "in.png")), Inputs(size=0))
    save(to_pil(d.rgb, d.alpha), tmp_path / f"out{suffix}")
    out = Image.open(tmp_path / f"out{suffix}")
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(source.getchannel("A")))


def test_to_pil_resizes_the_alpha_to_the_colour(tmp_path):
    alpha = torch.zeros(1, 1, 10, 20)
    alpha[..., 10:] = 1.0  # right half opaque
    for a in (alpha, alpha[0, 0], to_pil(alpha.expand(1, 3, 10, 20)).convert("L")):
        out = to_pil(torch.rand(1, 3, 30, 60), a)
        assert out.mode == "RGBA" and out.size == (60, 30)
        assert out.getpixel((5, 15))[3] == 0 and out.getpixel((55, 15))[3] == 255
    assert to_pil(torch.rand(3, 4, 4)).mode == "RGB"


def test_jpeg_output_drops_alpha_on_white_with_a_warning(tmp_path):
    im = to_pil(torch.zeros(1, 3, 4, 4), torch.tensor([[0.0, 1.0]]).expand(4, 2))
    with pytest.warns(AlphaDropped, match="transparen"):
        save(im, tmp_path / "out.jpg")
    out = Image.open(tmp_path / "out.jpg")
    assert out.mode == "RGB" and out.getpixel((0, 0))[0] > 240 and out.getpixel((3, 0))[0] < 15


def test_an_opaque_alpha_is_dropped_from_jpeg_without_a_warning(tmp_path, recwarn):
    save(to_pil(torch.rand(1, 3, 4, 4), torch.ones(1, 1, 4, 4)), tmp_path / "out.jpg")
    assert not [w for w in recwarn if issubclass(w.category, AlphaDropped)]
