"""What each ``styler`` command does, given its parsed arguments (the grammar is :mod:`styler.cli`).

Each command imports what it runs, so the parser and ``--help`` never import torch.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from .config import TrainConfig
from .options import build
from .params import EvalConfig, FastRequest, SolveRequest, Source


class UsageError(Exception):
    """A bad argument value, reported as one line with exit code 2."""


def _run_context(a: argparse.Namespace, req: Any) -> tuple[Any, Any]:
    """The engine and the decoded (content, styles), checked before any work starts."""
    from . import images, pipeline
    from .batch import scaled_note, styles_of

    styles = styles_of(a.style)
    images.check_output(a.output, [a.content, *(s.data for s in styles)])
    engine = pipeline.engine_for(req, a.device)
    pair = pipeline.read_pair(Source.file(a.content), styles, req, engine.device)
    if pair.scaled:
        print(scaled_note(a.content, pair.scaled))
    return engine, pair


def _save(x: Any, path: str, alpha: Any = None) -> None:
    from . import images

    images.save(images.to_pil(x, alpha), path)


def cmd_fast(a: argparse.Namespace) -> int:
    from .batch import FastCommand, fast

    return fast(FastCommand.from_args(a), build(FastRequest, a))


def cmd_styles(a: argparse.Namespace) -> None:
    from .gallery import list_presets

    for p in list_presets():
        print(f"{p.id:40} {p.title} — {p.artist}, {p.year}")
    print("\nUse an id wherever a style image goes: styler fast photo.jpg ID -o out.png")


def _progress_bar(total: int, desc: str, save_to: str | None = None, save_every: int = 0,
                  alpha: Any = None):  # fmt: skip
    """A tqdm bar showing L's terms; optionally writes the current image every ``save_every``."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)

    def callback(p: Any) -> None:
        bar.update(1)
        t = p.terms
        bar.set_postfix(L=f"{t['total']:.4f}", content=f"{t['content']:.3f}",
                        style=f"{t['style']:.4f}")  # fmt: skip
        if save_to and save_every and p.step % save_every == 0:
            _save(p.image, save_to, alpha)

    return bar, callback


def cmd_solve(a: argparse.Namespace) -> None:
    """slow and refine (= slow --init fast with fewer iterations)."""
    from . import pipeline

    req = build(SolveRequest, a)
    engine, pair = _run_context(a, req)
    model = pipeline.load_model(a.weights, engine) if req.init == "fast" else None
    desc = f"{req.optimizer} from {req.init}"
    bar, callback = _progress_bar(req.iters, desc, a.output, a.save_every, pair.alpha)
    with bar:
        result = pipeline.solve(req, pair, engine, model=model, callback=callback)
    _save(result.image, a.output, pair.alpha)
    first, last = result.history[0], result.final
    print(f"{a.output}: L {first['total']:.4f} → {last['total']:.4f} (content "
          f"{last['content']:.4f}, style {last['style']:.4f}) in {last['elapsed_s']:.1f} s, "
          f"{len(result.history) - 1} iterations, {engine.describe()}")  # fmt: skip


def cmd_compare(a: argparse.Namespace) -> None:
    from . import images, pipeline

    req = build(SolveRequest, a)
    engine, pair = _run_context(a, req)
    model = pipeline.load_model(a.weights, engine)
    objective = pipeline.objective_for(req.loss, engine)
    fast_req = pipeline.fast_of(req)
    pipeline.stylize(model, engine, pair, fast_req)  # warm-up: the timing is the steady state
    t0 = time.perf_counter()
    fast = pipeline.stylize(model, engine, pair, fast_req)
    fast_s = time.perf_counter() - t0
    bar, callback = _progress_bar(req.iters, f"{req.optimizer} from content")
    with bar:
        slow = pipeline.solve(req, pair, engine, objective=objective, callback=callback)
    fast_terms = pipeline.score(objective, pair, fast)
    slow_s = slow.final["elapsed_s"]
    rows = [("fast (f_θ)", fast_s, fast_terms), (f"slow ({req.iters} it)", slow_s, slow.final)]
    keys = ("total", "content", "style", "style_moments", "style_gram")
    print(f"\n{'':16}{'time':>10}" + "".join(f"{k.removeprefix('style_'):>10}" for k in keys))
    for name, secs, t in rows:
        print(f"{name:16}{secs:>9.2f}s" + "".join(f"{t[k]:>10.4f}" for k in keys))
    print(f"slow/fast time: {slow_s / fast_s:.0f}×   (style term: {req.loss.style_kind}, "
          f"{engine.describe(model.int8_parts)})")  # fmt: skip
    tiles = [pair.content, pair.styles[0], fast, slow.image]
    labels = ["content", "style", f"fast {fast_s * 1000:.0f} ms  L={fast_terms['total']:.3f}",
              f"slow {slow_s:.1f} s  L={slow.final['total']:.3f}"]  # fmt: skip
    from .report import sheet

    images.save(sheet([[images.to_pil(t) for t in tiles]], labels, a.sheet_height), a.output)
    print(f"sheet: {a.output}")


def cmd_train(a: argparse.Namespace) -> None:
    from .train import train

    path = train(build(TrainConfig, a))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per rank
        print(f"model: {path}  (use it with: styler fast --weights {path} …)")


def cmd_eval(a: argparse.Namespace) -> None:
    from .evaluate import evaluate

    if a.data is None:
        raise UsageError("--data is required: the folder with content/ and style/ that the "
                         "split's file names refer to (or set STYLER_DATA)")  # fmt: skip
    evaluate(build(EvalConfig, a))


def cmd_bench(a: argparse.Namespace) -> None:
    from .bench import bench
    from .engine import Engine
    from .images import MAX_PIXELS, MAX_SIDE
    from .params import MIN_SIDE

    for s in a.sizes + a.solver_sizes:
        if not MIN_SIDE <= s <= MAX_SIDE:
            raise UsageError(f"sizes must be {MIN_SIDE}…{MAX_SIDE} px, not {s}")
    for mp in a.megapixels:
        if not 0 < mp <= MAX_PIXELS / 1e6:
            raise UsageError(f"--megapixels must be in (0, {MAX_PIXELS / 1e6:g}], not {mp}")
    engine = Engine.create(a.device, a.precision)
    bench(engine, a.weights, a.sizes, a.solver_sizes, a.repeats, tuple(a.megapixels), a.peers)


def cmd_daemon(a: argparse.Namespace) -> int:
    from . import daemon

    if a.action == "run":
        daemon.serve(a.idle_minutes)
    elif a.action == "start":
        info = daemon.start(a.idle_minutes)
        print(f"styler daemon: running, pid {info.get('pid', '?')} ({daemon.socket_path()}); "
              "`styler fast` uses it")  # fmt: skip
    elif a.action == "stop":
        print("styler daemon: stopped" if daemon.stop() else "styler daemon: none was running")
    else:
        info = daemon.status()
        if info is None:
            print("styler daemon: not running")
            return 1
        if info.get("busy"):
            print("styler daemon: running, busy with a call")
        else:
            print(f"styler daemon: running, pid {info['pid']}, {info['calls']} calls served, "
                  f"up {info['uptime_s']} s ({daemon.socket_path()})")  # fmt: skip
    return 0


def cmd_serve(a: argparse.Namespace) -> None:
    from .api import serve

    serve(host=a.host, port=a.port, workers=a.workers)
