"""Reading, checking, resizing and writing images: the only place pixels enter or leave styler.

Every failure is an :class:`ImageError` whose message names the file and the problem, so the CLI
and the API can report it in one line.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # default decoding limit, checked from the header before decoding
FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class ImageError(ValueError):
    """An input that is not a usable image (missing, unreadable, truncated, too large…)."""


class ImageTooLarge(ImageError):
    """An image with more pixels than allowed, refused from its header before decoding."""


def load(src: str | Path | bytes | BinaryIO, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, fully decode and normalise an image to 8-bit RGB, honouring EXIF rotation.

    Alpha is composited on white; palette, grayscale, CMYK and 16-bit images are converted.
    The pixel count is checked from the header, before the pixels are decoded.
    """
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels is checked below
            im = Image.open(src)
        w, h = im.size
        if w * h > max_pixels:
            raise ImageTooLarge(f"{name}: {w}×{h} is {w * h / 1e6:.1f} megapixels, over the limit of {max_pixels / 1e6:.1f}")
        im.load()
        im = ImageOps.exif_transpose(im)
        return _to_rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise ImageTooLarge(f"{name}: too many pixels, over the limit of {limit / 1e6:.1f} megapixels") from None
    except OSError as e:
        raise ImageError(f"{name}: unreadable or truncated image ({e})") from None
    except (ValueError, SyntaxError, TypeError) as e:
        raise ImageError(f"{name}: unsupported or corrupt image ({e})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def resize(im: Image.Image, size: int | None, max_side: int | None = None) -> Image.Image:
    """Resize so the shorter side is ``size`` (None: keep), then cap the longer side at ``max_side``."""
    w, h = im.size
    scale = size / min(w, h) if size else 1.0
    if max_side and max(w, h) * scale > max_side:
        scale = max_side / max(w, h)
    if scale == 1.0:
        return im
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB → float tensor (1, 3, H, W) in [0, 1]."""
    a = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())
    return a.permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous()


def to_pil(x: torch.Tensor) -> Image.Image:
    """Tensor (1, 3, H, W) or (3, H, W) in [0, 1] → PIL RGB (clamped)."""
    x = x.detach().float().cpu()
    if x.dim() == 4:
        x = x[0]
    a = (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(a, "RGB")


def read(src: str | Path, size: int | None, max_side: int | None = None, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Load + resize + to tensor, the common path of CLI, API and evaluation."""
    return to_tensor(resize(load(src, max_pixels=max_pixels), size, max_side))


def format_for(path: str | Path, default: str = "png") -> str:
    """The Pillow format for an output path's suffix, or an :class:`ImageError` naming it."""
    suffix = Path(path).suffix.lower().lstrip(".") or default
    if suffix not in FORMATS:
        raise ImageError(f"{path}: unsupported output type .{suffix} (use .png, .jpg or .webp)")
    return FORMATS[suffix]


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 92} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def save(im: Image.Image, path: str | Path) -> None:
    """Write atomically (temp file + rename), so a failure never leaves half a file behind."""
    path = Path(path)
    data = encode(im, format_for(path))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def sheet(rows: list[list[Image.Image]], labels: list[str] | None = None, height: int = 256) -> Image.Image:
    """A contact sheet: each row of images scaled to ``height``, with optional column labels on top."""
    from PIL import ImageDraw

    scaled = [[im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS) for im in row] for row in rows]
    pad, label_h = 4, 18 if labels else 0
    width = max(sum(im.width + pad for im in row) + pad for row in scaled)
    out = Image.new("RGB", (width, len(scaled) * (height + pad) + pad + label_h), "white")
    draw = ImageDraw.Draw(out)
    for r, row in enumerate(scaled):
        x, y = pad, label_h + pad + r * (height + pad)
        for c, im in enumerate(row):
            out.paste(im, (x, y))
            if labels and r == 0 and c < len(labels):
                draw.text((x, 3), labels[c], fill="black")
            x += im.width + pad
    return out
