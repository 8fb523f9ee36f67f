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
    """Draw the run's curves into the PNG ``output`` (written atomically)."""
    return save(figure(run_dir), output)


def save(fig, output: Path) -> Path:
    try:
        with runs.atomic_path(output) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    except OSError as e:
        raise runs.write_error(output, e) from None
    return output


def figure(run_dir: str | Path):
    """The run's curves as a matplotlib Figure, made without pyplot (no global state, no
    backend chosen: a notebook shows the figure inline, a script saves it)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TextgenError('plotting needs matplotlib: pip install "textgen[plot]"') from None
    run = runs.open_run(run_dir)
    epochs = runs.read_csv(run.file(runs.LOG_FILE))
    steps = runs.read_csv(run.file(runs.STEPS_FILE))
    if not epochs and not steps:
        raise TextgenError(f"{run.path}: nothing to plot yet (no log.csv rows)")
    try:
        smooth, epoch_curves, perplexity, ends = _series(epochs, steps)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise TextgenError(f"{run.path}: log.csv or steps.csv is damaged (a row that is not "
                           "numbers); nothing plotted") from None
    fig = Figure(figsize=(9, 7))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    if smooth:
        top.plot(*zip(*smooth), lw=1, color="tab:blue", label="training loss (smoothed, per step)")
    for (color, label), pts in zip((("tab:orange", "training loss (epoch mean)"),
                                    ("tab:green", "validation loss")), epoch_curves):
        if pts:
            top.plot(*zip(*pts), marker="o", ms=3, color=color, label=label)
    if perplexity:
        bottom.plot(*zip(*perplexity), marker="o", ms=3, color="tab:green")
    for ax in (top, bottom):
        for x in ends:
            ax.axvline(x, color="grey", lw=0.5, ls=":")
        ax.grid(alpha=0.3)
    top.set_ylabel(f"nats / {'char' if run.vocab.level == 'char' else 'token'}")
    top.legend()
    top.set_title(f"{run.path.name}: {run.config.model.layers} x {run.config.model.cell.upper()} "
                  f"{run.config.model.units}")
    bottom.set_ylabel("validation perplexity")
    bottom.set_xlabel("training step")
    fig.tight_layout()
    return fig


def _series(epochs: list[dict], steps: list[dict]):
    """(smoothed step loss, [epoch loss, validation loss], validation perplexity, epoch ends)
    as (step, value) points."""
    smooth = [(int(r["step"]), float(r["smooth_loss"])) for r in steps]
    curves = [[(int(r["step"]), float(r[name])) for r in epochs if r.get(name)]
              for name in ("loss", "val_loss")]
    perplexity = [(step, math.exp(min(loss, 700.0))) for step, loss in curves[1]]
    return smooth, curves, perplexity, [int(r["step"]) for r in epochs]
