"""``styler`` command line: fast (f_θ), slow (solver), refine, compare, train, eval, bench, serve."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import images
from .images import ImageError
from .losses import STYLE_KINDS, LossConfig, Objective
from .model import CONTENT_TARGETS, DEFAULT_WEIGHTS, ModelError, StyleNet
from .solver import INITS, OPTIMIZERS, Progress, solve

MAX_SIDE = 4096  # longest output side the CLI will produce


class UsageError(Exception):
    """A bad argument value, reported as one line with exit code 2."""


def _device(name: str) -> torch.device:
    from .train import resolve_device

    try:
        return resolve_device(name)
    except RuntimeError as e:
        raise UsageError(str(e)) from None


def _size(text: str) -> int | None:
    n = int(text)
    if n < 0 or n > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"size must be between 0 (keep) and {MAX_SIDE}")
    return n or None


def _weights_list(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _inputs(a: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Content and style tensors at ``--size`` (shorter side), checked before any work starts."""
    images.format_for(a.output)
    content = images.read(a.content, a.size, MAX_SIDE).to(device)
    styles = [images.read(s, a.size, MAX_SIDE).to(device) for s in a.style]
    return content, styles


def _load_model(a: argparse.Namespace, device: torch.device) -> StyleNet:
    return StyleNet.load(a.weights, device=device)


@torch.inference_mode()
def _stylize(model: StyleNet, content: torch.Tensor, styles: list[torch.Tensor], style_weights: list[float] | None, **options) -> torch.Tensor:
    return model(content, styles, style_weights=style_weights, **options)


def cmd_fast(a: argparse.Namespace) -> None:
    device = _device(a.device)
    content, styles = _inputs(a, device)
    model = _load_model(a, device)
    t0 = time.perf_counter()
    out = _stylize(model, content, styles, a.style_weights, alpha=a.alpha, preserve_color=a.preserve_color)
    dt = time.perf_counter() - t0
    images.save(images.to_pil(out), a.output)
    print(f"{a.output}: {out.shape[-1]}×{out.shape[-2]} in {dt * 1000:.0f} ms (fast path, {device})")


def _objective(a: argparse.Namespace, device: torch.device) -> Objective:
    cfg = LossConfig(style_kind=a.style_loss, content_weight=a.content_weight, style_weight=a.style_weight, tv_weight=a.tv_weight)
    return Objective(cfg).to(device)


def _progress_bar(total: int, desc: str, save_to: str | None = None, save_every: int = 0):
    """A tqdm bar showing L's terms; optionally writes the current image every ``save_every`` steps."""
    bar = tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True)

    def callback(p: Progress) -> None:
        bar.update(1)
        bar.set_postfix(L=f"{p.terms['total']:.4f}", content=f"{p.terms['content']:.3f}", style=f"{p.terms['style']:.4f}")
        if save_to and save_every and p.step % save_every == 0:
            images.save(images.to_pil(p.image), save_to)

    return bar, callback


def run_solver(a: argparse.Namespace, init: str) -> None:
    device = _device(a.device)
    content, styles = _inputs(a, device)
    objective = _objective(a, device)
    start: str | torch.Tensor = init
    if init == "fast":
        start = _stylize(_load_model(a, device), content, styles, a.style_weights).clone()
    targets = objective.targets(content, styles, a.style_weights)
    bar, callback = _progress_bar(a.iters, f"{a.optimizer} from {init}", a.output, a.save_every)
    with bar:
        result = solve(objective, content, targets, a.iters, a.optimizer, start, a.lr, a.seed, callback)
    images.save(images.to_pil(result.image), a.output)
    first, last = result.history[0], result.final
    print(f"{a.output}: L {first['total']:.4f} → {last['total']:.4f} "
          f"(content {last['content']:.4f}, style {last['style']:.4f}) in {last['elapsed_s']:.1f} s, {len(result.history) - 1} iterations")  # fmt: skip


def cmd_slow(a: argparse.Namespace) -> None:
    run_solver(a, a.init)


def cmd_refine(a: argparse.Namespace) -> None:
    run_solver(a, "fast")


def cmd_compare(a: argparse.Namespace) -> None:
    device = _device(a.device)
    content, styles = _inputs(a, device)
    model = _load_model(a, device)
    objective = _objective(a, device)
    targets = objective.targets(content, styles, a.style_weights)
    _stylize(model, content, styles, None)  # warm-up, so the timing is the steady-state forward
    t0 = time.perf_counter()
    fast = _stylize(model, content, styles, None)
    fast_s = time.perf_counter() - t0
    bar, callback = _progress_bar(a.iters, f"{a.optimizer} from content")
    with bar:
        slow = solve(objective, content, targets, a.iters, a.optimizer, "content", a.lr, a.seed, callback)
    with torch.no_grad():
        fast_terms = {k: v.item() for k, v in objective(fast, targets, report=True).items()}
    rows = [("fast (f_θ)", fast_s, fast_terms), (f"slow ({a.iters} it)", slow.final["elapsed_s"], slow.final)]
    print(f"\n{'':16}{'time':>10}{'L':>10}{'content':>10}{'style':>10}{'moments':>10}{'gram':>10}")
    for name, secs, t in rows:
        print(f"{name:16}{secs:>9.2f}s{t['total']:>10.4f}{t['content']:>10.4f}{t['style']:>10.4f}{t['style_moments']:>10.4f}{t['style_gram']:>10.4f}")
    print(f"slow/fast time: {slow.final['elapsed_s'] / fast_s:.0f}×   (style term: {objective.config.style_kind})")
    tiles = [content, styles[0], fast, slow.image]
    labels = ["content", "style", f"fast {fast_s * 1000:.0f} ms  L={fast_terms['total']:.3f}",
              f"slow {slow.final['elapsed_s']:.1f} s  L={slow.final['total']:.3f}"]  # fmt: skip
    images.save(images.sheet([[images.to_pil(t) for t in tiles]], labels, height=a.sheet_height), a.output)
    print(f"sheet: {a.output}")


