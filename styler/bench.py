"""``styler bench``: how fast the two paths are on this machine. Speed is measured here, not in tests."""

from __future__ import annotations

import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from .losses import Objective
from .model import StyleNet
from .solver import solve


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench(device: torch.device, weights: Path | None, sizes: list[int], solver_sizes: list[int], repeats: int) -> None:
    """Print fast-path times (first run, median of ``repeats``), solver time per iteration, peak memory."""
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"styler bench on {device} ({name}{threads}), torch {torch.__version__}")
    t_load = time.perf_counter()
    model = StyleNet.load(weights, device=device)
    print(f"model load: {time.perf_counter() - t_load:.2f} s")
    g = torch.Generator().manual_seed(0)

    print(f"\nfast path (f_θ forward, content + style of the same size, {repeats} runs after the first)")
    print(f"{'size':>6}{'first':>10}{'median':>10}{'min':>10}{'img/s':>8}{'peak MB':>10}")
    fast_512 = None
    for s in sizes:
        c, st = (torch.rand(1, 3, s, s, generator=g).to(device) for _ in range(2))
        with torch.inference_mode():
            first = _timed(lambda: model(c, [st]), device)
            runs = [_timed(lambda: model(c, [st]), device) for _ in range(repeats)]
        med = statistics.median(runs)
        fast_512 = med if s == 512 else fast_512
        print(f"{s:>6}{first * 1e3:>8.0f}ms{med * 1e3:>8.0f}ms{min(runs) * 1e3:>8.0f}ms{1 / med:>8.2f}{_peak_mb(device):>10.0f}")

    print("\nslow path (L-BFGS on the shared objective, per iteration, 6 iterations after 2 warm-up)")
    print(f"{'size':>6}{'s/iter':>10}{'vs fast':>10}{'peak MB':>10}")
    objective = Objective(vgg=model.encoder)
    for s in solver_sizes:
        c, st = (torch.rand(1, 3, s, s, generator=g).to(device) for _ in range(2))
        targets = objective.targets(c, [st])
        solve(objective, c, targets, iters=2)
        per_iter = solve(objective, c, targets, iters=6).final["elapsed_s"] / 6
        ratio = f"{per_iter / fast_512:>9.1f}×" if s == 512 and fast_512 else f"{'':>10}"
        print(f"{s:>6}{per_iter:>9.2f}s{ratio}{_peak_mb(device):>10.0f}")
    print("\n'vs fast': one solver iteration at 512 px ÷ one f_θ forward at 512 px (same run).")
