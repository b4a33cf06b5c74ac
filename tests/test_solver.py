"""The per-image solver: it lowers L, keeps x in [0, 1], records its history, honours init and cancel."""

from __future__ import annotations

import pytest
import torch
from core_helpers import FAST_LOSS, pattern_tensor, shared_vgg

from styler.losses import Objective, Targets
from styler.solver import Progress, initial_image, solve


@pytest.fixture(scope="module")
def problem() -> tuple[Objective, torch.Tensor, Targets]:
    obj = Objective(FAST_LOSS, shared_vgg("relu4_1"))
    content = pattern_tensor(48, 48, seed=0)
    return obj, content, obj.targets(content, [pattern_tensor(40, 40, seed=4)])


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_ten_iterations_lower_the_loss_and_keep_x_in_range(problem, optimizer):
    obj, content, targets = problem
    result = solve(obj, content, targets, iters=10, optimizer=optimizer)
    assert [row["step"] for row in result.history] == list(range(11))
    assert result.final is result.history[-1]
    assert result.history[-1]["total"] < result.history[0]["total"]
    assert {"content", "style", "style_moments", "style_gram", "tv", "total", "elapsed_s"} <= set(result.history[0])
    assert result.image.shape == content.shape
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert not result.image.requires_grad


def test_zero_iterations_return_the_initial_image(problem):
    obj, content, targets = problem
    result = solve(obj, content, targets, iters=0)
    assert len(result.history) == 1
    assert torch.equal(result.image, content)
    assert result.history[0]["content"] == pytest.approx(0.0, abs=1e-7)


def test_noise_init_is_deterministic_for_a_seed(problem):
    _, content, _ = problem
    a = initial_image("noise", content, seed=7)
    assert torch.equal(a, initial_image("noise", content, seed=7))
    assert not torch.equal(a, initial_image("noise", content, seed=8))
    assert a.shape == content.shape and a.min() >= 0 and a.max() <= 1


def test_tensor_init_starts_exactly_from_that_image(problem):
    obj, content, targets = problem
    start = pattern_tensor(48, 48, seed=11)
    result = solve(obj, content, targets, iters=1, optimizer="adam", init=start)
    with torch.no_grad():
        expected = obj(start, targets)["total"].item()
    assert result.history[0]["total"] == pytest.approx(expected, rel=1e-5)
    assert torch.equal(start, pattern_tensor(48, 48, seed=11))  # the caller's tensor is not modified


def test_wrong_shaped_init_tensor_is_rejected(problem):
    obj, content, targets = problem
    with pytest.raises(ValueError, match="initial image"):
        solve(obj, content, targets, iters=1, init=torch.rand(1, 3, 40, 48))


@pytest.mark.parametrize("kwargs", [{"optimizer": "sgd"}, {"iters": -1}, {"init": "zeros"}])
def test_bad_arguments_are_rejected(problem, kwargs):
    obj, content, targets = problem
    with pytest.raises(ValueError):
        solve(obj, content, targets, **{"iters": 1, **kwargs})


def test_callback_sees_increasing_steps_and_can_stop_early(problem):
    obj, content, targets = problem
    seen: list[Progress] = []

    def callback(p: Progress) -> bool:
        seen.append(p)
        return p.step == 3

    result = solve(obj, content, targets, iters=10, optimizer="adam", callback=callback)
    assert [p.step for p in seen] == [1, 2, 3]
    assert all(p.total == 10 for p in seen)
    assert len(result.history) == 4
    assert seen[-1].terms == result.history[-1]
    assert seen[-1].image.shape == content.shape
