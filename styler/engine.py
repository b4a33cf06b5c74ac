"""Where and in what precision the networks run, decided once for a device.

bf16 autocast + channels_last halves the convolutions' time on CUDA and on some CPUs that compute
bf16 natively, but the CPU's flags alone mislead: with AVX512_BF16 and no AMX, f_θ at 512² ran
1.9× faster in bf16 on a Zen 4 and VGG19→relu3_1 1.2× slower on an Emerald Rapids VM. So on a CPU
``auto`` measures (:func:`bf16_speedup`, once per CPU, torch version and thread count, kept in the
user's cache folder) and picks bf16 only where it is clearly faster; without native bf16 (emulated)
it picks fp32.
On a CPU, fp32 networks run channels_last too: oneDNN's convolutions are ~1.8× faster in it
(f_θ at 512², AVX2 Zen 3: 2.49 s → 1.41 s, outputs equal to 4e-6).
Only the networks run under autocast: images being optimized, statistics and optimizer state stay
fp32 (the callers cast what they keep with ``.float()``).
On a CPU with VNNI, ``auto`` also runs f_θ's frozen VGG encoder in int8 (:mod:`quant`): its
convolutions are most of the fast path, and VGG19→relu3_1 ran 1.7× faster in int8 than in bf16
on a Zen 4 (0.19 → 0.11 s at 544²); the decoder's residual blocks too, where calibrated.
On a CPU, freed blocks are kept for reuse (:func:`reuse_freed_memory`): otherwise every activation
above glibc's 32 MB mmap ceiling is a fresh mapping whose pages fault in on first touch.
"""

from __future__ import annotations

import ctypes
import functools
import json
import statistics
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import quant
from .config import DEFAULT_DEVICE, DEFAULT_PRECISION, DEVICES, PRECISIONS
from .files import atomic_write, cache_dir


def _cpuinfo(field: str) -> str:
    """The first ``field`` of /proc/cpuinfo ("" where there is none, as on macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith(field)), ":")
    except OSError:
        return ""
    return line.split(":", 1)[1].strip()


@functools.cache
def cpu_has_vnni() -> bool:
    """True where the CPU has int8 dot-product instructions (AVX512_VNNI, AVX_VNNI or AMX)."""
    flags = _cpuinfo("flags").split()
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU executes bf16 dot products in hardware (x86 AVX512_BF16 or AMX)."""
    flags = _cpuinfo("flags").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16_MIN_SPEEDUP = 1.2  # bf16 rounds (≈ 50 dB PSNR on f_θ): only worth it when clearly faster


def bf16_speedup(repeats: int = 5) -> float:
    """fp32 time / bf16 time of a VGG-like 3×3 convolution here (channels_last), interleaved so
    that a busy machine slows both alike; ≈ 0.1 s, most of it oneDNN's first calls."""
    conv = nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(1, 128, 64, 64).contiguous(memory_format=torch.channels_last)

    def seconds(bf16: bool) -> float:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            start = time.perf_counter()
            conv(x)
            return time.perf_counter() - start

    for bf16 in (True, False):  # warm-up: oneDNN builds each precision's kernels once
        seconds(bf16)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for bf16 in (True, False):
            times[bf16].append(seconds(bf16))
    return statistics.median(times[False]) / statistics.median(times[True])


def verdicts_path() -> Path:
    """Where the measured speedups are kept, in styler's cache folder."""
    return cache_dir() / "precision.json"


