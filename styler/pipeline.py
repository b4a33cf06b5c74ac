"""The application layer: read → f_θ, and read → targets → solver with callbacks → result.

The CLI (fast, slow, refine, compare), the server (stylize, jobs) and the evaluation all run these
functions with a typed request from :mod:`styler.params`, so each step exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from PIL import Image

from . import images, quant
from .config import DEFAULT_DEVICE
from .engine import Engine
from .function import StyleCode, normalize_weights
from .images import ImageError
from .losses import LossConfig, Objective
from .model import Encoded, StyleNet
from .modelfile import save_int8_scales
from .params import MIN_SIDE, FastRequest, Inputs, SolveRequest, Source
from .solver import Progress, Result, solve_pair


@dataclass(frozen=True)
class Limits:
    """What an input may be: pixels (from the header, before decoding) and processed sides."""

    max_pixels: int = images.MAX_PIXELS
    max_side: int = images.MAX_SIDE
    max_size: int | None = None  # cap of the shorter side, also when `size` keeps the original


@dataclass
class Content:
    """A decoded content at its working size: colour, alpha (None: opaque), the size it had and,
    when a limit made it smaller than asked, how: ``"4000x3000->2048x1536"``."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    original: images.Size
    scaled: str | None = None

    @property
    def size(self) -> images.Size:
        return images.size_of(self.rgb)


@dataclass
class Pair:
    """Decoded content and styles (fp32, on the engine's device), the styles' weights (Σ = 1), the
    content's alpha (None: opaque) and, when a limit made the content smaller than asked, how."""

    content: torch.Tensor
    styles: list[torch.Tensor]
    weights: list[float]
    alpha: torch.Tensor | None = None
    scaled: str | None = None


@dataclass(frozen=True)
class Start:
    """Where a solve begins: an image at a step (a checkpoint, or f_θ's output already at hand)."""

    step: int
    image: torch.Tensor


def _wxh(wh: images.Size) -> str:
    return f"{wh[0]}x{wh[1]}"


def read_content(src: Source, req: Inputs, limits: Limits = Limits()) -> Content:
    """The content at the request's size (shorter side; 0 keeps the original), the shorter side
    within ``limits.max_size`` and the longer within ``limits.max_side``, with its alpha."""
    name = src.name
    rgb, alpha = images.load_rgba(src.data, name, limits.max_pixels)
    asked = req.size or min(rgb.size)
    short = min(asked, limits.max_size or asked)
    fitted, capped = images.fit_content(rgb, short, limits.max_side)
    if min(fitted.size) < MIN_SIDE:
        raise ImageError(f"{name}: {fitted.width}×{fitted.height} is too small "
                         f"(at least {MIN_SIDE} px)")  # fmt: skip
    scaled = None
    if capped or short < asked:
        scaled = f"{_wxh(images.output_size(rgb.size, asked)[0])}->{_wxh(fitted.size)}"
    mask = None if alpha is None else images.to_tensor(images.resize_to(alpha, fitted.size))
    return Content(images.to_tensor(fitted), mask, rgb.size, scaled)


def load_style(src: Source, limits: Limits = Limits()) -> Image.Image:
    """A style image, decoded and checked (not yet sized: that depends on the content)."""
    return images.load(src.data, src.name, limits.max_pixels)


def fit_style(im: Image.Image, content_wh: images.Size, req: Inputs,
              limits: Limits = Limits()) -> torch.Tensor:  # fmt: skip
    """A style at ``style_scale`` × the content's shorter side, as a tensor."""
    wh = images.style_size(im.size, content_wh, req.style_scale, max_side=limits.max_side)
    return images.to_tensor(images.resize_to(im, wh))


def read_pair(
    content: Source, styles: Sequence[Source], req: Inputs, device: torch.device | str = "cpu",
    limits: Limits = Limits(),
) -> Pair:  # fmt: skip
    """The content (:func:`read_content`) and the styles at ``style_scale`` × its size; every
    image judged by decoding it, the style weights checked against the styles."""
    weights = normalize_weights(list(req.style_weights) if req.style_weights else None, len(styles))
    c = read_content(content, req, limits)
    fitted = [fit_style(load_style(s, limits), c.size, req, limits) for s in styles]
    return Pair(c.rgb.to(device), [s.to(device) for s in fitted], weights, c.alpha, c.scaled)


def engine_for(req: Inputs, device: str = DEFAULT_DEVICE) -> Engine:
    return Engine.create(device, req.precision)


def load_model(weights: str | Path | None, engine: Engine) -> StyleNet:
    """f_θ on the engine's device and in its memory format (None: the shipped model)."""
    return engine.module(StyleNet.load(weights, device=engine.device))


