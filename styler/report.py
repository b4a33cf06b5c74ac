"""The evaluation's report: the markdown table, the loss curves and the contact sheet, written
from the protocol's measurements (:mod:`styler.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter
from PIL import Image, ImageDraw

from .evaluate import PairRun
from .images import resize_to, save, to_pil
from .params import SHEET_HEIGHT

THUMB = 192


def write(report: dict, runs: list[PairRun], labels: list[str], out: Path) -> str:
    """report.json, report.md, curves.png and sheet.jpg in ``out``; the markdown."""
    markdown = to_markdown(report)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown)
    plot_curves(runs, out / "curves.png")
    contact_sheet(runs, labels, out / "sheet.jpg")
    return markdown


def _stat(s: dict, key: str, fmt: str) -> str:
    return ("> " if key in s["lower_bound"] else "") + format(s[key], fmt)


def _summary_cell(s: dict, fmt: str = ".1f") -> str:
    return f"{_stat(s, 'median', fmt)} [{_stat(s, 'q1', fmt)}, {_stat(s, 'q3', fmt)}]"


def _row(start: str, iters: object, m: dict) -> str:
    cells = [start, str(iters), f"{m['total']:.3f}", f"{m['content']:.3f}"]
    cells += [f"{m['style_moments']:.4f}", f"{m['style_gram']:.4f}", f"{m['time_s']:.2f}"]
    return "| " + " | ".join(cells) + " |"


def _gap(what: str, s: dict, n: int) -> str:
    return f"| {what} | {_summary_cell(s)} | {s['censored']}/{n} |"


def to_markdown(report: dict) -> str:
    """The report as markdown: losses per start and iteration count, then the derived figures."""
    cfg, obj, n = report["config"], report["objective"], report["pairs"]
    steps = report["model"].get("trained", {}).get("steps", "?")
    layers = ", ".join(obj["style_layers"])
    objective = (f"L = {obj['content_weight']:g}·content({obj['content_layer']}) + "
                 f"{obj['style_weight']:g}·style[{obj['style_kind']}]({layers})"
                 + (f" + {obj['tv_weight']:g}·tv" if obj["tv_weight"] else ""))  # fmt: skip
    lines = [
        f"# styler evaluation: {n} pairs, {cfg['size']} px, {cfg['device']}"
        + " (quick)" * cfg["quick"],
        "",
        f"Model: {cfg['weights'] or 'shipped weights'} ({steps} training steps).",
        objective + ". Medians over pairs; time = wall time to produce the image "
        "(solver: optimization only).",
        "",
        "| start | iterations | L | content | style (moments) | style (Gram) | time (s) |",
        "|:--|--:|--:|--:|--:|--:|--:|",
        _row("f_θ", "forward", report["fast"]),
        *(_row("f_θ + solver", r, m) for r, m in report["refine"].items()),
        *(_row("content + solver", k, m) for k, m in report["solver"].items()),
        "",
        "| amortization gap | median [q1, q3] | censored |",
        "|:--|--:|--:|",
        _gap("equivalent iterations of f_θ", report["equivalent_iterations"], n),
        _gap("speed-up at equal loss (×)", report["speedup_at_equal_loss"], n),
    ]
    for r, fig in report["refinement"].items():
        lines.append(_gap(f"solver iterations to match f_θ + {r}", fig["equivalent_iterations"], n))
        lines.append(_gap(f"iterations saved by f_θ + {r} (the above − {r})",
                          fig["saved_iterations"], n))  # fmt: skip
    cmp = report["refine_vs_solver"]
    verdict = str(report["refine10_le_solver200"]).lower()
    lines += [
        "",
        (
            f"L(f_θ + {cmp['refine_iters']}) ≤ L(solver @ {cmp['solver_iters']}) in "
            f"{cmp['wins']}/{n} pairs: refine10_le_solver200 = {verdict} "
            "(strict majority of pairs)."
        ),
        "",
        *(f"Note: {note}" for note in report["notes"]),
        f"Total time {report['timings']['total_s']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def plot_curves(runs: list[PairRun], path: Path) -> None:
    """L against iterations and against time for both starts (median over pairs, quartile band),
    f_θ marked."""
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
        for curve, x, name in (
            (solver, xs, "solver from content"),
            (refine, xr, r"solver from $f_\theta$ (refinement)"),
        ):
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
    """One row per pair (content | style | fast | fast + R | slow @ max K), THUMB px high."""
    save(sheet([[to_pil(im) for im in run.images] for run in runs], labels, THUMB), path)


def sheet(
    rows: list[list[Image.Image]], labels: list[str] | None = None, height: int = SHEET_HEIGHT
) -> Image.Image:
    """A contact sheet: each row of images scaled to ``height``, with optional column labels."""
    scaled = [
        [resize_to(im, (max(1, round(im.width * height / im.height)), height)) for im in row]
        for row in rows
    ]
    pad, label_h = 4, 18 if labels else 0
    width = max(sum(im.width + pad for im in row) + pad for row in scaled)
    out = Image.new("RGB", (width, len(scaled) * (height + pad) + pad + label_h), "white")
    draw = ImageDraw.Draw(out)
    for r, row in enumerate(scaled):
        x, y = pad, label_h + pad + r * (height + pad)
        for c, im in enumerate(row):
            out.paste(im, (x, y))
            if labels and r == 0 and c < len(labels):
                draw.text((x, 3), labels[c], fill="black")
            x += im.width + pad
    return out
