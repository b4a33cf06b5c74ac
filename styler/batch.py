"""``styler fast`` over one image or many: inputs expanded from files, folders and globs, output
names that never overwrite an input, and the loop that loads the model and styles once."""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from .files import images_in
from .params import Source

if TYPE_CHECKING:
    import torch

    from .engine import Engine
    from .model import StyleNet
    from .params import FastRequest
    from .pipeline import Content

_GLOB = ("*", "?", "[")


def expand(args: Iterable[str]) -> list[Path]:
    """Content files from files, folders (their images, sorted by name) and globs (quoted, so
    the shell leaves them to styler), in order and without repeats. A name that is none of these
    stays: reading it later says what is wrong. A folder or glob with no image is a ValueError."""
    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            hits = images_in(path)
        elif not path.exists() and any(c in arg for c in _GLOB):
            hits = sorted(Path(p) for p in glob.glob(arg) if Path(p).is_file())
        else:
            hits = [path]
        if not hits:
            raise ValueError(f"{arg}: no images found")
        found += hits
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


def output_paths(contents: Sequence[Path], out_dir: Path, suffix: str,
                 inputs: Iterable[Path]) -> list[Path]:  # fmt: skip
    """``out_dir/NAME.suffix`` per content; ``NAME-styled[-N]`` where that is an input or another
    output of the batch, so nothing given to styler is ever overwritten."""
    taken = {p.resolve() for p in inputs}
    outs = []
    for content in contents:
        names = [content.stem, f"{content.stem}-styled"]
        names += (f"{content.stem}-styled-{n}" for n in range(2, len(contents) + 3))
        path = next(out_dir / f"{n}{suffix}" for n in names
                    if (out_dir / f"{n}{suffix}").resolve() not in taken)  # fmt: skip
        taken.add(path.resolve())
        outs.append(path)
    return outs


class TileBar:
    """A progress bar for the tiles of one large image, shown from its first tile on."""

    def __init__(self, desc: str, position: int = 0) -> None:
        self.desc, self.position, self.bar = desc, position, None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="tile", leave=False,
                            position=self.position, dynamic_ncols=True)  # fmt: skip
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Stylist:
    """f_θ with its styles loaded once; style codes kept per content size (a style's working
    size follows the content's), so a batch of same-sized photos encodes each style once."""

    def __init__(self, model: StyleNet, engine: Engine, req: FastRequest,
                 styles: Sequence[Image.Image]) -> None:  # fmt: skip
        self.model, self.engine, self.req, self.styles = model, engine, req, styles
        self._codes: dict[tuple[int, int], list] = {}

    def __call__(self, content: Content, tiles: TileBar | None = None) -> torch.Tensor:
        """f_θ's output for a decoded content."""
        from . import pipeline

        if content.size not in self._codes:
            fitted = [pipeline.fit_style(s, content.size, self.req) for s in self.styles]
            self._codes[content.size] = pipeline.style_codes(self.model, self.engine, fitted)
        return pipeline.stylize_codes(self.model, self.engine, content.rgb,
                                      self._codes[content.size], self.req,
                                      tile_progress=tiles)  # fmt: skip


def run_batch(stylist: Stylist, contents: Sequence[Path], outputs: Sequence[Path]) -> int:
    """Stylize every content to its output with a progress bar (images/s); an unreadable one is
    skipped with one line. The number that failed."""
    from tqdm import tqdm

    from . import images, pipeline

    failed, t0 = 0, time.perf_counter()
    with tqdm(total=len(contents), desc="fast", unit="img", dynamic_ncols=True) as bar:
        for src, dst in zip(contents, outputs):
            try:
                content = pipeline.read_content(Source.file(src), stylist.req)
                tiles = TileBar(src.name, position=1)
                try:
                    out = stylist(content, tiles)
                finally:
                    tiles.close()
                images.save(images.to_pil(out, content.alpha), dst)
            except (ValueError, OSError) as e:
                failed += 1
                tqdm.write(f"styler fast: skipped {' '.join(str(e).split())}", sys.stderr)
            else:
                if content.scaled:
                    tqdm.write(scaled_note(src, content.scaled))
            bar.update(1)
    done, secs = len(contents) - failed, time.perf_counter() - t0
    print(f"{done} of {len(contents)} images written in {secs:.1f} s "
          f"({done / secs:.2f} images/s)")  # fmt: skip
    return failed


