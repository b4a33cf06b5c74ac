"""Amortized training: both stages learn, a run writes and resumes its files, held-out images stay
out, and torchrun's ranks stay in sync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from core_helpers import FAST_LOSS, image_folder, pattern_tensor, shared_vgg, tame_net, vgg_net

from styler.config import ARCHITECTURE, Architecture, TrainConfig
from styler.curves import read_rows
from styler.lineage import start_from
from styler.losses import Objective
from styler.model import StyleNet
from styler.pipeline import calibrate_int8
from styler.stages import NEW_LR_SCALE, ReconStage, StyleStage, style_loss
from styler.train import holdout_names, train

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def restore_sigterm_handler():
    """train() installs a SIGTERM handler; keep it from leaking into the rest of the session."""
    before = signal.getsignal(signal.SIGTERM)
    yield before
    signal.signal(signal.SIGTERM, before)


def run_config(tmp_path: Path, **changes) -> TrainConfig:
    """A tiny CPU run on generated images in ``tmp_path``: contents a–d, styles s1–s3, of which
    d and s3 are held out (and measured every 2 steps)."""
    contents = image_folder(tmp_path / "content", ["a.jpg", "b.png", "c.png", "d.png"])
    styles = image_folder(tmp_path / "style", ["s1.png", "s2.jpg", "s3.png"], seed=10)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"content": ["d.png"], "style": ["s3.png"]}))
    cfg = {"content_dir": str(contents), "style_dir": str(styles), "out": str(tmp_path / "run"),
           "batch": 2, "size": 32, "resize": 40, "recon_steps": 2, "steps": 4,
           "holdout": str(split), "workers": 0, "ckpt_every": 2, "log_every": 1,
           "eval_every": 2, "eval_pairs": 1, "device": "cpu", "loss": FAST_LOSS}  # fmt: skip
    parts = {"encoder": "lite"} | {k: changes.pop(k) for k in ARCHITECTURE if k in changes}
    return TrainConfig(**{**cfg, **changes}, arch=Architecture(**parts))


def test_the_reconstruction_stage_learns_to_invert_the_lite_encoder():
    model = StyleNet.build(seed=0)
    stage = ReconStage(model, shared_vgg("relu4_1"))
    images = torch.cat([pattern_tensor(32, 32, s) for s in range(2)])
    opt = torch.optim.Adam(stage.trainable(1e-3))
    losses = []
    for _ in range(8):
        terms = stage(images)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        losses.append(terms["total"].item())
    assert {"pixel", "feature", "distill"} <= set(terms)
    assert losses[-1] < losses[0]


def test_the_style_stage_trains_the_decoder_on_exactly_the_shared_objective():
    model = StyleNet.build(seed=0)
    objective = Objective(FAST_LOSS, shared_vgg("relu4_1"))
    content, style = pattern_tensor(32, 32, 1), pattern_tensor(32, 32, 2)
    model.eval()
    with torch.no_grad():
        terms = style_loss(model, objective, content, style)
        direct = objective(model(content, [style]), objective.targets(content, [style]))
    # the only difference: training scores the unclamped output, inference clamps it
    assert terms["total"].item() == pytest.approx(direct["total"].item(), rel=0.05)
    stage = StyleStage(model, objective)
    (group,) = stage.trainable(1e-4)
    assert {id(p) for p in group["params"]} == {id(p) for p in model.decoder.parameters()}


def test_train_writes_its_run_folder_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    exported = train(run_config(tmp_path))
    assert exported == run / "model.safetensors"
    for name in ("checkpoint.pt", "log.csv", "heldout.csv", "loss.png", "model.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "targets-32-40" / "content").iterdir())) >= 2  # stage 2's cache
    rows = read_rows(run / "log.csv")
    assert [(r["step"], r["stage"]) for r in rows] == [
        ("1", "recon"),
        ("2", "recon"),
        ("3", "style"),
        ("4", "style"),
    ]
    assert rows[0]["distill"] and rows[-1]["content"] and not rows[-1]["distill"]
    assert [r["step"] for r in read_rows(run / "heldout.csv")] == ["2", "4"]
    model = StyleNet.load(exported)
    assert model.config["trained"]["steps"] == 4
    assert model.config["loss"] == json.loads(json.dumps(FAST_LOSS.to_dict()))
    assert "content_dir" not in model.config["training"]  # no machine paths in a shared model
    capsys.readouterr()

    with (run / "log.csv").open("a") as f:  # a crash after step 4's checkpoint had logged step 5
        f.write("5,style,9.9,0.0001,1.0,,,,1.0,1.0\n")
    train(run_config(tmp_path, steps=6))
    assert "resuming" in capsys.readouterr().out
    assert [r["step"] for r in read_rows(run / "log.csv")] == ["1", "2", "3", "4", "5", "6"]
    assert torch.load(run / "checkpoint.pt")["step"] == 6

    train(run_config(tmp_path, steps=6))  # already done: nothing more is trained or logged
    assert "already at step 6" in capsys.readouterr().out
    assert len(read_rows(run / "log.csv")) == 6


def test_resume_with_changed_settings_says_so_and_uses_them(tmp_path, capsys):
    train(run_config(tmp_path, steps=3, style_lr=1e-3, lr_decay=0.0))
    capsys.readouterr()
    train(run_config(tmp_path, steps=4, style_lr=2e-4, lr_decay=0.0))
    assert "'style_lr': (0.001, 0.0002)" in capsys.readouterr().out
    lrs = [float(r["lr"]) for r in read_rows(tmp_path / "run" / "log.csv")]
    assert lrs[2:] == pytest.approx([1e-3, 2e-4])  # not the checkpoint's lr


def test_a_fresh_adam_warms_up_and_a_run_stopped_mid_ramp_resumes_it(tmp_path):
    train(run_config(tmp_path, steps=4, lr=4e-4, style_lr=1e-3, lr_decay=0.0, warmup=8))
    train(run_config(tmp_path, steps=6, lr=4e-4, style_lr=1e-3, lr_decay=0.0, warmup=8))
    lrs = [float(r["lr"]) for r in read_rows(tmp_path / "run" / "log.csv")]
    # a step logs the next step's lr; each stage starts a fresh Adam at 1/8 of its lr, 2/8 …,
    # and the resumed style stage goes on from its Adam's 2 updates
    assert lrs == pytest.approx([1e-4, 1.5e-4, 2.5e-4, 3.75e-4, 5e-4, 6.25e-4])


def test_a_checkpoint_with_a_setting_since_removed_still_resumes(tmp_path, capsys):
    """A run checkpointed by a version with an option this one no longer has goes on."""
    train(run_config(tmp_path, steps=3))
    path = tmp_path / "run" / "checkpoint.pt"
    ck = torch.load(path)
    ck["settings"]["training"]["gone_option"] = True
    torch.save(ck, path)
    capsys.readouterr()
    train(run_config(tmp_path, steps=4))
    assert "'gone_option': (True, None)" in capsys.readouterr().out
    assert read_rows(tmp_path / "run" / "log.csv")[-1]["step"] == "4"


def test_init_continues_an_exported_model_in_a_new_run_folder(tmp_path, capsys):
    first = train(run_config(tmp_path, steps=3))
    before = StyleNet.load(first).trained_state()
    cfg = run_config(tmp_path, out=str(tmp_path / "more"), steps=5, init=str(first))
    model = StyleNet.build()
    assert start_from(model, cfg, shared_vgg("relu4_1")) == (3, pytest.approx(
        StyleNet.load(first).config["trained"]["wall_time_s"]))  # fmt: skip
    started = model.trained_state()
    assert all(torch.equal(before[k], started[k].half().float()) for k in before)
    capsys.readouterr()
    more = StyleNet.load(train(cfg))
    assert "starting from" in capsys.readouterr().out
    assert more.config["trained"]["steps"] == 5
    assert [r["step"] for r in read_rows(tmp_path / "more" / "log.csv")] == ["4", "5"]
    with pytest.raises(ValueError, match="a lite/wct model, but this run trains lite/adain"):
        train(run_config(tmp_path, out=str(tmp_path / "other"), transform="adain", init=str(first)))


def test_init_gives_a_model_without_skips_skips_that_start_at_zero(tmp_path):
    """The same output at the start, so training continues from where that model was."""
    plain = tame_net(encoder="vgg")
    plain.save(tmp_path / "plain.safetensors")
    cfg = run_config(tmp_path, encoder="vgg", skips=True, init=str(tmp_path / "plain"))
    model = vgg_net(skips=True)
    start_from(model, cfg, shared_vgg("relu3_1"))
    assert all(not conv.weight.any() for conv in model.decoder.skips)
    c, s = pattern_tensor(40, 32, 1), pattern_tensor(32, 32, 2)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(c, [s]), plain(c, [s]), atol=2e-3, rtol=0)
    model.save(tmp_path / "skips.safetensors")
    back = run_config(tmp_path, encoder="vgg", init=str(tmp_path / "skips"))
    with pytest.raises(ValueError, match="a vgg/wct/skips model, but this run trains vgg/wct "):
        start_from(vgg_net(), back, shared_vgg("relu3_1"))


def test_init_adds_blocks_that_start_as_the_identity_but_never_drops_them(tmp_path):
    plain = tame_net(encoder="vgg", skips=True)
    plain.save(tmp_path / "plain.safetensors")
    cfg = run_config(tmp_path, encoder="vgg", skips=True, blocks=2, init=str(tmp_path / "plain"))
    model = vgg_net(skips=True, blocks=2)
    start_from(model, cfg, shared_vgg("relu3_1"))
    c, s = pattern_tensor(40, 32, 1), pattern_tensor(32, 32, 2)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(c, [s]), plain(c, [s]), atol=2e-3, rtol=0)
    model.save(tmp_path / "blocks.safetensors")
    back = run_config(tmp_path, encoder="vgg", skips=True, blocks=1, init=str(tmp_path / "blocks"))
    with pytest.raises(ValueError, match="a vgg/wct/skips/2 blocks model, but this run trains "):
        start_from(vgg_net(skips=True, blocks=1), back,
                   shared_vgg("relu3_1"))  # fmt: skip


def grown(tmp_path: Path, old: StyleNet, **grow) -> StyleNet:
    """A vgg model with skips and the parts ``grow`` names, started (``--init``) from ``old``;
    it must give ``old``'s output."""
    old.save(tmp_path / "old.safetensors")
    cfg = run_config(tmp_path, encoder="vgg", skips=True, init=str(tmp_path / "old"), **grow)
    model = vgg_net(skips=True, **grow)
    start_from(model, cfg, shared_vgg("relu3_1"))
    c, s = pattern_tensor(40, 32, 1), pattern_tensor(32, 32, 2)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(c, [s]), old(c, [s]), atol=2e-3, rtol=0)
    return model


