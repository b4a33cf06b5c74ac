"""Evaluation: the amortization gap between f_θ (one forward pass) and the solver it amortizes.

For each held-out (content, style) pair, L(x; c, s) — the objective the solver minimizes — is scored for

* f_θ's output, with its wall time (measured after a warm-up forward);
* the solver started from the content image, after K iterations (one run, read off its history);
* the solver started from f_θ's output (refinement), after R iterations (one run).

Derived per pair, then summarized as median and quartiles over pairs:

* **equivalent iterations**: the K at which the content-started solver's L first reaches f_θ's,
  linearly interpolated between iterations;
* **speed-up at equal loss**: the solver's optimization time to reach f_θ's L ÷ f_θ's forward time;
* **refinement**: the K the solver needs to match f_θ + R iterations, and the iterations saved (K − R).

A pair whose solver never gets there within max K is *censored*: its value is the one at max K,
a lower bound, and a statistic that depends on it is printed as "> x" (listed in ``lower_bound``).

``refine10_le_solver200`` is true when L(f_θ + 10) ≤ L(solver @ 200) in a strict majority of pairs.
Runs with fewer iterations compare f_θ + min(10, max R) with solver @ min(200, max K) and say so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter
from PIL import Image, ImageDraw, ImageOps
from tqdm import tqdm

from .images import read, save, to_pil
from .losses import LossConfig, Objective
from .model import ENCODER_LAYER, StyleNet
from .solver import Progress, solve
from .vgg import LAYERS, VGG19

DEFAULT_SPLIT = Path(__file__).resolve().parent.parent / "eval" / "split.json"
# Sized for a busy 2-core CPU, where one L-BFGS iteration at 128 px takes 2–5 s: 3 × 35 iterations.
QUICK = {"size": 128, "pairs": 3, "iters": (0, 5, 10, 25), "refine": (5, 10)}
COMPARE_REFINE, COMPARE_SOLVER = 10, 200
TERMS = ("total", "content", "style_moments", "style_gram", "tv")
THUMB = 192


@dataclass
class EvalConfig:
    """What to evaluate. ``quick`` replaces size/pairs/iters/refine by :data:`QUICK` where they equal their defaults
    (so an explicit value wins unless it is the default itself)."""

    data: Path
    split: Path = DEFAULT_SPLIT
    weights: Path | None = None  # None: the shipped model
    out: Path = Path("eval/results")
    size: int = 512  # shorter side, content and style alike
    pairs: int | None = None  # the split's first N pairs; None: all
    iters: tuple[int, ...] = (0, 10, 25, 50, 100, 200, 400)
    refine: tuple[int, ...] = (5, 10, 25, 50)
    quick: bool = False
    device: str = "cpu"
    seed: int = 0

    def resolved(self) -> EvalConfig:
        """Apply ``quick`` and check the values; iterations become sorted and unique."""
        cfg = replace(self, data=Path(self.data), split=Path(self.split), out=Path(self.out), iters=tuple(self.iters), refine=tuple(self.refine))
        if cfg.quick:
            defaults = {f.name: f.default for f in fields(cfg)}
            cfg = replace(cfg, **{k: v for k, v in QUICK.items() if getattr(cfg, k) == defaults[k]})
        cfg = replace(cfg, iters=tuple(sorted(set(cfg.iters))), refine=tuple(sorted(set(cfg.refine))))
        if not cfg.iters or min(cfg.iters + cfg.refine, default=0) < 0:
            raise ValueError("iters must be a non-empty list of iteration counts ≥ 0, and refine counts ≥ 0")
        if cfg.size < 32:
            raise ValueError(f"size must be at least 32 pixels, not {cfg.size}")
        if cfg.pairs is not None and cfg.pairs < 1:
            raise ValueError(f"pairs must be ≥ 1, not {cfg.pairs}")
        return cfg


@dataclass
class PairRun:
    """Everything measured for one pair; ``refine[0]`` is f_θ's own score."""

    content: Path
    style: Path
    fast_s: float
    solver: list[dict[str, float]]
    refine: list[dict[str, float]]
    images: list[torch.Tensor]  # content, style, fast, fast + R, solver @ max K


