"""Stage 2's targets for fixed crops, computed once and kept on disk under the run folder.

Each content crop's features at L's content layer, and each style crop's statistics at L's
style layers plus f_θ's code of it (the encoder is frozen in stage 2), are what two of the
step's five VGG-sized passes compute; with fixed crops they are the same every epoch, so they
are read back instead (≈ 40 % of a step).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save

from .files import atomic_write
from .function import StyleCode
from .losses import Objective, StyleStats
from .model import StyleNet


class TargetCache:
    def __init__(self, root: Path, objective: Objective, model: StyleNet) -> None:
        self.root, self.objective, self.model = root, objective, model
        for kind in ("content", "style"):
            (root / kind).mkdir(parents=True, exist_ok=True)

    def _get(self, kind: str, names: list[str], images: torch.Tensor, compute
             ) -> list[dict[str, torch.Tensor]]:  # fmt: skip
        """Per image: its cached tensors, computing (in one batch) and storing those missing."""
        paths = [self.root / kind / f"{n}.safetensors" for n in names]
        missing = [i for i, p in enumerate(paths) if not p.exists()]
        if missing:
            with torch.no_grad():
                fresh = compute(images[missing])
            for j, i in enumerate(missing):
                tensors = {k: (v[j].half() if k == "f" else v[j].float()).contiguous().cpu()
                           for k, v in fresh.items()}  # fmt: skip
                atomic_write(paths[i], save(tensors))
        return [load_file(str(p)) for p in paths]

    def content(self, names: list[str], images: torch.Tensor) -> torch.Tensor:
        layer = self.objective.config.content_layer
        rows = self._get("content", names, images,
                         lambda x: {"f": self.objective.vgg(x, (layer,))[layer]})  # fmt: skip
        # fp16 on disk, fp32 before stacking: CPU autocast's stack refuses fp16 inputs
        return torch.stack([r["f"].float() for r in rows]).to(images.device)

    def style(self, names: list[str], images: torch.Tensor
              ) -> tuple[dict[str, StyleStats], StyleCode]:  # fmt: skip
        layers = self.objective.config.style_layers

        def compute(x: torch.Tensor) -> dict[str, torch.Tensor]:
            stats = self.objective.style_targets(self.objective.vgg(x, layers))
            out = self.model.style_code(x).tensors("code")
            for k, st in stats.items():
                out |= {f"{k}.mean": st.mean, f"{k}.std": st.std, f"{k}.gram": st.gram}
            return out

        rows = self._get("style", names, images, compute)
        stacked = {k: torch.stack([r[k] for r in rows]).to(images.device) for k in rows[0]}
        stats = {k: StyleStats(*(stacked[f"{k}.{v}"] for v in ("mean", "std", "gram")))
                 for k in layers}  # fmt: skip
        code = StyleCode.from_tensors(stacked, "code")
        if code is None or len(code.skips) != len(self.model.encoder.strides) - 1:
            raise ValueError(f"{self.root}: cached style codes of another architecture")
        return stats, code
