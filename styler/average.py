"""Weight averaging: the uniform mean of f_θ's weights over the steps of a run's last phase.

At a constant learning rate stage 2's weights wander around a minimum of L, and any one step's
weights are a noisy sample of it; their running mean (Polyak & Juditsky, 1992; SWA, Izmailov et
al., *Averaging Weights Leads to Wider Optima and Better Generalization*, 2018) sits nearer the
middle. ``styler train --average-from STEP`` keeps it and exports it in place of the last step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .model import StyleNet


class WeightAverage:
    """The mean of a model's trained weights over the ``count`` updates so far (fp32)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, model: StyleNet) -> None:
        self.count += 1
        for k, v in model.trained_state().items():
            if k not in self.mean:
                self.mean[k] = v.detach().float().clone()
            else:
                self.mean[k] += (v.float() - self.mean[k]) / self.count

    @contextmanager
    def applied(self, model: StyleNet) -> Iterator[StyleNet]:
        """The model holding the mean (when there is one), its own weights restored after."""
        if not self.count:
            yield model
            return
        own = {k: v.detach().clone() for k, v in model.trained_state().items()}
        model.load_state_dict(self.mean, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(own, strict=False)

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean = state["count"], state["mean"]
