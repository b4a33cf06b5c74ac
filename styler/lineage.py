"""Continuing a model: a run that starts from an exported model (``--init``), or resumes its
checkpoint, only with a network the weights fit."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import ARCHITECTURE, TrainConfig
from .model import StyleNet
from .vgg import VGG19


def check_same_architecture(path: Path, old: dict, new: dict) -> None:
    """A run resumes only with the network it was trained with (else the weights do not fit)."""
    old = {"experts": 0, "linear": 0} | old  # runs from before experts or the correction
    differ = [f"--{k} {old.get(k)} (not {new[k]})" for k in ARCHITECTURE if old.get(k) != new[k]]
    if differ:
        raise ValueError(f"{path}: this run trains another network; resume it with "
                         f"{', '.join(differ)}, or start a new run with another --out")  # fmt: skip


def start_from(model: StyleNet, cfg: TrainConfig, vgg: VGG19) -> tuple[int, float]:
    """Load ``cfg.init``'s weights into ``model``; its steps and wall time, to continue them.

    A model may start one with skips, more blocks or experts, or a linear correction (they
    start at zero), not the reverse."""
    src = StyleNet.load(cfg.init, vgg=vgg)
    have, want = src.architecture, {k: getattr(cfg, k) for k in ARCHITECTURE}
    grown = ARCHITECTURE[2:]  # the parts a run may add
    if any(have[k] != want[k] for k in ARCHITECTURE[:2]) or any(have[k] > want[k] for k in grown) \
            or have["linear"] not in (0, want["linear"]):  # fmt: skip
        options = ", ".join("--" + k for k in ARCHITECTURE)
        raise ValueError(f"--init {cfg.init}: a {_name(have)} model, but this run trains "
                         f"{_name(want)} (set {options})")  # fmt: skip
    model.load_state_dict(_grow_experts(src.trained_state(), model), strict=False)
    done = src.config.get("trained", {})
    return int(done.get("steps", 0)), float(done.get("wall_time_s", 0.0))


def _grow_experts(state: dict[str, torch.Tensor], model: StyleNet) -> dict[str, torch.Tensor]:
    """``state`` with its experts (rows of the head's tensors) placed first in ``model``'s larger
    head; the new experts' kernels stay zero (the output is unchanged) and their routing rows
    keep their random start (so their kernels get a gradient)."""
    own = model.trained_state()
    for k, v in state.items():
        if k.startswith("decoder.head.") and v.shape != own[k].shape:
            state[k] = torch.cat([v, own[k][v.shape[0] :]])
    return state


def _name(arch: dict) -> str:
    """E.g. vgg/wct/skips/3 blocks/8 experts/32 linear."""
    counts = "".join(f"/{arch[k]} {k}" for k in ("blocks", "experts", "linear") if arch[k])
    return f"{arch['encoder']}/{arch['transform']}{'/skips' * arch['skips']}{counts}"
