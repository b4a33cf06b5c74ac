"""What each training stage minimizes, as modules (so DistributedDataParallel can wrap them).

* :class:`ReconStage`: the decoder inverts the encoder (pixels + VGG features); a ``lite``
  encoder learns with it, distilled towards VGG19's relu3_1 through a 1×1 embedding.
* :class:`StyleStage`: the shared L of f_θ's output, exactly as the solver scores it.
"""

from __future__ import annotations

import torch
from torch import nn

from .losses import RECON_LAYERS, Objective, Targets, reconstruction_loss, relative_error
from .model import StyleNet
from .net import ENCODER_LAYER
from .targets import TargetCache
from .tiles import interior
from .vgg import VGG19

NEW_PARTS = ("head.", "linear.", "blend.")  # parts a trained decoder may gain (experts, …)
NEW_LR_SCALE = 10.0  # their learning rate over the rest of the decoder's, in stage 2


class ReconStage(nn.Module):
    """Stage 1's loss as a module (so DistributedDataParallel can wrap it)."""

    def __init__(self, model: StyleNet, vgg: VGG19) -> None:
        super().__init__()
        self.model, self.vgg = model, vgg
        lite = model.kind == "lite"
        self.embed = nn.Conv2d(model.encoder.channels, 256, 1) if lite else None

    def trainable(self, lr: float) -> list[dict]:
        """Adam's parameter groups at learning rate ``lr``."""
        mods = [self.model.decoder] + ([self.model.encoder, self.embed] if self.embed else [])
        return [{"params": [p for m in mods for p in m.parameters()], "lr": lr}]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            feats = self.vgg(images, RECON_LAYERS)
        f, hw = self.model.encode(images)
        terms = reconstruction_loss(self.vgg, self.model.decode(f, hw), images, feats)
        if self.embed is not None:  # VGG's raw activations are ~100s: aim at unit RMS instead
            teacher = feats[ENCODER_LAYER].float()
            teacher = teacher / teacher.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            terms["distill"] = relative_error(self.embed(interior(f[0], hw)), teacher)
            terms["total"] = terms["total"] + terms["distill"]
        return terms


class StyleStage(nn.Module):
    """Stage 2's loss: the shared L of f_θ's output, exactly as the solver scores it."""

    def __init__(self, model: StyleNet, objective: Objective) -> None:
        super().__init__()
        self.model, self.objective = model, objective
        self.cache: TargetCache | None = None

    def trainable(self, lr: float) -> list[dict]:
        """Adam's parameter groups: the decoder at ``lr``, its experts, linear correction and blend
        (new beside a trained decoder, when it gains them) ``NEW_LR_SCALE`` times faster."""
        old: list[nn.Parameter] = []
        new: list[nn.Parameter] = []
        for name, p in self.model.decoder.named_parameters():
            (new if name.startswith(NEW_PARTS) else old).append(p)
        groups = [{"params": old, "lr": lr}, {"params": new, "lr": lr * NEW_LR_SCALE}]
        return groups if new else groups[:1]

    def forward(
        self,
        content: torch.Tensor,
        style: torch.Tensor,
        names: tuple[list[str], list[str]] | None = None,
    ) -> dict[str, torch.Tensor]:
        return style_loss(self.model, self.objective, content, style, self.cache, names)


def style_loss(
    model: StyleNet,
    objective: Objective,
    content: torch.Tensor,
    style: torch.Tensor,
    cache: TargetCache | None = None,
    names: tuple[list[str], list[str]] | None = None,
) -> dict[str, torch.Tensor]:
    """L(f_θ(s, c); c, s) for a batch of pairs (each content with its own style); with ``cache``
    the targets of the named (fixed) crops are read back instead of computed."""
    cfg = objective.config
    if cache and names:
        target = cache.content(names[0], content)
        style_stats, code = cache.style(names[1], style)
    else:
        with torch.no_grad():
            target = objective.vgg(content, (cfg.content_layer,))[cfg.content_layer]
            style_stats = objective.style_targets(objective.vgg(style, cfg.style_layers))
            code = model.style_code(style)
    out = model.stylize(content, [code])
    return objective(out, Targets(target, style_stats))


@torch.no_grad()
def heldout_scores(recon: ReconStage, stage: StyleStage, content: torch.Tensor,
                   style: torch.Tensor) -> dict[str, float]:  # fmt: skip
    """The reconstruction loss and L (with its terms) of the fixed held-out pairs."""
    terms = style_loss(stage.model, stage.objective, content, style)
    scores = {k: terms[k].item() for k in ("total", "content", "style")}
    return {"recon": recon(content)["total"].item(), **scores}
