"""The fast path f_θ(s, c) = D(T E(c) + b): encoder, one affine feature transform, decoder
(the networks are in ``net.py``), and its model files.

    E   encoder to relu3_1's scale (1/4 resolution): ``lite``, a small CNN distilled from VGG19
        (Wang et al., *Collaborative Distillation*, 2020), or ``vgg``, VGG19 itself (frozen);
    T,b the whitening–colouring (or AdaIN) map of ``function.py``, from E's statistics of c and s;
    D   a light decoder, trained first to invert E (reconstruction), then on the shared L.

With ``skips`` (vgg only) E also hands D its relu2_1 and relu1_1 features, each mapped by AdaIN
to the style's moments there: the fine levels L's style term weighs, at no extra encoder cost.
With ``experts`` D's first convolution is also mixed per style (``net.CondHead``; per pair with
``route_content``); with ``linear`` WCT's matrix is corrected per pair by a learned one
(``net.LinearCorrection``); with ``blend`` each level keeps a learned share of the content's
own features, per channel and pair (``net.Blend``).

The image is reflection-padded by ``PAD`` pixels before E and cropped after D, so no convolution
sees a zero border inside the picture (a frame line otherwise). A model is two files,
``NAME.safetensors`` (fp16 weights) and ``NAME.json`` (architecture, training set-up), read and
written by ``modelfile.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import modelfile
from .config import Architecture
from .function import (
    FeatureStats,
    StyleCode,
    affine_maps,
    blend_maps,
    keep_colors,
    normalize_weights,
    style_code,
)
from .modelfile import ModelError, weights_path
from .net import Affine, Decoder, Features, LiteEncoder, VGGEncoder
from .tiles import PAD, Slices, auto_tile, features_at, pad_image, picture, tiles
from .vgg import VGG19, weights_id


@dataclass
class Encoded:
    """A content image's features E(c) (padded), its size and statistics (per level): all f_θ
    needs of c."""

    features: Features
    hw: tuple[int, int]
    stats: list[FeatureStats]


class StyleNet(nn.Module):
    """f_θ. ``forward`` stylizes; ``style_code`` + ``stylize`` let a caller reuse a style's code."""

    def __init__(self, encoder: nn.Module, decoder: Decoder, transform: str = "wct",
                 config: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.encoder, self.decoder, self.transform = encoder, decoder, transform
        self.config = config or {}
        self.identity = ""  # hash of the weights file, for caches keyed by model

    @property
    def kind(self) -> str:
        return "vgg" if isinstance(self.encoder, VGGEncoder) else "lite"

    @property
    def skips(self) -> bool:
        return self.decoder.skips is not None

    @property
    def blocks(self) -> int:
        return len(self.decoder.blocks)

    @property
    def experts(self) -> int:
        return self.decoder.head.weight.shape[0] if self.decoder.head else 0

    @property
    def linear(self) -> int:
        return self.decoder.linear.rank if self.decoder.linear else 0

    @property
    def route_content(self) -> bool:
        return bool(self.decoder.head and self.decoder.head.content)

    @property
    def blend(self) -> bool:
        return self.decoder.blend is not None

    @property
    def int8_parts(self) -> tuple[str, ...]:
        """What runs in int8 when the engine's int8 is on (the blocks only with their scales)."""
        return ("encoder",) * (self.kind == "vgg") + ("blocks",) * bool(self.decoder.int8_scales)

    @property
    def architecture(self) -> Architecture:
        return Architecture(self.kind, self.transform, self.skips, self.blocks, self.experts,
                            self.linear, self.route_content, self.blend)  # fmt: skip

    @classmethod
    def build(cls, arch: Architecture | None = None, seed: int = 0,
              vgg: VGG19 | None = None) -> StyleNet:  # fmt: skip
        """An untrained f_θ: training starts here. No ``arch``: the small lite model, which
        tests use as a valid model."""
        arch = arch or Architecture("lite")
        torch.manual_seed(seed)
        enc = VGGEncoder(vgg, arch.skips) if arch.encoder == "vgg" else LiteEncoder()
        decoder = Decoder(enc.channels, arch.skips, arch.blocks, arch.experts, arch.linear,
                          arch.route_content, arch.blend)  # fmt: skip
        return cls(enc, decoder, arch.transform)

    def encode(self, x: torch.Tensor) -> tuple[Features, tuple[int, int]]:
        """E of the padded image, and the image's size (for :func:`picture` and the crop)."""
        padded, hw = pad_image(x)
        return self.encoder(padded), hw

    def style_code(self, style: torch.Tensor, tile: int | None = None) -> StyleCode:
        return style_code(self._stats(style, tile), self.transform)

    def decode(self, f: Features, hw: tuple[int, int], affines: list[Affine] | None = None,
               head: Affine | None = None) -> torch.Tensor:  # fmt: skip
        """D(f) (or D(T f + b)) cropped to the image: the padding and its border ring go."""
        out = self.decoder(f, affines, head)
        return out[..., PAD : PAD + hw[0], PAD : PAD + hw[1]]

    def encode_content(self, content: torch.Tensor) -> Encoded:
        f, hw = self.encode(content)
        return Encoded(f, hw, self._stats_of(f, picture(hw)))

    def _stats_of(self, f: Features, px: Slices) -> list[FeatureStats]:
        """Statistics per level of the features of the pixels ``px``: full at E's layer (WCT
        needs the covariance), diagonal at the skips (AdaIN needs no more)."""
        levels = enumerate(zip(f, self.encoder.strides, strict=True))
        return [FeatureStats.of(features_at(fi, px, stride), diagonal=i > 0)
                for i, (fi, stride) in levels]  # fmt: skip

    def _stats(self, x: torch.Tensor, tile: int | None) -> list[FeatureStats]:
        """E's statistics over the whole image, gathered tile by tile when it is large."""
        tile = tile or auto_tile(x)
        if not tile:
            return self.encode_content(x).stats
        padded, _ = pad_image(x)
        parts = [self._stats_of(self.encoder(region), at)
                 for region, (_, _, at) in tiles(padded, x.shape[-2:], tile)]  # fmt: skip
        return [sum(level[1:], level[0]) for level in zip(*parts)]

    def stylize(self, content: torch.Tensor, codes: list[StyleCode],
                style_weights: list[float] | None = None, alpha: float = 1.0,
                preserve_color: bool = False, tile: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                encoded: Encoded | None = None) -> torch.Tensor:  # fmt: skip
        """f_θ from style codes; unclamped in training (``self.training``), in [0, 1] otherwise.

        Images above ``TILE_PIXELS`` (or any image, with ``tile``) run in tiles: the statistics
        T and b depend on are gathered over the whole image first, then each tile is stylized
        with ``HALO`` pixels of context and only its core kept, so the result equals the untiled
        one and no seam can appear; memory is bounded by the tile. ``progress(done, total)``
        is called after each tile. ``encoded`` (from :meth:`encode_content`) skips the encoder.
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], not {alpha}")
        weights = normalize_weights(style_weights, len(codes))
        tile = None if encoded else tile or auto_tile(content)
        enc = None if tile else encoded or self.encode_content(content)
        stats = enc.stats if enc else self._stats(content, tile)
        head = self.decoder.head(codes, weights, stats, alpha) if self.decoder.head else None
        blend = self.decoder.blend(codes, weights, stats) if self.decoder.blend else None
        if self.decoder.linear:
            codes = [self.decoder.linear(stats[0], c) for c in codes]
        maps = affine_maps(stats, codes, weights, self.transform, alpha)
        if blend:
            maps = blend_maps(maps, blend)
        if enc:
            out = self.decode(enc.features, enc.hw, maps, head)
        else:
            out = self._decode_tiles(content, maps, head, tile, progress)
        if preserve_color:
            out = keep_colors(out.float(), content)
        return out if self.training else out.float().clamp(0, 1)

    def _decode_tiles(self, content: torch.Tensor, maps: list[Affine], head: Affine | None,
                      tile: int,
                      progress: Callable[[int, int], None] | None) -> torch.Tensor:  # fmt: skip
        padded, _ = pad_image(content)
        out = torch.empty(content.shape, dtype=torch.float32, device=content.device)
        parts = list(tiles(padded, content.shape[-2:], tile))
        for i, (region, (rows, cols, at)) in enumerate(parts):
            y = self.decoder(self.encoder(region), maps, head)
            out[..., rows, cols] = y[..., at[0], at[1]].float()
            if progress:
                progress(i + 1, len(parts))
        return out

    def forward(self, content: torch.Tensor, styles: list[torch.Tensor], alpha: float = 1.0,
                style_weights: list[float] | None = None, preserve_color: bool = False,
                tile: int | None = None) -> torch.Tensor:  # fmt: skip
        """Stylize ``content`` (B, 3, H, W in [0, 1]); each style may have its own size."""
        codes = [self.style_code(s, tile) for s in styles]
        return self.stylize(content, codes, style_weights, alpha, preserve_color, tile)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The weights a file holds: the decoder, and the encoder unless it is VGG19."""
        state = {f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}
        if self.kind == "lite":
            state |= {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        return state

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        """Write ``path`` (.safetensors, fp16) and its .json config, each atomically."""
        config = {**self.config, **(extra or {}), "architecture": self.architecture.to_dict()}
        if self.kind == "vgg":
            config["vgg"] = {"weights": self.encoder.vgg.weights, "id": weights_id()}
        self.config = modelfile.write(weights_path(path), self.trained_state(), config)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
             vgg: VGG19 | None = None) -> StyleNet:  # fmt: skip
        """Load a saved f_θ, with a clear :class:`ModelError` for anything that does not fit."""
        path = modelfile.locate(path)
        config = modelfile.read_config(path.with_suffix(".json"))
        arch = modelfile.architecture(path, config)
        if arch.encoder == "vgg":
            vgg = modelfile.matching_vgg(path, config, vgg)
        state, identity = modelfile.read_weights(path)
        model = cls.build(arch, vgg=vgg)
        try:
            model.load_state_dict(state, strict=False)
            missing = set(model.trained_state()) - set(state)
            if missing or set(state) - set(model.trained_state()):
                raise RuntimeError(f"missing {sorted(missing)[:3]}, or unexpected tensors")
        except RuntimeError as e:
            msg = str(e).splitlines()[0]
            raise ModelError(
                f"{path}: weights do not fit the {arch} architecture ({msg})"
            ) from None
        model.decoder.int8_scales = modelfile.block_scales(path, config, model.blocks)
        model.config, model.identity = config, identity
        return model.to(device).eval()
