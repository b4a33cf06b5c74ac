"""Reading, checking, resizing and writing images: the only place pixels enter or leave styler.

Every failure is an :class:`ImageError` whose message names the file and the problem, so the CLI
and the API can report it in one line. Colour and transparency travel separately: the networks see
RGB only, and :func:`load_rgba` / :func:`to_pil` carry an alpha channel around them.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import DEFAULT_FORMAT, FORMATS, FORMATS_TEXT
from .files import atomic_write

# The one pixel cap of styler (CLI, API, training data, style gallery): an image with more pixels
# than this is refused from its header, before its pixels are decoded (a 40 Mpx RGBA image takes
# 160 MB decoded). The API may lower it (STYLER_MAX_PIXELS) but defaults to this value.
MAX_PIXELS = 40_000_000
# Longest side of an image styler works on and writes by default (the CLI's cap): larger inputs are
# scaled down to it, and the caller says so. 4096² is 16.8 Mpx (the tiled path's target).
MAX_SIDE = 4096
MIN_STYLE_SIDE = 64  # the style's shorter side stays above this (unless MAX_SIDE caps a long one)
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
ALPHA_FORMATS = {"PNG", "WEBP"}  # output formats that keep transparency
# zlib level 1: a 767×512 result is written in 35 ms instead of 177 (level 6), 14 % larger
SAVE_OPTIONS = {"PNG": {"compress_level": 1}, "JPEG": {"quality": 92}, "WEBP": {"quality": 92}}
_ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA")

Size = tuple[int, int]  # (width, height), as PIL
Pixels = TypeVar("Pixels", Image.Image, torch.Tensor)


class ImageError(ValueError):
    """An input that is not a usable image (missing, unreadable, truncated, too large…)."""


class ImageTooLarge(ImageError):
    """An image with more pixels than allowed, refused from its header before decoding."""


class AlphaDropped(UserWarning):
    """Warned by :func:`encode` when a transparent image is written to a format without alpha."""


def load(
    src: str | Path | bytes | BinaryIO, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Open, fully decode and normalise an image to 8-bit RGB, honouring EXIF rotation.

    Alpha is composited on white; palette, grayscale, CMYK and 16-bit images are converted.
    The pixel count is checked from the header, before the pixels are decoded.
    """
    rgb, alpha = load_rgba(src, name, max_pixels)
    if alpha is None:
        return rgb
    white = Image.new("RGBA", rgb.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, Image.merge("RGBA", (*rgb.split(), alpha))).convert("RGB")


