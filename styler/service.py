"""What the routes share: settings, the engine and model (loaded in the background at start-up),
the fast path's limiter and statistics cache, the style gallery, and the durable job store and
its workers running the solve pipeline."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import images, pipeline
from .engine import Engine
from .gallery import StyleEntry, StyleStore
from .http import RETRY_AFTER_S, ApiError, Limiter
from .jobs import JobStore
from .losses import LossConfig, Objective
from .memo import Stats, result_header
from .model import StyleNet
from .modelfile import DEFAULT_WEIGHTS
from .params import FastRequest, SolveRequest, Source
from .settings import Settings
from .solver import Progress
from .workers import Run, WorkerPool

log = logging.getLogger("styler.service")

PREVIEW_SIDE = 256
PREVIEWS = 25  # previews per job at least (and one every CHECKPOINT_EVERY iterations)
CHECKPOINT_EVERY = 10  # iterations at most between two checkpoints of a running job
LOSS_TERMS = ("total", "content", "style", "style_moments", "style_gram", "tv")


@dataclass(frozen=True)
class Rendered:
    """The fast path's answer: the encoded image, its size, whether a limit scaled the content
    down (``"4000x3000->2048x1536"``) and how the statistics cache did."""

    data: bytes
    media_type: str
    size: tuple[int, int]
    scaled: str | None
    cache: str


class Service:
    def __init__(self, settings: Settings, weights: str | Path | StyleNet | None) -> None:
        self.settings = settings
        self.weights = weights if weights is not None else (settings.weights or DEFAULT_WEIGHTS)
        self.model: StyleNet | None = None
        self.model_error: str | None = None
        self.engine: Engine | None = None
        self.limits = pipeline.Limits(settings.max_pixels, settings.max_side, settings.max_size)
        self._loaded = threading.Event()
        self._objectives: dict[LossConfig, Objective] = {}
        self._objectives_lock = threading.Lock()

    async def start(self) -> None:
        s = self.settings
        if s.threads:
            torch.set_num_threads(s.threads)
        self.limiter = Limiter(s.max_inferences, s.max_waiting)
        retention_s = s.job_retention_days * 86400
        self.store = JobStore(Path(s.data_dir) / "jobs.sqlite3", retention_s=retention_s)
        self.styles = StyleStore(
            Path(s.data_dir) / "styles",
            max_bytes=s.max_upload_bytes,
            retention_s=retention_s,
            max_pixels=s.max_pixels,
        )
        self.styles.prune()
        self.stats = Stats(s.cache_mb * 2**20, self.styles)
        self.pool = WorkerPool(self.store, self.run_job, s.job_workers, s.job_queue)
        self._loading = asyncio.create_task(asyncio.to_thread(self._load_model))

    def _load_model(self) -> None:
        try:
            self.engine = Engine.create(self.settings.device, self.settings.precision)
            if isinstance(self.weights, StyleNet):
                self.model = self.engine.module(self.weights)
            else:
                self.model = pipeline.load_model(self.weights, self.engine)
                what = self.engine.describe(self.model.int8_parts)
                log.info("model %s loaded (%s)", self.weights, what)
        except Exception as e:  # ModelError, a bad device, out of memory…: reported by /readyz
            log.exception("could not load the model")
            self.model_error = f"the model could not be loaded: {e}"
        finally:
            self._loaded.set()

    async def stop(self) -> None:
        """Take no more jobs, checkpoint the running ones, close the store."""
        await self._loading
        await asyncio.to_thread(self.pool.close)
        self.store.close()

    def ready_model(self) -> StyleNet:
        if self.model is None:
            message = self.model_error or "the model is still loading; try again in a few seconds"
            raise ApiError(503, "not_ready", message, None if self.model_error else RETRY_AFTER_S)
        return self.model

    def read(self, inputs: list[Source], req: FastRequest | SolveRequest):
        """Content and styles decoded (every image judged by decoding it) at the request's size."""
        device = self.engine.device if self.engine else "cpu"
        return pipeline.read_pair(inputs[0], inputs[1:], req, device, self.limits)

    def stylize(self, content: Source, styles: list[Source], req: FastRequest,
                fmt: str) -> Rendered:  # fmt: skip
        """The fast path, start to end (runs in a thread): decode the content, its encoding and the
        styles' codes from the cache or computed, f_θ's decoder, encode."""
        model, engine = self.ready_model(), self.engine
        assert engine is not None
        decoded = pipeline.read_content(content, req, self.limits)
        found = [self.stats.code(model, engine, s, decoded.size, req, self.limits) for s in styles]
        encoded, how = self.stats.encoding(model, engine, content.data, decoded)
        codes = [code for code, _ in found]
        out = pipeline.stylize_codes(model, engine, decoded.rgb, codes, req, encoded=encoded)
        data, media_type = pipeline.encode(out, fmt, decoded.alpha)
        cache = result_header(how, [h for _, h in found])
        return Rendered(data, media_type, decoded.size, decoded.scaled, cache)

    def add_style(self, data: bytes, name: str) -> StyleEntry:
        """Store an uploaded style and its code at the working size of a photo at this server's
        size cap (style_scale 1: the page's default), computed once (runs in a thread)."""
        self.styles.prune()
        model, engine = self.ready_model(), self.engine
        assert engine is not None
        entry = self.styles.add(data, name)
        side = self.settings.max_size
        self.stats.code(model, engine, self.style_source(entry.id), (side, side), FastRequest(),
                        self.limits)  # fmt: skip
        return entry

    def style_source(self, sid: str) -> Source:
        """A preset's or an upload's bytes (:class:`~styler.gallery.StyleNotFound` if none)."""
        return Source(f"style '{sid}'", self.styles.get(sid).path.read_bytes(), sid)

    def _objective(self, loss: LossConfig, engine: Engine) -> Objective:
        """One objective (and its VGG) per loss configuration, shared by the job threads."""
        with self._objectives_lock:
            if loss not in self._objectives:
                self._objectives[loss] = pipeline.objective_for(loss, engine)
            return self._objectives[loss]

    def run_job(self, run: Run) -> tuple[bytes, str] | None:
        """A job (in a worker thread): the solver from its checkpoint or its start, with previews
        and checkpoints; None when it stopped early."""
        self._loaded.wait()
        engine = self.engine
        if engine is None:
            raise ValueError(self.model_error or "the server could not start its engine")
        spec = run.job.spec
        req = spec.request
        if req.init == "fast" and self.model is None:
            raise ValueError(self.model_error or "no model")
        pair = self.read(run.inputs, req)
        start = None
        if run.resume:
            start = pipeline.Start(run.resume[0], _from_state(run.resume[1]).to(engine.device))
        every = max(1, min(CHECKPOINT_EVERY, req.iters // PREVIEWS))
        stopped = False

        def callback(p: Progress) -> bool:
            nonlocal stopped
            preview = _preview(p.image) if p.step % every == 0 or p.step == p.total else None
            terms = {k: p.terms[k] for k in LOSS_TERMS if k in p.terms}
            stop = run.progress(p.step, terms, preview)
            stopped = stop and p.step < p.total
            if stopped or (p.step % every == 0 and p.step < p.total):
                run.checkpoint(p.step, _state(p.image))
            return stop

        result = pipeline.solve(
            req,
            pair,
            engine,
            model=self.model,
            start=start,
            objective=self._objective(req.loss, engine),
            callback=callback,
        )
        return None if stopped else pipeline.encode(result.image, spec.format, pair.alpha)


def _state(x: torch.Tensor) -> bytes:
    """The image being optimized, exactly (fp32 .npy), for a checkpoint."""
    buf = io.BytesIO()
    np.save(buf, x.detach().float().cpu().numpy(), allow_pickle=False)
    return buf.getvalue()


def _from_state(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False))


def _preview(x: torch.Tensor) -> str:
    im = images.to_pil(x)
    im.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return "data:image/jpeg;base64," + base64.b64encode(images.encode(im, "JPEG")).decode()
