"""The slow path: per-image optimization of L(x; c, s) (Gatys et al.), the reference f_θ amortizes.

Started from f_θ's output (``init=<tensor>``), a few steps of this solver are the semi-amortized
refinement. One "iteration" is one L-BFGS iteration (up to ``LBFGS_EVALS`` loss evaluations in
its line search) or one Adam step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .losses import Objective, Targets

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
LBFGS_EVALS = 4


@dataclass
class Progress:
    """What the solver reports after each iteration; ``image`` is the current x (a view: copy to keep)."""

    step: int
    total: int
    terms: dict[str, float]
    elapsed_s: float
    image: torch.Tensor


@dataclass
class Result:
    image: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)  # one row per iteration, step 0 = init

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1]


def initial_image(init: str | torch.Tensor, content: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """x₀: the content image, uniform noise, or a given image (e.g. f_θ's output) of the same size."""
    if isinstance(init, torch.Tensor):
        if init.shape != content.shape:
            raise ValueError(f"initial image is {tuple(init.shape)}, content is {tuple(content.shape)}")
        return init.detach().clone(memory_format=torch.contiguous_format)
    if init == "content":
        return content.detach().clone(memory_format=torch.contiguous_format)
    if init == "noise":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=g).to(content)
    raise ValueError(f"init must be one of {INITS} or an image tensor, not {init!r}")


def solve(
    objective: Objective,
    content: torch.Tensor,
    targets: Targets,
    iters: int = 300,
    optimizer: str = "lbfgs",
    init: str | torch.Tensor = "content",
    lr: float | None = None,
    seed: int = 0,
    callback: Callable[[Progress], bool | None] | None = None,
) -> Result:
    """Minimize L over the pixels of x ∈ [0, 1]; ``callback`` returning True stops early (cancel)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
    if iters < 0:
        raise ValueError("iters must be ≥ 0")
    x = initial_image(init, content, seed).requires_grad_(True)
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=lr or 1.0, max_iter=1, max_eval=LBFGS_EVALS, history_size=50, line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([x], lr=lr or 0.02)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = objective(x, targets)["total"]
        loss.backward()
        return loss

    def measure() -> dict[str, float]:
        with torch.no_grad():
            return {k: v.item() for k, v in objective(x, targets, report=True).items()}

    history = [{"step": 0, "elapsed_s": 0.0, **measure()}]
    elapsed = 0.0  # optimization time only: scoring each iterate for the history is not counted
    for step in range(1, iters + 1):
        t0 = time.perf_counter()
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
        elapsed += time.perf_counter() - t0
        row = {"step": step, "elapsed_s": elapsed, **measure()}
        history.append(row)
        if callback and callback(Progress(step, iters, row, row["elapsed_s"], x.detach())):
            break
    return Result(x.detach(), history)
