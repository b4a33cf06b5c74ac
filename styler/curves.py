"""Training logs (CSV, safe to resume) and the run's curves (``loss.png``)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

LOG_FIELDS = ["step", "stage", "elapsed_s", "lr", "total", "pixel", "feature", "distill",
              "content", "style"]  # fmt: skip
HELD_FIELDS = ["step", "stage", "recon", "total", "content", "style"]


class CsvLog:
    """A CSV log opened at ``step``: rows written after the last checkpoint (a crash) are dropped,
    since those steps are trained again."""

    def __init__(self, path: Path, step: int) -> None:
        self.fields = HELD_FIELDS if path.name == "heldout.csv" else LOG_FIELDS
        kept = [r for r in read_rows(path) if int(r["step"]) <= step]
        self.file = path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, self.fields, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(kept)
        self.file.flush()

    def write(self, row: dict) -> None:
        fmt = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.writer.writerow(fmt)
        self.file.flush()


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _smooth(ys: list[float]) -> list[float]:
    """Trailing geometric mean: on a log axis one huge early value must not drag the curve."""
    k = max(1, len(ys) // 50)
    logs = [math.log(max(y, 1e-12)) for y in ys]
    return [math.exp(sum(w) / len(w)) for w in (logs[max(0, i - k + 1) : i + 1]
                                               for i in range(len(logs)))]  # fmt: skip


def plot_run(out: Path) -> None:
    """loss.png: training loss per stage, held-out L and its terms, held-out reconstruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, held = read_rows(out / "log.csv"), read_rows(out / "heldout.csv")
    if not rows:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for stage in ("recon", "style"):
        part = [r for r in rows if r["stage"] == stage]
        if part:
            ys = [float(r["total"]) for r in part]
            steps = [int(r["step"]) for r in part]
            axes[0].plot(steps, ys, alpha=0.25, lw=0.8)
            axes[0].plot(steps, _smooth(ys), lw=1.5, label=f"{stage} (training)")
    axes[0].set_title("training loss")
    for key, ax in (("total", axes[1]), ("content", axes[1]), ("style", axes[1]),
                    ("recon", axes[2])):  # fmt: skip
        if held:
            ax.plot([int(r["step"]) for r in held], [float(r[key]) for r in held], "o-",
                    ms=3, label=f"held-out {'L' if key == 'total' else key}")  # fmt: skip
    axes[1].set_title("held-out L and its terms (content, style)")
    axes[2].set_title("held-out reconstruction loss")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=90)
    plt.close(fig)
