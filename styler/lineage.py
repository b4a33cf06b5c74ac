"""Continuing a model: a run that starts from an exported model (``--init``), or resumes its
checkpoint, only with a network the weights fit."""

from __future__ import annotations

from pathlib import Path

from .config import ARCHITECTURE, TrainConfig
from .model import StyleNet
from .vgg import VGG19


def check_same_architecture(path: Path, old: dict, new: dict) -> None:
    """A run resumes only with the network it was trained with (else the weights do not fit)."""
    old = {"experts": 0, "film": False} | old  # runs from before experts and film
    differ = [f"--{k} {old.get(k)} (not {new[k]})" for k in ARCHITECTURE if old.get(k) != new[k]]
    if differ:
        raise ValueError(f"{path}: this run trains another network; resume it with "
                         f"{', '.join(differ)}, or start a new run with another --out")  # fmt: skip


def start_from(model: StyleNet, cfg: TrainConfig, vgg: VGG19) -> tuple[int, float]:
    """Load ``cfg.init``'s weights into ``model``; its steps and wall time, to continue them.

    A model may start one with skips, more blocks or experts, or film (they start at zero), not
    the reverse."""
    src = StyleNet.load(cfg.init, vgg=vgg)
    have, want = src.architecture, {k: getattr(cfg, k) for k in ARCHITECTURE}
    grown = ARCHITECTURE[2:]  # the parts a run may add
    if any(have[k] != want[k] for k in ARCHITECTURE[:2]) or any(have[k] > want[k] for k in grown):
        options = ", ".join("--" + k for k in ARCHITECTURE)
        raise ValueError(f"--init {cfg.init}: a {_name(have)} model, but this run trains "
                         f"{_name(want)} (set {options})")  # fmt: skip
    model.load_state_dict(src.trained_state(), strict=False)
    done = src.config.get("trained", {})
    return int(done.get("steps", 0)), float(done.get("wall_time_s", 0.0))


def _name(arch: dict) -> str:
    """E.g. vgg/wct/skips/3 blocks/8 experts/film."""
    counts = "".join(f"/{arch[k]} {k}" for k in ("blocks", "experts") if arch[k])
    skips, film = "/skips" * arch["skips"], "/film" * arch["film"]
    return f"{arch['encoder']}/{arch['transform']}{skips}{counts}{film}"
