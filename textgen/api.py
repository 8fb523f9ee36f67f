"""The public Python API behind ``import textgen``: train, open a run, evaluate, plot, export,
generate. The command line (cli.py) and the server (serve.py) are its clients.

    import textgen
    run = textgen.train("corpora/tinyshakespeare.txt", config="quick", max_minutes=1)
    run.plot()                                  # a matplotlib Figure (shown inline in Jupyter)
    print(run.evaluate())                       # held-out loss beside baselines
    print(run.generator().generate("ROMEO:", 200, temperature=0.5))
    run.export("shakespeare.html")

Nothing here prints to stdout or exits the process: errors are ``TextgenError`` subclasses
with the same one-line messages the command line shows, and training's progress goes to
stderr (a Keras progress bar, one line per epoch, or nothing: ``progress``).
"""

from __future__ import annotations

import dataclasses
import html
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import runs
from .config import Config, preset_path
from .errors import ConfigError, RunError
from .sample import Generator

PROGRESS = {"bar": 1, "epochs": 2, "quiet": 0}  # train's ``progress`` -> Keras's verbose


def _progress(progress: str | None) -> int:
    """Keras's verbosity for ``progress``; None: a progress bar in a terminal or a notebook,
    else one line per epoch."""
    if progress is None:
        interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
        return PROGRESS["bar" if interactive else "epochs"]
    if progress not in PROGRESS:
        raise ConfigError(f"progress must be one of {', '.join(PROGRESS)}, got {progress!r}")
    return PROGRESS[progress]


SOURCE = "textgen.train()"  # where settings come from, in error messages


def _resolve_config(config, settings: dict, base: Config | None, source: str = SOURCE
                    ) -> Config:
    """defaults (or ``base``) < ``config`` (a TOML path, a preset name, or a Config) <
    ``settings`` (named like the command line's flags)."""
    from .config import SECTION_OF, by_section, merge, resolve

    unknown = sorted(set(settings) - set(SECTION_OF))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; settings are named like "
                          "textgen train's flags (e.g. units=256, max_minutes=5)")
    if isinstance(config, Config):
        start = config if base is None else merge(base, config.to_dict(), "config")
        return merge(start, by_section(settings), source)
    path = None if config is None else preset_path(config)
    return resolve(path, by_section(settings), base=base, source=source)


def train(corpus: str | os.PathLike | list | None = None, *, config=None,
          out: str | os.PathLike | None = None, resume: bool = False,
          init_from: str | os.PathLike | None = None, backend: str | None = None,
          styles: dict[str, list] | None = None, save_every: int | None = None,
          recipe=None, progress: str | None = None, **settings) -> "Run":
    """Train a model on ``corpus`` (a file, a folder, or a list of them) into a run folder and
    return it as a ``Run``; the same as ``textgen train``.

    Settings are resolved as the built-in defaults < ``config`` (a TOML file, a preset name
    such as ``"quick"``, or a ``Config``) < ``settings``, named like the command line's flags
    (``units=256``, ``max_minutes=5``, ``lowercase=True``, ...). ``out``: the run folder
    (default ``checkpoints/<corpus>-<time>``); ``resume=True`` continues the unfinished run in
    ``out``; ``init_from``: start from a trained run's weights; ``backend``: tensorflow, jax or
    torch (default ``KERAS_BACKEND``, else tensorflow; one per process); ``styles``: {name:
    [files]} to train one model on several styles; ``recipe``: a ``textgen.Recipe`` (optimizer,
    schedule, callbacks); ``progress``: "bar", "epochs" or "quiet".

    SIGTERM or SIGINT (a notebook's interrupt) stops at the next batch after saving and raises
    ``Interrupted``; ``train(..., out=RUN, resume=True)`` then continues exactly.
    """
    return train_as(SOURCE, corpus, config=config, out=out, resume=resume, init_from=init_from,
                    backend=backend, styles=styles, save_every=save_every, recipe=recipe,
                    progress=progress, **settings)


