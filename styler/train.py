"""Amortized training: fit f_θ so that E_(c,s)[ L(f_θ(s, c); c, s) ] is small, in two stages.

1. ``recon`` (``recon_steps``): the decoder learns to invert the encoder (pixels + VGG features,
   a dense signal that converges in a few thousand steps on a CPU); a ``lite`` encoder is trained
   with it and distilled towards VGG19's relu3_1 through a 1×1 embedding (Wang et al., 2020).
2. ``style`` (the rest): encoder frozen, the decoder is trained on the shared L itself
   (:class:`~styler.losses.Objective`, the content image's features as content target).

A run folder holds ``checkpoint.pt`` (re-running the command resumes), ``log.csv`` (training
loss), ``heldout.csv`` (L on a fixed held-out set every ``eval_every`` steps), ``loss.png`` and
the exported ``model.safetensors`` + ``model.json`` (at the end with its int8 blocks' scales).
Under ``torchrun`` each rank draws its own pairs and DDP averages gradients; rank 0 writes.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from .average import WeightAverage
from .config import LAYERS, TrainConfig
from .curves import CsvLog, plot_run
from .data import PairStream, fixed_pairs, list_images
from .engine import Engine
from .files import atomic_write
from .lineage import check_same_architecture, read_checkpoint, start_from
from .losses import Objective
from .model import StyleNet
from .net import ENCODER_LAYER
from .pipeline import calibrate_int8
from .split import read_split
from .stages import ReconStage, StyleStage, heldout_scores
from .targets import TargetCache
from .vgg import VGG19


def holdout_names(split: str | None) -> tuple[set[str], set[str]]:
    """File names the evaluation keeps for itself, so training never sees them."""
    if not split:
        return set(), set()
    s = read_split(split)
    return set(s.content), set(s.style)


def _distributed(engine: Engine) -> tuple[int, int, bool]:
    """This process's rank, the world size, and whether the process group is ours to end."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ours = world > 1 and not dist.is_initialized()
    if ours:
        dist.init_process_group("nccl" if engine.device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, ours


def _stage_of(step: int, cfg: TrainConfig) -> str:
    return "recon" if step < cfg.recon_steps else "style"


def _optimizer(stage: nn.Module, cfg: TrainConfig, name: str, step: int, state: dict | None):
    """Adam for a stage (resumed from ``state`` if given), its lr decaying with the steps taken
    within that stage. Adam's lr ramps up over its first ``cfg.warmup`` updates (counted in its
    state, so a run stopped mid-ramp resumes it): its first steps divide by second moments of
    few gradients and jolt a trained model (run 16 of the model card: +2 % held-out L after
    ``--init``)."""
    start = step - (cfg.recon_steps if name == "style" else 0)
    opt = torch.optim.Adam(stage.trainable(cfg.lr if name == "recon" else cfg.style_lr))
    if state:
        lrs = [g["lr"] for g in opt.param_groups]
        opt.load_state_dict(state)
        for group, lr in zip(opt.param_groups, lrs, strict=True):  # this run's lr, not the saved
            group.pop("initial_lr", None)
            group["lr"] = lr
    taken = int(next(iter(opt.state.values()), {}).get("step", 0))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: min(1.0, (taken + i + 1) / max(cfg.warmup, 1)) / (1 + cfg.lr_decay * (start + i)),
    )
    return opt, sched


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training in ``cfg.out``; returns the exported model path."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # float networks throughout: with an int8 encoder the cached style codes would differ from
    # the content features the decoder learns on
    engine = replace(Engine.create(cfg.device, cfg.precision), int8=False)
    rank, world, own_group = _distributed(engine)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    held_c, held_s = holdout_names(cfg.holdout)
    contents = list_images(cfg.content_dir, held_c)
    styles = list_images(cfg.style_dir, held_s)

    vgg = VGG19(max_layer=max(cfg.loss.deepest, ENCODER_LAYER, key=LAYERS.index))
    model = StyleNet.build(cfg.arch, cfg.seed, vgg=vgg)
    stages = {"recon": ReconStage(model, vgg), "style": StyleStage(model, Objective(cfg.loss, vgg))}
    for s in stages.values():
        engine.module(s)
    settings = {"training": cfg.public(), "loss": cfg.loss.to_dict()}
    ckpt_path = out / "checkpoint.pt"
    step, elapsed, average = 0, 0.0, WeightAverage()
    ck = read_checkpoint(ckpt_path, engine.device)
    if ck:
        check_same_architecture(ckpt_path, ck["settings"]["training"], cfg.arch)
        stages["recon"].load_state_dict(ck["recon"], strict=False)
        step, elapsed = ck["step"], ck["elapsed_s"]
        if cfg.average_from and "average" in ck:
            average.load_state_dict(ck["average"])
        # a setting this version no longer has (a removed option) shows as (old, None)
        now = settings["training"]
        changed = {k: (v, now.get(k)) for k, v in ck["settings"]["training"].items()
                   if now.get(k) != v}  # fmt: skip
        if rank == 0:
            note = f"; changed settings (old, new): {changed}" if changed else ""
            print(f"resuming {ckpt_path} at step {step}{note}")
    elif cfg.init:
        step, elapsed = start_from(model, cfg, vgg)
        if rank == 0:
            print(f"starting from {cfg.init} at its step {step}")
    model.config = settings
    if step >= cfg.steps and rank == 0:
        print(f"{out}: already at step {step} of {cfg.steps}")
    log = CsvLog(out / "log.csv", step) if rank == 0 else None
    held = CsvLog(out / "heldout.csv", step) if rank == 0 else None
    heldout = (
        fixed_pairs(cfg.content_dir, cfg.style_dir, cfg.holdout, cfg.eval_pairs, cfg.size)
        if rank == 0 and cfg.holdout
        else None
    )
    if rank == 0 and cfg.holdout and heldout is None:
        print(f"no file of {cfg.holdout} in these folders: no held-out curve")

    def pairs(fixed: bool):
        stream = PairStream(contents, styles, cfg.size, cfg.resize,
                            seed=(cfg.seed + step) * 97 + rank, fixed=fixed)  # fmt: skip
        return iter(DataLoader(stream, batch_size=cfg.batch, num_workers=cfg.workers,
                               worker_init_fn=_leave_signals_to_main,
                               persistent_workers=cfg.workers > 0))  # fmt: skip

    stage_name, opt, sched, wrapped, loader = "", None, None, None, None
    t0 = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=rank != 0)  # fmt: skip
    main_thread = threading.current_thread() is threading.main_thread()
    old_sigterm = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    sums: dict[str, float] = {}
    try:
        while step < cfg.steps:
            if _stage_of(step, cfg) != stage_name:
                stage_name = _stage_of(step, cfg)
                stage = stages[stage_name]
                model.encoder.requires_grad_(stage_name == "recon" and model.kind == "lite")
                resumed = ck["optimizer"] if ck and ck.get("stage") == stage_name else None
                opt, sched = _optimizer(stage, cfg, stage_name, step, resumed)
                wrapped = (
                    DistributedDataParallel(stage, forward_sync_buffers=False)
                    if world > 1
                    else stage
                )
                fixed = stage_name == "style" and cfg.cache_targets
                if fixed:
                    stages["style"].cache = TargetCache(
                        out / f"targets-{cfg.size}-{cfg.resize}", stages["style"].objective, model
                    )
                loader = pairs(fixed)
            content, style, *names = _next(loader)
            content, style = engine.tensor(content), engine.tensor(style)
            model.train()
            with engine.autocast():
                if stage_name == "recon":
                    half = cfg.batch // 2
                    terms = wrapped(torch.cat([content[: cfg.batch - half], style[:half]]))
                else:
                    terms = wrapped(content, style, names)
            opt.zero_grad(set_to_none=True)
            terms["total"].float().backward()
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            if rank == 0 and cfg.average_from and step >= cfg.average_from:  # rank 0 exports
                average.update(model)
            for k, v in [("steps", 1.0), *((k, v.item()) for k, v in terms.items())]:
                sums[k] = sums.get(k, 0.0) + v
            if not torch.isfinite(terms["total"]):
                raise FloatingPointError(
                    f"the loss became {terms['total'].item()} at step {step}: re-run to resume "
                    "from the last checkpoint, with a lower --lr or --style-lr"
                )
            if log and (step % cfg.log_every == 0 or step == cfg.steps):
                n = sums.pop("steps")
                row = {k: v / n for k, v in sums.items()}
                bar.set_postfix(stage=stage_name, loss=f"{row['total']:.3f}")
                log.write({"step": step, "stage": stage_name, "elapsed_s": time.perf_counter() - t0,
                           "lr": sched.get_last_lr()[0], **row})  # fmt: skip
                sums.clear()
            if held and heldout and (step % cfg.eval_every == 0 or step == cfg.steps):
                model.eval()
                with engine.autocast(), average.applied(model):  # the model that is exported
                    pair = map(engine.tensor, heldout)
                    scores = heldout_scores(stages["recon"], stages["style"], *pair)
                held.write({"step": step, "stage": stage_name, **scores})
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                replicas = replica_checksums(model)  # every rank takes part
                if rank == 0:
                    _save(out, stages, opt, stage_name, step, time.perf_counter() - t0, settings,
                          average, replicas)  # fmt: skip
    except (KeyboardInterrupt, WorkerKilled):
        loader, own_group = None, False  # stops the data workers first, so none dies under the save
        if rank == 0:
            print(f"\ninterrupted at step {step}; saving a checkpoint")
            _save(out, stages, opt, stage_name, step, time.perf_counter() - t0, settings, average)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_sigterm)
        bar.close()
    if rank == 0 and not (out / "model.safetensors").exists():
        _save(out, stages, opt, stage_name, step, time.perf_counter() - t0, settings, average)
    if rank == 0 and step >= cfg.steps and cfg.int8_pairs:  # not after an interrupt: ≈ 3 s a pair
        calibrate_int8(out / "model", list(zip(contents, styles))[: cfg.int8_pairs], cfg.resize)
    if own_group:  # end together: left to the exit, gloo aborted a rank in 7 of 78 torchrun runs
        dist.barrier()
        dist.destroy_process_group()
    return out / "model.safetensors"


