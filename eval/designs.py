"""Compare f_θ designs on held-out pairs: the shared L, the Gram term, ratios to the solver,
latency, parameters, and a contact sheet. Research tooling over styler's pipeline.

    python eval/designs.py --data DATA --out eval/designs-512 \\
        --model lite=runs/lite/model --model vgg=runs/vgg/model [--outputs old=DIR] ...

``--outputs NAME=DIR`` scores images another program wrote (``DIR/<content>_<style>.png``), e.g.
the previous styler's f_θ run from its own commit. The reference is the solver from the content
image, single-scale L-BFGS (bf16 loss network), cached in ``--cache`` so new models reuse it.
Latency is the median of ``--repeats`` forwards at ``--bench``² in bf16: measure it on an idle
machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from styler import images, pipeline
from styler.engine import Engine
from styler.evaluate import first_reach, load_pairs
from styler.params import SHEET_HEIGHT, SIZE, FastRequest, SolveRequest, Source
from styler.report import sheet

TERMS = ("total", "content", "style_moments", "style_gram")
SOLVER_CACHE = Path(__file__).parent / "results" / "solver-cache"  # also solver_curves.py's


def reference_paths(cache: Path, key: str, at: int) -> tuple[Path, Path, Path]:
    """The cached reference of a pair: its history, its final image, its image at ``at``."""
    return cache / f"{key}.json", cache / f"{key}.png", cache / f"{key}@{at}.png"


def write_reference(cache: Path, key: str, at: int, history: list[dict], image: torch.Tensor,
                    image_at: torch.Tensor) -> None:  # fmt: skip
    """Store a reference solve (also written by ``solver_curves.py``'s previous set-up)."""
    hist, img, img_at = reference_paths(cache, key, at)
    cache.mkdir(parents=True, exist_ok=True)
    images.save(images.to_pil(image_at), img_at)
    images.save(images.to_pil(image), img)
    hist.write_text(json.dumps(history))


def solver_run(pair, engine, objective, key: str, iters: int, at: int, cache: Path) -> dict:
    """The reference solve of one pair (history, its image after ``at`` iterations and at the
    end), from the cache when there."""
    hist, img, img_at = reference_paths(cache, key, at)
    if hist.exists() and img.exists() and img_at.exists():
        return {"history": json.loads(hist.read_text()), "image": images.read(img, 0),
                "image_at": images.read(img_at, 0)}  # fmt: skip
    kept = {}

    def keep(p) -> None:
        if p.step == at:
            kept["image"] = p.image.clone()

    req = SolveRequest(iters=iters, coarse=False, precision=engine.precision)
    result = pipeline.solve(req, pair, engine, objective=objective, callback=keep)
    history = [{k: r[k] for k in ("step", "elapsed_s", *TERMS)} for r in result.history]
    write_reference(cache, key, at, history, result.image, kept["image"])
    return {"history": history, "image": result.image, "image_at": kept["image"]}


def pair_key(content: Path, style: Path) -> str:
    """A pair's name in reports, outputs (``--outputs``) and the reference cache."""
    return f"{content.stem}_{style.stem}"


def reference_key(content: Path, style: Path, size: int, iters: int) -> str:
    return f"{pair_key(content, style)}-{size}-{iters}"


def score(objective, engine: Engine, pair, x: torch.Tensor, ref: dict | None, refine: int,
          refine_to: int = 0, goals: dict[str, float] | None = None) -> dict:  # fmt: skip
    """L's terms of x; with a reference, the equivalent iterations and (``refine``) L after
    that many solver iterations started from x (at full size, as ``styler refine``).

    With ``refine_to`` the same refinement goes on to that many iterations, and for each of
    ``goals`` (name → the solver's L) records the iterations it took to reach it: R_to_<name>.
    """
    s = pipeline.score(objective, pair, x)
    entry = {k: s[k] for k in TERMS}
    if ref:
        hist = ref["history"]
        eq, censored = first_reach(
            [h["step"] for h in hist], [h["total"] for h in hist], s["total"]
        )
        entry |= {"equivalent_iterations": eq, "censored": censored}
    if ref and refine:
        req = SolveRequest(iters=max(refine, refine_to), precision=engine.precision)
        run = pipeline.solve(req, pair, engine, objective=objective, start=pipeline.Start(0, x))
        entry["refined"] = run.history[refine]["total"]
        entry["refined_s"] = run.history[refine]["elapsed_s"]
        for name, goal in (goals or {}).items():
            r, censored = first_reach(
                [h["step"] for h in run.history], [h["total"] for h in run.history], goal
            )
            entry |= {f"R_to_{name}": r, f"R_to_{name}_censored": censored}
    return entry


def summarize(rows: list[dict], n: str, a: argparse.Namespace) -> dict:
    """Medians over pairs for model ``n``; ratios to the solver where there is a reference."""
    med = lambda key: statistics.median(r["models"][n][key] for r in rows)
    out = {"L": med("total"), "content": med("content"), "style_moments": med("style_moments"),
           "style_gram": med("style_gram")}  # fmt: skip
    if "solver" in rows[0]:
        for key, name in (("content", "content"), ("style_gram", "gram"),
                          ("style_moments", "moments"), ("total", "L")):  # fmt: skip
            out[f"{name}_ratio"] = statistics.median(
                r["models"][n][key] / r["solver"][key] for r in rows
            )
        out["equivalent_iterations"] = med("equivalent_iterations")
        if "refined" in rows[0]["models"][n]:
            refined = [r["models"][n]["refined"] for r in rows]
            final = [r["solver_final"]["total"] for r in rows]
            out["refined_L"] = statistics.median(refined)
            out["refined_s"] = med("refined_s")
            out[f"refined_le_solver{a.iters}"] = sum(
                x <= y for x, y in zip(refined, final, strict=True)
            ) / len(rows)
        for goal in ("solver_at", "solver_end"):
            if f"R_to_{goal}" in rows[0]["models"][n]:
                out[f"R_to_{goal}"] = med(f"R_to_{goal}")
                out[f"R_to_{goal}_censored"] = sum(
                    r["models"][n][f"R_to_{goal}_censored"] for r in rows
                )
    return out


COLUMNS = {"L": ".3f", "content": ".3f", "style_moments": ".4f", "style_gram": ".4f",
           "content_ratio": ".2f", "gram_ratio": ".2f", "L_ratio": ".2f",
           "equivalent_iterations": ".1f", "refined_L": ".3f", "refined_s": ".0f",
           "R_to_solver_at": ".1f", "R_to_solver_at_censored": "d", "R_to_solver_end": ".1f",
           "R_to_solver_end_censored": "d",
           "latency_s": ".3f", "params": ",d"}  # fmt: skip


def to_markdown(report: dict) -> str:
    """The summary as a table: medians over pairs (L is the shared objective of styler.losses)."""
    names = list(report["summary"])
    cols = [c for c in COLUMNS if any(c in report["summary"][n] for n in names)]
    head = f"{report['pairs']} held-out pairs at {report['size']} px, {report['precision']}"
    lines = [head + "; medians over pairs", "", "| design | " + " | ".join(cols) + " |",
             "|---|" + "--:|" * len(cols)]  # fmt: skip
    for n in names:
        row = report["summary"][n]
        cells = [format(row[c], COLUMNS[c]) if c in row else "" for c in cols]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latency(model, engine: Engine, side: int, repeats: int) -> float:
    c, s = torch.rand(1, 3, side, side), torch.rand(1, 3, side, side)
    pair = pipeline.Pair(c, [s], [1.0])
    pipeline.stylize(model, engine, pair, FastRequest())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipeline.stylize(model, engine, pair, FastRequest())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a folder with content/ and style/")
    p.add_argument("--split", type=Path, help="a JSON file whose 'pairs' lists [content, style] "
                   "names in --data (default: styler's held-out split)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", action="append", default=[], help="NAME=PATH of an f_θ")
    p.add_argument("--outputs", action="append", default=[], help="NAME=DIR of images to score")
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--skip", type=int, default=0, help="start after this many pairs (to split "
                   "the reference solves over processes sharing --cache)")  # fmt: skip
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--iters", type=int, default=200, help="solver iterations of the reference")
    p.add_argument("--ratio-at", type=int, default=100, help="the reference's iteration for ratios")
    p.add_argument("--refine", type=int, default=20, help="refinement iterations after f_θ")
    p.add_argument("--refine-to", type=int, default=0, help="continue that refinement to this "
                   "many iterations, and report the iterations it took to reach the solver's L "
                   "at --ratio-at (R_to_solver_at) and at --iters (R_to_solver_end); a median "
                   "that does not reach it is censored at --refine-to (a lower bound)")  # fmt: skip
    p.add_argument("--cache", type=Path, default=SOLVER_CACHE)
    p.add_argument("--bench", type=int, default=SIZE)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--sheet-height", type=int, default=SHEET_HEIGHT, help="rows' height")
    a = p.parse_args()
    engine = Engine.create("cpu", "auto")
    models = {n: pipeline.load_model(w, engine) for n, w in (m.split("=", 1) for m in a.model)}
    outputs = dict(o.split("=", 1) for o in a.outputs)
    objective = pipeline.objective_for(SolveRequest().loss, engine)
    rows, shown = [], []
    for content, style in load_pairs(a.data, a.split, a.skip + a.pairs)[a.skip :]:
        key = pair_key(content, style)
        req = FastRequest(size=a.size, precision=engine.setting)
        pair = pipeline.read_pair(Source.file(content), [Source.file(style)], req)
        ref = None
        if a.iters:
            ref_key = reference_key(content, style, a.size, a.iters)
            ref = solver_run(pair, engine, objective, ref_key, a.iters, a.ratio_at, a.cache)
        row = {"pair": key, "models": {}}
        if ref:
            at = {h["step"]: h for h in ref["history"]}
            row["solver"] = {k: at[a.ratio_at][k] for k in TERMS}
            row["solver_final"] = {k: ref["history"][-1][k] for k in TERMS}
        outs = {}  # --outputs first: they are usually earlier programs, shown left of the models
        for n, d in outputs.items():
            x = images.read(Path(d) / f"{key}.png", 0)
            outs[n] = torch.nn.functional.interpolate(x, size=pair.content.shape[-2:],
                                                      mode="bilinear", antialias=True)  # fmt: skip
        outs |= {n: pipeline.stylize(m, engine, pair, req) for n, m in models.items()}
        goals = {}  # the solver's L that f_θ + R is to reach (--refine-to)
        if ref and a.refine_to:
            goals = {"solver_at": row["solver"]["total"], "solver_end": ref["history"][-1]["total"]}
        for n, x in outs.items():
            refine = a.refine if n in models else 0
            row["models"][n] = score(objective, engine, pair, x, ref, refine, a.refine_to, goals)
        rows.append(row)
        shown.append(
            [pair.content, pair.styles[0], *outs.values(), *([ref["image_at"]] if ref else [])]
        )
        print(key, {n: round(e["total"], 3) for n, e in row["models"].items()}, flush=True)
    summary = {n: summarize(rows, n, a) for n in rows[0]["models"]}
    for n, m in models.items():
        summary[n]["params"] = sum(v.numel() for v in m.trained_state().values())
        summary[n]["encoder"] = m.kind
        if not a.no_latency:
            summary[n]["latency_s"] = latency(m, engine, a.bench, a.repeats)
    a.out.mkdir(parents=True, exist_ok=True)
    report = {"size": a.size, "pairs": len(rows), "solver_iters": a.iters,
              "ratio_at": a.ratio_at, "refine": a.refine, "refine_to": a.refine_to,
              "precision": engine.setting, "summary": summary, "rows": rows}  # fmt: skip
    (a.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (a.out / "report.md").write_text(to_markdown(report))
    labels = ["content", "style", *summary] + [f"solver@{a.ratio_at}"] * bool(a.iters)
    tiles = [[images.to_pil(t) for t in r] for r in shown]
    sheet(tiles, labels, a.sheet_height).save(a.out / "sheet.jpg", quality=88)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