def train_as(source: str, corpus=None, *, config=None, out=None, resume: bool = False,
             init_from=None, backend: str | None = None, styles: dict | None = None,
             save_every: int | None = None, recipe=None, progress: str | None = None,
             **settings) -> "Run":
    """``train``, with ``settings`` named as coming from ``source`` in error messages (the
    command line passes its own: a bad flag is then a usage error, exit 2)."""
    from .runs import default_run_path, open_for_resume
    from .trainer import Recipe
    from .trainer import train as run_training
    from .transfer import base_config, open_base

    inputs = [] if corpus is None else [str(c) for c in (corpus if isinstance(
        corpus, (list, tuple)) else [corpus])]
    if resume and out is None:
        raise ConfigError("resuming needs the run folder to continue", cli_hint="--out RUN_DIR")
    if resume and init_from is not None:
        raise ConfigError("give resume or init_from, not both",
                          cli_hint="--resume or --init-from")
    run = open_for_resume(Path(out)) if resume else None  # then flags may extend --epochs
    if run is not None and not inputs and not styles:
        inputs, styles = _recorded_corpus(run)
    if bool(styles) == bool(inputs):
        raise ConfigError("give a corpus to train on, or styles ({name: [files]}), not both",
                          cli_hint="CORPUS or --style NAME=CORPUS")
    base = open_base(init_from) if init_from is not None else None
    if backend is None and os.environ.get("KERAS_BACKEND"):
        backend = os.environ["KERAS_BACKEND"]  # the default, over the run's own
    settings = {**settings, "backend": backend} if backend else settings
    cfg = _resolve_config(config, settings, run.config if run else
                          base_config(base) if base else None, source)
    styles = {name: [str(p) for p in paths] for name, paths in (styles or {}).items()}
    if out is None:
        out = default_run_path("-".join(styles) if styles else Path(inputs[0]).stem or "run")
    run_training(inputs, cfg, Path(out), resume=run, save_every=save_every, styles=styles,
                 init_from=base, recipe=recipe or Recipe(), verbose=_progress(progress))
    return Run(out)


def _recorded_corpus(run) -> tuple[list[str], dict | None]:
    """(inputs, styles) a run was started with (config.json), to resume it without naming
    its corpus again."""
    recorded = run.meta.get("styles") if not run.config.clean.style_field else None
    if recorded:
        return [], {name: list(paths) for name, paths in recorded.items()}
    inputs = list(run.meta.get("corpus") or [])
    if not inputs or "-" in inputs:
        raise ConfigError(f"{run.path}: the run was trained on standard input; give its text "
                          "again to resume it", cli_hint="CORPUS")
    return inputs, None


@dataclass(frozen=True)
class Best:
    """A run's best monitored loss so far: its value (nats per token), the epoch that reached
    it, and what was monitored (val_loss, or loss without a validation split)."""

    loss: float
    epoch: int | None
    monitor: str


@dataclass(frozen=True)
class Evaluation:
    """What ``Run.evaluate`` measured (``textgen evaluate``'s figures): the held-out loss of
    the run's best weights beside baselines (rows of ``models``: name, nats per token, nats and
    bits per character, perplexity), and novelty or style accuracy when asked for."""

    run: str
    level: str
    heldout: str
    baselines_note: str
    models: list[dict]
    novelty: dict | None = None
    classify: dict | None = None
    raw: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_result(cls, result: dict) -> "Evaluation":
        return cls(result["run"], result["level"], result["heldout"], result["baselines"],
                   result["models"], result.get("novelty"), result.get("classify"), result)

    @property
    def nats_per_char(self) -> float:
        """The model's held-out loss, nats per character."""
        return self.models[0]["nats_per_char"]

    @property
    def bits_per_char(self) -> float:
        return self.models[0]["bits_per_char"]

    @property
    def perplexity(self) -> float:
        """Per token (a character, or a word)."""
        return self.models[0]["perplexity"]

    @property
    def baselines(self) -> dict[str, float]:
        """Each baseline's held-out loss, nats per character."""
        return {row["model"]: row["nats_per_char"] for row in self.models[1:]}

    def text(self) -> str:
        """The table ``textgen evaluate`` prints."""
        from .evaluate import format_result

        return format_result(self.raw)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(r['model'])}</td><td>{r['nats_per_char']:.4f}</td>"
            f"<td>{r['bits_per_char']:.4f}</td><td>{r['perplexity']:.3f}</td></tr>"
            for r in self.models)
        return (f"<p>held-out text: {html.escape(self.heldout)}; "
                f"{html.escape(self.baselines_note)}</p><table><tr><th>model</th>"
                f"<th>nats/char</th><th>bits/char</th><th>perplexity</th></tr>{rows}</table>")


def _numbers(rows: list[dict]) -> dict[str, list]:
    """CSV rows (strings) -> columns of numbers (None for empty cells)."""
    columns: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            try:
                number = None if value in ("", None) else float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer() and key in ("epoch", "step"):
                number = int(number)
            columns.setdefault(key, []).append(number)
    return columns


