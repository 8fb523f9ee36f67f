"""Model + data + config -> a run folder (the module is trainer.py: ``textgen.train`` is the
public function, api.py's, that calls ``train`` here).

``train`` reads the corpus, builds the vocabulary and ids, writes the run folder's static files
(runs.py names them), then fits the model with the callbacks of callbacks.py, which keep the
folder current: per-step and per-epoch logs, the best weights, resumable checkpoints
(checkpoint.py), samples and state.json. ``_callbacks`` lists them in the order they run.

Training ends after ``epochs``, or earlier at an epoch end by ``patience`` or ``max_minutes``.
SIGTERM, SIGINT and SIGHUP stop at the next batch boundary after saving ``last.h5``; ``train``
then raises ``Interrupted`` (exit 143 / 130 / 129) so a script can run the same command again to
resume. A second signal stops at once, keeping the last checkpoint, with the first one's exit.
A NaN, infinite or exploding loss stops training without saving: the last good checkpoints stay
untouched.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import runs
from .checkpoint import START, load_last, saved_position
from .config import Config
from .data import Prepared, prepare
from .devices import load_keras
from .errors import CorpusError, RunError, Signalled, TextgenError, handle_signals
from .transfer import Base, check_shape, merge_weights, record
from .vocab import Vocab, WordVocab
from .windows import steps_per_epoch


class Interrupted(TextgenError):
    """Training stopped by a signal after saving (or, signalled twice, at once); run the same
    command again to resume."""

    def __init__(self, signum: int, path: Path, saved_step: int | None = None,
                 twice: bool = False, unstarted: bool = False):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        saved = ("before its first checkpoint" if saved_step is None
                 else f"with its checkpoint at step {saved_step}")
        if twice:
            saved = "twice, so at once, keeping its last checkpoint"
        then = "resume the run to continue"
        if unstarted:  # while the corpus was read: the run folder was not touched
            saved, then = "before training started", "nothing was written"
        super().__init__(f"{path}: stopped by {name} {saved}; {then}")
        self.cli_hint = None if unstarted else f"textgen train ... --out {path} --resume"


@dataclass
class StopFlag:
    """Set by the SIGTERM/SIGINT/SIGHUP handler; checked at every batch boundary."""

    signum: int | None = None
    at_once: bool = False  # a second signal came: training stops where it is


@dataclass(frozen=True)
class Recipe:
    """What a caller may change in how training optimises, besides the config (the Python API
    and bench/levers.py give these; the command line has none of them).

    * ``optimizer(train_config, learning_rate)`` -> a Keras optimizer, instead of the config's
      (``learning_rate`` is ``train_config.lr`` or the schedule below);
    * ``schedule(train_config, steps_per_epoch, total_steps)`` -> a Keras LearningRateSchedule
      of the global step; with one, the learning rate is no longer halved on plateaus;
    * ``callbacks``: extra Keras callbacks, run before textgen's own at each hook.

    A resumed run continues exactly with the same recipe (the optimizer's variables and the
    step are checkpointed; a schedule is a function of the step); the extra callbacks' own state
    is not saved."""

    optimizer: Callable[..., Any] | None = None
    schedule: Callable[..., Any] | None = None
    callbacks: tuple = ()


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    steps_done: int
    best_loss: float | None
    history: list[dict] = field(default_factory=list)
    stopped: str | None = None  # why training ended before its last epoch, if it did


def train(inputs: list[str], config: Config, out: Path, *, resume: runs.Run | None = None,
          save_every: int | None = None, verbose: int | None = None,
          root: Path = runs.DEFAULT_ROOT,
          styles: dict[str, list[str]] | None = None,
          init_from: Base | None = None, recipe: Recipe = Recipe()) -> TrainResult:
    """Train a model on ``inputs`` into run folder ``out``; with ``resume`` (the run folder,
    opened), continue it.

    With ``styles`` ({name: inputs}) the model is conditioned on the style of its text
    (``inputs`` is then ignored). With ``init_from`` (transfer.open_base) a new run starts
    from that run's weights. ``recipe``: an optimizer, a learning-rate schedule or extra
    callbacks of the caller's (``Recipe``).
    """
    from .devices import select_backend

    select_backend(config.train.backend)  # before Keras is imported; refused if it was, otherwise
    stop = StopFlag()
    with _signals_to(stop):
        try:
            data = _checked_data(inputs, config, out, resume, styles, init_from, verbose)
            load_keras()  # a backend that cannot start is refused before anything is written
            runs.fault("prepared", "train")
            if stop.signum:  # signalled while the corpus was read: stop before writing
                raise Interrupted(stop.signum, out, unstarted=True)
            with runs.training_lock(out):
                if resume is not None:
                    _record_config(out, config, resume, data)
                else:
                    if config.train.seed is None:
                        config = config.with_seed(random.SystemRandom().randrange(2**31))
                    _start_run(out, config, data, inputs, styles or None, init_from)
                _point_latest(out, root)
                return _fit(config, data, out, resume=resume is not None,
                            save_every=save_every, verbose=verbose, stop=stop,
                            init_from=init_from, recipe=recipe)
        except Signalled as e:  # the second signal (with the first one's meaning)
            raise Interrupted(stop.signum or e.signum, out, twice=True) from None


def _checked_data(inputs, config: Config, out: Path, resume: runs.Run | None, styles,
                  init_from: Base | None, verbose: int | None) -> Prepared:
    """The corpus, prepared, after every check that needs no framework: the run folder, the
    base run's shape, the vocabulary, and on resume that the setup and data are the run's."""
    if config.train.tensorboard:
        _check_tensorboard()
    if resume is None:
        runs.check_new_run(out)
    else:
        runs.check_not_training(out)
    if init_from is not None:
        check_shape(init_from, config)
    data = prepare(inputs, config, styles=styles or None,
                   base_vocab=_base_vocab(resume, init_from))
    if verbose != 0:
        print(data.describe(), file=sys.stderr)
    _check_vocabulary(data)
    if resume is not None:
        _check_compatible(resume, config, data.vocab, list(data.styles))
        _check_same_data(resume, config, data)
    return data


def _check_vocabulary(data: Prepared) -> None:
    """A model chooses among two or more tokens; one character gives nothing to learn (and a
    loss of 0 that Keras cannot train on)."""
    if len(data.vocab) < 2:
        names = ", ".join(runs.shown_path(f) for f in data.report["files"][:3])
        raise CorpusError(f"{names}: the text has one distinct character "
                          f"({data.vocab.tokens[0]!r}); give a text of two or more to train on")


def _point_latest(out: Path, root: Path) -> None:
    """checkpoints/latest is a convenience: a working directory where it cannot be written
    (read-only, or checkpoints a file) only costs a warning."""
    try:
        runs.point_latest(out, root)
    except OSError as e:
        print(f"warning: cannot point {root / runs.LATEST} at {out} "
              f"({e.strerror or e}); training goes on", file=sys.stderr)


def _record_config(out: Path, config: Config, run: runs.Run, data: Prepared) -> None:
    """A resumed run may aim further (e.g. more epochs): record the config it now trains to
    (and, for a run from before the data record, what it trains on from now on)."""
    fingerprint = data.fingerprint()
    if config != run.config or run.meta.get("data") != fingerprint:
        keep = {k: v for k, v in run.meta.items() if k not in ("format", "version", "textgen")}
        keep["data"] = fingerprint
        runs.write_json(out / runs.CONFIG_FILE, runs.config_document(config, keep))


def _check_same_data(run: runs.Run, config: Config, data: Prepared) -> None:
    """Resume only on the data the run started with (its record in config.json): a changed
    corpus changes the windows, the steps per epoch and the order, so the checkpoint's position
    would mean nothing. A run from before the record: its checkpoint's position must fit this
    corpus's steps per epoch (which state.json records too), and a warning says so."""
    recorded, now = run.meta.get("data"), data.fingerprint()
    hint = f"textgen train CORPUS --out NEW_RUN --init-from {run.path}"
    if recorded is not None:
        if recorded != now:
            sizes = (f"{_size(recorded)} then, {_size(now)} now" if _size(recorded) != _size(now)
                     else f"{_size(now)}, another text")
            raise RunError(f"{run.path}: the corpus changed since this run started ({sizes}); "
                           "resume it with the text it started with, or start a new run from "
                           "its weights", cli_hint=hint)
        return
    spe = steps_per_epoch(data.split.n_train_windows, config.window,
                          config.train.steps_per_epoch)
    position = saved_position(run.path)
    recorded_spe = run.state.get("steps_per_epoch", spe)
    if recorded_spe != spe or (position and not 0 <= position[1] - position[0] * spe < spe):
        raise RunError(f"{run.path}: the corpus changed since this run started: it makes {spe} "
                       "steps per epoch, the run's checkpoint was made with another number; "
                       "resume it with the text it started with, or start a new run from its "
                       "weights", cli_hint=hint)
    print(f"warning: {run.path} was started before textgen recorded what a run trains on, so it "
          "cannot check that the corpus is the one it started with; recorded it now",
          file=sys.stderr)


