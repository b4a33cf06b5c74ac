"""Evaluation: the amortization gap between f_θ (one forward pass) and the solver it amortizes.

For each held-out (content, style) pair, L(x; c, s) — the objective the solver minimizes — is
scored for

* f_θ's output, with its wall time (measured after a warm-up forward);
* the solver started from the content image, after K iterations (one run, read off its history);
* the solver started from f_θ's output (refinement), after R iterations (one run).

Derived per pair, then summarized as median and quartiles over pairs:

* **equivalent iterations**: the K at which the content-started solver's L first reaches f_θ's,
  linearly interpolated between iterations;
* **speed-up at equal loss**: the solver's optimization time to reach f_θ's L ÷ f_θ's forward time;
* **refinement**: the K the solver needs to match f_θ + R iterations, and the iterations saved
  (K − R).

A pair whose solver never gets there within max K is *censored*: its value is the one at max K,
a lower bound, and a statistic that depends on it is printed as "> x" (listed in ``lower_bound``).

``refine10_le_solver200`` is true when L(f_θ + 10) ≤ L(solver @ 200) in a strict majority of pairs.
Runs with fewer iterations compare f_θ + min(10, max R) with solver @ min(200, max K) and say so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import pipeline
from .engine import Engine
from .losses import LossConfig, Objective
from .model import StyleNet
from .params import EvalConfig, SolveRequest, Source
from .solver import Progress
from .split import read_split

COMPARE_REFINE, COMPARE_SOLVER = 10, 200
TERMS = ("total", "content", "style_moments", "style_gram", "tv")


@dataclass
class PairRun:
    """Everything measured for one pair; ``refine[0]`` is f_θ's own score."""

    content: Path
    style: Path
    fast_s: float
    solver: list[dict[str, float]]
    refine: list[dict[str, float]]
    images: list[torch.Tensor]  # content, style, fast, fast + R, solver @ max K


def load_pairs(data: Path, split: Path | None, n: int | None) -> list[tuple[Path, Path]]:
    """The split's first ``n`` (content, style) files under ``data`` (split None: the one shipped
    with styler), all checked before any work starts."""
    names = read_split(split).pairs[:n]
    pairs = [(data / "content" / c, data / "style" / s) for c, s in names]
    if not pairs:
        raise ValueError(f"{split or 'the shipped split'}: no pairs to evaluate")
    for folder in (data / "content", data / "style"):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: data folder not found (expected {data}/content/ and {data}/style/)"
            )
    missing = sorted({str(p) for pair in pairs for p in pair if not p.is_file()})
    if missing:
        raise FileNotFoundError(
            f"{data}: {len(missing)} file(s) of the split are missing: "
            f"{', '.join(missing[:5])}{' …' * (len(missing) > 5)}"
        )
    return pairs


