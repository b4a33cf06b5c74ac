"""How low can f_θ's design take L on one pair? Fine-tune the decoder on that pair alone.

Amortized training fits one decoder to every pair, so per pair it can do no better than this
decoder fitted to the pair itself: the gap that remains here is the design's, the rest of f_θ's
gap to the solver is the amortization's (training steps, data, capacity shared across pairs).
Research tooling over styler's pipeline:

    python eval/ceiling.py --data DATA --model styler/weights/styler-blocks --pairs 3 \\
        --steps 200 --out eval/ceiling-512

Each pair's L, its terms and the wall time are scored every ``--every`` steps (as ``designs.py``
scores) into ``--out/<pair>.json``, with the solver's reference from ``--cache`` beside them when
there; ``report.md`` then sums up every pair in ``--out`` (processes may share it with ``--skip``):
medians over pairs of L and of the ratios to the solver after ``--ratio-at`` iterations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from designs import SOLVER_CACHE, TERMS, pair_key, reference_key

from styler import pipeline
from styler.engine import Engine
from styler.evaluate import load_pairs
from styler.model import StyleNet
from styler.params import SIZE, FastRequest, SolveRequest, Source


def fit_pair(model: StyleNet, engine: Engine, objective, pair: pipeline.Pair, req: FastRequest,
             steps: int, lr: float, every: int, parts: tuple[str, ...] = ()
             ) -> list[dict]:  # fmt: skip
    """Adam for ``steps`` steps on this pair on the decoder's weights (those whose names start
    with one of ``parts``, if given); the scores on the way."""
    with torch.no_grad(), engine.autocast():
        targets = objective.targets(pair.content, pair.styles)
        codes = [model.style_code(s) for s in pair.styles]
    fitted = [p for n, p in model.decoder.named_parameters() if n.startswith(parts or "")]
    model.requires_grad_(False)
    for p in fitted:
        p.requires_grad_(True)
    opt = torch.optim.Adam(fitted, lr=lr)
    history, elapsed = [], 0.0
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            s = pipeline.score(objective, pair, pipeline.stylize(model, engine, pair, req))
            history.append({"step": step, "elapsed_s": elapsed, **{k: s[k] for k in TERMS}})
            print(history[-1], flush=True)
        if step == steps:
            break
        t0 = time.perf_counter()
        with engine.autocast():
            terms = objective(model.stylize(pair.content, codes), targets)
        opt.zero_grad(set_to_none=True)
        terms["total"].float().backward()
        opt.step()
        elapsed += time.perf_counter() - t0
    return history


def report(out: Path, ratio_at: int) -> str:
    """The median over the pairs in ``out`` at each scored step, against the solver @ ratio_at."""
    runs = [json.loads(f.read_text()) for f in sorted(out.glob("*.json"))]
    runs = [r for r in runs if r["solver"] and len(r["solver"]) > ratio_at]
    if not runs:
        return "no pair with a solver reference\n"
    lines = [f"{len(runs)} pairs; medians over pairs; ratios to the solver @ {ratio_at}", "",
             "| decoder steps | L | content ratio | Gram ratio | L ratio | s a step |",
             "|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for i, row in enumerate(runs[0]["fit"]):
        at = [(r["fit"][i], r["solver"][ratio_at]) for r in runs if len(r["fit"]) > i]
        med = lambda f: statistics.median(f(x, s) for x, s in at)  # noqa: B023
        secs = med(lambda x, _: x["elapsed_s"] / max(x["step"], 1))
        lines.append(f"| {row['step']} | {med(lambda x, _: x['total']):.3f} | "
                     f"{med(lambda x, s: x['content'] / s['content']):.2f} | "
                     f"{med(lambda x, s: x['style_gram'] / s['style_gram']):.2f} | "
                     f"{med(lambda x, s: x['total'] / s['total']):.2f} | {secs:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a folder with content/ and style/")
    p.add_argument("--model", required=True, help="the f_θ to start from")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--skip", type=int, default=0, help="start after this many pairs")
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--every", type=int, default=25, help="score every this many steps")
    p.add_argument(
        "--fit",
        default="",
        help="fit only the decoder's parameters whose names start with one of these "
        "(comma-separated: blocks, net.0., net.8, ...): which part's capacity pays",
    )
    p.add_argument("--cache", type=Path, default=SOLVER_CACHE, help="designs.py's references")
    p.add_argument("--ref-iters", type=int, default=100, help="the references' iterations")
    p.add_argument("--ratio-at", type=int, default=100, help="the reference's iteration for ratios")
    a = p.parse_args()
    parts = tuple(x for x in a.fit.split(",") if x)
    engine = Engine.create("cpu", "bf16")
    objective = pipeline.objective_for(SolveRequest().loss, engine)
    req = FastRequest(size=a.size, precision=engine.setting)
    a.out.mkdir(parents=True, exist_ok=True)
    for content, style in load_pairs(a.data, None, a.skip + a.pairs)[a.skip :]:
        key = pair_key(content, style)
        pair = pipeline.read_pair(Source.file(content), [Source.file(style)], req)
        model = pipeline.load_model(a.model, engine)  # afresh: each pair starts from f_θ
        history = fit_pair(model, engine, objective, pair, req, a.steps, a.lr, a.every, parts)
        ref = a.cache / f"{reference_key(content, style, a.size, a.ref_iters)}.json"
        solver = json.loads(ref.read_text()) if ref.exists() else None
        (a.out / f"{key}.json").write_text(json.dumps({"fit": history, "solver": solver}) + "\n")
    (a.out / "report.md").write_text(report(a.out, a.ratio_at))
    print((a.out / "report.md").read_text())


if __name__ == "__main__":
    main()