def load_pairs(data: Path, split: Path, n: int | None) -> list[tuple[Path, Path]]:
    """The split's first ``n`` (content, style) files under ``data``, all checked before any work starts."""
    if not split.is_file():
        raise FileNotFoundError(f"{split}: split file not found")
    try:
        pairs = [(data / "content" / c, data / "style" / s) for c, s in json.loads(split.read_text())["pairs"][:n]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{split}: not a split file with a 'pairs' list of [content, style] names ({e})") from None
    if not pairs:
        raise ValueError(f"{split}: no pairs to evaluate")
    for folder in (data / "content", data / "style"):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: data folder not found (expected {data}/content/ and {data}/style/)")
    missing = sorted({str(p) for pair in pairs for p in pair if not p.is_file()})
    if missing:
        raise FileNotFoundError(f"{data}: {len(missing)} file(s) of the split are missing: {', '.join(missing[:5])}{' …' * (len(missing) > 5)}")
    return pairs


def first_reach(xs: Sequence[float], losses: Sequence[float], target: float) -> tuple[float, bool]:
    """The x at which ``losses`` first falls to ``target`` (linear between samples) and whether it never does.

    Never reached: (xs[-1], True), a censored value that is a lower bound.
    """
    for i, loss in enumerate(losses):
        if loss <= target:
            if i == 0:
                return float(xs[0]), False
            frac = (losses[i - 1] - target) / (losses[i - 1] - loss)
            return float(xs[i - 1] + frac * (xs[i] - xs[i - 1])), False
    return float(xs[-1]), True


def summarize(values: Sequence[float], censored: Sequence[bool]) -> dict:
    """Median and quartiles over pairs; ``lower_bound`` names those that depend on a censored value."""
    v, c = np.asarray(values, dtype=float), np.asarray(censored, dtype=bool)
    qs = {"q1": 25, "median": 50, "q3": 75}
    stats = np.percentile(v, list(qs.values()))
    raised = np.percentile(np.where(c, v + 1e9, v), list(qs.values()))  # a statistic that moves depends on a censored value
    return {**dict(zip(qs, stats.tolist())), "n": len(v), "censored": int(c.sum()), "lower_bound": [k for k, a, b in zip(qs, stats, raised) if a != b]}


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_pair(model: StyleNet, objective: Objective, paths: tuple[Path, Path], cfg: EvalConfig, r_show: int, bar: tqdm) -> PairRun:
    """f_θ once (timed after a warm-up), then one solver run from the content and one from f_θ's output."""
    content, style = (read(p, cfg.size).to(cfg.device) for p in paths)
    targets = objective.targets(content, [style])
    with torch.inference_mode():
        model(content, [style])
        _sync(cfg.device)
        t0 = time.perf_counter()
        fast = model(content, [style])
        _sync(cfg.device)
        fast_s = time.perf_counter() - t0
    shown = {0: fast}

    def count(p: Progress) -> None:  # returns None: True would stop the solver
        bar.update()

    def keep(p: Progress) -> None:
        count(p)
        if p.step == r_show:
            shown[r_show] = p.image.clone()

    slow = solve(objective, content, targets, max(cfg.iters), init="content", seed=cfg.seed, callback=count)
    refined = solve(objective, content, targets, max(cfg.refine, default=0), init=fast, seed=cfg.seed, callback=keep)
    return PairRun(*paths, fast_s, slow.history, refined.history, [content, style, fast, shown[r_show], slow.image])


def _terms(row: dict[str, float], time_s: float) -> dict[str, float]:
    return {**{k: row[k] for k in TERMS}, "time_s": time_s}


def pair_row(run: PairRun, cfg: EvalConfig) -> dict:
    """One pair's scores at the reported iterations and its derived figures."""
    steps = [h["step"] for h in run.solver]
    losses = [h["total"] for h in run.solver]
    fast_loss = run.refine[0]["total"]
    eq, eq_cens = first_reach(steps, losses, fast_loss)
    t_eq, _ = first_reach([h["elapsed_s"] for h in run.solver], losses, fast_loss)
    refinement = {}
    for r in cfg.refine:
        k, cens = first_reach(steps, losses, run.refine[r]["total"])
        refinement[str(r)] = {"equivalent_iterations": k, "saved_iterations": k - r, "censored": cens}
    return {
        "content": run.content.name,
        "style": run.style.name,
        "shape": list(run.images[0].shape[-2:]),
        "fast": _terms(run.refine[0], run.fast_s),
        "solver": {str(k): _terms(run.solver[k], run.solver[k]["elapsed_s"]) for k in cfg.iters},
        "refine": {str(r): _terms(run.refine[r], run.fast_s + run.refine[r]["elapsed_s"]) for r in cfg.refine},
        "equivalent_iterations": eq,
        "speedup": t_eq / run.fast_s,
        "censored": eq_cens,
        "refinement": refinement,
    }


def _medians(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.median([r[k] for r in rows])) for k in rows[0]}


