"""Settings of the objective and of training: each default is defined here, once.

This module imports no torch, so the command line can build its ``--help`` from these dataclasses
without paying for the import (~2 s). Each field's ``metadata["help"]`` is its documentation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from importlib import resources

# VGG19's conv stack, torchvision's layout: index N here is ``features.N`` there.
VGG_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                            512, 512, 512, 512, "M", 512, 512, 512, 512]  # fmt: skip


def _layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for v in VGG_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


LAYERS = _layer_names()
STYLE_KINDS = ("moments", "gram")
ENCODERS = ("lite", "vgg")
TRANSFORMS = ("wct", "adain")
DEVICES = ("auto", "cpu", "cuda")  # "cuda:N" too
DEFAULT_DEVICE = DEVICES[0]
DEVICE_HELP = "cpu, cuda (cuda:N) or auto: cuda if available"
PRECISIONS = ("auto", "int8", "bf16", "fp32")
DEFAULT_PRECISION = PRECISIONS[0]
MAX_BLOCKS = 8  # the decoder's residual blocks at most (each ≈ 0.3 M parameters)
MAX_EXPERTS = 32  # the first convolution's experts at most (each ≈ 0.3 M parameters)
MAX_LINEAR = 64  # the learned correction of WCT's matrix: its rank at most
_COUNTS = {"blocks": MAX_BLOCKS, "experts": MAX_EXPERTS, "linear": MAX_LINEAR}
TRAIN_PRECISIONS = ("auto", "bf16", "fp32")  # int8 is for stylizing with a trained f_θ
TRAIN_PRECISION_HELP = "network precision; auto: bf16 where native and measured faster, else fp32"
PRECISION_HELP = (
    "network precision; auto: f_θ's VGG encoder and residual blocks in int8 where the CPU has "
    "VNNI, the rest bf16 where native and measured faster, else fp32; int8: those in int8, the "
    "rest as auto"
)
# Files a folder argument contributes (training folders, batch inputs); other files are skipped
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Output types by name (a file suffix or the API's format field) and their Pillow format
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
FORMATS_TEXT = "png, jpg (or jpeg) or webp"
DEFAULT_FORMAT = "png"  # output type when none is asked for (PNG keeps transparency)
HOST, PORT = "127.0.0.1", 8000  # where `styler serve` listens unless told


def _help(text: str, choices: tuple[str, ...] | None = None, **kw) -> dict:
    meta = {"help": text, **({"choices": choices} if choices else {})}
    return {"metadata": meta, **kw}


def default_split() -> str:
    """The held-out evaluation split shipped with styler: training leaves these files out."""
    return str(resources.files("styler") / "split.json")


@dataclass(frozen=True)
class Architecture:
    """The network f_θ: encoder, transform and decoder parts (a model file's architecture).

    The encoder and the transform are fixed for a model's lineage; the parts in ``GROWN`` may
    grow when a run starts from a model (``--init``).
    """

    GROWN = ("skips", "blocks", "experts", "linear", "route_content", "blend")

    encoder: str = field(
        default="vgg",
        **_help("lite: small encoder distilled from VGG19; vgg: frozen VGG19", ENCODERS),
    )
    transform: str = field(
        default="wct",
        **_help("feature transform: wct (covariance) or adain (mean/std)", TRANSFORMS),
    )
    skips: bool = field(
        default=False,
        **_help("vgg only: the decoder also reads relu2_1 and relu1_1, AdaIN-mapped to the style"),
    )
    blocks: int = field(
        default=0,
        **_help(f"residual blocks in the decoder at 1/4 resolution (0…{MAX_BLOCKS})"),
    )
    experts: int = field(
        default=0,
        **_help(
            f"the decoder's first convolution mixed per style from this many expert kernels "
            f"(CondConv; 0…{MAX_EXPERTS})"
        ),
    )
    linear: int = field(
        default=0,
        **_help(
            f"wct only: WCT's matrix corrected per pair by a learned one of this rank, predicted "
            f"from both covariances (after Li et al. 2019's learned linear transform; 0…"
            f"{MAX_LINEAR})"
        ),
    )
    route_content: bool = field(
        default=False,
        **_help(
            "experts only: their routing reads the content's statistics as well as the "
            "style's, so the first convolution is mixed per pair"
        ),
    )
    blend: bool = field(
        default=False,
        **_help(
            "the transformed features of each level blended with the content's own, per "
            "channel, by amounts learned per pair (WCT's content-style α, learned)"
        ),
    )

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, not {self.encoder!r}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, not {self.transform!r}")
        for k in ("skips", "route_content", "blend"):  # a model file's; callers catch ValueErrors
            if not isinstance(getattr(self, k), bool):
                raise ValueError(  # noqa: TRY004
                    f"{k} must be true or false, not {getattr(self, k)!r}"
                )
        if self.skips and self.encoder != "vgg":
            raise ValueError("skips need the vgg encoder (its relu2_1 and relu1_1 features)")
        for k, top in _COUNTS.items():
            if type(getattr(self, k)) is not int or not 0 <= getattr(self, k) <= top:
                raise ValueError(f"{k} must be in 0…{top}, not {getattr(self, k)!r}")
        if self.linear and self.transform != "wct":
            raise ValueError("linear corrects WCT's matrix: it needs the wct transform")
        if self.route_content and not self.experts:
            raise ValueError("route_content routes the experts: it needs experts (--experts K)")

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        """From a model file's or a run's settings: the parts it leaves out at their defaults
        (files from before them); a ValueError for an unknown key or a bad value."""
        if unknown := set(d) - {f.name for f in fields(cls)}:
            raise ValueError(f"unknown parts {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        """E.g. vgg/wct/skips/3 blocks/8 experts/32 linear/route content/blend."""
        counts = "".join(f"/{getattr(self, k)} {k}" for k in _COUNTS if getattr(self, k))
        flags = "/route content" * self.route_content + "/blend" * self.blend
        return f"{self.encoder}/{self.transform}{'/skips' * self.skips}{counts}{flags}"


ARCHITECTURE = tuple(f.name for f in fields(Architecture))  # its parts, in order


@dataclass(frozen=True)
class LossConfig:
    """Weights and layers of L, the objective shared by the solver, training and evaluation."""

    content_layer: str = field(default="relu4_1", **_help("VGG19 layer of the content term"))
    style_layers: tuple[str, ...] = field(
        default=("relu1_1", "relu2_1", "relu3_1", "relu4_1"),
        **_help("VGG19 layers of the style term"),
    )
    style_kind: str = field(
        default="moments",
        **_help("style statistics: channel mean/std (moments) or Gram", STYLE_KINDS),
    )
    content_weight: float = field(default=1.0, **_help("weight of the content term"))
    style_weight: float = field(default=10.0, **_help("weight of the style term"))
    tv_weight: float = field(default=0.0, **_help("total-variation smoothing weight"))

    def __post_init__(self) -> None:
        for layer in (self.content_layer, *self.style_layers):
            if layer not in LAYERS or not layer.startswith("relu"):
                raise ValueError(f"unknown VGG19 layer {layer!r} (use relu1_1 … relu5_4)")
        if self.style_kind not in STYLE_KINDS:
            raise ValueError(f"style_kind must be one of {STYLE_KINDS}, not {self.style_kind!r}")
        weights = (self.content_weight, self.style_weight, self.tv_weight)
        if not all(w >= 0 and w < float("inf") for w in weights):
            raise ValueError("loss weights must be finite and non-negative")

    @property
    def taps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.style_layers, self.content_layer)))

    @property
    def deepest(self) -> str:
        return max(self.taps, key=LAYERS.index)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LossConfig:
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: tuple(v) if k == "style_layers" else v for k, v in d.items() if k in known}
        )


@dataclass
class TrainConfig:
    """``styler train``: two stages, reconstruction then style, in one resumable run."""

    content_dir: str = field(**_help("folder of content photos"))
    style_dir: str = field(**_help("folder of style images"))
    out: str = field(default="runs/styler", **_help("run folder: checkpoint, logs, plots, model"))
    arch: Architecture = field(default_factory=Architecture)
    recon_steps: int = field(
        default=800,
        **_help("stage 1: steps of reconstruction (+ distillation for the lite encoder)"),
    )
    steps: int = field(
        default=1600, **_help("total steps; stage 2 trains the decoder on L after recon_steps")
    )
    batch: int = field(default=4, **_help("images (stage 1) or pairs (stage 2) per step"))
    size: int = field(default=256, **_help("crop size in pixels"))
    resize: int = field(default=512, **_help("shorter side the images are resized to first"))
    lr: float = field(default=5e-4, **_help("Adam learning rate of stage 1"))
    style_lr: float = field(default=1e-4, **_help("Adam learning rate of stage 2"))
    lr_decay: float = field(default=2e-4, **_help("lr / (1 + decay · step within the stage)"))
    warmup: int = field(
        default=0,
        **_help(
            "steps over which a fresh Adam's lr rises linearly to its value (a stage's start, "
            "or --init; a run resumed mid-ramp goes on with it); 0: off"
        ),
    )
    average_from: int = field(
        default=0,
        **_help(
            "export the mean of the weights over the steps from this one on (SWA, best at a "
            "constant lr: --lr-decay 0) instead of the last step's; 0: off"
        ),
    )
    holdout: str | None = field(
        default_factory=default_split,
        **_help("JSON split of file names training must not see (default: styler's own)"),
    )
    device: str = field(default=DEFAULT_DEVICE, **_help(DEVICE_HELP))
    precision: str = field(
        default=DEFAULT_PRECISION, **_help(TRAIN_PRECISION_HELP, TRAIN_PRECISIONS)
    )
    threads: int = field(default=0, **_help("torch threads; 0 = torch's default"))
    workers: int = field(default=0, **_help("data-loading processes (0: in the trainer)"))
    seed: int = field(default=0, **_help("seed of the data order, crops and initial weights"))
    ckpt_every: int = field(default=100, **_help("checkpoint and export every N steps"))
    log_every: int = field(default=10, **_help("log the mean training loss every N steps"))
    cache_targets: bool = field(
        default=True, **_help("stage 2 on fixed crops whose targets are cached in the run folder")
    )
    eval_every: int = field(default=250, **_help("held-out L on a fixed small set every N steps"))
    eval_pairs: int = field(default=8, **_help("pairs in that fixed held-out set"))
    int8_pairs: int = field(
        default=8, **_help("training pairs that calibrate the int8 blocks at the end (0: none)")
    )
    init: str | None = field(
        default=None,
        **_help(
            "start a new run from an exported model (a path, or a shipped model's name such "
            "as styler-vgg31) and continue its step count: train a shipped model further"
        ),
    )
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(f"precision must be one of {TRAIN_PRECISIONS}, not {self.precision!r}")
        if not 0 <= self.recon_steps <= self.steps:
            raise ValueError("need 0 ≤ recon_steps ≤ steps")
        if self.average_from and self.average_from <= self.recon_steps:
            raise ValueError("average_from must be 0 (off) or a step of stage 2 (> recon_steps)")
        if min(self.batch, self.size, self.resize) < 1 or self.size > self.resize:
            raise ValueError("batch and size must be positive and size ≤ resize")
        for name in ("ckpt_every", "log_every", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("threads", "workers", "eval_pairs", "int8_pairs", "warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")

    def public(self) -> dict:
        """The set-up stored in an exported model: no machine paths or bookkeeping."""
        keep = ("recon_steps", "batch", "size", "resize", "lr", "style_lr", "lr_decay", "warmup",
                "average_from", "cache_targets", "precision", "seed")  # fmt: skip
        return {**self.arch.to_dict(), **{k: v for k, v in asdict(self).items() if k in keep}}