def load_rgba(
    src: str | Path | bytes | BinaryIO, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> tuple[Image.Image, Image.Image | None]:
    """As :func:`load`, but the colour (RGB, white where fully transparent) and the alpha channel
    (mode L, None when the image is opaque) come apart instead of being composited."""
    name = name or (str(src) if isinstance(src, (str, Path)) else "image")
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a directory, not an image")
    elif isinstance(src, bytes):
        src = io.BytesIO(src)
    try:
        with warnings.catch_warnings():  # max_pixels is checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src)
        w, h = im.size
        if w * h > max_pixels:
            raise ImageTooLarge(
                f"{name}: {w}×{h} is {w * h / 1e6:.1f} megapixels, "
                f"over the limit of {max_pixels / 1e6:.1f}"
            )
        im.load()
        return _split(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise ImageTooLarge(
            f"{name}: too many pixels, over the limit of {limit / 1e6:.1f} megapixels"
        ) from None
    except OSError as e:
        raise ImageError(f"{name}: unreadable or truncated image ({e})") from None
    except (ValueError, SyntaxError, TypeError) as e:
        raise ImageError(f"{name}: unsupported or corrupt image ({e})") from None


def _split(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Any decoded image → (8-bit RGB, alpha or None)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        a = a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" or (im.mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode not in _ALPHA_MODES:
        return im.convert("RGB"), None
    rgba = im.convert("RGBA")
    alpha = rgba.getchannel("A")
    rgb = rgba.convert("RGB")
    if alpha.getextrema()[0] == 255:
        return rgb, None
    rgb.paste((255, 255, 255), mask=alpha.point(lambda v: 255 if v == 0 else 0))
    return rgb, alpha


def output_size(
    wh: Size, size: int | None = None, max_side: int | None = None
) -> tuple[Size, bool]:
    """The size to work at: shorter side ``size`` (None or 0: the image's own size), then the
    longer side capped at ``max_side``. Second value: True when the cap made it smaller than
    asked (the caller should say so)."""
    w, h = wh
    scale = size / min(w, h) if size else 1.0
    capped = bool(max_side) and max(w, h) * scale > max_side
    if capped:
        scale = max_side / max(w, h)
    return (max(1, round(w * scale)), max(1, round(h * scale))), capped


def style_size(
    style_wh: Size,
    content_wh: Size,
    style_scale: float = 1.0,
    min_side: int = MIN_STYLE_SIDE,
    max_side: int = MAX_SIDE,
) -> Size:
    """The style's working size, which sets the size of strokes and texture: its shorter side is
    ``style_scale`` × the content's shorter side, within ``min_side``…``max_side``, and its
    longer side at most ``max_side`` (that cap wins for very elongated styles)."""
    if not (math.isfinite(style_scale) and style_scale > 0):
        raise ValueError(f"style_scale must be a positive number, not {style_scale}")
    short = min(max(style_scale * min(content_wh), min_side), max_side)
    scale = min(short / min(style_wh), max_side / max(style_wh))
    return max(1, round(style_wh[0] * scale)), max(1, round(style_wh[1] * scale))


def size_of(x: Image.Image | torch.Tensor) -> Size:
    """(width, height) of a PIL image or an image tensor (…, H, W)."""
    return x.size if isinstance(x, Image.Image) else (x.shape[-1], x.shape[-2])


def resize_to(x: Pixels, wh: Size) -> Pixels:
    """Resize a PIL image (Lanczos) or a (N, C, H, W) tensor in [0, 1] (antialiased bicubic)."""
    if size_of(x) == tuple(wh):
        return x
    if isinstance(x, Image.Image):
        return x.resize(tuple(wh), Image.Resampling.LANCZOS)
    y = F.interpolate(x, size=(wh[1], wh[0]), mode="bicubic", align_corners=False, antialias=True)
    return y.clamp_(0, 1)


def resize(im: Image.Image, size: int | None, max_side: int | None = None) -> Image.Image:
    """Resize so the shorter side is ``size`` (None: keep), then cap the longer side."""
    return resize_to(im, output_size(im.size, size, max_side)[0])


def fit_content(
    x: Pixels, size: int | None = None, max_side: int = MAX_SIDE
) -> tuple[Pixels, bool]:
    """The content at its output size (see :func:`output_size`), and whether the cap shrank it."""
    wh, capped = output_size(size_of(x), size, max_side)
    return resize_to(x, wh), capped


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB (or L, e.g. an alpha channel) → float tensor (1, C, H, W) in [0, 1]."""
    a = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
    a = a.unsqueeze(-1) if a.dim() == 2 else a
    return a.permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous()


def to_pil(x: torch.Tensor, alpha: torch.Tensor | Image.Image | None = None) -> Image.Image:
    """Tensor (1, 3, H, W) or (3, H, W) in [0, 1] → PIL RGB (clamped); RGBA when ``alpha``
    (a tensor (…, h, w) in [0, 1] or a PIL L image) is given, resized to the colour's size."""
    x = x.detach().float().cpu()
    if x.dim() == 4:
        x = x[0]
    a = (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    im = Image.fromarray(a, "RGB")
    if alpha is None:
        return im
    if isinstance(alpha, torch.Tensor):
        t = alpha.detach().float().cpu().reshape(1, 1, *alpha.shape[-2:])
        t = (resize_to(t, im.size)[0, 0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
        alpha = Image.fromarray(t.numpy(), "L")
    im.putalpha(resize_to(alpha.convert("L"), im.size))
    return im


def read(
    src: str | Path, size: int | None, max_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> torch.Tensor:
    """Load + resize + to tensor (alpha on white): a file as the network sees it."""
    return to_tensor(resize(load(src, max_pixels=max_pixels), size, max_side))


def format_for(path: str | Path, default: str = DEFAULT_FORMAT) -> str:
    """The Pillow format for an output path's suffix, or an :class:`ImageError` naming it."""
    suffix = Path(path).suffix.lower().lstrip(".") or default
    if suffix not in FORMATS:
        raise ImageError(f"{path}: unsupported output type .{suffix} (use {FORMATS_TEXT})")
    return FORMATS[suffix]


def check_output(path: str | Path, inputs: Iterable[str | Path]) -> str:
    """The output's Pillow format, once it is known not to overwrite one of ``inputs``."""
    fmt = format_for(path)
    if Path(path).resolve() in {Path(p).resolve() for p in inputs}:
        raise ImageError(f"{path}: is an input image; choose another output name")
    return fmt


def encode(im: Image.Image, fmt: str) -> bytes:
    """Encode as ``fmt`` (a value of FORMATS). A transparent image written as JPEG is composited
    on white, with an :class:`AlphaDropped` warning."""
    if im.mode == "RGBA" and fmt not in ALPHA_FORMATS:
        if im.getchannel("A").getextrema()[0] < 255:
            warnings.warn(
                AlphaDropped(
                    f"{fmt} has no transparency: transparent areas are white "
                    "(write .png or .webp to keep them)"
                ),
                stacklevel=2,
            )
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format=fmt, **SAVE_OPTIONS[fmt])
    return buf.getvalue()


def save(im: Image.Image, path: str | Path) -> None:
    """Write atomically (temp file + rename), so a failure never leaves half a file behind."""
    path = Path(path)
    atomic_write(path, encode(im, format_for(path)))
