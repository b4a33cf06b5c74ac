"""The web service's routes: the REST API (FastAPI) and the web page, over the pipeline.

Endpoints (OpenAPI docs at /docs)::

    GET    /                      the web page (package data styler/web/)
    POST   /v1/stylize            f_θ(content, styles) → the image; X-Elapsed-Ms, X-Image-Size,
                                  X-Styler-Cache, X-Styler-Scaled (when a limit scaled it down)
    POST   /v1/styles             upload a style to the gallery (its code computed once)
    GET    /v1/styles             the presets and uploaded styles, with thumbnail URLs
    GET    /v1/styles/{id}/thumbnail, DELETE /v1/styles/{id}
    POST   /v1/jobs               the solver as a durable background job → 202 {"id": ...}
    GET    /v1/jobs/{id}          status, step/total, loss terms, timing, note
    GET    /v1/jobs/{id}/events   Server-Sent Events: "progress" (with a small JPEG preview
                                  when there is a new one) while it runs, then one "end"
    GET    /v1/jobs/{id}/result   the image of a finished job
    DELETE /v1/jobs/{id}          cancel (a queued job at once, a running one at its next step)
    GET    /healthz, /readyz      the process is up; the model is loaded (503 until then)
    GET    /v1/info               model card summary, device, precision, limits

Form fields are validated into the typed requests of :mod:`styler.params` (their defaults);
settings are in :mod:`styler.settings`, errors and limits in :mod:`styler.http`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Form
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from . import gallery_api, http
from .config import DEFAULT_FORMAT, FORMATS, HOST, PORT, LossConfig
from .forms import MAX_STYLES, Images, Svc, about, multipart, typed
from .http import ApiError, bad_parameter, busy
from .images import MEDIA_TYPES
from .jobs import FINISHED, Job
from .model import StyleNet
from .params import REFINE_ITERS, FastRequest, JobSpec, SolveRequest
from .service import Service
from .settings import Settings
from .workers import QueueFull

EVENT_POLL_S = 0.25
KEEPALIVE_S = 15.0
MODEL_CARD = ("architecture", "vgg", "trained", "training", "loss")
_FAST, _SOLVE, _LOSS = FastRequest(), SolveRequest(), LossConfig()


def _job_json(job: Job) -> dict[str, Any]:
    result = f"/v1/jobs/{job.id}/result" if job.status == "done" else None
    return {**job.to_dict(), "scaled": job.params.get("scaled"),
            "events_url": f"/v1/jobs/{job.id}/events", "result_url": result}  # fmt: skip


def _job(svc: Service, job_id: str) -> Job:
    job = svc.store.get(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return job


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


_IMAGE = {200: {"description": "the image", "content": {m: {} for m in MEDIA_TYPES.values()}}}
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
    """Model card summary, device, precision and limits."""
    config = svc.model.config if svc.model else {}
    weights = svc.weights if isinstance(svc.weights, (str, Path)) else None
    model = {"file": Path(str(weights)).name if weights else None, "error": svc.model_error}
    return {
        "ready": svc.model is not None,
        "device": str(svc.engine.device) if svc.engine else None,
        "precision": svc.engine.setting if svc.engine else None,
        "model": {**model, **{k: config[k] for k in MODEL_CARD if k in config}},
        "limits": {**svc.settings.limits(), "max_styles": MAX_STYLES},
        "load": {"inferences": svc.limiter.pending, "jobs_waiting": svc.pool.waiting},
        "cache": {"max_mb": svc.settings.cache_mb, "styles": len(svc.stats.codes),
                  "contents": len(svc.stats.encodings)},
        "formats": list(FORMATS),
        "default_format": DEFAULT_FORMAT,
        "solver": {
            "optimizers": list(about(SolveRequest, "optimizer", "choices")),
            "inits": list(about(SolveRequest, "init", "choices")),
            "default_iters": min(_SOLVE.iters, svc.settings.max_iters),
            "refine_iters": min(REFINE_ITERS, svc.settings.max_iters),
        },
    }  # fmt: skip


@router.post("/v1/stylize", tags=["stylize"], dependencies=[Depends(multipart)],
             response_class=Response, responses=_IMAGE)  # fmt: skip
async def stylize(
    svc: Svc,
    up: Images,
    alpha: Annotated[float, Form(description=about(FastRequest, "alpha"))] = _FAST.alpha,
    preserve_color: Annotated[
        bool, Form(description=about(FastRequest, "preserve_color"))
    ] = _FAST.preserve_color,
) -> Response:
    """The fast path f_θ, at the content's own size unless ``size`` asks (within the server's
    limits; X-Styler-Scaled says when they scaled it down). X-Elapsed-Ms is the server's time once
    the upload has arrived; X-Styler-Cache says whether the styles' codes and the content's
    encoding came from the cache (``style=hit,content=miss``)."""
    svc.ready_model()
    req = typed(FastRequest, **up.common(FastRequest), alpha=alpha, preserve_color=preserve_color)
    t0 = time.perf_counter()
    work = partial(svc.stylize, up.content, up.styles, req, up.format)
    out = await svc.limiter.run(work, svc.settings.request_timeout_s)
    headers = {
        "X-Elapsed-Ms": f"{(time.perf_counter() - t0) * 1000:.0f}",
        "X-Image-Size": f"{out.size[0]}x{out.size[1]}",
        "X-Styler-Cache": out.cache,
        **({"X-Styler-Scaled": out.scaled} if out.scaled else {}),
    }
    return Response(out.data, media_type=out.media_type, headers=headers)


@router.post("/v1/jobs", tags=["jobs"], status_code=202, dependencies=[Depends(multipart)])
async def create_job(
    svc: Svc,
    up: Images,
    iters: Annotated[
        int | None,
        Form(
            ge=0,
            description=f"solver iterations (default {_SOLVE.iters}, or the server's limit "
            "if lower; more than the limit is refused)",
        ),
    ] = None,
    optimizer: Annotated[
        str, Form(description=about(SolveRequest, "optimizer"))
    ] = _SOLVE.optimizer,
    init: Annotated[str, Form(description=about(SolveRequest, "init"))] = _SOLVE.init,
    style_weight: Annotated[float, Form(ge=0, allow_inf_nan=False)] = _LOSS.style_weight,
    content_weight: Annotated[float, Form(ge=0, allow_inf_nan=False)] = _LOSS.content_weight,
) -> JSONResponse:
    """Start the solver in the background: 202 with the job; follow it at events_url. The job and
    its inputs are stored: a server restart resumes it."""
    svc.ready_model()
    max_iters = svc.settings.max_iters
    iters = min(_SOLVE.iters, max_iters) if iters is None else iters
    if iters > max_iters:
        raise bad_parameter(f"iters {iters} is over this server's limit of {max_iters}")
    loss = typed(LossConfig, style_weight=style_weight, content_weight=content_weight)
    req = typed(SolveRequest, **up.common(SolveRequest), iters=iters, optimizer=optimizer,
                init=init, loss=loss)  # fmt: skip
    svc.styles.prune()  # uploaded styles share the jobs' retention
    if svc.pool.full():  # before the decoding work
        raise busy("the job queue is full; please try again later")
    pair = await asyncio.to_thread(svc.read, up.inputs, req)  # every image judged now
    height, width = pair.content.shape[-2:]
    spec = JobSpec(req, up.format, (width, height), pair.scaled)
    try:
        job = svc.pool.submit(spec, up.inputs)
    except QueueFull:
        raise busy("the job queue is full; please try again later") from None
    headers = {"Location": f"/v1/jobs/{job.id}"}
    return JSONResponse(_job_json(job), status_code=202, headers=headers)


@router.get("/v1/jobs/{job_id}", tags=["jobs"])
def get_job(svc: Svc, job_id: str) -> dict[str, Any]:
    """Status, progress (step of total), the latest loss terms, timing and a note on restarts."""
    return _job_json(_job(svc, job_id))


@router.get("/v1/jobs/{job_id}/result", tags=["jobs"], response_class=Response, responses=_IMAGE)
def job_result(svc: Svc, job_id: str) -> Response:
    """The finished image (409 while the job is not done)."""
    job = _job(svc, job_id)
    found = svc.store.result(job_id)
    if found is None:
        why = {"failed": f"failed: {job.error}", "cancelled": "was cancelled"}.get(
            job.status, f"is {job.status} (step {job.step} of {job.total})"
        )
        raise ApiError(409, "not_done", f"job {job_id} {why}")
    data, media_type = found
    elapsed = {"X-Elapsed-Ms": f"{(job.elapsed_s or 0) * 1000:.0f}"}
    return Response(data, media_type=media_type, headers=elapsed)


@router.get("/v1/jobs/{job_id}/events", tags=["jobs"], response_class=StreamingResponse)
def job_events(svc: Svc, job_id: str) -> StreamingResponse:
    """Server-Sent Events: ``progress`` (status + ``preview`` data URL when new) …, then ``end``."""
    _job(svc, job_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_events(svc, job_id), media_type="text/event-stream", headers=headers)


@router.delete("/v1/jobs/{job_id}", tags=["jobs"])
def cancel_job(svc: Svc, job_id: str) -> JSONResponse:
    """Cancel: 200 with the job when it is final, 202 while a running job is stopping."""
    _job(svc, job_id)
    job = svc.store.cancel(job_id)
    assert job is not None
    return JSONResponse(_job_json(job), status_code=202 if job.status == "running" else 200)


async def _events(svc: Service, job_id: str) -> AsyncIterator[str]:
    sent: tuple = ()
    last_preview, quiet = None, 0.0
    while True:
        job = _job(svc, job_id)
        finished, state = job.status in FINISHED, (job.status, job.step, job.preview)
        # A job can finish between two polls: a follower still gets its last step and preview
        # before "end". A change of status alone, or a job finished before the stream, is "end".
        if state != sent and not (finished and (not sent or state[1:] == sent[1:])):
            preview = job.preview if job.preview != last_preview else None
            yield _sse("progress", {**_job_json(job), "preview": preview})
            sent, last_preview, quiet = state, job.preview, 0.0
        elif (quiet := quiet + EVENT_POLL_S) >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet = 0.0
        if finished:
            yield _sse("end", _job_json(job))
            return
        await asyncio.sleep(EVENT_POLL_S)


def create_app(weights: str | Path | StyleNet | None = None, settings: Settings | None = None):
    """The app. ``weights``: a model file (default STYLER_WEIGHTS, then the shipped model) or a
    loaded StyleNet; ``settings``: default from the environment."""
    svc = Service(settings or Settings(), weights)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        try:
            yield
        finally:
            await svc.stop()

    app = FastAPI(title="styler", summary="Neural style transfer: the fast path f_θ and the solver",
                  version="1", lifespan=lifespan)  # fmt: skip
    app.state.service = svc
    http.install(app, svc.settings.max_upload_bytes)
    app.include_router(router)
    app.include_router(gallery_api.router)
    app.mount("/", StaticFiles(packages=[("styler", "web")], html=True), name="web")
    return app


def serve(host: str = HOST, port: int = PORT, workers: int = 1) -> None:
    """Run the app under uvicorn; each of ``workers`` processes has its own model, limits and job
    threads. SIGTERM: no new connections, open streams get a few seconds, then running jobs stop
    at their next step with a checkpoint that the next start resumes from."""
    Settings()  # a bad STYLER_* value stops here, with a message naming it
    print(f"styler: serving on http://{host}:{port}  (API docs at http://{host}:{port}/docs)",
          flush=True)  # fmt: skip
    # Worker processes import torch before they can answer uvicorn's health pings: give them time.
    extra = {"timeout_worker_healthcheck": 60} if workers > 1 else {}
    uvicorn.run("styler.api:create_app", factory=True, host=host, port=port, workers=workers,
                timeout_graceful_shutdown=5, **extra)  # fmt: skip
