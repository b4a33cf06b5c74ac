"""Amortized training: fit f_θ so that E_(c,s)[ L(f_θ(s, c); c, s) ] is small.

The loss is the shared :class:`~styler.losses.Objective`. Its content target is chosen by
``content_target``: ``"adain"`` (AdaIN's surrogate, the default) uses t = AdaIN(E(c), E(s)) instead of
E(c), which lets the decoder learn to invert the encoder at stylized statistics; ``"content"`` uses
E(c) itself, so training minimizes exactly the L that the solver and the evaluation use.
The style term is always exactly the solver's.

A run directory holds ``checkpoint.pt`` (resume), ``log.csv``, ``loss.png`` and an exported
``model.safetensors`` + ``model.json`` ready for ``styler fast --weights``.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .data import PairStream, list_images
from .losses import LossConfig, Objective, Targets, moments
from .model import CONTENT_TARGETS, ENCODER_LAYER, StyleNet, adain
from .vgg import LAYERS, VGG19

LOG_FIELDS = ["step", "elapsed_s", "lr", "total", "content", "style"]


@dataclass
class TrainConfig:
    content_dir: str
    style_dir: str
    out: str = "runs/adain"
    steps: int = 20_000
    batch: int = 8
    size: int = 256
    lr: float = 1e-4
    lr_decay: float = 5e-5
    loss: LossConfig = field(default_factory=LossConfig)
    holdout: str | None = None
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    ckpt_every: int = 500
    log_every: int = 10
    init: str | None = None
    content_target: str = "adain"  # "adain" (AdaIN's t) or "content" (the content image's features: the exact L)

    def __post_init__(self) -> None:
        if self.content_target not in CONTENT_TARGETS:
            raise ValueError(f"content_target must be one of {', '.join(CONTENT_TARGETS)}, not {self.content_target!r}")
        if self.content_target == "adain" and self.loss.content_layer != ENCODER_LAYER:
            raise ValueError(f"AdaIN's content target lives at {ENCODER_LAYER}; use content_target='content' for content layer {self.loss.content_layer}")

    def public(self) -> dict:
        """The training set-up stored in the exported model: no machine paths, the loss beside it, and the steps
        actually trained under ``trained`` rather than the planned ``steps``."""
        d = asdict(self)
        for k in ("content_dir", "style_dir", "out", "holdout", "init", "device", "workers", "log_every", "ckpt_every", "loss", "steps"):
            d.pop(k)
        return d


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but PyTorch sees no CUDA device")
    return torch.device(device)


def holdout_names(split: str | None) -> tuple[set[str], set[str]]:
    """File names the evaluation keeps for itself (``eval/split.json``), so training never sees them."""
    if not split:
        return set(), set()
    d = json.loads(Path(split).read_text())
    return set(d["content"]), set(d["style"])


def train_step(model: StyleNet, objective: Objective, content: torch.Tensor, style: torch.Tensor, content_target: str = "adain") -> dict[str, torch.Tensor]:
    """One amortized step's loss: decode AdaIN(c, s) and score it with the shared objective."""
    style_feats = objective.vgg(style, tuple(dict.fromkeys((*objective.config.style_layers, ENCODER_LAYER))))
    encoded = model.encode(content)
    t = adain(encoded, *moments(style_feats[ENCODER_LAYER]))
    out = model.decoder(t)
    layer = objective.config.content_layer
    if content_target == "adain":
        target = t
    elif layer == ENCODER_LAYER:
        target = encoded
    else:
        target = objective.vgg(content, (layer,))[layer]
    return objective(out, Targets(target, objective.style_targets(style_feats)))


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training in ``cfg.out``; returns the exported model path."""
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    held_c, held_s = holdout_names(cfg.holdout)
    contents, styles = list_images(cfg.content_dir, held_c), list_images(cfg.style_dir, held_s)

    deepest = max((*cfg.loss.taps, ENCODER_LAYER), key=LAYERS.index)
    vgg = VGG19(max_layer=deepest)
    model = StyleNet.load(cfg.init, vgg=vgg) if cfg.init else StyleNet(vgg)
    settings = {"training": cfg.public(), "loss": cfg.loss.to_dict()}
    model.config = dict(settings)
    objective = Objective(cfg.loss, vgg)
    model.to(device)
    cuda = device.type == "cuda"
    if cuda:
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.Adam(model.decoder.parameters(), lr=cfg.lr)
    decay = lambda i: 1.0 / (1.0 + cfg.lr_decay * i)  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, decay)

    ckpt_path, log_path = out / "checkpoint.pt", out / "log.csv"
    step, elapsed = 0, 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.decoder.load_state_dict(ck["decoder"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step, elapsed = ck["step"], ck["elapsed_s"]
        # This run's settings win over the checkpoint's (the scheduler's state would keep the old lr): say what changed.
        sched.base_lrs = [cfg.lr] * len(opt.param_groups)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * decay(step)
        before = ck.get("settings", {})
        changed = [f"{k} {before[part][k]} → {v}" for part in before for k, v in settings[part].items() if before[part].get(k, v) != v]
        print(f"resuming {ckpt_path} at step {step}" + (f" with changed settings: {'; '.join(changed)}" if changed else ""))
    if step >= cfg.steps:
        print(f"{out}: already at step {step} ≥ {cfg.steps}")
        return _export(model, out, step, elapsed, cfg)

    loader = DataLoader(
        PairStream(contents, styles, cfg.size, seed=cfg.seed + step),
        batch_size=cfg.batch,
        num_workers=cfg.workers,
        pin_memory=cuda,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )
    kept = _log_until(log_path, step)
    log_file = log_path.open("w", newline="")
    log = csv.DictWriter(log_file, LOG_FIELDS)
    log.writeheader()
    log.writerows(kept)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    sums: dict[str, float] = {}
    t0 = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    model.decoder.train()
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        old_sigterm = signal.signal(signal.SIGTERM, _interrupt)  # `kill`/`docker stop` save a checkpoint like Ctrl-C
    try:
        for content, style in loader:
            content = content.to(device, non_blocking=True)
            style = style.to(device, non_blocking=True)
            if cuda:
                content = content.contiguous(memory_format=torch.channels_last)
                style = style.contiguous(memory_format=torch.channels_last)
            with autocast:
                terms = train_step(model, objective, content, style, cfg.content_target)
            opt.zero_grad(set_to_none=True)
            terms["total"].float().backward()
            opt.step()
            sched.step()
            step += 1
            for k in ("total", "content", "style"):
                sums[k] = sums.get(k, 0.0) + terms[k].item()
            if not math.isfinite(sums["total"]):
                raise FloatingPointError(f"loss became {sums['total']} at step {step}; lower --lr")
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
                row = {k: v / n for k, v in sums.items()}
                bar.set_postfix(loss=f"{row['total']:.3f}", content=f"{row['content']:.3f}", style=f"{row['style']:.3f}")
                log.writerow({"step": step, "elapsed_s": round(time.perf_counter() - t0, 1), "lr": sched.get_last_lr()[0], **row})
                log_file.flush()
                sums.clear()
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                _checkpoint(model, opt, sched, step, time.perf_counter() - t0, ckpt_path, settings)
                _export(model, out, step, time.perf_counter() - t0, cfg)
            if step >= cfg.steps:
                break
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {step}; saving a checkpoint")
        _checkpoint(model, opt, sched, step, time.perf_counter() - t0, ckpt_path, settings)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_sigterm)
        bar.close()
        log_file.close()
    return _export(model, out, step, time.perf_counter() - t0, cfg)


def _log_until(log_path: Path, step: int) -> list[dict[str, str]]:
    """The log's rows up to ``step``: rows written after the last checkpoint (a crash) are trained again, so dropped."""
    if not log_path.exists():
        return []
    with log_path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= step]


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def _checkpoint(model: StyleNet, opt, sched, step: int, elapsed: float, path: Path, settings: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    state = {"decoder": model.decoder.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "elapsed_s": elapsed,
             "settings": settings}  # fmt: skip
    torch.save(state, tmp)
    tmp.replace(path)


def _export(model: StyleNet, out: Path, step: int, elapsed: float, cfg: TrainConfig) -> Path:
    device = "cuda" if next(model.decoder.parameters()).is_cuda else "cpu"
    hw = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    model.save(out / "model.safetensors", {"trained": {"steps": step, "wall_time_s": round(elapsed, 1), "hardware": hw}})
    plot_log(out / "log.csv", out / "loss.png")
    return out / "model.safetensors"


def plot_log(log_path: Path, png: Path) -> None:
    """Loss curves (raw and smoothed) from the CSV log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log_path.exists():
        return
    with log_path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("total", "content", "style")):
        ys = [float(r[key]) for r in rows]
        k = max(1, len(ys) // 50)
        # trailing geometric mean: on a log axis one huge early value must not drag the curve for k rows
        logs = [math.log(max(y, 1e-12)) for y in ys]
        windows = (logs[max(0, i - k + 1) : i + 1] for i in range(len(logs)))
        smooth = [math.exp(sum(w) / len(w)) for w in windows]
        ax.plot(steps, ys, alpha=0.3, lw=0.8)
        ax.plot(steps, smooth, lw=1.5)
        ax.set_yscale("log")  # the first steps are 100× the rest
        ax.set_title(f"{key} loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