def build_report(runs: list[PairRun], cfg: EvalConfig, loss_cfg: LossConfig, model_config: dict, total_s: float) -> dict:
    """The JSON report: config, objective, medians per start and iteration count, derived figures, per-pair rows."""
    rows = [pair_row(run, cfg) for run in runs]
    r_cmp, k_cmp = min(COMPARE_REFINE, max(cfg.refine, default=0)), min(COMPARE_SOLVER, max(cfg.iters))
    wins = sum(run.refine[r_cmp]["total"] <= run.solver[k_cmp]["total"] for run in runs)
    notes = []
    if (r_cmp, k_cmp) != (COMPARE_REFINE, COMPARE_SOLVER):
        notes.append(f"refine10_le_solver200 compares f_θ + {r_cmp} with solver @ {k_cmp}: this run has max R = {max(cfg.refine, default=0)}, max K = {max(cfg.iters)}.")
    if cfg.quick:
        notes.append(f"Quick run ({len(runs)} pairs at {cfg.size} px, K ≤ {max(cfg.iters)}): derived figures are censored at K = {max(cfg.iters)} and only indicative.")
    return {
        "config": {**asdict(cfg), "data": str(cfg.data), "split": str(cfg.split), "out": str(cfg.out), "weights": cfg.weights and str(cfg.weights)},
        "model": model_config,
        "objective": loss_cfg.to_dict(),
        "size": cfg.size,
        "device": cfg.device,
        "pairs": len(runs),
        "fast": _medians([r["fast"] for r in rows]),
        "solver": {str(k): _medians([r["solver"][str(k)] for r in rows]) for k in cfg.iters},
        "refine": {str(r): _medians([row["refine"][str(r)] for row in rows]) for r in cfg.refine},
        "equivalent_iterations": summarize([r["equivalent_iterations"] for r in rows], [r["censored"] for r in rows]),
        "speedup_at_equal_loss": summarize([r["speedup"] for r in rows], [r["censored"] for r in rows]),
        "refinement": {
            str(r): {
                key: summarize([row["refinement"][str(r)][key] for row in rows], [row["refinement"][str(r)]["censored"] for row in rows])
                for key in ("equivalent_iterations", "saved_iterations")
            }
            for r in cfg.refine
        },
        "refine10_le_solver200": 2 * wins > len(runs),
        "refine_vs_solver": {"refine_iters": r_cmp, "solver_iters": k_cmp, "wins": wins, "pairs": len(runs), "rule": "L(f_θ + R) ≤ L(solver @ K) in a strict majority of pairs"},
        "notes": notes,
        "timings": {
            "total_s": total_s,
            "fast_forward_s": float(np.median([run.fast_s for run in runs])),
            "solver_s": sum(run.solver[-1]["elapsed_s"] for run in runs),
            "refine_s": sum(run.refine[-1]["elapsed_s"] for run in runs),
        },
        "per_pair": rows,
    }