def cmd_train(a: argparse.Namespace) -> None:
    from .train import TrainConfig, train

    _device(a.device)
    loss = LossConfig(style_kind=a.style_loss, content_weight=a.content_weight, style_weight=a.style_weight, tv_weight=a.tv_weight)
    cfg = TrainConfig(
        content_dir=a.content_dir, style_dir=a.style_dir, out=a.out, steps=a.steps, batch=a.batch, size=a.size,
        lr=a.lr, lr_decay=a.lr_decay, loss=loss, holdout=a.holdout, device=a.device, workers=a.workers,
        seed=a.seed, ckpt_every=a.ckpt_every, init=a.init, content_target=a.content_target,
    )  # fmt: skip
    path = train(cfg)
    print(f"model: {path}  (use it with: styler fast --weights {path} …)")


def cmd_eval(a: argparse.Namespace) -> None:
    from .evaluate import EvalConfig, evaluate

    if not a.data:
        raise UsageError("--data is required: the folder with content/ and style/ that the split's file names refer to (or set STYLER_DATA)")
    kw = {k: getattr(a, k) for k in ("split", "size", "pairs", "iters", "refine") if getattr(a, k) is not None}
    evaluate(EvalConfig(data=Path(a.data), weights=a.weights, out=Path(a.out), quick=a.quick, device=str(_device(a.device)), seed=a.seed, **kw))


def cmd_bench(a: argparse.Namespace) -> None:
    from .bench import bench

    bench(_device(a.device), a.weights, a.sizes, a.solver_sizes, a.repeats)


def cmd_serve(a: argparse.Namespace) -> None:
    from .api import serve

    serve(host=a.host, port=a.port, workers=a.workers)


def _add_io(p: argparse.ArgumentParser, many_styles: bool = True) -> None:
    p.add_argument("content", help="content photo (JPEG, PNG, WebP, …)")
    p.add_argument("style", nargs="+" if many_styles else 1, help="style image(s)" if many_styles else "style image")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg or .webp)")
    p.add_argument("--size", type=_size, default=512, help="shorter side in pixels of content and style; 0 keeps the original (default 512)")
    p.add_argument("--style-weights", type=_weights_list, help="comma-separated weights for several styles, e.g. 0.7,0.3 (default equal)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda if available)")


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, help=f"f_θ model (.safetensors with its .json beside it; default: shipped {DEFAULT_WEIGHTS.name})")


def _add_objective(p: argparse.ArgumentParser) -> None:
    d = LossConfig()
    g = p.add_argument_group("objective L(x; c, s)")
    g.add_argument("--style-weight", type=float, default=d.style_weight, help=f"weight of the style term (default {d.style_weight})")
    g.add_argument("--content-weight", type=float, default=d.content_weight, help=f"weight of the content term (default {d.content_weight})")
    g.add_argument("--style-loss", choices=STYLE_KINDS, default=d.style_kind, help=f"style statistics: channel mean/std or Gram matrices (default {d.style_kind})")
    g.add_argument("--tv-weight", type=float, default=d.tv_weight, help=f"total-variation smoothing weight (default {d.tv_weight})")


def _add_solver(p: argparse.ArgumentParser, iters: int) -> None:
    g = p.add_argument_group("solver")
    g.add_argument("--iters", type=int, default=iters, help=f"solver iterations (default {iters})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs", help="L-BFGS (default) or Adam")
    g.add_argument("--lr", type=float, help="step size (default: 1 for L-BFGS, 0.02 for Adam)")
    g.add_argument("--seed", type=int, default=0, help="seed for --init noise")