def test_init_adds_experts_at_zero_that_learn_faster_and_are_never_dropped(tmp_path):
    """Experts added to a trained model leave its output as it was, train at NEW_LR_SCALE times
    its lr, and are never dropped by a later --init."""
    model = grown(tmp_path, tame_net(encoder="vgg", skips=True), experts=2)
    groups = StyleStage(model, Objective(FAST_LOSS, shared_vgg("relu2_1"))).trainable(1e-5)
    new = set(model.decoder.head.parameters())
    assert [g["lr"] for g in groups] == [1e-5, 1e-5 * NEW_LR_SCALE]
    assert set(groups[1]["params"]) == new and not new & set(groups[0]["params"])
    model.save(tmp_path / "grown.safetensors")
    back = run_config(tmp_path, encoder="vgg", skips=True, init=str(tmp_path / "grown"))
    with pytest.raises(
        ValueError, match="a vgg/wct/skips/2 experts model, but this run trains vgg/wct/"
    ):
        start_from(vgg_net(skips=True), back,
                   shared_vgg("relu3_1"))  # fmt: skip


def test_init_grows_experts_keeping_the_old_ones_and_the_output(tmp_path):
    """A model with 2 experts starts one with 3: the 2 come first, unchanged, so the output is
    the same; the third starts at zero, with a routing row that is not (else it never learns)."""
    small = tame_net(encoder="vgg", skips=True, experts=2)
    head, old = grown(tmp_path, small, experts=3).decoder.head, small.decoder.head
    torch.testing.assert_close(head.weight[:2], old.weight, atol=1e-3, rtol=0)  # fp16 file
    assert not head.weight[2].any() and head.route[2].weight[2].abs().sum() > 0