def _stat(s: dict, key: str, fmt: str) -> str:
    return ("> " if key in s["lower_bound"] else "") + format(s[key], fmt)


def _summary_cell(s: dict, fmt: str = ".1f") -> str:
    return f"{_stat(s, 'median', fmt)} [{_stat(s, 'q1', fmt)}, {_stat(s, 'q3', fmt)}]"


def to_markdown(report: dict) -> str:
    """The report as markdown: losses per start and iteration count, then the derived figures."""
    cfg, obj, n = report["config"], report["objective"], report["pairs"]
    head = "| start | iterations | L | content | style (moments) | style (Gram) | time (s) |\n|:--|--:|--:|--:|--:|--:|--:|"
    line = lambda start, it, m: f"| {start} | {it} | {m['total']:.3f} | {m['content']:.3f} | {m['style_moments']:.4f} | {m['style_gram']:.4f} | {m['time_s']:.2f} |"  # noqa: E731
    lines = [
        f"# styler evaluation: {n} pairs, {cfg['size']} px, {cfg['device']}{' (quick)' * cfg['quick']}",
        "",
        f"Model: {cfg['weights'] or 'shipped weights'} ({report['model'].get('trained', {}).get('steps', '?')} training steps).",
        f"L = {obj['content_weight']:g}·content({obj['content_layer']}) + {obj['style_weight']:g}·style[{obj['style_kind']}]({', '.join(obj['style_layers'])})"
        + (f" + {obj['tv_weight']:g}·tv" if obj["tv_weight"] else "")
        + ". Medians over pairs; time = wall time to produce the image (solver: optimization only).",
        "",
        head,
        line("f_θ", "forward", report["fast"]),
        *(line("f_θ + solver", r, m) for r, m in report["refine"].items()),
        *(line("content + solver", k, m) for k, m in report["solver"].items()),
        "",
        "| amortization gap | median [q1, q3] | censored |",
        "|:--|--:|--:|",
        f"| equivalent iterations of f_θ | {_summary_cell(report['equivalent_iterations'])} | {report['equivalent_iterations']['censored']}/{n} |",
        f"| speed-up at equal loss (×) | {_summary_cell(report['speedup_at_equal_loss'])} | {report['speedup_at_equal_loss']['censored']}/{n} |",
    ]
    for r, fig in report["refinement"].items():
        eq, saved = fig["equivalent_iterations"], fig["saved_iterations"]
        lines.append(f"| solver iterations to match f_θ + {r} | {_summary_cell(eq)} | {eq['censored']}/{n} |")
        lines.append(f"| iterations saved by f_θ + {r} (the above − {r}) | {_summary_cell(saved)} | {saved['censored']}/{n} |")
    cmp = report["refine_vs_solver"]
    lines += [
        "",
        f"L(f_θ + {cmp['refine_iters']}) ≤ L(solver @ {cmp['solver_iters']}) in {cmp['wins']}/{n} pairs: "
        f"refine10_le_solver200 = {str(report['refine10_le_solver200']).lower()} (strict majority of pairs).",
        "",
        *(f"Note: {note}" for note in report["notes"]),
        f"Total time {report['timings']['total_s']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def plot_curves(runs: list[PairRun], path: Path) -> None:
    """L against iterations and against time for both starts (median over pairs, quartile band), f_θ marked."""
    solver = np.array([[h["total"] for h in run.solver] for run in runs])
    refine = np.array([[h["total"] for h in run.refine] for run in runs])
    fast_s = float(np.median([run.fast_s for run in runs]))
    solver_t = np.median([[h["elapsed_s"] for h in run.solver] for run in runs], axis=0)
    refine_t = fast_s + np.median([[h["elapsed_s"] for h in run.refine] for run in runs], axis=0)
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, xs, xr, x_fast, label, linthresh in (
        (axes[0], np.arange(solver.shape[1]), np.arange(refine.shape[1]), 0.0, "iterations", 1.0),
        (axes[1], solver_t, refine_t, fast_s, "wall time (s)", max(fast_s, 1e-3)),
    ):
        for curve, x, name in ((solver, xs, "solver from content"), (refine, xr, r"solver from $f_\theta$ (refinement)")):
            q1, med, q3 = np.percentile(curve, [25, 50, 75], axis=0)
            ax.plot(x, med, label=name)
            ax.fill_between(x, q1, q3, alpha=0.2)
        ax.plot([x_fast], [np.median(refine[:, 0])], "k*", ms=12, label=r"$f_\theta$")
        ax.axhline(np.median(refine[:, 0]), color="k", ls=":", lw=0.8)
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(left=0)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("L (median over pairs, quartile band)")
    axes[0].legend()
    fig.suptitle(f"{len(runs)} pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def contact_sheet(runs: list[PairRun], labels: list[str], path: Path) -> None:
    """One row per pair (content | style | fast | fast + R | slow @ max K), thumbnails padded to THUMB px."""
    header = 18
    sheet = Image.new("RGB", (THUMB * len(labels), header + THUMB * len(runs)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, label in enumerate(labels):
        draw.text((j * THUMB + 4, 3), label, fill="black")
    for i, run in enumerate(runs):
        for j, image in enumerate(run.images):
            sheet.paste(ImageOps.pad(to_pil(image), (THUMB, THUMB), color="white"), (j * THUMB, header + i * THUMB))
    save(sheet, path)


def load_model(cfg: EvalConfig) -> tuple[StyleNet, Objective]:
    """f_θ and the objective it was trained with (LossConfig() if its config has none), sharing VGG where possible."""
    model = StyleNet.load(cfg.weights, device=cfg.device)
    loss_cfg = LossConfig.from_dict(model.config["loss"]) if "loss" in model.config else LossConfig()
    deep = LAYERS.index(loss_cfg.deepest) > LAYERS.index(ENCODER_LAYER)
    vgg = VGG19(model.encoder.weights, max_layer=loss_cfg.deepest) if deep else model.encoder
    return model, Objective(loss_cfg, vgg).to(cfg.device)


def evaluate(cfg: EvalConfig) -> dict:
    """Run the evaluation, write report.json, report.md, curves.png and sheet.jpg into ``cfg.out``, print the table."""
    cfg = cfg.resolved()
    pairs = load_pairs(cfg.data, cfg.split, cfg.pairs)
    torch.manual_seed(cfg.seed)
    model, objective = load_model(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    r_show = min(COMPARE_REFINE, max(cfg.refine, default=0))
    t0 = time.perf_counter()
    runs = []
    with tqdm(total=len(pairs) * (max(cfg.iters) + max(cfg.refine, default=0)), desc="eval", unit="it") as bar:
        for i, paths in enumerate(pairs):
            bar.set_postfix_str(f"pair {i + 1}/{len(pairs)}: {paths[0].name} × {paths[1].name}")
            runs.append(run_pair(model, objective, paths, cfg, r_show, bar))
    report = build_report(runs, cfg, objective.config, model.config, time.perf_counter() - t0)
    markdown = to_markdown(report)
    (cfg.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (cfg.out / "report.md").write_text(markdown)
    plot_curves(runs, cfg.out / "curves.png")
    contact_sheet(runs, ["content", "style", "fast", f"fast + {r_show}", f"slow @ {max(cfg.iters)}"], cfg.out / "sheet.jpg")
    print(markdown)
    return report
