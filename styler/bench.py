"""``styler bench``: how fast both paths are on this machine; measured here, not in tests."""

from __future__ import annotations

import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import pipeline
from .engine import Engine
from .params import FastRequest, SolveRequest


def _sync(engine: Engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(engine: Engine) -> float:
    if engine.device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _timed(fn: Callable[[], object], engine: Engine) -> float:
    _sync(engine)
    t0 = time.perf_counter()
    fn()
    _sync(engine)
    return time.perf_counter() - t0


def _pair(size: int, engine: Engine, g: torch.Generator) -> pipeline.Pair:
    content, style = (torch.rand(1, 3, size, size, generator=g).to(engine.device) for _ in "cs")
    return pipeline.Pair(content, [style], [1.0])


def bench(engine: Engine, weights: Path | None, sizes: list[int], solver_sizes: list[int],
          repeats: int) -> None:  # fmt: skip
    """Print fast-path times (first run, median of ``repeats``), solver time per iteration, peak
    memory, all in the engine's precision."""
    threads = f", {torch.get_num_threads()} threads" if engine.device.type == "cpu" else ""
    cpu = platform.processor() or platform.machine()
    name = torch.cuda.get_device_name() if engine.device.type == "cuda" else cpu
    print(f"styler bench on {engine.describe()} ({name}{threads}), torch {torch.__version__}")
    t_load = time.perf_counter()
    model = pipeline.load_model(weights, engine)
    print(f"model load: {time.perf_counter() - t_load:.2f} s")
    g = torch.Generator().manual_seed(0)
    req = FastRequest(precision=engine.precision)

    print(f"\nfast path (f_θ, content + style of the same size, {repeats} runs after the first)")
    print(f"{'size':>6}{'first':>10}{'median':>10}{'min':>10}{'img/s':>8}{'peak MB':>10}")
    fast_512 = None
    for s in sizes:
        pair = _pair(s, engine, g)
        first = _timed(lambda: pipeline.stylize(model, engine, pair, req), engine)  # noqa: B023
        runs = [_timed(lambda: pipeline.stylize(model, engine, pair, req), engine)  # noqa: B023
                for _ in range(repeats)]  # fmt: skip
        med = statistics.median(runs)
        fast_512 = med if s == 512 else fast_512
        print(f"{s:>6}{first * 1e3:>8.0f}ms{med * 1e3:>8.0f}ms{min(runs) * 1e3:>8.0f}ms"
              f"{1 / med:>8.2f}{_peak_mb(engine):>10.0f}")  # fmt: skip

    print("\nslow path (L-BFGS on the shared objective at full size, per iteration, 6 iterations "
          "after 2 warm-up)")  # fmt: skip
    print(f"{'size':>6}{'s/iter':>10}{'vs fast':>10}{'peak MB':>10}")
    solver = SolveRequest(iters=6, precision=engine.precision, coarse=False)
    objective = pipeline.objective_for(solver.loss, engine)
    for s in solver_sizes:
        pair = _pair(s, engine, g)
        warm = SolveRequest(iters=2, precision=engine.precision, coarse=False)
        pipeline.solve(warm, pair, engine, objective=objective)
        per_iter = pipeline.solve(solver, pair, engine, objective=objective).final["elapsed_s"] / 6
        ratio = f"{per_iter / fast_512:>9.1f}×" if s == 512 and fast_512 else f"{'':>10}"
        print(f"{s:>6}{per_iter:>9.2f}s{ratio}{_peak_mb(engine):>10.0f}")
    print("\n'vs fast': one solver iteration at 512 px ÷ one f_θ forward at 512 px (same run).")
