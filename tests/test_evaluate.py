"""Evaluation: interpolation and censoring, input checks, a tiny end-to-end run."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styler.evaluate import evaluate, first_reach, load_pairs, summarize
from styler.model import StyleNet
from styler.params import QUICK, EvalConfig


def test_first_reach_interpolates_between_iterations():
    assert first_reach([0, 1, 2], [10, 6, 2], 4) == (1.5, False)
    assert first_reach([0.0, 2.0, 6.0], [10, 6, 2], 4) == (
        4.0,
        False,
    )  # same crossing on a time axis


def test_first_reach_start_and_never():
    assert first_reach([0, 1, 2], [3, 2, 1], 5) == (0.0, False)
    assert first_reach([0, 1, 2], [10, 6, 5], 4) == (2.0, True)
    assert first_reach([0, 1, 2, 3], [10, 3, 8, 1], 4) == (
        pytest.approx(6 / 7),
        False,
    )  # the first crossing counts


def test_summarize_marks_statistics_that_depend_on_censored_pairs():
    s = summarize([1, 2, 3, 4, 100], [False] * 4 + [True])
    assert (s["median"], s["q1"], s["q3"], s["censored"]) == (3, 2, 4, 1)
    assert s["lower_bound"] == []
    s = summarize([1, 2, 100, 100, 100], [False, False, True, True, True])
    assert s["median"] == 100 and set(s["lower_bound"]) == {"median", "q3"}


def test_quick_fills_defaults_and_explicit_values_win():
    cfg = EvalConfig(data=Path("d"), quick=True, size=64, iters=[4, 0, 2, 2]).resolved()
    assert (cfg.size, cfg.iters, cfg.pairs, cfg.refine) == (
        64,
        (0, 2, 4),
        QUICK["pairs"],
        QUICK["refine"],
    )
    assert EvalConfig(data=Path("d")).resolved().size == 512
    with pytest.raises(ValueError, match="data is required"):
        EvalConfig().resolved()
    with pytest.raises(ValueError, match="iters"):
        EvalConfig(data=Path("d"), iters=(-1, 2)).resolved()


def _image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    """A random blocky pattern, so VGG features and style statistics are not degenerate."""
    blocks = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    Image.fromarray(blocks.repeat(8, 0).repeat(8, 1)[: size[1], : size[0]]).save(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    (root / "content").mkdir()
    (root / "style").mkdir()
    for name, size in (("a.png", (40, 48)), ("b.jpg", (48, 36))):
        _image(root / "content" / name, rng, size)
    _image(root / "style" / "s.png", rng, (44, 44))
    split = root / "split.json"
    pairs = [["a.png", "s.png"], ["b.jpg", "s.png"]]
    split.write_text(
        json.dumps({"content": ["a.png", "b.jpg"], "style": ["s.png"], "pairs": pairs})
    )
    StyleNet.build(seed=0).save(root / "m.safetensors")
    return root, split, root / "m.safetensors"


def test_missing_data_is_named(setup, tmp_path):
    root, split, _ = setup
    with pytest.raises(FileNotFoundError, match="content"):
        load_pairs(tmp_path, split, None)
    (tmp_path / "content").mkdir()
    (tmp_path / "style").mkdir()
    with pytest.raises(FileNotFoundError, match="a.png"):
        load_pairs(tmp_path, split, None)
    assert [c.name for c, _ in load_pairs(root, split, 1)] == ["a.png"]


def test_the_shipped_split_is_package_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        load_pairs(tmp_path, None, None)  # the shipped split was found and read


def test_end_to_end(setup, tmp_path, capsys):
    root, split, weights = setup
    cfg = EvalConfig(data=root, split=split, weights=weights, out=tmp_path / "out", size=32,
                     iters=(0, 2, 4), refine=(1, 2), precision="fp32")  # fmt: skip
    report = evaluate(cfg)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {"report.json", "report.md", "curves.png", "sheet.jpg"}
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == json.loads(
        json.dumps(report)
    )
    assert "| equivalent iterations of f_θ |" in capsys.readouterr().out

    assert report["pairs"] == 2 and len(report["per_pair"]) == 2
    eq = report["equivalent_iterations"]
    assert 0 <= eq["q1"] <= eq["median"] <= eq["q3"] <= 4
    assert isinstance(report["refine10_le_solver200"], bool)
    assert report["refine_vs_solver"]["refine_iters"] == 2
    assert report["refine_vs_solver"]["solver_iters"] == 4
    assert set(report["solver"]) == {"0", "2", "4"} and set(report["refine"]) == {"1", "2"}
    for row in report["per_pair"]:
        assert row["fast"]["time_s"] > 0 and row["fast"]["total"] > 0
        assert (
            row["solver"]["4"]["total"] < row["solver"]["0"]["total"]
        )  # the solver makes progress
        assert {"style_moments", "style_gram", "content"} <= set(row["fast"])
        assert row["censored"] or row["equivalent_iterations"] < 4
    with Image.open(tmp_path / "out" / "sheet.jpg") as sheet:
        # a label strip, then one row per pair of five images (content | style | fast | fast + R |
        # slow), each 192 px high with 4 px between
        assert sheet.height == 18 + 4 + 2 * (192 + 4) and sheet.width >= 5 * (192 + 4)
