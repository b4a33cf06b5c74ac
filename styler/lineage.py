"""Continuing a model: a run that starts from an exported model (``--init``), or resumes its
checkpoint, only with a network the weights fit."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import ARCHITECTURE, Architecture, TrainConfig
from .model import StyleNet
from .options import flag
from .vgg import VGG19

CHECKPOINT_KEYS = {"settings", "step", "elapsed_s", "recon"}


def read_checkpoint(path: Path, device: torch.device) -> dict | None:
    """A run folder's checkpoint (None if it has none), or a ValueError that says what to do
    with a file that is not one (torch's own errors are tracebacks)."""
    if not path.exists():
        return None
    try:
        ck = torch.load(path, map_location=device)
    except Exception as e:  # noqa: BLE001 - pickle, zip and torch errors alike
        ck, why = None, str(e).splitlines()[0] if str(e) else type(e).__name__
    else:
        why = "not a styler training checkpoint"
    if not isinstance(ck, dict) or not CHECKPOINT_KEYS <= set(ck):
        raise ValueError(f"{path}: cannot resume from it ({why}); move it away to start the run "
                         "afresh, or choose another --out")  # fmt: skip
    return ck


def check_same_architecture(path: Path, old: dict, new: Architecture) -> None:
    """A run resumes only with the network it was trained with (else the weights do not fit).
    ``old``: the run's stored settings, whose parts from before experts or the correction are
    missing (their defaults)."""
    have = Architecture.from_dict({k: v for k, v in old.items() if k in ARCHITECTURE})
    differ = [f"{flag(k)} {getattr(have, k)} (not {getattr(new, k)})" for k in ARCHITECTURE
              if getattr(have, k) != getattr(new, k)]  # fmt: skip
    if differ:
        raise ValueError(f"{path}: this run trains another network; resume it with "
                         f"{', '.join(differ)}, or start a new run with another --out")  # fmt: skip


def start_from(model: StyleNet, cfg: TrainConfig, vgg: VGG19) -> tuple[int, float]:
    """Load ``cfg.init``'s weights into ``model``; its steps and wall time, to continue them.

    A model may start one with skips, more blocks or experts, a linear correction, the content
    in its routing or the blend (they start at zero), not the reverse; a correction's rank cannot
    change (its weights would not fit)."""
    src = StyleNet.load(cfg.init, vgg=vgg)
    have, want = src.architecture, cfg.arch
    fixed = [k for k in ARCHITECTURE if k not in Architecture.GROWN]
    if any(getattr(have, k) != getattr(want, k) for k in fixed) \
            or any(getattr(have, k) > getattr(want, k) for k in Architecture.GROWN) \
            or have.linear not in (0, want.linear):  # fmt: skip
        options = ", ".join(map(flag, ARCHITECTURE))
        raise ValueError(f"--init {cfg.init}: a {have} model, but this run trains {want} "
                         f"(set {options})")  # fmt: skip
    model.load_state_dict(_grow_head(src.trained_state(), model), strict=False)
    done = src.config.get("trained", {})
    return int(done.get("steps", 0)), float(done.get("wall_time_s", 0.0))


def _grow_head(state: dict[str, torch.Tensor], model: StyleNet) -> dict[str, torch.Tensor]:
    """``state`` with its experts (rows of the head's tensors) placed first in ``model``'s larger
    head; the new experts' kernels stay zero (the output is unchanged) and their routing rows
    keep their random start (so their kernels get a gradient). A routing that gains the content
    gains zero columns for it (the output is unchanged again)."""
    own = model.trained_state()
    for k, v in state.items():
        if not k.startswith("decoder.head.") or v.shape == own[k].shape:
            continue
        if v.shape[0] != own[k].shape[0]:
            state[k] = torch.cat([v, own[k][v.shape[0] :]])
        else:
            state[k] = torch.cat([v, torch.zeros_like(own[k][:, v.shape[1] :])], dim=1)
    return state
