"""The precision engine: decided once per device; bf16 is visually identical to fp32 on f_θ
(checked on every CPU: without native bf16 it is emulated, slower but rounded the same way)."""

from __future__ import annotations

import json
import math
import platform

import pytest
import torch

from styler import engine as engine_module
from styler import gallery, images
from styler.engine import Engine, cpu_has_native_bf16, cpu_prefers_bf16, resolve_device
from styler.model import StyleNet


def test_auto_picks_bf16_only_where_the_cpu_has_it_natively_and_it_measured_faster():
    engine = Engine.create("cpu", "auto")
    assert engine.precision == ("bf16" if cpu_prefers_bf16() else "fp32")
    assert not cpu_prefers_bf16() or cpu_has_native_bf16()
    assert Engine.create("cpu", "fp32").precision == "fp32"
    assert Engine.create("cpu", "bf16").describe() == "cpu bf16"


@pytest.fixture
def fresh_verdicts(tmp_path, monkeypatch):
    """A CPU with native bf16, an empty cache folder, and no verdict of this process yet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(engine_module, "cpu_has_native_bf16", lambda: True)
    cpu_prefers_bf16.cache_clear()
    yield engine_module.verdicts_path()
    cpu_prefers_bf16.cache_clear()


@pytest.mark.parametrize(("speedup", "precision"), [(0.6, "fp32"), (1.1, "fp32"), (1.9, "bf16")])
def test_auto_follows_the_measured_bf16_speedup_and_keeps_it(
    fresh_verdicts, monkeypatch, speedup, precision
):
    monkeypatch.setattr(engine_module, "bf16_speedup", lambda: speedup)
    assert Engine.create("cpu", "auto").precision == precision
    assert list(json.loads(fresh_verdicts.read_text()).values()) == [speedup]
    cpu_prefers_bf16.cache_clear()  # a new process: the kept verdict, no second measurement
    monkeypatch.setattr(engine_module, "bf16_speedup", lambda: pytest.fail("measured again"))
    assert Engine.create("cpu", "auto").precision == precision


def test_a_damaged_verdicts_file_is_measured_again_and_rewritten(fresh_verdicts, monkeypatch):
    fresh_verdicts.parent.mkdir(parents=True)
    fresh_verdicts.write_text("{not json")
    monkeypatch.setattr(engine_module, "bf16_speedup", lambda: 2.0)
    assert Engine.create("cpu", "auto").precision == "bf16"
    assert list(json.loads(fresh_verdicts.read_text()).values()) == [2.0]


def test_the_measured_speedup_is_a_positive_ratio():
    assert 0 < engine_module.bf16_speedup(repeats=1) < 100


@pytest.mark.parametrize(("device", "precision"), [("cpu", "fp16"), ("tpu", "auto")])
def test_unknown_precision_or_device_is_refused(device, precision):
    with pytest.raises(ValueError, match="must be one of"):
        Engine.create(device, precision)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_cpu_networks_and_images_run_channels_last_in_either_precision(precision):
    engine = Engine.create("cpu", precision)
    conv = engine.module(torch.nn.Conv2d(3, 8, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = engine.tensor(torch.rand(1, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert engine.tensor(torch.rand(3, 8, 8)).is_contiguous()  # not a batch: left as it is


def _in_heap(address: int) -> bool:
    """Whether ``address`` lies in the process's brk heap (not in a mapping of its own)."""
    with open("/proc/self/maps") as f:
        spans = [line.split()[0] for line in f if line.rstrip().endswith("[heap]")]
    return any(int(lo, 16) <= address < int(hi, 16) for lo, hi in (s.split("-") for s in spans))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_large_blocks_of_a_cpu_engine_come_from_the_heap_where_freed_memory_is_kept():
    Engine.create("cpu", "fp32")
    assert engine_module.reuse_freed_memory()
    big = torch.ones(128 << 20, dtype=torch.uint8)  # above glibc's 32 MB ceiling for the heap
    assert _in_heap(big.data_ptr())  # not mapped afresh (and its pages faulted in) every time


@torch.inference_mode()
def test_bf16_fast_path_is_visually_identical_to_fp32_on_the_shipped_model():
    content = images.read(gallery.preset_path("sisley-church-at-moret"), 256)
    style = images.read(gallery.preset_path("degas-three-dancers"), 256)
    outs = {}
    for precision in ("fp32", "bf16"):
        engine = Engine.create("cpu", precision)
        model = engine.module(StyleNet.load())
        with engine.autocast():
            outs[precision] = model(engine.tensor(content), [engine.tensor(style)]).float()
    mse = (outs["bf16"] - outs["fp32"]).pow(2).mean().item()
    psnr = math.inf if mse == 0 else 10 * math.log10(1 / mse)
    assert psnr >= 40


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    for malformed in ("cpu:abc", "auto:1"):  # torch's own RuntimeError became a traceback
        with pytest.raises(ValueError, match="not a device name"):
            resolve_device(malformed)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