class Run:
    """A run folder: its settings, training history, best loss and files; what to do with it
    (plot, evaluate, export, generate). ``textgen.open_run(path)`` or ``textgen.train(...)``
    gives one."""

    def __init__(self, path: str | os.PathLike):
        self._run = runs.open_run(path)  # RunError for anything that is not a run folder
        self.path = self._run.path

    def __repr__(self) -> str:
        best = self.best
        loss = "no epoch yet" if best is None else f"best {best.monitor} {best.loss:.4f}"
        m = self.config.model
        return (f"Run({str(self.path)!r}: {m.layers} x {m.cell.upper()} {m.units}, "
                f"{self.state.get('epochs_done', 0)} epochs, {loss})")

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(repr(self)) + "</pre>"

    @property
    def config(self) -> Config:
        """The fully resolved settings the run trains with (config.json)."""
        return self._run.config

    @property
    def styles(self) -> list[str]:
        return self._run.styles

    @property
    def state(self) -> dict[str, Any]:
        """state.json: epochs and steps done, best loss, seconds trained, why it stopped."""
        return self._run.state

    @property
    def history(self) -> dict[str, list]:
        """The epoch log (log.csv) as columns: epoch, step, loss, val_loss, bpc, val_bpc, lr,
        seconds (losses in nats per token; None where a value is missing)."""
        return _numbers(runs.read_csv(self._run.file(runs.LOG_FILE)))

    @property
    def steps(self) -> dict[str, list]:
        """The step log (steps.csv) as columns: step, epoch, loss, smooth_loss."""
        return _numbers(runs.read_csv(self._run.file(runs.STEPS_FILE)))

    @property
    def best(self) -> Best | None:
        """The best monitored loss so far, or None before the first epoch ends."""
        state = self.state
        loss = state.get("best_loss")
        if loss is None:
            return None
        history = self.history
        monitor = state.get("best_monitor") or "val_loss"
        values = history.get(monitor, [])
        epoch = (history["epoch"][values.index(min(v for v in values if v is not None))]
                 if any(v is not None for v in values) else None)
        return Best(float(loss), epoch, monitor)

    def summary(self) -> dict[str, Any]:
        """What ``textgen info`` shows."""
        return runs.summarise(self.path)

    def generator(self) -> Generator:
        """A Generator for this run's best weights (NumPy only)."""
        return Generator(self._run)

    def plot(self, path: str | os.PathLike | None = None, *, overwrite: bool = False):
        """The loss curves as a matplotlib Figure (a notebook shows it inline); with ``path``,
        also saved there as PNG (an existing file only with ``overwrite=True``). Needs
        matplotlib: pip install "textgen[plot]"."""
        from .plot import figure, save

        if path is not None and not overwrite and (Path(path).exists() or
                                                   Path(path).is_symlink()):
            raise RunError(f"{path} already exists; pass overwrite=True (--force) or choose "
                           "another path")
        fig = figure(self.path)
        if path is not None:
            save(fig, Path(path))
        _show_figures_inline()
        return fig

    def evaluate(self, corpus: str | os.PathLike | None = None, *, order: int = 6,
                 samples: int = 0, sample_chars: int = 500, temperature: float = 1.0,
                 seed: int = 0, train_corpus: str | os.PathLike | list | None = None,
                 style: str | None = None,
                 classify: bool = False, passage_chars: int = 300,
                 passages: int = 100) -> Evaluation:
        """Held-out loss beside baselines (and novelty, style accuracy): ``textgen evaluate``.
        ``corpus``: a text to score instead of the run's validation split."""
        from .evaluate import EvalRequest, evaluate_run

        if isinstance(train_corpus, (str, os.PathLike)):  # one path, not its characters
            train_corpus = [train_corpus]
        req = EvalRequest(corpus=None if corpus is None else str(corpus), order=order,
                          samples=samples, sample_chars=sample_chars, temperature=temperature,
                          seed=seed, train_corpus=[str(p) for p in train_corpus or []] or None,
                          style=style, classify=classify, passage_chars=passage_chars,
                          passages=passages)
        return Evaluation.from_result(evaluate_run(self.path, req))

    def export(self, path: str | os.PathLike) -> Path:
        """Write the run as a web page (.html) or a Keras model (.keras); never overwrites."""
        from .export import export_run

        return export_run(self.path, Path(path))


def _show_figures_inline() -> None:
    """In IPython (Jupyter), have a returned Figure drawn as PNG: IPython registers that only
    when pyplot is imported, and textgen draws without pyplot."""
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None and hasattr(shell, "display_formatter"):
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(shell, {"png"})


def open_run(path: str | os.PathLike = runs.DEFAULT_ROOT / runs.LATEST) -> Run:
    """The run folder at ``path`` (default checkpoints/latest) as a ``Run``."""
    return Run(path)
