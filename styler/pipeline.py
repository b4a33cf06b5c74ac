"""The application layer: read → f_θ, and read → targets → solver with callbacks → result.

The CLI (fast, slow, refine, compare), the server (stylize, jobs) and the evaluation all run these
functions with a typed request from :mod:`styler.params`, so each step exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from . import images
from .engine import Engine
from .images import ImageError
from .losses import LossConfig, Objective
from .model import StyleNet, normalize_weights
from .params import MIN_SIDE, FastRequest, Inputs, SolveRequest
from .solver import Progress, Result, solve_pair

Source = tuple[str, "str | Path | bytes"]
"""An input image and the name its errors use: ``("content 'photo.jpg'", b"...")``."""


@dataclass(frozen=True)
class Limits:
    """What an input may be: pixels (from the header, before decoding) and processed sides."""

    max_pixels: int = images.MAX_PIXELS
    max_side: int = images.MAX_SIDE
    max_size: int | None = None  # cap of the shorter side, also when `size` keeps the original


@dataclass
class Pair:
    """Decoded content and styles (fp32, on the engine's device), the styles' weights (Σ = 1), the
    content's alpha (None: opaque) and whether a side cap made the content smaller than asked."""

    content: torch.Tensor
    styles: list[torch.Tensor]
    weights: list[float]
    alpha: torch.Tensor | None = None
    capped: bool = False


@dataclass(frozen=True)
class Start:
    """Where a solve begins: an image at a step (a checkpoint, or f_θ's output already at hand)."""

    step: int
    image: torch.Tensor


def read_pair(
    content: Source, styles: Sequence[Source], req: Inputs, device: torch.device | str = "cpu",
    limits: Limits = Limits(),
) -> Pair:  # fmt: skip
    """The content at the request's size (shorter side; 0 keeps the original) with its alpha, the
    styles at ``style_scale`` × its size; every image judged by decoding it, the style weights
    checked against the styles."""
    weights = normalize_weights(list(req.style_weights) if req.style_weights else None, len(styles))
    name, src = content
    rgb, alpha = images.load_rgba(src, name, limits.max_pixels)
    short = req.size or min(rgb.size)
    rgb, capped = images.fit_content(rgb, min(short, limits.max_size or short), limits.max_side)
    if min(rgb.size) < MIN_SIDE:
        raise ImageError(f"{name}: {rgb.width}×{rgb.height} is too small (at least {MIN_SIDE} px)")
    mask = None if alpha is None else images.to_tensor(images.resize_to(alpha, rgb.size))
    fitted = [
        images.fit_style(images.load(s, n, limits.max_pixels), rgb.size, req.style_scale,
                         max_side=limits.max_side)
        for n, s in styles
    ]  # fmt: skip
    to = lambda im: images.to_tensor(im).to(device)  # noqa: E731
    return Pair(to(rgb), [to(s) for s in fitted], weights, mask, capped)


def engine_for(req: Inputs, device: str = "auto") -> Engine:
    return Engine.create(device, req.precision)


def load_model(weights: str | Path | None, engine: Engine) -> StyleNet:
    """f_θ on the engine's device and in its memory format (None: the shipped model)."""
    return engine.module(StyleNet.load(weights, device=engine.device))


def stylize(model: StyleNet, engine: Engine, pair: Pair, req: FastRequest) -> torch.Tensor:
    """f_θ(content, styles): one forward pass in the engine's precision; fp32 out."""
    with torch.inference_mode(), engine.autocast():
        out = model(
            engine.tensor(pair.content), [engine.tensor(s) for s in pair.styles], alpha=req.alpha,
            style_weights=pair.weights, preserve_color=req.preserve_color,
        )  # fmt: skip
    return out.float()


def fast_of(req: Inputs) -> FastRequest:
    """The fast request with the same inputs (f_θ's output that a refinement starts from)."""
    return FastRequest(**{f.name: getattr(req, f.name) for f in fields(Inputs)})


def objective_for(loss: LossConfig, engine: Engine) -> Objective:
    return Objective(loss).to(engine.device)


def solve(
    req: SolveRequest,
    pair: Pair,
    engine: Engine,
    *,
    model: StyleNet | None = None,
    objective: Objective | None = None,
    start: Start | None = None,
    callback: Callable[[Progress], bool | None] | None = None,
) -> Result:
    """The solver on ``pair``: from ``start`` if given, else the request's init (``fast`` needs
    ``model``). Progress steps count from the request's start, so a resumed run reports
    step N + 1 … iters; the callback returning True stops it."""
    objective = objective or objective_for(req.loss, engine)
    if start is None and req.init == "fast":
        if model is None:
            raise ValueError("init 'fast' needs f_θ")
        start = Start(0, stylize(model, engine, pair, fast_of(req)).clone())
    return solve_pair(
        objective, pair.content, pair.styles, pair.weights, req.iters, req.optimizer,
        start.image if start else req.init, req.lr, req.seed, callback, engine,
        start.step if start else 0, req.coarse,
    )  # fmt: skip


def score(objective: Objective, pair: Pair, x: torch.Tensor) -> dict[str, float]:
    """Every term of L for an image x of the pair (e.g. f_θ's output)."""
    targets = objective.targets(pair.content, pair.styles, pair.weights)
    with torch.no_grad():
        return {k: v.item() for k, v in objective(x, targets, report=True).items()}


def encode(x: torch.Tensor, fmt: str, alpha: torch.Tensor | None = None) -> tuple[bytes, str]:
    """An image tensor (with the content's alpha, if any) as ``fmt`` (a key of
    ``images.FORMATS``): the bytes and their media type."""
    pil_format = images.FORMATS[fmt]
    return images.encode(images.to_pil(x, alpha), pil_format), images.MEDIA_TYPES[pil_format]
