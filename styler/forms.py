"""The multipart forms of the API, read into what the typed requests need: named image bytes and
the input options shared by both paths (defaults from :mod:`styler.params`)."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any

from fastapi import Depends, File, Form, Request, UploadFile

from .http import ApiError, bad_parameter
from .model import normalize_weights
from .params import FastRequest
from .service import Service

MAX_STYLES = 4
OUTPUT_FORMATS = ("png", "jpeg", "webp")
_FAST = FastRequest()


def about(cls: type, name: str) -> str:
    """The help of a request's field, for the API docs."""
    return next(f for f in fields(cls) if f.name == name).metadata["help"]


def typed(cls: type, **values: Any) -> Any:
    """A typed request from form values; a bad value is a 400."""
    try:
        return cls(**values)
    except ValueError as e:
        raise bad_parameter(str(e)) from None


def _service(request: Request) -> Service:
    return request.app.state.service


Svc = Annotated[Service, Depends(_service)]


def multipart(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the images as multipart/form-data")


def _weights(text: str | None, n: int) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise bad_parameter(
            f"style_weights must be comma-separated numbers, not {text!r}"
        ) from None
    try:
        normalize_weights(weights, n)
    except ValueError as e:
        raise bad_parameter(f"style_weights: {e}") from None
    return tuple(weights)


class Uploads:
    """A request's images (encoded, named for error messages) and how to read and write them."""

    def __init__(self, inputs: list[tuple[str, bytes]], common: dict[str, Any], fmt: str) -> None:
        self.inputs, self.common, self.format = inputs, common, fmt


async def _uploads(
    svc: Svc,
    content: Annotated[UploadFile, File(description="the photo to stylize")],
    style: Annotated[list[UploadFile], File(description=f"one to {MAX_STYLES} style images")],
    style_weights: Annotated[
        str | None, Form(description=about(FastRequest, "style_weights"))
    ] = None,
    size: Annotated[
        int | None,
        Form(
            description=about(FastRequest, "size") + " (default "
            f"{_FAST.size}, capped by the server)"
        ),
    ] = None,
    style_scale: Annotated[
        float, Form(description=about(FastRequest, "style_scale"))
    ] = _FAST.style_scale,
    format: Annotated[
        str,
        Form(
            description="output format: png, jpeg or webp (PNG and WebP "
            "keep the content's transparency)"
        ),
    ] = "png",
) -> Uploads:
    if format.lower() not in OUTPUT_FORMATS:
        message = f"output format {format!r} is not supported (use png, jpeg or webp)"
        raise ApiError(415, "unsupported_media_type", message)
    size = min(_FAST.size, svc.settings.max_size) if size is None else size
    if size > svc.settings.max_size:
        raise bad_parameter(f"size {size} is over this server's limit of {svc.settings.max_size}")
    if len(style) > MAX_STYLES:
        raise bad_parameter(f"{len(style)} style images; at most {MAX_STYLES}")
    inputs = [(f"content '{content.filename}'", await content.read())]
    inputs += [(f"style '{f.filename}'", await f.read()) for f in style]
    precision = svc.engine.precision if svc.engine else _FAST.precision
    weights = _weights(style_weights, len(style))
    common = {"size": size, "style_weights": weights, "style_scale": style_scale,
              "precision": precision}  # fmt: skip
    return Uploads(inputs, common, format.lower())


Images = Annotated[Uploads, Depends(_uploads)]
