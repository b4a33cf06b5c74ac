"""The multipart forms of the API, read into what the typed requests need: named image bytes
(uploads, or named styles of the gallery by ``style_id``) and the input options shared by both
paths (defaults from :mod:`styler.params`)."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any

from fastapi import Depends, File, Form, Request, UploadFile

from .config import DEFAULT_FORMAT, FORMATS, FORMATS_TEXT
from .function import normalize_weights
from .http import ApiError, bad_parameter
from .params import SIZE, FastRequest, Source
from .service import Service

MAX_STYLES = 4
_FAST = FastRequest()


def about(cls: type, name: str, key: str = "help") -> Any:
    """A request field's help (for the API docs) or another of its metadata, e.g. ``choices``."""
    return next(f for f in fields(cls) if f.name == name).metadata[key]


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
    """A request's content and styles (encoded, named for error messages), the shared options
    and the output format."""

    def __init__(
        self,
        content: Source,
        styles: list[Source],
        common: dict[str, Any],
        size: int | None,
        fmt: str,
        max_size: int,
    ) -> None:
        self.content, self.styles, self.format = content, styles, fmt
        self._common, self._size, self._max_size = common, size, max_size

    @property
    def inputs(self) -> list[Source]:
        """Content, then styles: what a job stores."""
        return [self.content, *self.styles]

    def common(self, cls: type) -> dict[str, Any]:
        """The shared options for request ``cls``; no size given: its default (capped)."""
        size = self._size
        if size is None:
            size = min(cls().size, self._max_size) if cls().size else 0
        return {**self._common, "size": size}


async def _uploads(
    svc: Svc,
    content: Annotated[UploadFile, File(description="the photo to stylize")],
    style: Annotated[
        list[UploadFile] | None, File(description=f"one to {MAX_STYLES} style images")
    ] = None,
    style_id: Annotated[
        list[str] | None,
        Form(description="a style of the gallery (GET /v1/styles), instead of or after uploads"),
    ] = None,
    style_weights: Annotated[
        str | None, Form(description=about(FastRequest, "style_weights"))
    ] = None,
    size: Annotated[
        int | None,
        Form(
            description=about(FastRequest, "size") + " (stylize: the content's own, jobs: "
            f"{SIZE}, or the server's limit if lower; more than the limit is refused)"
        ),
    ] = None,
    style_scale: Annotated[
        float, Form(description=about(FastRequest, "style_scale"))
    ] = _FAST.style_scale,
    format: Annotated[
        str,
        Form(
            description=f"output format: {FORMATS_TEXT} (PNG and WebP keep the content's "
            "transparency)"
        ),
    ] = DEFAULT_FORMAT,
) -> Uploads:
    if format.lower() not in FORMATS:
        message = f"output format {format!r} is not supported (use {FORMATS_TEXT})"
        raise ApiError(415, "unsupported_media_type", message)
    if size is not None and size > svc.settings.max_size:
        raise bad_parameter(f"size {size} is over this server's limit of {svc.settings.max_size}")
    uploads, ids = style or [], style_id or []
    if not uploads and not ids:
        raise ApiError(422, "missing_field", "missing field: style (or style_id)")
    if len(uploads) + len(ids) > MAX_STYLES:
        raise bad_parameter(f"{len(uploads) + len(ids)} style images; at most {MAX_STYLES}")
    styles = [Source(f"style '{f.filename}'", await f.read()) for f in uploads]
    styles += [svc.style_source(sid) for sid in ids]
    precision = svc.engine.setting if svc.engine else _FAST.precision
    weights = _weights(style_weights, len(styles))
    common = {"style_weights": weights, "style_scale": style_scale, "precision": precision}
    content_in = Source(f"content '{content.filename}'", await content.read())
    return Uploads(content_in, styles, common, size, format.lower(), svc.settings.max_size)


Images = Annotated[Uploads, Depends(_uploads)]