def test_init_adds_a_linear_correction_at_zero_that_learns_faster(tmp_path):
    """A model that gains the linear correction keeps its output and trains the correction at
    NEW_LR_SCALE times its lr; it cannot change the rank of one it has."""
    model = grown(tmp_path, tame_net(encoder="vgg", skips=True), linear=4)
    groups = StyleStage(model, Objective(FAST_LOSS, shared_vgg("relu2_1"))).trainable(1e-5)
    assert set(groups[1]["params"]) == set(model.decoder.linear.parameters())
    model.save(tmp_path / "lin.safetensors")
    other = run_config(tmp_path, encoder="vgg", skips=True, init=str(tmp_path / "lin"), linear=8)
    with pytest.raises(ValueError, match="a vgg/wct/skips/4 linear model, but this run trains "):
        start_from(vgg_net(skips=True, linear=8), other,
                   shared_vgg("relu3_1"))  # fmt: skip


def test_init_adds_the_content_to_the_routing_at_zero_and_never_drops_it(tmp_path):
    """Experts that gain the content in their routing keep the output (its columns start at
    zero; the style's are kept); a later --init cannot take it away."""
    old = tame_net(encoder="vgg", skips=True, experts=2)
    model = grown(tmp_path, old, experts=2, route_content=True)
    first, before = model.decoder.head.route[0].weight, old.decoder.head.route[0].weight
    assert not first[:, before.shape[1] :].any()
    torch.testing.assert_close(first[:, : before.shape[1]], before, atol=1e-3, rtol=0)
    model.save(tmp_path / "route.safetensors")
    back = run_config(tmp_path, encoder="vgg", skips=True, experts=2, init=str(tmp_path / "route"))
    with pytest.raises(ValueError, match=r"route content model, but .* \(set .*--route-content"):
        start_from(vgg_net(skips=True, experts=2), back,
                   shared_vgg("relu3_1"))  # fmt: skip


