"""The slow path: per-image optimization of L(x; c, s) (Gatys et al.), the reference f_θ amortizes.

Started from f_θ's output (``init=<tensor>``), a few steps of this solver are the semi-amortized
refinement. One "iteration" is one L-BFGS iteration (up to ``LBFGS_EVALS`` loss evaluations in
its line search) or one Adam step. The loss network runs in the engine's precision (bf16 where
the CPU has it); x, its gradient and the optimizer's state stay fp32. Each iteration reports the
terms the optimizer itself computed, so progress costs no extra evaluation.
:func:`solve_pair` solves coarse to fine: part of the iterations at half size, where each costs a
quarter, then the upsampled result is finished at full size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from .engine import Engine
from .losses import Objective, Targets
from .params import ITERS, LR, OPTIMIZERS

LBFGS_EVALS = 4
COARSE_SHARE = 0.5  # of the iterations spent at half size by solve_pair
COARSE_MIN_SIDE = 128  # below this shorter side a half-size stage is not worth it


@dataclass
class Progress:
    """What the solver reports after each iteration; ``image`` is the current x (a view)."""

    step: int
    total: int
    terms: dict[str, float]
    elapsed_s: float
    image: torch.Tensor


@dataclass
class Result:
    image: torch.Tensor
    history: list[dict[str, float]] = field(
        default_factory=list
    )  # one row per iteration, step 0 = init

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]


def initial_image(init: str | torch.Tensor, content: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """x₀: the content image, uniform noise, or a given image (e.g. f_θ's output), same size."""
    if isinstance(init, torch.Tensor):
        if init.shape != content.shape:
            have, want = tuple(init.shape), tuple(content.shape)
            raise ValueError(f"initial image is {have}, content is {want}")
        return init.detach().float().clone(memory_format=torch.contiguous_format)
    if init == "content":
        return content.detach().clone(memory_format=torch.contiguous_format)
    if init == "noise":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=g).to(content)
    raise ValueError(f"init must be 'content', 'noise' or an image tensor, not {init!r}")


def solve(
    objective: Objective,
    content: torch.Tensor,
    targets: Targets,
    iters: int = ITERS,
    optimizer: str = "lbfgs",
    init: str | torch.Tensor = "content",
    lr: float | None = None,
    seed: int = 0,
    callback: Callable[[Progress], bool | None] | None = None,
    engine: Engine | None = None,
    first_step: int = 0,
    total: int | None = None,
) -> Result:
    """Minimize L over the pixels of x ∈ [0, 1]; ``callback`` returning True stops early (cancel).

    Steps are numbered from ``first_step`` + 1 out of ``total`` (a later stage of a longer solve).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
    if iters < 0:
        raise ValueError("iters must be ≥ 0")
    engine = engine or Engine.create("cpu", "fp32")
    total = first_step + iters if total is None else total
    x = initial_image(init, content, seed).requires_grad_(True)
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=lr or LR[optimizer], max_iter=1, max_eval=LBFGS_EVALS,
                                history_size=50, line_search_fn="strong_wolfe")  # fmt: skip
    else:
        opt = torch.optim.Adam([x], lr=lr or LR[optimizer])
    last: dict[str, float] = {}

    def evaluate(grad: bool) -> torch.Tensor:
        with torch.set_grad_enabled(grad), engine.autocast():
            terms = objective(x, targets, report=True)
        last.clear()
        last.update({k: v.item() for k, v in terms.items()})
        return terms["total"].float()

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = evaluate(True)
        loss.backward()
        return loss

    evaluate(False)
    history = [{"step": first_step, "elapsed_s": 0.0, **last}]
    t0 = time.perf_counter()
    for step in range(first_step + 1, first_step + iters + 1):
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
        row = {"step": step, "elapsed_s": time.perf_counter() - t0, **last}
        history.append(row)
        if callback and callback(Progress(step, total, row, row["elapsed_s"], x.detach())):
            break
    return Result(x.detach(), history)


def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return x
    size = [max(1, round(d * scale)) for d in x.shape[-2:]]
    return F.interpolate(x, size=size, mode="bilinear", antialias=scale < 1, align_corners=False)


def solve_pair(
    objective: Objective,
    content: torch.Tensor,
    styles: list[torch.Tensor],
    weights: list[float] | None = None,
    iters: int = ITERS,
    init: str | torch.Tensor = "content",
    *,
    first_step: int = 0,
    coarse: bool = True,
    **options: Any,
) -> Result:
    """Solve for a (content, styles) pair, coarse to fine when ``coarse`` and the image is large
    enough: ``COARSE_SHARE`` of the iterations at half size, the rest at full size.

    ``first_step`` > 0 resumes a solve whose image at that step is ``init`` (at either size).
    Styles keep their own size at both stages: their statistics set the stroke size. ``options``
    (optimizer, lr, seed, callback, engine) are :func:`solve`'s.
    """
    n_coarse = round(iters * COARSE_SHARE)
    if not coarse or min(content.shape[-2:]) < 2 * COARSE_MIN_SIDE or first_step >= n_coarse:
        n_coarse = 0
    history: list[dict[str, float]] = []
    step, offset, x = first_step, 0.0, init
    for scale, until in ((0.5, n_coarse), (1.0, iters)):
        if step >= until and scale < 1:
            continue
        c = _resize(content, scale)
        if isinstance(x, torch.Tensor) and x.shape != c.shape:
            x = F.interpolate(x, size=c.shape[-2:], mode="bilinear", align_corners=False)
        targets = objective.targets(c, styles, weights)
        part = solve(objective, c, targets, until - step, init=x, first_step=step, total=iters,
                     **options)  # fmt: skip
        rows = [{**r, "elapsed_s": r["elapsed_s"] + offset} for r in part.history]
        # the step handed over from half size is scored again at full size: keep that row
        history = history[:-1] + rows if history else rows
        offset = history[-1]["elapsed_s"]
        step, x = int(history[-1]["step"]), part.image
        if step < until:  # stopped by the callback
            break
    return Result(part.image, history)