@dataclass(frozen=True)
class FastCommand:
    """``styler fast`` beyond its :class:`FastRequest`: the images, where results go, and the
    runtime."""

    images: list[str]
    style: list[str] | None  # with --style every image is a content
    output: str | None  # -o, one content
    out_dir: str | None  # --out-dir, many contents
    format: str  # with --out-dir, a key of config.FORMATS
    device: str
    weights: Path | None

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> FastCommand:
        return cls(a.images, a.style, a.output, a.out_dir, a.format, a.device, a.weights)


def _split_args(a: FastCommand) -> tuple[list[str], list[str]]:
    """(contents, styles): ``--style`` names the styles; else with ``-o`` the first image is the
    content and the rest are styles, and with ``--out-dir`` the last image is the style."""
    if a.style:
        contents, styles = list(a.images), list(a.style)
    elif a.output:
        contents, styles = a.images[:1], a.images[1:]
    else:
        contents, styles = a.images[:-1], a.images[-1:]
    if not contents or not styles:
        raise ValueError("give content image(s) and at least one style (a file or a preset id "
                         "of `styler styles`)")  # fmt: skip
    return contents, styles


def _stylist(a: FastCommand, req: FastRequest, styles: list[Source]) -> Stylist:
    """The styles decoded, the engine and the model loaded: once for all contents."""
    from . import pipeline

    decoded = [pipeline.load_style(s) for s in styles]
    engine = pipeline.engine_for(req, a.device)
    return Stylist(pipeline.load_model(a.weights, engine), engine, req, decoded)


def styles_of(names: list[str]) -> list[Source]:
    """Each style named on the command line: a file, or a preset's id."""
    from . import gallery

    return [Source(s, gallery.resolve_style(s)) for s in names]


def scaled_note(path: str | Path, scaled: str) -> str:
    """The line that says a content was scaled down to the longer side's cap."""
    from .images import MAX_SIDE

    return f"{path}: scaled down {scaled} (the longer side is at most {MAX_SIDE} px)"


def fast(a: FastCommand, req: FastRequest) -> int:
    """The ``fast`` command: one content to ``-o``, or many to ``--out-dir``; the exit code.
    With ``-o`` the content is judged first, then the styles (a bad content is named first)."""
    content_args, style_args = _split_args(a)
    if a.output:
        if len(content_args) != 1:
            raise ValueError("-o writes one image; use --out-dir for several contents")
        return _one(a, req, Path(content_args[0]), style_args)
    contents = expand(content_args)
    styles = styles_of(style_args)
    outputs = output_paths(contents, Path(a.out_dir), f".{a.format}",
                           [*contents, *(s.data for s in styles)])  # fmt: skip
    stylist = _stylist(a, req, styles)
    Path(a.out_dir).mkdir(parents=True, exist_ok=True)
    failed = run_batch(stylist, contents, outputs)
    if failed:
        print(f"styler fast: {failed} of {len(contents)} images failed", file=sys.stderr)
    return 1 if failed else 0


def _one(a: FastCommand, req: FastRequest, path: Path, style_args: list[str]) -> int:
    """One content to ``-o``: every input judged before the model loads; a bad one is an error."""
    from . import images, pipeline

    content = pipeline.read_content(Source.file(path), req)
    styles = styles_of(style_args)
    images.check_output(a.output, [path, *(s.data for s in styles)])
    stylist = _stylist(a, req, styles)
    if content.scaled:
        print(scaled_note(path, content.scaled))
    t0 = time.perf_counter()
    tiles = TileBar(path.name)
    try:
        out = stylist(content, tiles)
    finally:
        tiles.close()
    dt = time.perf_counter() - t0
    images.save(images.to_pil(out, content.alpha), a.output)
    what = stylist.engine.describe(stylist.model.int8_parts)
    print(f"{a.output}: {out.shape[-1]}×{out.shape[-2]} in {dt * 1000:.0f} ms (fast path, {what})")
    return 0