def test_a_finished_run_calibrates_its_int8_blocks_and_an_unfinished_one_does_not(tmp_path):
    """The exported model carries its blocks' scales once training is done, so it runs them in
    int8 as the shipped model does; a later export (training on) drops them again."""
    model_json = tmp_path / "run" / "model.json"
    train(run_config(tmp_path, blocks=2, steps=2, recon_steps=1, int8_pairs=2))
    scales = json.loads(model_json.read_text())["int8_blocks"]
    assert len(scales) == 2 and all(s["x_scale"] > 0 and s["h_scale"] > 0 for s in scales)
    assert StyleNet.load(tmp_path / "run" / "model").decoder.int8_scales is not None
    train(run_config(tmp_path, blocks=2, steps=3, recon_steps=1, int8_pairs=0))
    assert "int8_blocks" not in json.loads(model_json.read_text())


def test_calibration_leaves_out_a_pair_that_does_not_read(tmp_path):
    path = tmp_path / "m.safetensors"
    StyleNet.build(Architecture("lite", blocks=1)).save(path)
    folder = image_folder(tmp_path / "img", ["c.png", "s.png"])
    (folder / "bad.jpg").write_bytes(b"not an image")
    calibrate_int8(path, [(folder / "bad.jpg", folder / "s.png")], 32)
    assert "int8_blocks" not in json.loads(path.with_suffix(".json").read_text())
    calibrate_int8(
        path, [(folder / "bad.jpg", folder / "s.png"), (folder / "c.png", folder / "s.png")], 32
    )
    assert len(json.loads(path.with_suffix(".json").read_text())["int8_blocks"]) == 1


def test_the_style_stage_leaves_the_encoder_as_stage_one_left_it(tmp_path):
    train(run_config(tmp_path, steps=2))
    before = StyleNet.load(tmp_path / "run" / "model").encoder.state_dict()
    train(run_config(tmp_path, steps=4))
    after = StyleNet.load(tmp_path / "run" / "model").encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_train_leaves_the_sigterm_handler_as_it_found_it(tmp_path, restore_sigterm_handler):
    train(run_config(tmp_path, steps=1, recon_steps=1))
    assert signal.getsignal(signal.SIGTERM) == restore_sigterm_handler


