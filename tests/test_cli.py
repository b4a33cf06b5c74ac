"""The ``styler`` command line end to end, on small generated images."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from core_helpers import pattern, run
from PIL import Image

from styler.cli import build_parser, main
from styler.config import LossConfig
from styler.model import StyleNet
from styler.modelfile import DEFAULT_WEIGHTS
from styler.params import REFINE_ITERS, FastRequest, SolveRequest


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    paths = {"content": d / "photo.jpg", "style": d / "painting.png", "style2": d / "texture.jpg"}
    pattern(56, 40, 1).save(paths["content"])
    pattern(40, 40, 2).save(paths["style"])
    pattern(44, 36, 3).save(paths["style2"])
    paths["text"] = d / "notes.jpg"
    paths["text"].write_text("this is not an image\n")
    full = d / "full.jpg"
    pattern(200, 160, 4).save(full, quality=95)
    paths["truncated"] = d / "truncated.jpg"
    paths["truncated"].write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    paths["huge"] = d / "huge.png"
    Image.new("1", (20000, 20000)).save(paths["huge"])
    paths["model"] = d / "tiny.safetensors"
    StyleNet.build(seed=0).save(paths["model"])
    return paths


def test_fast_uses_shipped_weights_by_default(files, tmp_path, capsys):
    assert DEFAULT_WEIGHTS.exists(), "the shipped model must be in weights/"
    out = tmp_path / "out.jpg"
    code, stdout, _ = run(
        ["fast", files["content"], files["style"], "-o", out, "--size", 32], capsys
    )
    assert code == 0
    im = Image.open(out)
    assert min(im.size) == 32 and im.size[0] > im.size[1]  # landscape content stays landscape
    assert "fast path" in stdout


def test_fast_options_change_the_output(files, tmp_path, capsys):
    outs = {}
    for name, extra in {
        "plain": [],
        "alpha0": ["--alpha", "0"],
        "mix": ["--style-weights", "0.3,0.7"],
        "color": ["--preserve-color"],
    }.items():
        out = tmp_path / f"{name}.png"
        styles = [files["style"], files["style2"]] if name == "mix" else [files["style"]]
        args = ["fast", files["content"], *styles, "-o", out, "--size", 32, *extra]
        assert run(args, capsys)[0] == 0  # the shipped model: an untrained one ignores options
        outs[name] = np.asarray(Image.open(out), dtype=np.int16)
    for name in ("alpha0", "mix", "color"):
        assert np.abs(outs[name] - outs["plain"]).mean() > 0.5, name


def test_slow_lowers_the_loss_and_reports_it(files, tmp_path, capsys):
    out = tmp_path / "slow.png"
    code, stdout, err = run(
        ["slow", files["content"], files["style"], "-o", out, "--size", 32, "--iters", 4], capsys
    )
    assert code == 0 and out.exists()
    before, after = map(float, re.search(r"L ([\d.]+) → ([\d.]+)", stdout).groups())
    assert after < before
    assert "lbfgs from content" in err  # the progress bar


def test_refine_and_slow_init_fast_start_from_the_network(files, tmp_path, capsys):
    for cmd in (["refine"], ["slow", "--init", "fast"]):
        out = tmp_path / "refined.png"
        args = [files["content"], files["style"], "-o", out, "--size", 32, "--iters", 2]
        code, stdout, _ = run([*cmd, *args, "--weights", files["model"]], capsys)
        assert code == 0 and out.exists()
        assert "2 iterations" in stdout


def test_compare_prints_both_rows_and_writes_the_sheet(files, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    args = [files["content"], files["style"], "-o", sheet, "--size", 32, "--iters", 3]
    code, stdout, _ = run(
        ["compare", *args, "--sheet-height", 40, "--weights", files["model"]], capsys
    )
    assert code == 0
    assert re.search(r"^fast \(f_θ\)\s+[\d.]+s", stdout, re.MULTILINE)
    assert re.search(r"^slow \(3 it\)\s+[\d.]+s", stdout, re.MULTILINE)
    assert Image.open(sheet).size[0] > 4 * 40  # four tiles side by side


def test_train_command_exports_a_loadable_model(files, tmp_path, capsys):
    for kind, names in {"content": ["a.jpg", "b.jpg"], "style": ["s.png"]}.items():
        (tmp_path / kind).mkdir()
        for i, n in enumerate(names):
            pattern(48, 40, i + 10).save(tmp_path / kind / n)
    run_dir = tmp_path / "run"
    args = ["train", tmp_path / "content", tmp_path / "style", "--out", run_dir, "--steps", 2,
            "--recon-steps", 1, "--batch", 2, "--size", 32, "--resize", 40, "--workers", 0,
            "--device", "cpu"]  # fmt: skip
    code, stdout, _ = run(args, capsys)
    assert code == 0, stdout
    model = StyleNet.load(run_dir / "model.safetensors")
    assert model.config["trained"]["steps"] == 2
    assert (run_dir / "loss.png").exists() and (run_dir / "log.csv").exists()


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing", "no such file"),
        ("text", "not an image"),
        ("truncated", "truncated"),
        ("huge", "megapixels"),
    ],
)
def test_bad_content_image_is_one_clear_line_and_exit_2(files, tmp_path, capsys, case, fragment):
    src = files.get(case, tmp_path / "nope.jpg")
    args = ["fast", src, files["style"], "-o", tmp_path / "o.png", "--weights", files["model"]]
    code, _, err = run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0] and fragment in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_a_bad_content_is_named_before_a_bad_style(tmp_path, capsys):
    content, style = tmp_path / "no-content.jpg", tmp_path / "no-style.jpg"
    code, _, err = run(["fast", content, style, "-o", tmp_path / "o.png"], capsys)
    assert code == 2 and "no-content.jpg" in err and "no-style" not in err


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--style-weights", "1,2"], "2 style weights for 1 style"),
        (["--alpha", "1.5"], "alpha must be in [0, 1]"),
        (["-o", "out.gif"], "unsupported output type"),
        (["--weights", "missing.safetensors"], "model file not found"),
    ],
)
def test_bad_options_exit_2_with_a_message(files, tmp_path, capsys, extra, fragment):
    args = [
        "fast",
        files["content"],
        files["style"],
        "-o",
        tmp_path / "o.png",
        "--size",
        32,
        *extra,
    ]
    code, _, err = run(args, capsys)
    assert code == 2 and fragment in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--sizes", "8"],
        ["bench", "--solver-sizes", "0"],
        ["bench", "--megapixels", "0"],
    ],
)
def test_bench_checks_its_numbers_before_any_work(capsys, args):
    code, _, err = run(args, capsys)
    assert code == 2 and "error:" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "70000"],
        ["serve", "--workers", "0"],
        ["bench", "--repeats", "0"],
        ["compare", "c.jpg", "s.jpg", "-o", "o.png", "--sheet-height", "0"],  # failed after solving
        ["slow", "c.jpg", "s.jpg", "-o", "o.png", "--save-every", "-1"],
        ["refine", "c.jpg", "s.jpg", "-o", "o.png", "--seed", "1"],  # no noise start: no seed
        ["bench", "--style-scale", "2"],  # bench's pairs are random tensors
    ],
)
def test_options_out_of_range_or_without_effect_are_argument_errors(capsys, args):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


def test_argument_errors_exit_2(files, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fast", str(files["content"])])  # no style, no -o
    assert e.value.code == 2


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA", "CMYK", "I;16"])
def test_unusual_image_modes_are_accepted(files, tmp_path, capsys, mode):
    src = tmp_path / ("in.tif" if mode in ("CMYK",) else "in.png")
    im = pattern(40, 32, 5)
    if mode == "I;16":
        im = Image.fromarray(np.asarray(im.convert("L"), dtype="<u2") * 257)
    else:
        im = im.convert(mode)
    im.save(src)
    args = ["fast", src, files["style"], "-o", tmp_path / "o.png", "--size", 32]
    code, _, err = run([*args, "--weights", files["model"]], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "o.png").mode == "RGB"


def test_every_command_explains_itself():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) >= {"fast", "slow", "refine", "compare", "train", "eval", "bench", "serve"}
    for name, sub in commands.items():
        text = sub.format_help()
        assert sub.description, name
        assert "--help" in text
        assert "default: None" not in text and "(default None)" not in text, name
        for action in sub._actions:
            assert action.help, f"styler {name} {action.option_strings or action.dest} has no help"


def test_eval_without_data_names_the_missing_option(monkeypatch, capsys):
    monkeypatch.delenv("STYLER_DATA", raising=False)
    code, _, err = run(["eval", "--quick"], capsys)
    assert code == 2
    assert "--data is required" in err and "Traceback" not in err


def test_console_entry_point_runs(files, tmp_path):
    out = tmp_path / "o.webp"
    args = ["fast", files["content"], files["style"], "-o", out, "--size", "32"]
    proc = subprocess.run(check=False, args=
        [sys.executable, "-m", "styler.cli", *args, "--weights", files["model"]],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).format == "WEBP"


def _console(tmp_path: Path, *args: object) -> subprocess.CompletedProcess:
    """The ``styler`` command (``cli.console``) with an exit handler of the caller's registered."""
    code = ("import atexit, sys\nfrom styler.cli import console\n"
            "atexit.register(lambda: print('exit handler ran'))\n"
            f"sys.argv = ['styler', *{list(map(str, args))!r}]\nconsole()\n")  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)  # fmt: skip