def replica_checksums(model: StyleNet) -> list[float]:
    """Each rank's sum of its trained weights (one entry without torchrun): equal when in sync."""
    total = torch.stack([v.double().sum() for v in model.trained_state().values()]).sum()
    if not dist.is_initialized():
        return [total.item()]
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    return [g.item() for g in gathered]


class WorkerKilled(Exception):
    """A data worker was killed (a `kill` of the process group): stop and checkpoint."""


def _next(loader):
    try:
        return next(loader)
    except RuntimeError as e:
        if "DataLoader worker" in str(e):
            raise WorkerKilled(str(e)) from None
        raise


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def _leave_signals_to_main(worker: int) -> None:
    """Ctrl-C reaches the whole process group: the trainer handles it (and checkpoints)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _save(out: Path, stages: dict[str, nn.Module], opt, stage: str, step: int, elapsed: float,
          settings: dict, average: WeightAverage,
          replicas: list[float] | None = None) -> None:  # fmt: skip
    """Checkpoint (atomically) and export the model (the weight average once there is one)
    and the curves (rank 0 only)."""
    trained = {k: v for k, v in stages["recon"].state_dict().items() if not k.startswith("vgg.")
               and not k.startswith("model.encoder.vgg.")}  # fmt: skip
    state = {"recon": trained, "optimizer": opt.state_dict() if opt else {},
             "stage": stage, "step": step, "elapsed_s": elapsed, "settings": settings,
             "replicas": replicas, "average": average.state_dict()}  # fmt: skip
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(out / "checkpoint.pt", buf.getvalue())
    model: StyleNet = stages["recon"].model
    threads = torch.get_num_threads()
    hardware = f"{model.decoder.net[0].weight.device.type} ({threads} thread{'s' * (threads > 1)})"
    done = {"steps": step, "wall_time_s": round(elapsed, 1), "hardware": hardware}
    if average.count:
        done["averaged_steps"] = [step - average.count + 1, step]
    with average.applied(model):
        model.save(out / "model.safetensors", {"trained": done})
    plot_run(out)
