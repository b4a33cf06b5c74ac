"""The web service: a REST API (FastAPI) and the web page, over f_θ (fast path) and the solver (jobs).

Endpoints (OpenAPI docs at /docs)::

    GET    /                      the web page (web/)
    POST   /v1/stylize            f_θ(content, styles) → the image; X-Elapsed-Ms, X-Image-Size headers
    POST   /v1/jobs               the solver as a background job → 202 {"id": ..., "status": "queued", ...}
    GET    /v1/jobs/{id}          status (queued, running, done, failed, cancelled), step/total, loss terms, timing
    GET    /v1/jobs/{id}/events   Server-Sent Events: "progress" (with a ≤ 256 px JPEG preview when there is a
                                  new one) while it runs, then one "end" with the final status
    GET    /v1/jobs/{id}/result   the image of a finished job
    DELETE /v1/jobs/{id}          cancel (a queued job at once, a running one at its next step)
    GET    /healthz               the process is up
    GET    /readyz                the model is loaded (503 until then)
    GET    /v1/info               model card summary, device, limits

Limits and paths come from :class:`Settings` (environment variables ``STYLER_*``). Uploads are judged by
decoding them, never by their file name or declared type. Every error is JSON
``{"error": {"code": ..., "message": ...}}``:

    400 bad_image (not an image, truncated, too small) · bad_parameter (a value out of range, malformed)
    404 not_found (unknown job or path) · 405 method_not_allowed
    409 not_done (the result of a job that is not done)
    413 too_large (the request body is over STYLER_MAX_UPLOAD_BYTES, or an image has more than STYLER_MAX_PIXELS,
        which is read from its header, before decoding)
    415 unsupported_media_type (a body that is not multipart/form-data; an output format other than png, jpeg, webp)
    422 missing_field
    503 busy (the fast path's waiting line or the job queue is full) · timeout · not_ready (model not loaded);
        with Retry-After where trying again later can help
    500 internal (details only in the server log)
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import torch
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from . import images
from .images import ImageError, ImageTooLarge
from .jobs import FINISHED, Job, JobStore, QueueFull, Report, WorkerPool
from .losses import LossConfig, Objective
from .model import DEFAULT_WEIGHTS, StyleNet, normalize_weights
from .solver import INITS, OPTIMIZERS, Progress, solve

log = logging.getLogger("styler.api")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
MIN_SIDE = 16  # smallest image side f_θ and the VGG can work with (three 2× poolings)
MAX_STYLES = 4
DEFAULT_ITERS = 100
PREVIEW_SIDE = 256
PREVIEWS = 25  # previews per job, about
RETRY_AFTER_S = 5
EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0
LOSS_TERMS = ("total", "content", "style", "style_moments", "style_gram", "tv")
MODEL_CARD = ("architecture", "vgg", "trained", "training", "loss")
_LOSS = LossConfig()


@dataclass(frozen=True)
class Settings:
    """Paths and limits of one server process; each field is set by ``STYLER_<FIELD>`` (e.g. STYLER_MAX_SIZE)."""

    data_dir: Path = Path("styler-data")  # the job database (jobs.sqlite3) lives here
    weights: Path | None = None  # the f_θ model file; None: weights/styler-adain.safetensors
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:1 …
    threads: int = 0  # torch CPU threads (0: torch's default)
    max_upload_bytes: int = 20 * 2**20  # a whole request body; checked from Content-Length, then while reading
    max_pixels: int = 25_000_000  # per input image, from its header before it is decoded
    max_size: int = 1024  # shorter side of a processed image (the `size` field's upper bound)
    max_side: int = 2048  # longer side of a processed image
    request_timeout_s: float = 60.0  # fast path: waiting for a slot + running
    max_inferences: int = 2  # fast-path inferences running at once
    max_waiting: int = 8  # fast-path requests waiting for a slot; more are answered 503
    job_workers: int = 1  # solver threads
    job_queue: int = 16  # jobs waiting for a solver thread; more are answered 503
    max_iters: int = 500  # solver iterations per job
    job_retention_days: float = 7.0  # finished jobs and their results are deleted this long after they finish

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not value > (-1 if f.name == "threads" else 0):
                raise ValueError(f"STYLER_{f.name.upper()} must be positive{' or 0' * (f.name == 'threads')}, not {value}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"STYLER_{f.name.upper()}"
            if key in env:
                kind = Path if f.default is None else type(f.default)
                try:
                    values[f.name] = kind(env[key])
                except ValueError:
                    raise ValueError(f"{key}={env[key]!r}: expected {kind.__name__}") from None
        return cls(**values)

    def limits(self) -> dict[str, int | float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith(("max_", "request_", "job_"))}


# ---- errors -------------------------------------------------------------------------------------


class ApiError(HTTPException):
    """An error answered as ``{"error": {"code", "message"}}`` (an HTTPException, so FastAPI passes it
    through even when it is raised while the request body is being read)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(status, message, headers={"Retry-After": str(retry_after)} if retry_after else None)
        self.code = code


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    return _error(exc.status_code, code, str(exc.detail), exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 when a field is missing, 400 when one has a bad value, in the common shape."""

    def where(e: Mapping[str, Any]) -> str:
        return ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")) or "body"

    missing = [where(e) for e in exc.errors() if e["type"] == "missing"]
    if missing:
        return _error(422, "missing_field", f"missing field{'s' * (len(missing) > 1)}: {', '.join(missing)}")
    return _error(400, "bad_parameter", "; ".join(f"{where(e)}: {e['msg']}" for e in exc.errors()))


async def _image_error(request: Request, exc: ImageError) -> JSONResponse:
    if isinstance(exc, ImageTooLarge):
        return _error(413, "too_large", str(exc))
    return _error(400, "bad_image", str(exc))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this answer, so the server logs the traceback.
    return _error(500, "internal", "internal server error")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes: from Content-Length up front, otherwise while reading."""

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


# ---- the fast path's admission control ----------------------------------------------------------

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
        """Calls admitted and not yet finished: running, waiting, or abandoned but still computing."""
        return self._admitted

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        if self._admitted >= self._capacity:
            raise ApiError(503, "busy", "the server is busy; please try again in a few seconds", RETRY_AFTER_S)
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
            return await asyncio.wait_for(asyncio.shield(task), timeout)  # type: ignore[return-value]
        except asyncio.TimeoutError:
            raise ApiError(503, "timeout", f"the request took longer than {timeout:g} s", RETRY_AFTER_S) from None
        finally:
            if not task.done():  # timed out, or the client went away: let it end on its own
                abandoned = True
                task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nobody will read its outcome


# ---- the service: model, job store and pool ----------------------------------------------------


@dataclass
class Uploads:
    """A request's images (still encoded) and the options that say how to read and write them."""

    content: bytes
    styles: list[bytes]
    names: list[str]
    style_weights: list[float] | None
    size: int | None
    format: str  # a key of images.FORMATS


class Service:
    """What the routes share: settings, the model (loaded in the background at start-up), jobs, limits."""

    def __init__(self, settings: Settings, weights: str | Path | StyleNet | None) -> None:
        self.settings = settings
        self.weights = weights if weights is not None else (settings.weights or DEFAULT_WEIGHTS)
        self.model: StyleNet | None = None
        self.model_error: str | None = None
        self.device = torch.device("cpu")

    async def start(self) -> None:
        s = self.settings
        if s.threads:
            torch.set_num_threads(s.threads)
        self.limiter = Limiter(s.max_inferences, s.max_waiting)
        self.store = JobStore(Path(s.data_dir) / "jobs.sqlite3", retention_s=s.job_retention_days * 86400)
        self.pool = WorkerPool(self.store, self.solve, s.job_workers, s.job_queue)
        self._loading = asyncio.create_task(asyncio.to_thread(self._load_model))

    def _load_model(self) -> None:
        from .train import resolve_device  # here, not at the top: the trainer's imports are heavy

        try:
            if isinstance(self.weights, StyleNet):
                self.device = next(self.weights.decoder.parameters()).device
                self.model = self.weights
            else:
                self.device = resolve_device(self.settings.device)
                self.model = StyleNet.load(self.weights, device=self.device)
                log.info("model %s loaded on %s", self.weights, self.device)
        except Exception as e:  # ModelError, a bad device, out of memory…: reported by /readyz
            log.exception("could not load the model")
            self.model_error = f"the model could not be loaded: {e}"

    async def stop(self) -> None:
        await self._loading
        await asyncio.to_thread(self.pool.close)
        self.store.close()

    def ready_model(self) -> StyleNet:
        if self.model is None:
            message = self.model_error or "the model is still loading; try again in a few seconds"
            raise ApiError(503, "not_ready", message, None if self.model_error else RETRY_AFTER_S)
        return self.model

    def _image(self, data: bytes, name: str, size: int | None) -> torch.Tensor:
        s = self.settings
        im = images.load(data, name, max_pixels=s.max_pixels)
        im = images.resize(im, min(size or min(im.size), s.max_size), s.max_side)
        if min(im.size) < MIN_SIDE:
            raise ImageError(f"{name}: {im.width}×{im.height} is too small (at least {MIN_SIDE} px a side)")
        return images.to_tensor(im).to(self.device)

    def decode(self, up: Uploads) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Content and styles at ``size`` (shorter side, capped), all judged by decoding them."""
        content = self._image(up.content, up.names[0], up.size)
        return content, [self._image(data, name, up.size) for data, name in zip(up.styles, up.names[1:])]

    def stylize(self, model: StyleNet, up: Uploads, alpha: float, preserve_color: bool) -> tuple[bytes, str, tuple[int, int]]:
        """The fast path, start to end (runs in a thread): decode, f_θ, encode."""
        content, styles = self.decode(up)
        with torch.inference_mode():
            out = model(content, styles, alpha=alpha, style_weights=up.style_weights, preserve_color=preserve_color)
        im, fmt = images.to_pil(out), images.FORMATS[up.format]
        return images.encode(im, fmt), images.MEDIA_TYPES[fmt], im.size

    def solve(self, params: dict[str, Any], inputs: tuple[torch.Tensor, list[torch.Tensor]], report: Report) -> tuple[bytes, str]:
        """A job (runs in a pool thread): the solver from content, noise or f_θ's output, with previews."""
        model = self.model
        assert model is not None, "jobs are accepted only once the model is loaded"
        content, styles = inputs
        weights = params["style_weights"]
        objective = Objective(LossConfig(content_weight=params["content_weight"], style_weight=params["style_weight"]), vgg=model.encoder)
        targets = objective.targets(content, styles, weights)
        init: str | torch.Tensor = params["init"]
        if init == "fast":
            with torch.no_grad():
                init = model(content, styles, style_weights=weights)
        every = max(1, params["iters"] // PREVIEWS)

        def callback(p: Progress) -> bool:
            preview = _preview(p.image) if p.step % every == 0 or p.step == p.total else None
            return report(p.step, {k: p.terms[k] for k in LOSS_TERMS if k in p.terms}, preview)

        result = solve(objective, content, targets, params["iters"], params["optimizer"], init, callback=callback)
        fmt = images.FORMATS[params["format"]]
        return images.encode(images.to_pil(result.image), fmt), images.MEDIA_TYPES[fmt]


def _preview(x: torch.Tensor) -> str:
    im = images.to_pil(x)
    im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return "data:image/jpeg;base64," + base64.b64encode(images.encode(im, "JPEG")).decode()


# ---- request parsing ----------------------------------------------------------------------------


def _service(request: Request) -> Service:
    return request.app.state.service


Svc = Annotated[Service, Depends(_service)]


def _multipart(request: Request) -> None:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the images as multipart/form-data")


def _style_weights(text: str | None, n: int) -> list[float] | None:
    if not text:
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ApiError(400, "bad_parameter", f"style_weights must be comma-separated numbers, not {text!r}") from None
    try:
        return normalize_weights(weights, n)
    except ValueError as e:
        raise ApiError(400, "bad_parameter", f"style_weights: {e}") from None


async def _uploads(
    svc: Svc,
    content: Annotated[UploadFile, File(description="the photo to stylize")],
    style: Annotated[list[UploadFile], File(description=f"one to {MAX_STYLES} style images")],
    style_weights: Annotated[str | None, Form(description="one weight per style image, comma-separated: 0.7,0.3")] = None,
    size: Annotated[int | None, Form(ge=MIN_SIDE, description="shorter side of the output in px (default: the content's, capped)")] = None,
    format: Annotated[str, Form(description="output format: png, jpeg or webp")] = "png",
) -> Uploads:
    s = svc.settings
    if format.lower() not in images.FORMATS:
        raise ApiError(415, "unsupported_media_type", f"output format {format!r} is not supported (use png, jpeg or webp)")
    if size is not None and size > s.max_size:
        raise ApiError(400, "bad_parameter", f"size {size} is over this server's limit of {s.max_size}")
    if len(style) > MAX_STYLES:
        raise ApiError(400, "bad_parameter", f"{len(style)} style images; at most {MAX_STYLES}")
    names = [f"content '{content.filename}'"] + [f"style '{f.filename}'" for f in style]
    return Uploads(
        await content.read(), [await f.read() for f in style], names, _style_weights(style_weights, len(style)), size, format.lower()
    )


Images = Annotated[Uploads, Depends(_uploads)]


def _job_json(job: Job) -> dict[str, Any]:
    links = {"events_url": f"/v1/jobs/{job.id}/events", "result_url": f"/v1/jobs/{job.id}/result" if job.status == "done" else None}
    return {**job.to_dict(), **links}


def _job(svc: Service, job_id: str) -> Job:
    job = svc.store.get(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return job


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


# ---- routes --------------------------------------------------------------------------------------

_IMAGE_RESPONSE = {200: {"description": "the stylized image", "content": {m: {} for m in images.MEDIA_TYPES.values()}}}


router = APIRouter()

@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}

@router.get("/readyz", tags=["health"])
def readyz(svc: Svc) -> dict[str, str]:
    """The model is loaded (503 until then, or with the reason it could not be)."""
    svc.ready_model()
    return {"status": "ready"}

@router.get("/v1/info", tags=["health"])
def info(svc: Svc) -> dict[str, Any]:
    """Model card summary, device and limits."""
    config = svc.model.config if svc.model else {}
    weights = svc.weights if isinstance(svc.weights, (str, Path)) else None
    return {
        "ready": svc.model is not None,
        "device": str(svc.device),
        "model": {"file": Path(weights).name if weights else None, "error": svc.model_error, **{k: config[k] for k in MODEL_CARD if k in config}},
        "limits": {**svc.settings.limits(), "max_styles": MAX_STYLES},
        "load": {"inferences": svc.limiter.pending, "jobs_waiting": svc.pool.waiting},
        "formats": ["png", "jpeg", "webp"],
        "solver": {"optimizers": list(OPTIMIZERS), "inits": [*INITS, "fast"], "default_iters": min(DEFAULT_ITERS, svc.settings.max_iters)},
    }

@router.post("/v1/stylize", tags=["stylize"], dependencies=[Depends(_multipart)], response_class=Response, responses=_IMAGE_RESPONSE)
async def stylize(
    svc: Svc,
    up: Images,
    alpha: Annotated[float, Form(ge=0, le=1, description="style strength: 0 = the content, 1 = full style")] = 1.0,
    preserve_color: Annotated[bool, Form(description="keep the content's colours")] = False,
) -> Response:
    """The fast path f_θ. X-Elapsed-Ms is the server's time once the upload has arrived."""
    model = svc.ready_model()
    t0 = time.perf_counter()
    data, media_type, (w, h) = await svc.limiter.run(partial(svc.stylize, model, up, alpha, preserve_color), svc.settings.request_timeout_s)
    headers = {"X-Elapsed-Ms": f"{(time.perf_counter() - t0) * 1000:.0f}", "X-Image-Size": f"{w}x{h}"}
    return Response(data, media_type=media_type, headers=headers)

@router.post("/v1/jobs", tags=["jobs"], status_code=202, dependencies=[Depends(_multipart)])
async def create_job(
    svc: Svc,
    up: Images,
    iters: Annotated[int | None, Form(ge=0, description=f"solver iterations (default {DEFAULT_ITERS}, capped by the server)")] = None,
    optimizer: Annotated[Literal["lbfgs", "adam"], Form()] = "lbfgs",
    init: Annotated[Literal["content", "noise", "fast"], Form(description="start image; fast: f_θ's output (refinement)")] = "content",
    style_weight: Annotated[float, Form(ge=0, allow_inf_nan=False)] = _LOSS.style_weight,
    content_weight: Annotated[float, Form(ge=0, allow_inf_nan=False)] = _LOSS.content_weight,
) -> JSONResponse:
    """Start the solver in the background: 202 with the job; follow it at events_url."""
    svc.ready_model()
    iters = min(DEFAULT_ITERS, svc.settings.max_iters) if iters is None else iters
    if iters > svc.settings.max_iters:
        raise ApiError(400, "bad_parameter", f"iters {iters} is over this server's limit of {svc.settings.max_iters}")
    busy = "the job queue is full; please try again later"
    if svc.pool.full():  # before the decoding work
        raise ApiError(503, "busy", busy, RETRY_AFTER_S)
    inputs = await asyncio.to_thread(svc.decode, up)
    params = {"iters": iters, "optimizer": optimizer, "init": init, "style_weight": style_weight, "content_weight": content_weight,
              "style_weights": up.style_weights, "size": up.size, "output_size": list(inputs[0].shape[-2:][::-1]), "format": up.format}  # fmt: skip
    try:
        job = svc.pool.submit(params, iters, inputs)
    except QueueFull:
        raise ApiError(503, "busy", busy, RETRY_AFTER_S) from None
    return JSONResponse(_job_json(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

@router.get("/v1/jobs/{job_id}", tags=["jobs"])
def get_job(svc: Svc, job_id: str) -> dict[str, Any]:
    """Status, progress (step of total), the latest loss terms and timing."""
    return _job_json(_job(svc, job_id))

@router.get("/v1/jobs/{job_id}/result", tags=["jobs"], response_class=Response, responses=_IMAGE_RESPONSE)
def job_result(svc: Svc, job_id: str) -> Response:
    """The finished image (409 while the job is not done)."""
    job = _job(svc, job_id)
    found = svc.store.result(job_id)
    if found is None:
        why = {"failed": f"failed: {job.error}", "cancelled": "was cancelled"}.get(job.status, f"is {job.status} (step {job.step} of {job.total})")
        raise ApiError(409, "not_done", f"job {job_id} {why}")
    data, media_type = found
    return Response(data, media_type=media_type, headers={"X-Elapsed-Ms": f"{(job.elapsed_s or 0) * 1000:.0f}"})

@router.get("/v1/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse)
def job_events(svc: Svc, job_id: str) -> StreamingResponse:
    """Server-Sent Events: ``progress`` (job status + ``preview`` data URL when new) …, then ``end``."""
    _job(svc, job_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_events(svc, job_id), media_type="text/event-stream", headers=headers)

@router.delete("/v1/jobs/{job_id}", tags=["jobs"])
def cancel_job(svc: Svc, job_id: str) -> JSONResponse:
    """Cancel: 200 with the job when it is final, 202 while a running job is stopping."""
    _job(svc, job_id)
    job = svc.store.cancel(job_id)
    return JSONResponse(_job_json(job), status_code=202 if job.status == "running" else 200)


async def _events(svc: Service, job_id: str) -> AsyncIterator[str]:
    sent: tuple = ()
    last_preview, quiet = None, 0.0
    while True:
        job = _job(svc, job_id)
        finished, state = job.status in FINISHED, (job.status, job.step, job.preview)
        # A job can finish between two polls: a follower still gets its last step and preview before
        # "end". A change of status alone, or a job already finished when the stream opens, is "end" only.
        if state != sent and not (finished and (not sent or state[1:] == sent[1:])):
            yield _sse("progress", {**_job_json(job), "preview": job.preview if job.preview != last_preview else None})
            sent, last_preview, quiet = state, job.preview, 0.0
        elif (quiet := quiet + EVENT_POLL_S) >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet = 0.0
        if finished:
            yield _sse("end", _job_json(job))
            return
        await asyncio.sleep(EVENT_POLL_S)


def create_app(weights: str | Path | StyleNet | None = None, settings: Settings | None = None) -> FastAPI:
    """The app. ``weights``: a model file (default STYLER_WEIGHTS, then the shipped model) or a loaded
    StyleNet; ``settings``: default :meth:`Settings.from_env`."""
    svc = Service(settings or Settings.from_env(), weights)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(title="styler", summary="Neural style transfer: the fast path f_θ and the solver", version="1", lifespan=lifespan)
    app.state.service = svc
    app.add_middleware(BodyLimit, limit=svc.settings.max_upload_bytes)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ImageError, _image_error)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(router)
    app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the app under uvicorn; each of ``workers`` processes has its own model, limits and job threads."""
    print(f"styler: serving on http://{host}:{port}  (API docs at http://{host}:{port}/docs)", flush=True)
    # Worker processes import torch before they can answer uvicorn's health pings: give them time.
    extra = {"timeout_worker_healthcheck": 60} if workers > 1 else {}
    uvicorn.run("styler.api:create_app", factory=True, host=host, port=port, workers=workers, **extra)
