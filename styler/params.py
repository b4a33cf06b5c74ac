"""Typed requests of the fast path, the solver and the evaluation: every default defined here, once.

The CLI derives its options (defaults and help) from these dataclasses, the API validates its form
fields into them, the job store serializes them and the evaluation builds them. A field's
``metadata`` holds its ``help`` and, where its values are a closed set, its ``choices``. This module
imports no torch, so ``styler --help`` and argument errors stay fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .config import (
    DEFAULT_DEVICE,
    DEFAULT_PRECISION,
    DEVICE_HELP,
    PRECISION_HELP,
    PRECISIONS,
    LossConfig,
)

SIZE = 512  # shorter side in pixels of content and style
ITERS = 300  # solver iterations of `slow`, `compare` and an API job
REFINE_ITERS = 20  # solver iterations after f_θ (`refine`)
SHEET_HEIGHT = 256  # px, the rows of a contact sheet (`compare`, eval/designs.py)
MIN_SIDE = 16  # smallest side f_θ and the VGG can work with (three 2× poolings)
INITS = ("content", "noise", "fast")
OPTIMIZERS = ("lbfgs", "adam")
LR = {"lbfgs": 1.0, "adam": 0.02}  # the solver's step size when none is given
# `styler bench`: fast-path and solver sizes (square), timed runs, tiled megapixels
BENCH_SIZES, BENCH_SOLVER_SIZES, BENCH_REPEATS = (256, 512, 1024), (256, 512), 5
BENCH_MEGAPIXELS = (1.0, 4.0, 16.0)


@dataclass(frozen=True)
class Source:
    """An input image (a file or its bytes), the name its errors use (``content 'photo.jpg'``)
    and, for a style of the gallery, its id (the key of its stored codes)."""

    name: str
    data: str | Path | bytes
    id: str | None = None

    @classmethod
    def file(cls, path: str | Path) -> Source:
        return cls(str(path), path)


def _opt(default: Any, text: str, choices: tuple[str, ...] | None = None) -> Any:
    meta = {"help": text, **({"choices": choices} if choices else {})}
    return field(default=default, metadata=meta)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class Inputs:
    """How content and styles are read and the networks run; shared by both requests."""

    size: int = _opt(SIZE, "shorter side of the content (and output) in pixels; 0: its own")
    style_scale: float = _opt(1.0, "style's shorter side ÷ the content's: sets the stroke size")
    style_weights: tuple[float, ...] | None = _opt(
        None, "one weight per style image, comma-separated: 0.7,0.3 (default: equal)"
    )
    precision: str = _opt(DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS)

    def __post_init__(self) -> None:
        if not (self.size == 0 or self.size >= MIN_SIDE):
            raise ValueError(f"size must be 0 (keep) or at least {MIN_SIDE}, not {self.size}")
        if not (math.isfinite(self.style_scale) and self.style_scale > 0):
            raise ValueError(f"style_scale must be a positive number, not {self.style_scale}")
        if self.style_weights is not None:
            weights = tuple(float(w) for w in self.style_weights)
            if not weights or not all(math.isfinite(w) and w >= 0 for w in weights):
                raise ValueError("style weights must be finite and non-negative")
            if sum(weights) <= 0:
                raise ValueError("style weights must not all be zero")
            object.__setattr__(self, "style_weights", weights)
        _check_choice("precision", self.precision, PRECISIONS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The request that :meth:`to_dict` (maybe via JSON) gave; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if isinstance(values.get("loss"), dict):
            values["loss"] = LossConfig.from_dict(values["loss"])
        return cls(**values)


@dataclass(frozen=True)
class FastRequest(Inputs):
    """f_θ(content, styles): one forward pass, at the content's own size unless asked."""

    size: int = _opt(0, "shorter side of the output in pixels; 0: the content's own (default)")
    alpha: float = _opt(1.0, "content–style trade-off: 0 = the content, 1 = full style")
    preserve_color: bool = _opt(False, "keep the content's colours (luminance-only transfer)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], not {self.alpha}")