def test_the_quick_exit_keeps_the_exit_code_the_output_and_the_exit_handlers(
    files, tmp_path, capsys
):
    ok = _console(tmp_path, "styles")
    assert ok.returncode == 0, ok.stderr
    listed = run(["styles"], capsys)[1]
    assert ok.stdout == listed + "exit handler ran\n"  # all of it, through a pipe
    fast = _console(tmp_path, "fast", files["content"], files["style"], "-o", "o.png",
                    "--size", "32", "--weights", files["model"], "--no-daemon")  # fmt: skip
    assert fast.returncode == 0 and (tmp_path / "o.png").is_file(), fast.stderr
    assert fast.stdout.endswith("exit handler ran\n")
    bad = _console(tmp_path, "fast", "none.jpg", files["style"], "-o", "x.png")
    assert bad.returncode == 2 and "none.jpg" in bad.stderr
    assert bad.stdout == "exit handler ran\n"


def _defaults(command: str) -> dict:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    dests = [a.dest for a in sub._actions] + ["init"]
    return {dest: sub.get_default(dest) for dest in dests}


def test_option_defaults_come_from_the_typed_requests():
    fast, slow, refine = _defaults("fast"), _defaults("slow"), _defaults("refine")
    assert fast["alpha"] == FastRequest().alpha and fast["size"] == FastRequest().size
    assert slow["iters"] == SolveRequest().iters and slow["init"] == SolveRequest().init
    assert refine["iters"] == REFINE_ITERS and refine["init"] == "fast"
    assert slow["style_weight"] == LossConfig().style_weight == _defaults("train")["style_weight"]


@pytest.mark.parametrize(
    "args", [["--help"], ["slow", "--help"], ["fast", "x.png"], ["eval", "-x"]]
)
def test_help_and_argument_errors_do_not_import_torch(args):
    code = (
        f"import sys; from styler.cli import main\ntry: main({args!r})\nexcept SystemExit: pass\n"
    )
    code += "assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run(
        check=False, args=[sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_bench_runs_and_names_the_precision(files, capsys):
    args = ["bench", "--weights", files["model"], "--sizes", 32, "--solver-sizes", 32]
    code, stdout, _ = run([*args, "--repeats", 1, "--precision", "fp32", "--megapixels", 0.05,
                           "--no-peers"], capsys)  # fmt: skip
    assert code == 0 and "cpu fp32" in stdout and "s/iter" in stdout and "tiled" in stdout
