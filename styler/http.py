"""HTTP plumbing of the server: the error shape, the body-size limit and the fast path's admission.

Every error is JSON ``{"error": {"code": ..., "message": ...}}``:

    400 bad_image (not an image, truncated, too small) · bad_parameter (a value out of range)
    404 not_found (unknown job, style or path) · 405 method_not_allowed
    409 not_done (the result of a job that is not done) · read_only (deleting a preset)
    413 too_large (a body over STYLER_MAX_UPLOAD_BYTES, or an image with more than
        STYLER_MAX_PIXELS, read from its header before decoding)
    415 unsupported_media_type (a body that is not multipart/form-data; an output format not in
        config.FORMATS)
    422 missing_field
    503 busy (the waiting line or the job queue is full) · timeout · not_ready (no model yet);
        with Retry-After where trying again later can help
    500 internal (details only in the server log)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from .gallery import PresetReadOnly, StyleNotFound
from .images import ImageError, ImageTooLarge

RETRY_AFTER_S = 5


class ApiError(HTTPException):
    """An error answered in the common shape (an HTTPException, so FastAPI passes it through even
    when it is raised while the request body is being read)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        super().__init__(status, message, headers=headers)
        self.code = code


def bad_parameter(message: str) -> ApiError:
    return ApiError(400, "bad_parameter", message)


def busy(message: str) -> ApiError:
    return ApiError(503, "busy", message, RETRY_AFTER_S)


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or HTTPStatus(exc.status_code).phrase.lower().replace(
        " ", "_"
    )
    return _error(exc.status_code, code, str(exc.detail), exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 when a field is missing, 400 when one has a bad value."""

    def where(e: Mapping[str, Any]) -> str:
        return ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")) or "body"

    missing = [where(e) for e in exc.errors() if e["type"] == "missing"]
    if missing:
        plural = "s" * (len(missing) > 1)
        return _error(422, "missing_field", f"missing field{plural}: {', '.join(missing)}")
    return _error(400, "bad_parameter", "; ".join(f"{where(e)}: {e['msg']}" for e in exc.errors()))


async def _image_error(request: Request, exc: ImageError) -> JSONResponse:
    if isinstance(exc, ImageTooLarge):
        return _error(413, "too_large", str(exc))
    if isinstance(exc, StyleNotFound):
        return _error(404, "not_found", str(exc))
    if isinstance(exc, PresetReadOnly):
        return _error(409, "read_only", str(exc))
    return _error(400, "bad_image", str(exc))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this answer, so the server logs the traceback.
    return _error(500, "internal", "internal server error")


def install(app: FastAPI, max_upload_bytes: int) -> None:
    """The error handlers and the body limit."""
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ImageError, _image_error)
    app.add_exception_handler(Exception, _internal_error)


class BodyLimit:
    """Refuse bodies over ``limit`` bytes: from Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request is over the upload limit of {self.limit / 2**20:.1f} MB"
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return await _error(413, "too_large", message)(scope, receive, send)
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, "too_large", message)
            return msg

        await self.app(scope, limited, send)


T = TypeVar("T")


class Limiter:
    """Run blocking calls in threads, ``running`` at a time with up to ``waiting`` more in line.

    Beyond that a call is refused at once (503 busy). A call that times out stops waiting, but a
    computation already started keeps its slot until it ends, so the limit holds for real CPU use.
    """

    def __init__(self, running: int, waiting: int) -> None:
        self._slots = asyncio.Semaphore(running)
        self._capacity = running + waiting
        self._admitted = 0

    @property
    def pending(self) -> int:
        """Calls admitted and not yet finished: running, waiting, or abandoned but computing."""
        return self._admitted

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        if self._admitted >= self._capacity:
            raise busy("the server is busy; please try again in a few seconds")
        self._admitted += 1
        abandoned = False

        async def guarded() -> T | None:
            try:
                async with self._slots:
                    return None if abandoned else await asyncio.to_thread(fn)
            finally:
                self._admitted -= 1

        task = asyncio.create_task(guarded())
        try:
            done = await asyncio.wait_for(asyncio.shield(task), timeout)
            return done  # type: ignore[return-value]
        except TimeoutError:
            message = f"the request took longer than {timeout:g} s"
            raise ApiError(503, "timeout", message, RETRY_AFTER_S) from None
        finally:
            if not task.done():  # timed out, or the client went away: let it end on its own
                abandoned = True
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
