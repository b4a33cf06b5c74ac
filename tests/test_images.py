"""Images in and out: every mode becomes 8-bit RGB, every bad input an ImageError naming the file;
tensors, reading and saving (sizes are in test_sizes.py, transparency in test_alpha.py)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from core_helpers import pattern, pixels, saved
from PIL import Image

from styler import images
from styler.images import (
    ImageError,
    ImageTooLarge,
    format_for,
    load,
    read,
    save,
    to_pil,
    to_tensor,
)


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w×h RGB pixels, followed by a few bytes of garbage, no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"not zlib data")
        + chunk(b"IEND", b"")
    )
    return path


# --- every mode becomes RGB -------------------------------------------------------------------


def test_rgba_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (3, 1))
    im.putdata([(0, 0, 0, 0), (200, 10, 20, 255), (0, 0, 0, 128)])  # transparent, opaque, half
    out = load(saved(im, tmp_path / "a.png"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (200, 10, 20)
    assert all(abs(v - 127) <= 1 for v in out.getpixel((2, 0)))


def test_palette_image_with_transparency_becomes_rgb(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putdata([0, 1])
    plain = load(saved(im, tmp_path / "p.png"))
    assert plain.mode == "RGB" and pixels(plain) == [(255, 0, 0), (0, 0, 255)]
    transparent = load(saved(im, tmp_path / "pt.png", transparency=1))
    assert pixels(transparent) == [(255, 0, 0), (255, 255, 255)]


def test_grayscale_and_grayscale_alpha_become_rgb(tmp_path):
    gray = load(saved(Image.new("L", (2, 2), 77), tmp_path / "l.png"))
    assert gray.mode == "RGB" and gray.getpixel((1, 1)) == (77, 77, 77)
    la = Image.new("LA", (2, 1))
    la.putdata([(50, 255), (0, 0)])
    out = load(saved(la, tmp_path / "la.png"))
    assert out.mode == "RGB" and pixels(out) == [(50, 50, 50), (255, 255, 255)]


def test_cmyk_becomes_rgb(tmp_path):
    im = Image.new("CMYK", (2, 1))
    im.putdata([(0, 0, 0, 0), (0, 255, 255, 0)])  # white, red
    out = load(saved(im, tmp_path / "c.tif"))
    assert out.mode == "RGB" and pixels(out) == [(255, 255, 255), (255, 0, 0)]


def test_16_bit_grayscale_is_scaled_to_8_bit(tmp_path):
    a = np.array([[0, 257 * 100, 65535, 30000]], dtype=np.uint16)
    path = saved(Image.fromarray(a), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    out = load(path)
    assert out.mode == "RGB"
    assert [px[0] for px in pixels(out)] == [0, 100, 255, round(30000 / 65535 * 255)]


def test_dark_16_bit_image_stays_dark(tmp_path):
    a = np.full((4, 4), 200, dtype=np.uint16)  # 200 / 65535: almost black
    out = load(saved(Image.fromarray(a), tmp_path / "dark16.png"))
    assert out.getpixel((0, 0)) == (1, 1, 1)


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((24, 40, 3), np.uint8)  # 40 wide, 24 high: left half red, right half blue
    a[:, :20, 0] = 255
    a[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    out = load(saved(Image.fromarray(a), tmp_path / "rotated.jpg", exif=exif, quality=95))
    assert out.size == (24, 40)
    top, bottom = out.getpixel((12, 5)), out.getpixel((12, 34))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_load_accepts_bytes_and_returns_a_fully_decoded_rgb_image(tmp_path):
    path = saved(pattern(20, 12), tmp_path / "x.png")
    from_path, from_bytes = load(path), load(path.read_bytes())
    assert from_path.mode == "RGB" and from_path.size == (20, 12)
    assert np.array_equal(np.asarray(from_path), np.asarray(from_bytes))
    assert np.array_equal(np.asarray(from_path), np.asarray(pattern(20, 12)))


# --- bad inputs -------------------------------------------------------------------------------


def _truncated_jpeg(path: Path) -> Path:
    full = path.with_name("full.jpg")
    pattern(160, 120).save(full, quality=95)
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return path


BAD_INPUTS = {  # case: (make the file from a path, what the message must say besides the name)
    "missing": (lambda p: p, "no such file"),
    "directory": (lambda p: (p.mkdir(), p)[1], "directory"),
    "text": (lambda p: (p.write_text("this is not an image\n"), p)[1], "not an image"),
    "truncated": (_truncated_jpeg, "truncated"),
    # Headers only: over styler's 40 Mpx limit, over Pillow's bomb warning (89 Mpx), over its
    # error (179 Mpx).
    "huge-64mpx": (lambda p: png_header_only(p.with_suffix(".png"), 8000, 8000), "over the limit"),
    "huge-100mpx": (
        lambda p: png_header_only(p.with_suffix(".png"), 10000, 10000),
        "over the limit",
    ),
    "huge-400mpx": (
        lambda p: png_header_only(p.with_suffix(".png"), 20000, 20000),
        "over the limit",
    ),
}


def problem(err: pytest.ExceptionInfo, path: Path) -> str:
    """The error message without the file's path (which contains the test's name)."""
    message = str(err.value)
    assert str(path) in message
    return message.replace(str(path), "<file>")


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_raise_image_error_naming_the_file(tmp_path, case):
    make, says = BAD_INPUTS[case]
    path = make(tmp_path / f"bad-{case}.jpg")
    with pytest.raises(ImageError) as err:
        load(path)
    assert says in problem(err, path)
    assert isinstance(err.value, ImageTooLarge) == case.startswith(
        "huge"
    )  # the API answers 413 for these


def test_bad_bytes_are_reported_under_the_given_name():
    with pytest.raises(ImageError, match="upload.png"):
        load(b"definitely not an image", name="upload.png")


def test_pixel_count_is_checked_from_the_header_before_decoding(tmp_path):
    ok = saved(pattern(100, 80), tmp_path / "ok.png")
    with pytest.raises(ImageTooLarge) as err:
        load(ok, max_pixels=5000)
    assert "over the limit" in problem(err, ok)
    assert load(ok, max_pixels=8000).size == (100, 80)
    # The pixel data of this one is garbage: decoding it fails with a different message.
    fake = png_header_only(tmp_path / "fake.png", 3000, 3000)
    with pytest.raises(ImageTooLarge) as err:
        load(fake, max_pixels=1_000_000)
    assert "over the limit" in problem(err, fake)
    with pytest.raises(ImageError) as err:
        load(fake, max_pixels=10_000_000)
    assert "truncated" in problem(err, fake)


def test_a_max_pixels_above_pillows_own_threshold_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setattr(
        Image, "MAX_IMAGE_PIXELS", 10_000
    )  # stands in for Pillow's 89 Mpx, on a small image
    path = saved(
        pattern(150, 100), tmp_path / "big.png"
    )  # 15 000 px: over Pillow's warning, under its error
    assert load(path, max_pixels=1_000_000).size == (150, 100)


# --- tensors, reading, saving ---------------------------------------------------------------------


def test_tensor_round_trip_is_exact_for_uint8():
    a = np.random.default_rng(0).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    x = to_tensor(Image.fromarray(a, "RGB"))
    assert x.shape == (1, 3, 23, 37) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert np.array_equal(np.asarray(to_pil(x)), a)
    assert np.array_equal(np.asarray(to_pil(x[0])), a)


def test_to_pil_clamps_out_of_range_values():
    x = torch.tensor([-0.5, 0.5, 1.5]).view(1, 3, 1, 1)
    assert to_pil(x).getpixel((0, 0)) == (0, 128, 255)


def test_read_loads_and_resizes_to_a_tensor(tmp_path):
    x = read(saved(pattern(60, 40), tmp_path / "r.png"), 20)
    assert x.shape == (1, 3, 20, 30)


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("a.png", "PNG"),
        ("a.PNG", "PNG"),
        ("a.jpg", "JPEG"),
        ("b.JPEG", "JPEG"),
        ("c.webp", "WEBP"),
        ("noext", "PNG"),
    ],
)
def test_format_for_maps_suffixes(path, fmt):
    assert format_for(path) == fmt


def test_format_for_uses_the_default_and_rejects_unknown_suffixes():
    assert format_for("noext", default="jpg") == "JPEG"
    with pytest.raises(ImageError, match=r"out\.gif"):
        format_for("out.gif")


def test_save_writes_the_image_and_leaves_no_temporary_file(tmp_path):
    im = pattern(20, 10)
    save(im, tmp_path / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(im))
    save(im, tmp_path / "out.jpg")
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"


def test_save_rejects_an_unsupported_suffix_and_writes_nothing(tmp_path):
    with pytest.raises(ImageError, match=r"out\.bmp"):
        save(pattern(8, 8), tmp_path / "out.bmp")
    assert list(tmp_path.iterdir()) == []


def test_failed_encoding_leaves_an_existing_file_untouched(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def broken_encode(im, fmt):
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(images, "encode", broken_encode)
    with pytest.raises(RuntimeError):
        save(pattern(8, 8), target)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_a_write_failing_halfway_leaves_an_existing_file_untouched(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def disk_full(self: Path, data: bytes) -> int:
        with self.open("wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError):
        save(pattern(8, 8), target)
    assert target.read_bytes() == b"previous result"


def test_png_output_is_lossless_for_a_noisy_picture():
    """The fast zlib level trades size, never pixels (a stylized picture is noise to zlib)."""
    pixels = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = Image.open(io.BytesIO(images.encode(Image.fromarray(pixels), "PNG")))
    assert np.array_equal(np.asarray(out), pixels)