@dataclass(frozen=True)
class SolveRequest(Inputs):
    """The solver: minimize L(x; c, s) over the pixels of x."""

    init: str = _opt("content", "start image: the content, noise, or f_θ's output", INITS)
    iters: int = _opt(ITERS, "solver iterations")
    optimizer: str = _opt("lbfgs", "L-BFGS or Adam", OPTIMIZERS)
    lr: float | None = _opt(
        None, f"step size (default: {LR['lbfgs']:g} for L-BFGS, {LR['adam']:g} for Adam)"
    )
    seed: int = _opt(0, "seed of the noise start image")
    coarse: bool = _opt(
        True,
        "solve at half size first (from 256 px up), then at full size; a start from f_θ's "
        "output (init fast) is always refined at full size",
    )
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("init", self.init, INITS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.iters < 0:
            raise ValueError(f"iters must be ≥ 0, not {self.iters}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, not {self.lr}")


@dataclass(frozen=True)
class JobSpec:
    """A solver job as the server stores it: flat JSON (the API's ``params``), the request's
    fields next to the output's."""

    request: SolveRequest
    format: str  # of the result, a key of config.FORMATS
    output_size: tuple[int, int]  # width, height of the result
    scaled: str | None = None  # how a server limit scaled the content down, if one did

    def to_dict(self) -> dict[str, Any]:
        out = {"format": self.format, "output_size": list(self.output_size), "scaled": self.scaled}
        return {**self.request.to_dict(), **out}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        width, height = d["output_size"]
        return cls(SolveRequest.from_dict(d), d["format"], (width, height), d.get("scaled"))


# Sized for a busy 2-core CPU, where one L-BFGS iteration at 128 px takes 2–5 s: 3 × 35 iterations.
QUICK = {"size": 128, "pairs": 3, "iters": (0, 5, 10, 25), "refine": (5, 10)}


@dataclass(frozen=True)
class EvalConfig:
    """``styler eval``: f_θ, the solver after K iterations and f_θ + R iterations, scored by one L.

    ``quick`` replaces size/pairs/iters/refine by :data:`QUICK` where they equal their defaults
    (so an explicit value wins unless it is the default itself).
    """

    data: Path | None = _opt(None, "folder with content/ and style/ holding the split's files")
    split: Path | None = _opt(None, "held-out split JSON (default: the one shipped with styler)")
    weights: Path | None = _opt(None, "f_θ model file (default: the shipped model)")
    out: Path = _opt(Path("eval/results"), "folder for report.json, report.md, the plot and sheet")
    size: int = _opt(SIZE, "shorter side in pixels, content and style alike")
    pairs: int | None = _opt(None, "the split's first N pairs (default: all)")
    iters: tuple[int, ...] = _opt((0, 10, 25, 50, 100, 200, 400), "solver checkpoints K")
    refine: tuple[int, ...] = _opt((5, 10, 25, 50), "refinement steps R after f_θ")
    quick: bool = _opt(
        False,
        f"a small subset for a CPU: {QUICK['pairs']} pairs at {QUICK['size']} px, K ≤ "
        f"{max(QUICK['iters'])}; it sets only the options left at their defaults",
    )
    device: str = _opt(DEFAULT_DEVICE, DEVICE_HELP)
    precision: str = _opt(DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS)
    seed: int = _opt(0, "torch seed, for repeatable figures")

    def resolved(self) -> EvalConfig:
        """Apply ``quick`` and check the values; iterations become sorted and unique."""
        if self.data is None:
            raise ValueError("data is required: the folder with content/ and style/")
        paths = {k: Path(getattr(self, k)) for k in ("data", "out")}
        cfg = replace(self, **paths, iters=tuple(self.iters), refine=tuple(self.refine))
        if cfg.quick:
            defaults = {f.name: f.default for f in fields(cfg)}
            cfg = replace(cfg, **{k: v for k, v in QUICK.items() if getattr(cfg, k) == defaults[k]})
        cfg = replace(
            cfg, iters=tuple(sorted(set(cfg.iters))), refine=tuple(sorted(set(cfg.refine)))
        )
        if not cfg.iters or min(cfg.iters + cfg.refine, default=0) < 0:
            raise ValueError("iters must be iteration counts ≥ 0 (at least one), refine counts ≥ 0")
        if cfg.size < 32:
            raise ValueError(f"size must be at least 32 pixels, not {cfg.size}")
        if cfg.pairs is not None and cfg.pairs < 1:
            raise ValueError(f"pairs must be ≥ 1, not {cfg.pairs}")
        _check_choice("precision", cfg.precision, PRECISIONS)
        return cfg