def _size(fingerprint: dict) -> str:
    ids, windows = fingerprint.get("ids"), fingerprint.get("train_windows")
    if not (runs.is_count(ids) and runs.is_count(windows)):  # a damaged record
        return "a damaged record"
    return f"{ids:,} tokens, {windows:,} training windows"


def _check_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401 - TF's summaries need it
    except ImportError:
        raise TextgenError('TensorBoard logs need TensorBoard: pip install '
                           '"textgen[tensorboard]"') from None


def _base_vocab(resume: runs.Run | None, init_from: Base | None):
    """The vocabulary a run started from another keeps besides its corpus's (transfer.py)."""
    if init_from is not None:
        return init_from.run.vocab
    return resume.kept_vocab if resume is not None else None


def _start_run(out: Path, config: Config, data: Prepared, inputs, styles,
               init_from: Base | None = None) -> None:
    """A new run folder with its static files: config, vocabulary, corpus report, prime text."""
    runs.check_new_run(out, locked=True)  # again under the lock: another process may have won
    extra = {"corpus": _resolved(inputs if not styles else
                                 [p for paths in styles.values() for p in paths]),
             "rare_chars": data.report["rare_chars"], "data": data.fingerprint()}
    if data.styles:  # from --style NAME=CORPUS, or from a JSON field (--style-field)
        extra["styles"] = {name: _resolved(styles[name] if styles else
                                           data.report["styles"][name]["files"])
                           for name in data.styles}
    if init_from is not None:
        counts = np.bincount(np.asarray(data.ids), minlength=len(data.vocab))
        used = {t for t, n in zip(data.vocab.tokens, counts) if n}
        extra["init_from"] = record(init_from, data.vocab, used)
    runs.write_text(out / runs.VOCAB_FILE, data.vocab.to_json() + "\n")
    runs.write_json(out / runs.CORPUS_REPORT, data.report)
    runs.write_text(out / runs.PRIME_TEXT,
                    data.vocab.decode(data.split.train[: runs.PRIME_TEXT_CHARS]))
    # config.json last: a folder without it is a run that never started, trained anew.
    runs.write_json(out / runs.CONFIG_FILE, runs.config_document(config, extra))


