"""A model's two files: ``NAME.safetensors`` (fp16 weights) and ``NAME.json`` (architecture,
training set-up, int8 scales): finding, reading, checking and writing them (``model.py`` builds
f_θ from them). Anything that does not fit this code or this VGG is a clear :class:`ModelError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from . import quant
from .config import Architecture
from .files import atomic_write
from .net import ENCODER_LAYER
from .vgg import VGG19, WEIGHTS, weights_id

FORMAT = "styler-wct"
FORMAT_VERSION = 2
PACKAGED = resources.files("styler") / "weights"  # shipped models, loadable by name
DEFAULT_WEIGHTS = PACKAGED / "styler-linear.safetensors"


class ModelError(ValueError):
    """A model file that is missing, corrupt, or does not match this code or this VGG."""


def weights_path(path: str | Path) -> Path:
    """NAME, NAME.safetensors or NAME.json → NAME.safetensors (its config is NAME.json)."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        return path.with_suffix(".safetensors")
    return path.with_name(path.name + ".safetensors")


def locate(path: str | Path | None) -> Path:
    """The weights file of ``path``: None is the shipped default, a bare name a shipped model."""
    path = weights_path(path or str(DEFAULT_WEIGHTS))
    if not path.exists() and path.parent == Path() and (PACKAGED / path.name).is_file():
        return Path(str(PACKAGED / path.name))  # a shipped model by name: "styler-lite"
    return path


def read_config(cfg_path: Path) -> dict:
    for p in (cfg_path.with_suffix(".safetensors"), cfg_path):
        if not p.is_file():
            raise ModelError(f"{p}: model file not found (a model is NAME.safetensors + NAME.json)")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{cfg_path}: not a valid JSON model config ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelError(f"{cfg_path}: not a styler model of this kind (format {FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        version = config.get("format_version")
        raise ModelError(
            f"{cfg_path}: format version {version}, this styler reads {FORMAT_VERSION}"
        )
    return config


def architecture(path: Path, config: dict) -> Architecture:
    """The config's architecture, checked, with the parts it leaves out (files from before
    them) at their defaults; the encoder and the transform must be there."""
    arch = config.get("architecture")
    if not isinstance(arch, dict) or not {"encoder", "transform"} <= set(arch):
        raise ModelError(f"{path}: unknown architecture {arch!r}")
    try:
        return Architecture.from_dict(arch)
    except ValueError as e:
        raise ModelError(f"{path}: unknown architecture {arch!r} ({e})") from None


def matching_vgg(path: Path, config: dict, vgg: VGG19 | None) -> VGG19:
    """The VGG19 the model was trained against (``vgg`` if given), or a clear error."""
    vgg_cfg = config.get("vgg", {})
    if not isinstance(vgg_cfg, dict) or vgg_cfg.get("weights", "caffe") not in WEIGHTS:
        raise ModelError(f"{path}: 'vgg' must name VGG weights from {WEIGHTS}, not {vgg_cfg!r}")
    vgg = vgg or VGG19(vgg_cfg.get("weights", "caffe"), max_layer=ENCODER_LAYER)
    have, want = weights_id(), vgg_cfg.get("id")
    if want != have:
        raise ModelError(f"{path}: trained against VGG weights {want!r}, but these are {have!r}")
    return vgg


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors (fp32) and the file's identity (a hash, for caches keyed by model)."""
    try:
        data = path.read_bytes()
        state = {k: v.float() for k, v in load(data).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: corrupt or unreadable safetensors file ({e})") from None
    return state, hashlib.sha256(data).hexdigest()[:16]


def block_scales(path: Path, config: dict, blocks: int) -> list[quant.BlockScales] | None:
    """The int8 scales of the model's residual blocks, if calibrated."""
    if (scales := config.get(quant.BLOCKS_KEY)) is None:
        return None
    try:
        return quant.block_scales(scales, blocks)
    except ValueError as e:
        raise ModelError(f"{path.with_suffix('.json')}: {e}") from None


def write(path: Path, tensors: dict[str, torch.Tensor], config: dict) -> dict:
    """Write the weights (fp16) and the config, each atomically; returns the config written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in config.items() if k != quant.BLOCKS_KEY}  # for other weights
    config |= {"format": FORMAT, "format_version": FORMAT_VERSION}
    half = {k: v.detach().half().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, save(half, metadata={"format": FORMAT}))  # keeps the umask's mode
    _write_config(path.with_suffix(".json"), config)
    return config


def save_int8_scales(path: str | Path, scales: list[quant.BlockScales]) -> None:
    """Keep a saved model's block scales in its JSON file (its weights are not touched)."""
    cfg_path = weights_path(path).with_suffix(".json")
    config = {**read_config(cfg_path), quant.BLOCKS_KEY: [asdict(s) for s in scales]}
    _write_config(cfg_path, config)


def _write_config(cfg_path: Path, config: dict) -> None:
    atomic_write(cfg_path, (json.dumps(config, indent=2) + "\n").encode())
