"""L against wall time for the previous solver set-up and today's, on held-out pairs.

    python eval/solver_curves.py --data DATA --out eval/solver-512 --pairs 1 --iters 300

* before: L-BFGS in fp32 at full size (what styler ran until now, without the cost of scoring
  every iterate again that it also paid, so the comparison is conservative);
* now: L-BFGS with the loss network in the engine's precision (bf16 where the CPU computes it
  natively, fp32 elsewhere), coarse to fine (half the iterations at half size).

Every ``--every`` iterations the current image is kept; afterwards each is scored in fp32 at
full size (untimed), so both curves are the same L. The two set-ups run at the same time in
two processes of one thread each (``torch.set_num_threads(1)``); time is each process's CPU time,
which other load on a shared machine barely moves. The report gives the time each set-up needs
to reach the previous set-up's final L (and within 1 % of it), and their ratio.

The previous set-up's run, cut at ``--reference-iters``, is also stored in ``designs.py``'s
reference cache (``--cache``), so ``designs.py --iters 200`` scores f_θ against it unsolved.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from designs import SOLVER_CACHE, TERMS, reference_key, write_reference
from torch.nn import functional as F

from styler import pipeline
from styler.engine import Engine
from styler.evaluate import first_reach, load_pairs
from styler.params import ITERS, SIZE, SolveRequest, Source


def setups() -> dict[str, tuple[str, bool]]:
    """Name → (precision, coarse to fine) of the previous set-up and today's on this machine."""
    now = Engine.create("cpu", "auto").precision
    return {"before (fp32, full size)": ("fp32", False),
            f"now ({now}, coarse to fine)": (now, True)}  # fmt: skip


def run(pair: pipeline.Pair, precision: str, coarse: bool, iters: int, every: int,
        keep_at: tuple[int, ...] = ()) -> tuple[list[dict], dict[int, torch.Tensor]]:  # fmt: skip
    """The solve's curve (every term, scored in fp32 at full size) and its images at ``keep_at``."""
    torch.set_num_threads(1)
    engine = Engine.create("cpu", precision)
    objective = pipeline.objective_for(SolveRequest().loss, engine)
    kept: list[tuple[int, float, torch.Tensor]] = []
    t0 = time.process_time()
    paused = 0.0

    def keep(p) -> None:
        nonlocal paused
        if p.step % every == 0:
            t = time.process_time()
            kept.append((p.step, t - t0 - paused, p.image.clone()))
            paused += time.process_time() - t
            print(f"{precision}, coarse={coarse}: step {p.step}/{iters}", flush=True)

    req = SolveRequest(iters=iters, precision=precision, coarse=coarse)
    pipeline.solve(req, pair, engine, objective=objective, callback=keep)
    scorer = pipeline.objective_for(SolveRequest().loss, Engine.create("cpu", "fp32"))
    terms = lambda x: {k: v for k, v in pipeline.score(scorer, pair, x).items() if k in TERMS}
    rows = [{"step": 0, "time_s": 0.0, **terms(pair.content)}]
    images = {}
    for step, t, x in kept:
        x = F.interpolate(x, size=pair.content.shape[-2:], mode="bilinear", align_corners=False)
        rows.append({"step": step, "time_s": t, **terms(x)})
        if step in keep_at:
            images[step] = x
    for r in rows:
        r["L"] = r["total"]
    return rows, images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--iters", type=int, default=ITERS)
    p.add_argument("--every", type=int, default=10)
    p.add_argument(
        "--cache",
        type=Path,
        default=SOLVER_CACHE,
        help="designs.py's reference cache, where the previous set-up's run goes",
    )
    p.add_argument("--reference-iters", type=int, default=200, help="its length there")
    p.add_argument("--ratio-at", type=int, default=100, help="the image it keeps on the way")
    a = p.parse_args()
    torch.set_num_threads(1)
    runs = setups()
    report = {"size": a.size, "iters": a.iters, "threads": torch.get_num_threads(), "pairs": []}
    for content, style in load_pairs(a.data, None, a.pairs):
        pair = pipeline.read_pair(Source.file(content), [Source.file(style)],
                                  SolveRequest(size=a.size))  # fmt: skip
        with ProcessPoolExecutor(len(runs), multiprocessing.get_context("spawn")) as pool:
            keep_at = (a.ratio_at, a.reference_iters)
            jobs = {name: pool.submit(run, pair, prec, coarse, a.iters, a.every, keep_at)
                    for name, (prec, coarse) in runs.items()}  # fmt: skip
            done = {name: job.result() for name, job in jobs.items()}
        curves = {name: rows for name, (rows, _) in done.items()}
        before, kept = next(iter(done.values()))
        if a.reference_iters in kept and a.ratio_at in kept:
            history = [{"elapsed_s": r["time_s"], **{k: r[k] for k in ("step", *TERMS)}}
                       for r in before if r["step"] <= a.reference_iters]  # fmt: skip
            key = reference_key(content, style, a.size, a.reference_iters)
            write_reference(a.cache, key, a.ratio_at, history, kept[a.reference_iters],
                            kept[a.ratio_at])  # fmt: skip
        name = f"{content.name} × {style.name}"
        report["pairs"].append({"pair": name, "curves": curves} | compare(curves))
        print(name, json.dumps(report["pairs"][-1]["reach"]))
        a.out.mkdir(parents=True, exist_ok=True)  # after each pair: a long run keeps what it did
        (a.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        plot(report, a.out / "curves.png")


def compare(curves: dict[str, list[dict]]) -> dict:
    """When each set-up first reaches the previous set-up's final L, and within 1 % of it: CPU
    seconds, whether it never did (censored: then the time is its last point's), and the ratio to
    the previous set-up's time to the same target."""
    before = next(iter(curves.values()))
    target = before[-1]["L"]
    reach = {}
    for label, factor in (("final L", 1.0), ("within 1 %", 1.01)):
        times = {n: first_reach([r["time_s"] for r in c], [r["L"] for r in c], target * factor)
                 for n, c in curves.items()}  # fmt: skip
        base = next(iter(times.values()))[0]
        reach[label] = {n: {"time_s": t, "censored": cens, "ratio": t / base}
                        for n, (t, cens) in times.items()}  # fmt: skip
    return {"target_L": target, "reach": reach}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report["pairs"]), figsize=(6 * len(report["pairs"]), 4),
                             squeeze=False)  # fmt: skip
    for ax, pair in zip(axes[0], report["pairs"], strict=True):
        for name, rows in pair["curves"].items():
            ax.plot([r["time_s"] for r in rows], [r["L"] for r in rows], "o-", ms=2, label=name)
        ax.axhline(pair["target_L"], color="gray", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("CPU time, one thread (s)")
        ax.set_ylabel("L at full size")
        ax.set_title(f"{pair['pair']}, {report['size']} px, {report['iters']} iterations")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