def _resolved(paths) -> list[str]:
    return [p if p == "-" else str(Path(p).resolve()) for p in map(str, paths)]


# What may change when resuming: when to stop, what to log, and which devices and framework
# compute (the checkpoint holds the same variables, in the same order, on every backend).
# Everything else would make the resumed run differ from the run it continues (model shape,
# data, order, optimizer).
RESUMABLE_CHANGES = {("train", key) for key in (
    "epochs", "patience", "max_minutes", "sample_every", "sample_chars", "tensorboard",
    "strategy", "precision", "backend")}


def _check_compatible(run: runs.Run, config: Config, vocab: Vocab | WordVocab,
                      styles: list[str]) -> None:
    """Refuse to resume with a different setup or vocabulary; list the differences."""
    diffs = []
    old_all, new_all = run.config.to_dict(), config.to_dict()
    for section, old in old_all.items():
        for key, value in old.items():
            new = new_all[section][key]
            if new != value and (section, key) not in RESUMABLE_CHANGES:
                diffs.append(f"{section}.{key} {value!r} -> {new!r}")
    if run.styles != styles:
        diffs.append(f"styles {run.styles!r} -> {styles!r}")
    if run.vocab != vocab:
        added = sorted(set(vocab.tokens) - set(run.vocab.tokens))[:10]
        removed = sorted(set(run.vocab.tokens) - set(vocab.tokens))[:10]
        diffs.append(f"vocabulary differs (new {added!r}, missing {removed!r})")
    if diffs:
        raise RunError(f"{run.path}: cannot resume with a different setup: " + "; ".join(diffs))