def first_reach(xs: Sequence[float], losses: Sequence[float], target: float) -> tuple[float, bool]:
    """The x at which ``losses`` first falls to ``target`` (linear between samples), and whether
    it never does.

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
    """Median and quartiles over pairs; ``lower_bound`` names those that depend on a censored
    value."""
    v, c = np.asarray(values, dtype=float), np.asarray(censored, dtype=bool)
    qs = {"q1": 25, "median": 50, "q3": 75}
    stats = np.percentile(v, list(qs.values()))
    raised = np.percentile(
        np.where(c, v + 1e9, v), list(qs.values())
    )  # a statistic that moves depends on a censored value
    return {
        **dict(zip(qs, stats.tolist(), strict=True)),
        "n": len(v),
        "censored": int(c.sum()),
        "lower_bound": [k for k, a, b in zip(qs, stats, raised, strict=True) if a != b],
    }


def _sync(engine: Engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize()


def run_pair(
    model: StyleNet, objective: Objective, engine: Engine, paths: tuple[Path, Path],
    cfg: EvalConfig, r_show: int, bar: tqdm,
) -> PairRun:  # fmt: skip
    """f_θ once (timed after a warm-up), then one solver run from the content and one from f_θ's
    output, all through the pipeline."""
    req = SolveRequest(size=cfg.size, iters=max(cfg.iters), seed=cfg.seed,
                       precision=engine.precision, loss=objective.config)  # fmt: skip
    pair = pipeline.read_pair(Source.file(paths[0]), [Source.file(paths[1])], req, engine.device)
    fast_req = pipeline.fast_of(req)
    pipeline.stylize(model, engine, pair, fast_req)
    _sync(engine)
    t0 = time.perf_counter()
    fast = pipeline.stylize(model, engine, pair, fast_req)
    _sync(engine)
    fast_s = time.perf_counter() - t0
    shown = {0: fast}

    def count(p: Progress) -> None:  # returns None: True would stop the solver
        bar.update()

    def keep(p: Progress) -> None:
        count(p)
        if p.step == r_show:
            shown[r_show] = p.image.clone()

    slow = pipeline.solve(req, pair, engine, objective=objective, callback=count)
    refine_req = SolveRequest(**{**req.__dict__, "iters": max(cfg.refine, default=0)})
    refined = pipeline.solve(refine_req, pair, engine, objective=objective,
                             start=pipeline.Start(0, fast.clone()), callback=keep)  # fmt: skip
    tiles = [pair.content, pair.styles[0], fast, shown[r_show], slow.image]
    return PairRun(*paths, fast_s, slow.history, refined.history, tiles)


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
        refinement[str(r)] = {"equivalent_iterations": k, "saved_iterations": k - r,
                              "censored": cens}  # fmt: skip
    return {
        "content": run.content.name,
        "style": run.style.name,
        "shape": list(run.images[0].shape[-2:]),
        "fast": _terms(run.refine[0], run.fast_s),
        "solver": {str(k): _terms(run.solver[k], run.solver[k]["elapsed_s"]) for k in cfg.iters},
        "refine": {
            str(r): _terms(run.refine[r], run.fast_s + run.refine[r]["elapsed_s"])
            for r in cfg.refine
        },
        "equivalent_iterations": eq,
        "speedup": t_eq / run.fast_s,
        "censored": eq_cens,
        "refinement": refinement,
    }


def _medians(rows: list[dict]) -> dict[str, float]:
    return {k: float(np.median([r[k] for r in rows])) for k in rows[0]}


def build_report(
    runs: list[PairRun], cfg: EvalConfig, loss_cfg: LossConfig, model_config: dict, total_s: float
) -> dict:
    """The JSON report: config, objective, medians per start and iteration count, derived
    figures, per-pair rows."""
    rows = [pair_row(run, cfg) for run in runs]
    r_cmp = min(COMPARE_REFINE, max(cfg.refine, default=0))
    k_cmp = min(COMPARE_SOLVER, max(cfg.iters))
    wins = sum(run.refine[r_cmp]["total"] <= run.solver[k_cmp]["total"] for run in runs)
    notes = []
    if (r_cmp, k_cmp) != (COMPARE_REFINE, COMPARE_SOLVER):
        notes.append(
            f"refine10_le_solver200 compares f_θ + {r_cmp} with solver @ {k_cmp}: this run has "
            f"max R = {max(cfg.refine, default=0)}, max K = {max(cfg.iters)}."
        )
    if cfg.quick:
        notes.append(
            f"Quick run ({len(runs)} pairs at {cfg.size} px, K ≤ {max(cfg.iters)}): derived "
            f"figures are censored at K = {max(cfg.iters)} and only indicative."
        )
    return {
        "config": {
            **asdict(cfg),
            "data": str(cfg.data),
            "split": str(cfg.split or "split.json (shipped with styler)"),
            "out": str(cfg.out),
            "weights": cfg.weights and str(cfg.weights),
        },
        "model": model_config,
        "objective": loss_cfg.to_dict(),
        "size": cfg.size,
        "device": cfg.device,
        "pairs": len(runs),
        "fast": _medians([r["fast"] for r in rows]),
        "solver": {str(k): _medians([r["solver"][str(k)] for r in rows]) for k in cfg.iters},
        "refine": {str(r): _medians([row["refine"][str(r)] for row in rows]) for r in cfg.refine},
        "equivalent_iterations": summarize(
            [r["equivalent_iterations"] for r in rows], [r["censored"] for r in rows]
        ),
        "speedup_at_equal_loss": summarize(
            [r["speedup"] for r in rows], [r["censored"] for r in rows]
        ),
        "refinement": {
            str(r): {
                key: summarize(
                    [row["refinement"][str(r)][key] for row in rows],
                    [row["refinement"][str(r)]["censored"] for row in rows],
                )
                for key in ("equivalent_iterations", "saved_iterations")
            }
            for r in cfg.refine
        },
        "refine10_le_solver200": 2 * wins > len(runs),
        "refine_vs_solver": {
            "refine_iters": r_cmp,
            "solver_iters": k_cmp,
            "wins": wins,
            "pairs": len(runs),
            "rule": "L(f_θ + R) ≤ L(solver @ K) in a strict majority of pairs",
        },
        "notes": notes,
        "timings": {
            "total_s": total_s,
            "fast_forward_s": float(np.median([run.fast_s for run in runs])),
            "solver_s": sum(run.solver[-1]["elapsed_s"] for run in runs),
            "refine_s": sum(run.refine[-1]["elapsed_s"] for run in runs),
        },
        "per_pair": rows,
    }


def load_model(cfg: EvalConfig, engine: Engine) -> tuple[StyleNet, Objective]:
    """f_θ and the objective it was trained with (LossConfig() if its config has none)."""
    model = pipeline.load_model(cfg.weights, engine)
    loss = model.config.get("loss")
    loss_cfg = LossConfig.from_dict(loss) if isinstance(loss, dict) else LossConfig()
    return model, pipeline.objective_for(loss_cfg, engine)


def evaluate(cfg: EvalConfig) -> dict:
    """Run the evaluation, write the report into ``cfg.out`` (:mod:`styler.report`), print it."""
    from .report import write

    cfg = cfg.resolved()
    assert cfg.data is not None
    pairs = load_pairs(cfg.data, cfg.split, cfg.pairs)
    torch.manual_seed(cfg.seed)
    engine = Engine.create(cfg.device, cfg.precision)
    model, objective = load_model(cfg, engine)
    cfg.out.mkdir(parents=True, exist_ok=True)
    r_show = min(COMPARE_REFINE, max(cfg.refine, default=0))
    t0 = time.perf_counter()
    runs = []
    total = len(pairs) * (max(cfg.iters) + max(cfg.refine, default=0))
    with tqdm(total=total, desc="eval", unit="it") as bar:
        for i, paths in enumerate(pairs):
            bar.set_postfix_str(f"pair {i + 1}/{len(pairs)}: {paths[0].name} × {paths[1].name}")
            runs.append(run_pair(model, objective, engine, paths, cfg, r_show, bar))
    report = build_report(runs, cfg, objective.config, model.config, time.perf_counter() - t0)
    report["precision"] = engine.setting
    labels = ["content", "style", "fast", f"fast + {r_show}", f"slow @ {max(cfg.iters)}"]
    print(write(report, runs, labels, cfg.out))
    return report