def test_holdout_names_read_the_evaluation_split(tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"content": ["b.png"], "style": ["s1.png", "s9.png"]}))
    assert holdout_names(str(split)) == ({"b.png"}, {"s1.png", "s9.png"})
    assert holdout_names(None) == (set(), set())


@pytest.mark.parametrize(
    "text", ['["b.png"]', '{"content": "b.png"}', '{"pairs": [["a"]]}', "{", "\xff"]
)
def test_a_malformed_split_is_one_error_naming_the_file(tmp_path, text):
    split = tmp_path / "split.json"
    split.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"split\.json: not a split file"):
        holdout_names(str(split))
    with pytest.raises(ValueError, match="split file not found"):
        holdout_names(str(tmp_path / "none.json"))


def test_resuming_with_another_network_names_the_settings_instead_of_crashing(tmp_path):
    train(run_config(tmp_path, steps=2))
    with pytest.raises(ValueError, match=r"--encoder lite \(not vgg\)"):
        train(run_config(tmp_path, steps=3, encoder="vgg"))
    assert torch.load(tmp_path / "run" / "checkpoint.pt")["step"] == 2  # the run is untouched


@pytest.mark.parametrize(
    ("field", "value"),
    [("log_every", 0), ("eval_every", 0), ("ckpt_every", 0), ("threads", -1), ("int8_pairs", -1)],
)
def test_counts_that_would_crash_the_loop_are_refused_up_front(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        run_config(tmp_path, **{field: value})


def test_a_file_that_is_not_a_checkpoint_is_named_not_a_traceback(tmp_path):
    cfg = run_config(tmp_path)
    ckpt = Path(cfg.out) / "checkpoint.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"half a checkpoint")  # torch.load raised an UnpicklingError here
    with pytest.raises(ValueError, match="checkpoint.pt: cannot resume from it"):
        train(cfg)
    torch.save({"step": 3}, ckpt)
    with pytest.raises(ValueError, match="not a styler training checkpoint"):
        train(cfg)


def test_train_never_uses_held_out_images(tmp_path):
    cfg = run_config(tmp_path)
    Path(cfg.holdout).write_text(json.dumps({"content": ["a.jpg", "b.png", "c.png", "d.png"],
                                             "style": []}))  # fmt: skip
    with pytest.raises(FileNotFoundError, match="no images"):
        train(cfg)


def _torchrun(cfg: TrainConfig, tmp_path: Path) -> subprocess.CompletedProcess:
    args = {k: v for k, v in vars(cfg).items() if k not in ("loss", "arch")}
    script = tmp_path / "ddp.py"
    script.write_text(
        "import json, sys\nfrom styler.config import Architecture, LossConfig, TrainConfig\n"
        "from styler.train import train\n"
        "args, loss, arch = (json.loads(a) for a in sys.argv[1:])\n"
        "train(TrainConfig(**args, loss=LossConfig.from_dict(loss), arch=Architecture(**arch)))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), json.dumps(args), json.dumps(cfg.loss.to_dict()),
           json.dumps(cfg.arch.to_dict())]  # fmt: skip
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)


def test_two_torchrun_ranks_end_with_identical_weights_and_the_checkpoint_resumes(tmp_path):
    cfg = run_config(tmp_path, steps=3, recon_steps=2, ckpt_every=1)
    first = _torchrun(cfg, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    ck = torch.load(tmp_path / "run" / "checkpoint.pt")
    assert ck["step"] == 3 and len(ck["replicas"]) == 2
    assert ck["replicas"][0] == ck["replicas"][1]
    second = _torchrun(run_config(tmp_path, steps=4, recon_steps=2, ckpt_every=1), tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming" in second.stdout
    ck = torch.load(tmp_path / "run" / "checkpoint.pt")
    assert ck["step"] == 4 and ck["replicas"][0] == ck["replicas"][1]