def _build_model(config: Config, vocab_size: int, n_styles: int, spe: int,
                 recipe: Recipe = Recipe()):
    """The compiled model, its optimizer built (so a checkpoint can be loaded into it), under
    the distribution strategy; returns (model, distribution)."""
    from .devices import (adapt_to_strategy, cpu_layout, distribution_scope,
                          fused_kernel_options, join_workers, make_distribution,
                          set_determinism, set_precision, set_threads)
    from .model import build_model, compile_model, make_optimizer

    set_threads()  # TensorFlow only, before it starts
    join_workers(config.train.strategy)  # JAX across processes, before it computes
    set_determinism(config.train.seed)
    set_precision(config.train.precision)
    distribution = make_distribution(config.train.strategy)
    planned_steps = config.train.epochs * spe
    layout = {**cpu_layout(config.window.window, planned_steps, config.train.max_minutes),
              **fused_kernel_options(config.train.precision)}
    with distribution_scope(distribution):
        model = build_model(config.model, vocab_size, n_styles, **layout)
        lr = (recipe.schedule(config.train, spe, planned_steps) if recipe.schedule
              else config.train.lr)
        compile_model(model, config.train, (recipe.optimizer or make_optimizer)(config.train, lr))
        model.optimizer.build(model.trainable_variables)
    adapt_to_strategy(model, distribution)
    return model, distribution


def _datasets(config: Config, data: Prepared, spe: int, distribution):
    """(make(skip): the training batches from global step ``skip``, validation batches or
    None): the same batches on every backend, from the backend's own input pipeline
    (devices.datasets)."""
    from .devices import datasets

    return datasets(data.split, config.window, config.train.seed, config.train.epochs, spe,
                    distribution)


def _fit(config: Config, data: Prepared, out: Path, *, resume: bool, save_every: int | None,
         verbose: int | None, stop: StopFlag, init_from: Base | None = None,
         recipe: Recipe = Recipe()) -> TrainResult:
    from .model import get_named_weights, set_named_weights

    split, epochs = data.split, config.train.epochs
    spe = steps_per_epoch(split.n_train_windows, config.window, config.train.steps_per_epoch)
    model, distribution = _build_model(config, len(data.vocab), len(data.styles), spe, recipe)
    if init_from is not None and not resume:
        set_named_weights(model, config.model, merge_weights(
            init_from, get_named_weights(model, config.model), data.vocab, list(data.styles),
            config.model))
    if not resume or not (out / runs.INIT_WEIGHTS).exists():  # stopped before writing it
        runs.write_weights(out / runs.INIT_WEIGHTS, get_named_weights(model, config.model),
                           attrs=runs.identity(data.vocab, list(data.styles)))
    start = load_last(out, model) if resume else START
    if not 0 <= start.step - start.epoch * spe < spe:  # _check_same_data makes this unreachable
        raise RunError(f"{out}: its checkpoint (epoch {start.epoch}, step {start.step}) does not "
                       f"fit {spe} steps per epoch; the data changed since the run started")
    has_val = len(split.val) > 0
    if start.epoch >= epochs:  # finished already (state.json may lag if its write failed)
        from .callbacks import Progress, StateFile

        StateFile(Progress.from_checkpoint(start, spe), out, epochs,
                  "val_loss" if has_val else "loss").write()
        return TrainResult(out, start.epoch, start.step, _finite(start.best))

    train_batches, val = _datasets(config, data, spe, distribution)
    callbacks, progress = _callbacks(config, data, out, start, spe, save_every, stop, has_val,
                                     recipe)
    if stop.signum:  # signalled while starting up: nothing new to save
        raise Interrupted(stop.signum, out, start.step if start is not START else None)
    with contextlib.redirect_stdout(sys.stderr):
        for initial_epoch, end_epoch, steps, skip in _phases(start, spe, epochs):
            model.fit(train_batches(skip), epochs=end_epoch, initial_epoch=initial_epoch,
                      steps_per_epoch=steps, validation_data=val, callbacks=callbacks,
                      shuffle=False,
                      verbose=(1 if sys.stderr.isatty() else 2) if verbose is None else verbose)
            if model.stop_training or stop.signum:
                break
    if stop.signum and progress.epoch < epochs:  # a signal after the last epoch changes nothing
        raise Interrupted(stop.signum, out, progress.step)
    return TrainResult(out, progress.epoch, progress.step, _finite(progress.best),
                       progress.history, progress.stopped)