class _Help(argparse.HelpFormatter):
    """Appends an option's default to its help, unless the help already states it or there is none to state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return text
        return f"{text} (default {action.default})"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="styler",
        description="Neural style transfer: a per-image solver (slow), an amortized network f_θ (fast), and the bridge between them.",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = _Help

    p = sub.add_parser("fast", help="stylize with f_θ: one forward pass", description="Stylize CONTENT with one or more STYLE images using the trained network f_θ.")
    _add_io(p)
    _add_model(p)
    p.add_argument("--alpha", type=float, default=1.0, help="content–style trade-off: 0 = content, 1 = full style (default 1)")
    p.add_argument("--preserve-color", action="store_true", help="keep the content's colours (luminance-only transfer)")
    p.set_defaults(func=cmd_fast)

    p = sub.add_parser("slow", help="stylize by optimizing L per image (Gatys et al.)", description="Optimize the pixels of the output to minimize L(x; c, s), with a progress bar.")
    _add_io(p)
    _add_model(p)
    _add_solver(p, 300)
    p.add_argument("--init", choices=(*INITS, "fast"), default="content", help="start from the content image, noise, or f_θ's output (= refine)")
    p.add_argument("--save-every", type=int, default=0, help="also write the current image to OUTPUT every N iterations")
    _add_objective(p)
    p.set_defaults(func=cmd_slow)

    p = sub.add_parser("refine", help="f_θ's output + a few solver steps (semi-amortized)", description="Run f_θ, then a few solver iterations started from its output.")
    _add_io(p)
    _add_model(p)
    _add_solver(p, 20)
    p.add_argument("--save-every", type=int, default=0, help="also write the current image to OUTPUT every N iterations")
    _add_objective(p)
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("compare", help="fast vs slow on one pair: times, loss terms, and a sheet", description="Run f_θ and the solver on the same pair; print time and L's terms for each and write a sheet (content | style | fast | slow).")
    _add_io(p, many_styles=False)
    _add_model(p)
    _add_solver(p, 200)
    p.add_argument("--sheet-height", type=int, default=256, help="height of each tile in the sheet (default 256)")
    _add_objective(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train f_θ on folders of content and style images", formatter_class=fmt,
                       description="Amortized training: minimize the shared L over random (content, style) crops. Resumes from OUT/checkpoint.pt with the options given now (it prints those that changed).")  # fmt: skip
    p.add_argument("content_dir", help="folder of content photos")
    p.add_argument("style_dir", help="folder of style images")
    p.add_argument("--out", default="runs/adain", help="run folder: checkpoint, log.csv, loss.png, model.safetensors")
    p.add_argument("--steps", type=int, default=20_000, help="total training steps (resume continues up to this)")
    p.add_argument("--batch", type=int, default=8, help="pairs per step")
    p.add_argument("--size", type=int, default=256, help="crop size in pixels")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--lr-decay", type=float, default=5e-5, help="lr / (1 + decay · step)")
    p.add_argument("--holdout", default=str(Path(__file__).resolve().parent.parent / "eval" / "split.json"),
                   help="JSON of file names to exclude (the evaluation's held-out split); '' for none")  # fmt: skip
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="data-loading processes")
    p.add_argument("--seed", type=int, default=0, help="seed for the order of pairs and crops and the decoder's initial weights")
    p.add_argument("--ckpt-every", type=int, default=500, help="checkpoint and export every N steps")
    p.add_argument("--init", type=Path, help="start from an existing model's decoder")
    p.add_argument("--content-target", choices=CONTENT_TARGETS, default="adain",
                   help="content term's target: AdaIN's t (the AdaIN paper's surrogate) or the content image's features (the exact L the solver minimizes)")  # fmt: skip
    _add_objective(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="measure the amortization gap on the held-out split", formatter_class=fmt,
                       description="Score f_θ, the solver after K iterations and f_θ + R refinement steps with the same L on held-out pairs.")  # fmt: skip
    p.add_argument("--data", default=os.environ.get("STYLER_DATA"), help="folder with content/ and style/ holding the split's files (or env STYLER_DATA); required")
    p.add_argument("--split", type=Path, help="held-out split JSON (default: the repo's eval/split.json)")
    _add_model(p)
    p.add_argument("--out", default="eval/results", help="folder for report.json, report.md, curves.png, sheet.jpg")
    p.add_argument("--size", type=int, help="shorter side in pixels (default 512, or --quick's size)")
    p.add_argument("--pairs", type=int, help="number of pairs (default all in the split, or --quick's few)")
    p.add_argument("--iters", type=lambda s: tuple(int(x) for x in s.split(",")), help="solver checkpoints K (default 0,10,25,50,100,200,400)")
    p.add_argument("--refine", type=lambda s: tuple(int(x) for x in s.split(",")), help="refinement steps R (default 5,10,25,50)")
    p.add_argument("--quick", action="store_true", help="a small subset (3 pairs at 128 px, K ≤ 25) that runs on a CPU in a few minutes; explicit options still win")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0, help="torch seed, for repeatable figures")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="time the fast and slow paths on this machine", formatter_class=fmt,
                       description="Fast-path time per image (first run and median), solver time per iteration, peak memory.")  # fmt: skip
    _add_model(p)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="fast-path image sizes (square)")
    p.add_argument("--solver-sizes", type=int, nargs="+", default=[256, 512], help="solver image sizes (square)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per size (after the first)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("serve", help="run the web page and REST API", formatter_class=fmt, description="Serve the web page and the REST API (FastAPI + uvicorn).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for all interfaces")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.set_defaults(func=cmd_serve)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ImageError, ModelError, UsageError, ValueError, FileNotFoundError) as e:
        print(f"styler {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