TileProgress = Callable[[int, int], None]
"""``progress(done, total)``: tiles of a large image stylized so far."""


def style_codes(model: StyleNet, engine: Engine, styles: Sequence[torch.Tensor]) -> list[StyleCode]:
    """What f_θ needs of each style (its statistics), computed once and reusable."""
    with torch.inference_mode(), engine.autocast():
        return [model.style_code(engine.tensor(s)) for s in styles]


def encode_content(model: StyleNet, engine: Engine, content: torch.Tensor) -> Encoded:
    """The content's features and statistics (for an image small enough to run untiled)."""
    with torch.inference_mode(), engine.autocast():
        return model.encode_content(engine.tensor(content))


def stylize_codes(
    model: StyleNet, engine: Engine, content: torch.Tensor, codes: Sequence[StyleCode],
    req: FastRequest, *, weights: Sequence[float] | None = None, encoded: Encoded | None = None,
    tile_progress: TileProgress | None = None,
) -> torch.Tensor:  # fmt: skip
    """f_θ from style codes (and maybe the content's encoding); fp32 out. Large contents run in
    tiles inside the model, reporting to ``tile_progress``. ``weights``: default the request's."""
    if weights is None:
        weights = normalize_weights(req.style_weights and list(req.style_weights), len(codes))
    with torch.inference_mode(), engine.autocast():
        out = model.stylize(
            engine.tensor(content), list(codes), list(weights), req.alpha, req.preserve_color,
            progress=tile_progress, encoded=encoded,
        )  # fmt: skip
    return out.float()


def stylize(model: StyleNet, engine: Engine, pair: Pair, req: FastRequest,
            tile_progress: TileProgress | None = None) -> torch.Tensor:  # fmt: skip
    """f_θ(content, styles): one forward pass in the engine's precision; fp32 out."""
    codes = style_codes(model, engine, pair.styles)
    return stylize_codes(model, engine, pair.content, codes, req, weights=pair.weights,
                         tile_progress=tile_progress)  # fmt: skip


def calibrate_int8(weights: str | Path, pairs: Sequence[tuple[Path, Path]], size: int) -> None:
    """Calibrate the int8 residual blocks of the model file ``weights`` on (content, style) image
    files at ``size`` px, stylized in float32, and keep the scales in its JSON file (a pair that
    does not read is left out)."""
    engine = Engine.create("cpu", "fp32")
    model = load_model(weights, engine)
    inputs: list[torch.Tensor] = []
    model.decoder.blocks.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
    req = FastRequest(size=size, precision="fp32")
    for content, style in pairs if model.blocks else ():
        try:
            pair = read_pair(Source.file(content), [Source.file(style)], req)
        except ImageError:
            continue
        stylize(model, engine, pair, req)
    if inputs:
        save_int8_scales(weights, quant.calibrate_blocks(model.decoder.blocks, inputs))


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
    # Coarse to fine finds structure from the content or noise; from f_θ's output (a start at
    # step 0, or a resumed refinement) halving the image would blur the detail f_θ made
    # (f_θ + 20 at 512 px, median of 4 held-out pairs: L 0.600 coarse to fine, 0.479 not).
    coarse = req.coarse and req.init != "fast" and not (start is not None and start.step == 0)
    if start is None and req.init == "fast":
        if model is None:
            raise ValueError("init 'fast' needs f_θ")
        start = Start(0, stylize(model, engine, pair, fast_of(req)).clone())
    return solve_pair(
        objective, pair.content, pair.styles, pair.weights, req.iters,
        start.image if start else req.init, first_step=start.step if start else 0,
        coarse=coarse, optimizer=req.optimizer, lr=req.lr, seed=req.seed,
        callback=callback, engine=engine,
    )  # fmt: skip


def score(objective: Objective, pair: Pair, x: torch.Tensor) -> dict[str, float]:
    """Every term of L for an image x of the pair (e.g. f_θ's output)."""
    targets = objective.targets(pair.content, pair.styles, pair.weights)
    with torch.no_grad():
        return {k: v.item() for k, v in objective(x, targets, report=True).items()}


def encode(x: torch.Tensor, fmt: str, alpha: torch.Tensor | None = None) -> tuple[bytes, str]:
    """An image tensor (with the content's alpha, if any) as ``fmt`` (a key of
    ``config.FORMATS``): the bytes and their media type."""
    pil_format = images.FORMATS[fmt]
    return images.encode(images.to_pil(x, alpha), pil_format), images.MEDIA_TYPES[pil_format]
