"""The fast path f_θ(s, c): AdaIN (Huang & Belongie, 2017) over the frozen VGG19.

    t = AdaIN(E(c), E(s)) = σ(E(s)) · (E(c) − μ(E(c))) / σ(E(c)) + μ(E(s))
    f_θ(s, c) = D_θ(α t + (1 − α) E(c))

E is VGG19 up to relu4_1 (frozen); only the decoder D_θ is trained and saved. A model is two
files: ``NAME.safetensors`` (decoder weights, fp16) and ``NAME.json`` (architecture, training
set-up and the identity of the VGG weights it was trained against).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from .losses import moments
from .vgg import VGG19, WEIGHTS, weights_id

ENCODER_LAYER = "relu4_1"
CONTENT_TARGETS = ("adain", "content")  # training's content target: AdaIN's t (the surrogate) or the content image's features (exact L)
FORMAT = "styler-adain"
FORMAT_VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "styler-adain.safetensors"


class ModelError(ValueError):
    """A model file that is missing, corrupt, or does not match this code or this VGG."""


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """Give content features the style's channel mean and std."""
    mean, std = moments(content)
    normalized = (content - mean[..., None, None]) / std[..., None, None]
    return normalized * style_std[..., None, None] + style_mean[..., None, None]


def _conv(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
    return layers + [nn.ReLU()] if relu else layers


class Decoder(nn.Module):
    """Mirror of VGG19 up to relu4_1: reflection padding, nearest upsampling (no checkerboards)."""

    def __init__(self) -> None:
        super().__init__()
        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
        self.net = nn.Sequential(
            *_conv(512, 256), up(),
            *_conv(256, 256), *_conv(256, 256), *_conv(256, 256), *_conv(256, 128), up(),
            *_conv(128, 128), *_conv(128, 64), up(),
            *_conv(64, 64), *_conv(64, 3, relu=False),
        )  # fmt: skip

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.net(t)


class StyleNet(nn.Module):
    """f_θ: frozen encoder + trainable decoder. ``config`` describes how it was trained."""

    def __init__(self, vgg: VGG19 | None = None, decoder: Decoder | None = None, config: dict | None = None) -> None:
        super().__init__()
        self.encoder = vgg or VGG19(max_layer=ENCODER_LAYER)
        self.decoder = decoder or Decoder()
        self.config = config or {}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, (ENCODER_LAYER,))[ENCODER_LAYER]

    def target(self, content_feat: torch.Tensor, style_feats: list[torch.Tensor], weights: list[float] | None = None) -> torch.Tensor:
        """AdaIN target t; several styles are interpolated as Σ wᵢ AdaIN(c, sᵢ) with Σ wᵢ = 1."""
        weights = normalize_weights(weights, len(style_feats))
        return sum(w * adain(content_feat, *moments(f)) for w, f in zip(weights, style_feats))

    def forward(
        self,
        content: torch.Tensor,
        styles: list[torch.Tensor],
        alpha: float = 1.0,
        style_weights: list[float] | None = None,
        preserve_color: bool = False,
    ) -> torch.Tensor:
        """Stylize ``content`` (B, 3, H, W in [0, 1]); each style may have its own size."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], not {alpha}")
        c = self.encode(content)
        t = self.target(c, [self.encode(s) for s in styles], style_weights)
        out = self.decoder(alpha * t + (1 - alpha) * c)
        out = _match_size(out, content.shape[-2:])
        if preserve_color:
            out = keep_colors(out, content)
        return out.clamp(0, 1)

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        """Write ``path`` (.safetensors, fp16 decoder) and its .json config, atomically."""
        path = weights_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            **self.config,
            **(extra or {}),
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": {"encoder": f"vgg19:{ENCODER_LAYER}", "decoder": "adain-mirror"},
            "vgg": {"weights": self.encoder.weights, "id": weights_id(self.encoder.weights)},
        }
        tensors = {k: v.detach().half().contiguous().cpu() for k, v in self.decoder.state_dict().items()}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(save(tensors, metadata={"format": FORMAT}))  # not save_file, which makes the file private (0600)
        tmp.replace(path)
        tmp_json = path.with_name(path.stem + ".json.tmp")
        tmp_json.write_text(json.dumps(config, indent=2) + "\n")
        tmp_json.replace(path.with_suffix(".json"))
        self.config = config

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu", vgg: VGG19 | None = None) -> StyleNet:
        """Load a saved f_θ, with a clear :class:`ModelError` for anything that does not fit."""
        path = weights_path(path or DEFAULT_WEIGHTS)
        cfg_path = path.with_suffix(".json")
        for p in (path, cfg_path):
            if not p.is_file():
                raise ModelError(f"{p}: model file not found (a model is NAME.safetensors + NAME.json)")
        try:
            config = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{cfg_path}: not a valid JSON model config ({e})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ModelError(f"{cfg_path}: not a styler AdaIN model config")
        if config.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{cfg_path}: model format version {config.get('format_version')}, this styler reads {FORMAT_VERSION}")
        vgg_cfg = config.get("vgg", {})
        if not isinstance(vgg_cfg, dict) or vgg_cfg.get("weights", "caffe") not in WEIGHTS:
            raise ModelError(f"{cfg_path}: 'vgg' must name VGG weights from {WEIGHTS}, not {vgg_cfg!r}")
        vgg = vgg or VGG19(vgg_cfg.get("weights", "caffe"), max_layer=ENCODER_LAYER)
        if vgg_cfg.get("id") != weights_id(vgg.weights):
            raise ModelError(f"{path}: trained against VGG weights {vgg_cfg.get('id')!r}, but these are {weights_id(vgg.weights)!r}")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelError(f"{path}: corrupt or unreadable safetensors file ({e})") from None
        decoder = Decoder()
        try:
            decoder.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as e:
            raise ModelError(f"{path}: weights do not match the decoder architecture ({str(e).splitlines()[0]})") from None
        return cls(vgg, decoder, config).to(device).eval()


def weights_path(path: str | Path) -> Path:
    """NAME, NAME.safetensors or NAME.json → NAME.safetensors (its config is NAME.json)."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        return path.with_suffix(".safetensors")
    return path.with_name(path.name + ".safetensors")


def normalize_weights(weights: list[float] | None, n: int) -> list[float]:
    """Validate style weights (one per style, non-negative, not all zero) and make them sum to 1."""
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"got {len(weights)} style weights for {n} style images")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("style weights must be finite, non-negative and not all zero")
    total = sum(weights)
    return [w / total for w in weights]


def _match_size(x: torch.Tensor, hw: torch.Size) -> torch.Tensor:
    """The decoder returns multiples of 8; bring odd-sized outputs back to the input's size."""
    if x.shape[-2:] == hw:
        return x
    return nn.functional.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)


_RGB2YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


def keep_colors(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer (Gatys et al., 2016): the stylized Y with the content's U and V."""
    m = _RGB2YUV.to(stylized)
    yuv_s = torch.einsum("ij,bjhw->bihw", m, stylized)
    yuv_c = torch.einsum("ij,bjhw->bihw", m, content)
    yuv = torch.cat([yuv_s[:, :1], yuv_c[:, 1:]], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), yuv)
