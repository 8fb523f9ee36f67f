"""A run's training curves as a PNG (matplotlib, an optional extra: pip install "textgen[plot]").

Top panel: the exponentially smoothed per-step training loss (steps.csv), and the per-epoch
training and validation loss (log.csv), in nats/char against steps, with a dotted vertical line
at every epoch end. Bottom panel: validation perplexity (e^loss) at each epoch end.
"""

from __future__ import annotations

import math
from pathlib import Path

from . import runs
from .errors import TextgenError


def plot_run(run_dir: str | Path, output: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TextgenError('plotting needs matplotlib: pip install "textgen[plot]"') from None
    run = runs.open_run(run_dir)
    epochs = runs.read_csv(run.file(runs.LOG_FILE))
    steps = runs.read_csv(run.file(runs.STEPS_FILE))
    if not epochs and not steps:
        raise TextgenError(f"{run.path}: nothing to plot yet (no log.csv rows)")

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    if steps:
        top.plot([int(r["step"]) for r in steps], [float(r["smooth_loss"]) for r in steps],
                 lw=1, color="tab:blue", label="training loss (smoothed, per step)")
    ends = [int(r["step"]) for r in epochs]
    for name, color, label in (("loss", "tab:orange", "training loss (epoch mean)"),
                               ("val_loss", "tab:green", "validation loss")):
        pts = [(int(r["step"]), float(r[name])) for r in epochs if r.get(name)]
        if pts:
            top.plot(*zip(*pts), marker="o", ms=3, color=color, label=label)
    val = [(int(r["step"]), math.exp(float(r["val_loss"]))) for r in epochs if r.get("val_loss")]
    if val:
        bottom.plot(*zip(*val), marker="o", ms=3, color="tab:green")
    for ax in (top, bottom):
        for x in ends:
            ax.axvline(x, color="grey", lw=0.5, ls=":")
        ax.grid(alpha=0.3)
    top.set_ylabel("nats / char")
    top.legend()
    top.set_title(f"{run.path.name}: {run.config.model.layers} x {run.config.model.cell.upper()} "
                  f"{run.config.model.units}")
    bottom.set_ylabel("validation perplexity")
    bottom.set_xlabel("training step")
    fig.tight_layout()
    with runs.atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return output
