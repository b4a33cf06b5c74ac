"""Weight averaging (``--average-from``): the exported model is the mean of the weights over the
steps since then, and the mean survives a resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from test_train import restore_sigterm_handler, run_config  # noqa: F401 (a fixture)

from styler.average import WeightAverage
from styler.model import StyleNet
from styler.train import train


def filled(value: float) -> StyleNet:
    model = StyleNet.build(seed=0)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.fill_(value)
    return model


def test_the_average_is_the_mean_and_applying_it_restores_the_model_after():
    average = WeightAverage()
    for value in (1.0, 2.0, 6.0):
        average.update(filled(value))
    model = filled(5.0)
    with average.applied(model):
        assert all(torch.allclose(p, torch.full_like(p, 3.0)) for p in model.decoder.parameters())
    assert all(torch.equal(p, torch.full_like(p, 5.0)) for p in model.decoder.parameters())


def test_without_updates_applying_changes_nothing():
    model = filled(5.0)
    with WeightAverage().applied(model):
        assert all(torch.equal(p, torch.full_like(p, 5.0)) for p in model.decoder.parameters())


def test_a_run_exports_the_average_and_keeps_it_across_a_resume(tmp_path):
    run = tmp_path / "run"
    train(run_config(tmp_path, steps=3, average_from=3, lr_decay=0.0, int8_pairs=0))
    train(run_config(tmp_path, steps=5, average_from=3, lr_decay=0.0, int8_pairs=0))
    ck = torch.load(run / "checkpoint.pt")
    assert ck["average"]["count"] == 3  # steps 3, 4 and 5
    exported = load_file(run / "model.safetensors")
    last = {f"decoder.{k[len('model.decoder.'):]}": v for k, v in ck["recon"].items()
            if k.startswith("model.decoder.")}  # fmt: skip
    name = next(iter(ck["average"]["mean"]))
    assert torch.allclose(exported[name].float(), ck["average"]["mean"][name].half().float())
    assert not torch.allclose(exported[name].float(), last[name].half().float())
    assert StyleNet.load(run / "model").config["trained"]["averaged_steps"] == [3, 5]


def test_averaging_must_start_in_the_style_stage(tmp_path):
    with pytest.raises(ValueError, match="average_from"):
        run_config(tmp_path, average_from=2)  # recon_steps is 2