def _phases(start, spe: int, epochs: int) -> list[tuple[int, int, int, int]]:
    """(initial epoch, end epoch, steps per epoch, first global step) for each ``fit`` call:
    a run resumed mid-epoch first finishes that epoch with its remaining steps, then runs
    whole epochs. Each dataset starts at the exact global step it is used from."""
    phases = []
    in_epoch = start.step - start.epoch * spe
    first_full = start.epoch
    if in_epoch > 0:
        phases.append((start.epoch, start.epoch + 1, spe - in_epoch, start.step))
        first_full += 1
    if first_full < epochs:
        phases.append((first_full, epochs, spe, first_full * spe))
    return phases


def _callbacks(config: Config, data: Prepared, out: Path, start, spe: int,
               save_every: int | None, stop: StopFlag, has_val: bool, recipe: Recipe = Recipe()):
    """What happens during training, in the order it happens (callbacks.py)."""
    import keras

    from . import callbacks as cb

    tc = config.train
    monitor = "val_loss" if has_val else "loss"
    progress = cb.Progress.from_checkpoint(start, spe)
    step_loss = cb.StepLoss(progress, out, start.smooth)
    plateau = cb.Plateau(start.plateau, monitor=monitor, factor=0.5, patience=2, verbose=0)
    mid_epoch = start.step % spe != 0
    callbacks = [
        *recipe.callbacks,
        cb.DivergenceStop(progress, len(data.vocab), out),
        cb.StepCounter(progress),
        cb.SignalStop(stop),
        cb.EpochMetrics(start.metrics if mid_epoch else None),
        step_loss,
        plateau if recipe.schedule is None else None,  # a schedule sets the rate itself
        cb.EpochLog(progress, out),
        cb.BestWeights(progress, out, config.model, monitor,
                       runs.identity(data.vocab, list(data.styles))),
        cb.PatienceStop(progress, monitor, tc.patience) if tc.patience else None,
        cb.TimeBudget(progress, tc.max_minutes) if tc.max_minutes else None,
        cb.Checkpointer(progress, out, save_every, stop, plateau, step_loss),
        cb.TrainingSamples(progress, out, config.model, data.vocab, list(data.styles),
                           tc.sample_every, tc.sample_chars) if tc.sample_every else None,
        cb.StateFile(progress, out, tc.epochs, monitor),
    ]
    if tc.tensorboard:
        callbacks.insert(0, keras.callbacks.TensorBoard(log_dir=str(out / runs.TENSORBOARD_DIR)))
    return [c for c in callbacks if c is not None], progress


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@contextlib.contextmanager
def _signals_to(stop: StopFlag):
    """Turn SIGTERM/SIGINT/SIGHUP into 'save at the next batch boundary and stop' (a second one:
    stop at once, ``Signalled``)."""
    def handler(signum, frame):
        if stop.at_once:  # a third: the second's unwinding (temp files removed) goes on
            return
        if stop.signum:  # a second: stop at once, with the first one's meaning (exit code)
            stop.at_once = True
            raise Signalled(stop.signum)
        stop.signum = signum
        print(f"\ntextgen: {signal.Signals(signum).name} received; saving at the next step",
              file=sys.stderr)

    with handle_signals((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), handler):
        yield