def _read_verdicts(path: Path) -> dict[str, float]:
    """The kept speedups; a missing or damaged file reads as none kept (so they are measured)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, (int, float))}


@functools.cache
def cpu_prefers_bf16() -> bool:
    """Whether ``auto`` runs bf16 on this CPU: natively computed and measured faster."""
    if not cpu_has_native_bf16():
        return False
    cpu = _cpuinfo("model name") or "unknown CPU"
    key = f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    path = verdicts_path()
    verdicts = _read_verdicts(path)
    if key not in verdicts:
        verdicts[key] = round(bf16_speedup(), 3)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, (json.dumps(verdicts, indent=1) + "\n").encode())
        except OSError:
            pass  # a read-only home: measured again by the next process
    return verdicts[key] >= BF16_MIN_SPEEDUP


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameters (glibc's malloc.h)
HEAP_KEPT = 1 << 30  # free memory a process keeps at the top of its heap before returning it


@functools.cache
def reuse_freed_memory() -> bool:
    """Serve large blocks from the heap and keep up to ``HEAP_KEPT`` of freed memory (glibc).

    glibc maps every block above 32 MB afresh and unmaps it when freed; a 512² pair makes a dozen
    such activations (64 × 544² in bf16 is 38 MB), and faulting their pages in every time made
    f_θ 15 % slower (512² pair, Zen 4: 0.71 s → 0.61 s with this). False where the C library has
    no ``mallopt`` (macOS; musl's does nothing): nothing changes there.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, HEAP_KEPT))


def resolve_device(device: str = DEFAULT_DEVICE) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda asked for, but PyTorch sees no CUDA device")
    if device.split(":")[0] not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    try:
        return torch.device(device)
    except RuntimeError:  # "cpu:abc", "cuda:x": a known type with a malformed index
        raise ValueError(f"device {device!r} is not a device name such as cpu or cuda:0") from None


@dataclass(frozen=True)
class Engine:
    """A device and the precision its networks run in (``bf16`` or ``fp32``, never ``auto``);
    with ``int8``, f_θ's VGG encoder and its decoder's residual blocks (where the model has
    scales for them) run in int8 (:mod:`quant`), the rest in ``precision``."""

    device: torch.device
    precision: str
    int8: bool = False

    @classmethod
    def create(cls, device: str = DEFAULT_DEVICE, precision: str = DEFAULT_PRECISION) -> Engine:
        dev = resolve_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if precision == "int8" and (dev.type != "cpu" or not quant.available()):
            raise ValueError(
                "precision int8 runs on CPUs only, with a torch that has oneDNN's "
                "int8 convolutions and the VGG19 weights styler was calibrated for"
            )
        if dev.type == "cpu":
            reuse_freed_memory()
        int8 = precision == "int8" or (
            precision == "auto" and dev.type == "cpu" and cpu_has_vnni() and quant.available()
        )
        if precision in ("auto", "int8"):
            fast_bf16 = dev.type == "cuda" or cpu_prefers_bf16()
            precision = "bf16" if fast_bf16 else "fp32"
        return cls(dev, precision, int8)

    @property
    def setting(self) -> str:
        """The precision to ask for to get this engine again (``int8``, ``bf16`` or ``fp32``)."""
        return "int8" if self.int8 else self.precision

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def autocast(self) -> AbstractContextManager:
        """The context the networks run in: bf16 autocast, and int8 for f_θ's encoder and blocks."""
        stack = ExitStack()
        if self.bf16:
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        if self.int8:
            stack.enter_context(quant.enabled())
        return stack

    @property
    def channels_last(self) -> bool:
        """Whether networks and images use channels_last: on CPUs always, elsewhere with bf16."""
        return self.bf16 or self.device.type == "cpu"

    def module(self, m: nn.Module) -> nn.Module:
        """Move a network to the device, in channels_last where that is the fast layout."""
        m = m.to(self.device)
        return m.to(memory_format=torch.channels_last) if self.channels_last else m

    def tensor(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        fast = self.channels_last and x.dim() == 4
        return x.contiguous(memory_format=torch.channels_last) if fast else x

    def describe(self, int8_parts: Sequence[str] = ()) -> str:
        """E.g. "cpu bf16 + int8 encoder and blocks" for a model's ``int8_parts``."""
        parts = " and ".join(int8_parts) if self.int8 else ""
        return f"{self.device.type} {self.precision}" + (f" + int8 {parts}" if parts else "")
