"""Model + data + config -> a run folder.

``train`` reads the corpus, builds the vocabulary and ids, writes the run folder's static files,
then fits the model with callbacks that keep the folder current:

* ``last.h5`` every ``save_every`` steps and every epoch: all model variables (weights and the
  Dropout RNG state), all optimizer variables (iteration count, accumulators, learning rate),
  and the position (epoch, global step) - everything needed to continue bit-identically, since
  the data order is a pure function of (seed, epoch) (windows.py). The previous one is kept as
  ``last.prev.h5`` and used if the newest cannot be read.
* ``weights.h5`` when validation loss improves (training loss without a validation split). The
  best value is restored on resume, so a restart never replaces a better model by a worse one.
* ``log.csv`` and ``state.json`` every epoch, ``steps.csv`` (per-step and smoothed loss) with
  every checkpoint, ``samples.txt`` every ``sample_every`` epochs, and ``weights.init.h5`` (the
  untrained model, a baseline for ``evaluate``) once at the start.

Training ends after ``epochs``, or earlier at an epoch end by ``patience`` (no better loss for
that many epochs) or ``max_minutes`` (another epoch would not fit in the budget).
SIGTERM and SIGINT stop at the next batch boundary after saving ``last.h5``; ``train`` then
raises ``Interrupted`` (exit 143 / 130) so a script can run the same command again to resume.
A NaN, infinite or exploding loss stops training without saving: the last good checkpoints stay
untouched.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import runs
from .config import Config
from .data import prepare
from .errors import RunError, TextgenError, TrainingDiverged
from .vocab import Vocab, WordVocab
from .windows import steps_per_epoch

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TF import: hide C++ info banners

LOG_FIELDS = ["epoch", "step", "loss", "val_loss", "bpc", "val_bpc", "lr", "seconds"]
STEP_FIELDS = ["step", "epoch", "loss", "smooth_loss"]
STEPS_FILE = "steps.csv"  # per-step training loss and its exponential smoothing
SAMPLES_FILE = "samples.txt"
INIT_WEIGHTS = "weights.init.h5"  # the untrained model, the baseline `evaluate` reports
SMOOTHING = 0.99  # smooth_loss = 0.99 * smooth_loss + 0.01 * batch loss
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0)
PREV_LAST = "last.prev.h5"


class Interrupted(TextgenError):
    """Training stopped by a signal after saving; run the same command again to resume."""

    def __init__(self, signum: int, path: Path):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"{path}: stopped by {name} after saving step checkpoint; "
            f"resume with: textgen train ... --out {path} --resume"
        )


@dataclass
class StopFlag:
    """Set by the SIGTERM/SIGINT handler; checked at every batch boundary."""

    signum: int | None = None


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    steps_done: int
    best_loss: float | None
    history: list[dict] = field(default_factory=list)
    stopped: str | None = None  # why training ended before its last epoch, if it did


def train(inputs: list[str], config: Config, out: Path, *, resume: bool = False,
          save_every: int | None = None, verbose: int | None = None,
          root: Path = runs.DEFAULT_ROOT,
          styles: dict[str, list[str]] | None = None) -> TrainResult:
    """Train a model on ``inputs`` into run folder ``out`` (resuming it if ``resume``).

    With ``styles`` ({name: inputs}) the model is conditioned on the style of its text
    (``inputs`` is then ignored).
    """
    stop = StopFlag()
    with _signals_to(stop):
        return _train(inputs, config, Path(out), resume, save_every, verbose, root, stop,
                      styles or None)


def _train(inputs, config, out, resume, save_every, verbose, root, stop, styles) -> TrainResult:
    if config.train.tensorboard:
        try:
            import tensorboard  # noqa: F401 - TF's summaries need it
        except ImportError:
            raise TextgenError('--tensorboard needs TensorBoard: pip install '
                               '"textgen[tensorboard]"') from None
    data = prepare(inputs, config, styles=styles)
    split = data.split
    if verbose != 0:
        print(data.describe(), file=sys.stderr)

    if resume:
        run = runs.open_run(out)
        _check_compatible(run, config, data.vocab, list(data.styles))
        if config != run.config:  # e.g. more epochs: record what the run now aims at
            doc = runs.config_document(config, {k: v for k, v in run.meta.items()
                                                if k not in ("format", "version", "textgen")})
            runs.write_json(out / runs.CONFIG_FILE, doc)
    else:
        if config.train.seed is None:
            config = config.with_seed(random.SystemRandom().randrange(2**31))
        runs.prepare_new_run(out)
        extra = {"corpus": _resolved(inputs if not styles else
                                     [p for paths in styles.values() for p in paths]),
                 "rare_chars": data.report["rare_chars"]}
        if data.styles:  # from --style NAME=CORPUS, or from a JSON field (--style-field)
            extra["styles"] = {name: _resolved(styles[name] if styles else
                                               data.report["styles"][name]["files"])
                               for name in data.styles}
        doc = runs.config_document(config, extra)
        runs.write_json(out / runs.CONFIG_FILE, doc)
        runs.write_text(out / runs.VOCAB_FILE, data.vocab.to_json() + "\n")
        runs.write_json(out / runs.CORPUS_REPORT, data.report)
        runs.write_text(out / runs.PRIME_TEXT,
                        data.vocab.decode(split.train[: runs.PRIME_TEXT_CHARS]))
    runs.point_latest(out, root)

    return _fit(config, data.vocab, split, out, resume=resume, save_every=save_every,
                verbose=verbose, stop=stop, n_styles=len(data.styles))


def _resolved(paths) -> list[str]:
    return [p if p == "-" else str(Path(p).resolve()) for p in map(str, paths)]


# What may change when resuming: when to stop, what to log, and which devices compute.
# Everything else would make the resumed run differ from the run it continues (model shape,
# data, order, optimizer).
RESUMABLE_CHANGES = {("train", key) for key in (
    "epochs", "patience", "max_minutes", "sample_every", "sample_chars", "tensorboard",
    "strategy", "precision")}


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


def _set_determinism(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _fit(config: Config, vocab: Vocab | WordVocab, split, out: Path, *, resume: bool,
         save_every: int | None, verbose: int | None, stop: StopFlag,
         n_styles: int = 0) -> TrainResult:
    import keras

    from .devices import (adapt_to_strategy, cpu_layout, make_strategy, set_precision,
                          set_threads, shard_options)
    from .model import build_model, compile_model, get_named_weights
    from .windows import train_dataset, val_dataset

    seed = config.train.seed
    set_threads()
    _set_determinism(seed)
    set_precision(config.train.precision)
    strategy = make_strategy(config.train.strategy)
    spe = steps_per_epoch(split.n_train_windows, config.window, config.train.steps_per_epoch)
    epochs = config.train.epochs
    layout = cpu_layout(config.window.window, epochs * spe, config.train.max_minutes)
    with strategy.scope():
        model = build_model(config.model, len(vocab), n_styles, **layout)
        compile_model(model, config.train)
        model.optimizer.build(model.trainable_variables)
    adapt_to_strategy(model, strategy)

    if not resume:
        runs.write_weights(out / INIT_WEIGHTS, get_named_weights(model, config.model))
    start = Checkpoint(epoch=0, step=0, best=math.inf, seconds=0.0)
    if resume:
        start = load_last(out, model)
    if start.epoch >= epochs:
        return TrainResult(out, start.epoch, start.step, _finite(start.best))

    has_val = len(split.val) > 0
    val = (val_dataset(split.val, config.window, split.val_starts, split.val_segments)
           if has_val else None)
    shard = shard_options(strategy)
    if val is not None and shard is not None:
        val = val.with_options(shard)
    plateau = _plateau_callback(monitor="val_loss" if has_val else "loss", factor=0.5,
                                patience=2, verbose=0)
    plateau.best, plateau.wait, plateau.cooldown_counter = start.plateau
    saver = RunSaver(out, config, model, start, spe, save_every, has_val, plateau, stop)
    # The saver goes last so an epoch's checkpoint includes the plateau callback's LR change.
    callbacks = [plateau, saver]
    if config.train.tensorboard:
        callbacks.insert(0, keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard")))
    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 2

    # A resumed run may start mid-epoch: finish that epoch with the remaining steps first, then
    # run whole epochs. Both datasets start at the exact global step they are used from.
    phases = []
    in_epoch = start.step - start.epoch * spe
    if in_epoch > 0:
        phases.append((start.epoch, start.epoch + 1, spe - in_epoch, start.step))
        first_full = start.epoch + 1
    else:
        first_full = start.epoch
    if first_full < epochs:
        phases.append((first_full, epochs, spe, first_full * spe))

    if stop.signum:  # signalled while starting up: nothing new to save
        raise Interrupted(stop.signum, out)
    with contextlib.redirect_stdout(sys.stderr):
        for initial_epoch, end_epoch, steps, skip in phases:
            ds = train_dataset(split.train, config.window, seed, epochs, spe, skip=skip,
                               starts=split.train_starts, segments=split.train_segments)
            if shard is not None:
                ds = ds.with_options(shard)
            model.fit(ds, epochs=end_epoch, initial_epoch=initial_epoch, steps_per_epoch=steps,
                      validation_data=val, callbacks=callbacks, verbose=verbose,
                      shuffle=False)
            if model.stop_training or stop.signum or saver.diverged:
                break
    if saver.diverged:
        raise TrainingDiverged(
            f"{out}: loss became {saver.diverged} at step {saver.step + 1} (diverged: NaN, inf or "
            f"over {saver.explode_at:.2f}, 3x a uniform guess); training stopped and the last "
            "good checkpoints are untouched. Lower --lr or keep --clipnorm on"
        )
    if stop.signum and saver.epoch < epochs:  # a signal after the last epoch changes nothing
        raise Interrupted(stop.signum, out)
    return TrainResult(out, saver.epoch, saver.step, _finite(saver.best), saver.history,
                       saver.stopped_because)


def _plateau_callback(**kwargs):
    """ReduceLROnPlateau whose counters survive fit() calls (they are checkpointed instead)."""
    import keras

    class Plateau(keras.callbacks.ReduceLROnPlateau):
        def on_train_begin(self, logs=None):
            pass  # Keras resets best/wait/cooldown here; ours come from the checkpoint

    return Plateau(**kwargs)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass
class Checkpoint:
    epoch: int  # epochs completed
    step: int  # global steps completed
    best: float  # best monitored loss so far (inf if none)
    seconds: float  # training time so far
    plateau: tuple[float, int, int] = (math.inf, 0, 0)  # ReduceLROnPlateau best, wait, cooldown
    metrics: list[np.ndarray] | None = None  # running loss mean of an unfinished epoch
    best_epoch: int = 0  # epoch of the best monitored loss (for --patience)
    smooth: float = math.nan  # exponentially smoothed per-step training loss


def save_last(out: Path, model, ckpt: Checkpoint) -> None:
    """Write last.h5 (keeping the previous one as last.prev.h5)."""
    extra = {f"model/{i}": np.asarray(v) for i, v in enumerate(model.variables)}
    extra.update({f"optimizer/{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    extra.update({f"metrics/{i}": np.asarray(v) for i, v in enumerate(model.metrics_variables)})
    attrs = {"epoch": ckpt.epoch, "step": ckpt.step, "best": ckpt.best, "seconds": ckpt.seconds,
             "plateau_best": ckpt.plateau[0], "plateau_wait": ckpt.plateau[1],
             "plateau_cooldown": ckpt.plateau[2], "best_epoch": ckpt.best_epoch,
             "smooth": ckpt.smooth}
    path = out / runs.LAST_WEIGHTS
    tmp = out / ".last.h5.new"
    runs.write_weights(tmp, {}, extra=extra, attrs=attrs)
    if path.exists():
        os.replace(path, out / PREV_LAST)
    os.replace(tmp, path)


def load_last(out: Path, model) -> Checkpoint:
    """Restore model + optimizer from last.h5, falling back to last.prev.h5 with a warning."""
    errors = []
    for name in (runs.LAST_WEIGHTS, PREV_LAST):
        path = out / name
        if not path.exists():
            continue
        try:
            _, extra, attrs = runs.read_weights(path)
            _assign(model.variables, extra, "model", path)
            _assign(model.optimizer.variables, extra, "optimizer", path)
        except RunError as e:
            errors.append(str(e))
            continue
        if errors:
            print(f"warning: {errors[0]}; resumed from {path.name} instead", file=sys.stderr)
        plateau = (float(attrs["plateau_best"]), int(attrs["plateau_wait"]),
                   int(attrs["plateau_cooldown"]))
        n_metrics = len([k for k in extra if k.startswith("metrics/")])
        metrics = [extra[f"metrics/{i}"] for i in range(n_metrics)]
        return Checkpoint(int(attrs["epoch"]), int(attrs["step"]), float(attrs["best"]),
                          float(attrs["seconds"]), plateau, metrics, int(attrs["best_epoch"]),
                          float(attrs["smooth"]))
    if errors:
        raise RunError(f"{out}: no readable checkpoint to resume from ({'; '.join(errors)})")
    raise RunError(f"{out}: no checkpoint to resume from yet (last.h5 missing)")


def _assign(variables, extra: dict, prefix: str, path: Path) -> None:
    values = [extra.get(f"{prefix}/{i}") for i in range(len(variables))]
    if any(v is None for v in values) or f"{prefix}/{len(variables)}" in extra:
        raise RunError(f"{path}: checkpoint does not match this model ({prefix} variables)")
    for var, value in zip(variables, values):
        if tuple(var.shape) != tuple(value.shape):
            raise RunError(f"{path}: checkpoint shape mismatch for {var.path}")
    for var, value in zip(variables, values):
        var.assign(value)


def _make_saver_class():
    import keras

    from .model import get_named_weights

    class _RunSaver(keras.callbacks.Callback):
        """Keeps the run folder current; see the module docstring."""

        def __init__(self, out, config, model, start, spe, save_every, has_val, plateau, stop):
            super().__init__()
            self.plateau, self.stop = plateau, stop
            # As char-rnn: a loss 3x that of guessing uniformly means training has exploded.
            self.explode_at = 3 * math.log(config_vocab_size(model))
            self.out, self.config, self.spe = out, config, spe
            self.save_every, self.has_val = save_every, has_val
            self.epoch, self.step, self.best = start.epoch, start.step, start.best
            self.best_epoch, self.smooth = start.best_epoch, start.smooth
            self.seconds = start.seconds
            self.stopped_because: str | None = None
            self._loss_seen = (0.0, 0.0)  # the loss metric's (total, count) after the last batch
            self._t0 = time.monotonic()
            self.diverged: str | None = None
            self.history: list[dict] = []
            self._model_ref = model
            # Mid-epoch resume: the epoch's running loss mean continues where it was saved.
            mid_epoch = start.step % spe != 0
            self._pending_metrics = start.metrics if mid_epoch else None
            self._trim_log()

        def on_epoch_begin(self, epoch, logs=None):
            if self._pending_metrics:  # fit() has just reset the metrics; restore them
                for var, value in zip(self._model_ref.metrics_variables, self._pending_metrics):
                    var.assign(value)
            self._pending_metrics = None
            self._loss_seen = self._loss_totals()

        def _loss_totals(self) -> tuple[float, float]:
            total, count = self._model_ref.metrics_variables[:2]  # the loss Mean's state
            return float(np.asarray(total)), float(np.asarray(count))

        def _record_step(self) -> None:
            """This batch's own loss (from the running mean's state) and its smoothed value."""
            total, count = self._loss_totals()
            seen_total, seen_count = self._loss_seen
            self._loss_seen = (total, count)
            if count <= seen_count:
                return
            batch_loss = (total - seen_total) / (count - seen_count)
            self.smooth = (batch_loss if math.isnan(self.smooth)
                           else SMOOTHING * self.smooth + (1 - SMOOTHING) * batch_loss)
            self.step_rows.append({"step": self.step, "epoch": self.epoch + 1,
                                   "loss": round(batch_loss, 5),
                                   "smooth_loss": round(self.smooth, 5)})

        def _elapsed(self) -> float:
            return self.seconds + (time.monotonic() - self._t0)

        def _ckpt(self) -> Checkpoint:
            p = self.plateau
            return Checkpoint(self.epoch, self.step, self.best, self._elapsed(),
                              (float(p.best), int(p.wait), int(p.cooldown_counter)),
                              best_epoch=self.best_epoch, smooth=self.smooth)

        def _save_last(self) -> None:
            write_csv(self.out / STEPS_FILE, STEP_FIELDS, self.step_rows)
            save_last(self.out, self._model_ref, self._ckpt())

        def _trim_log(self) -> None:
            """Drop log rows the checkpoint does not include (that training will be redone)."""
            rows = read_log(self.out)
            kept = [r for r in rows if int(r["epoch"]) <= self.epoch]
            if len(kept) != len(rows):
                write_log(self.out, kept)
            rows = read_csv(self.out / STEPS_FILE)
            self.step_rows = [r for r in rows if int(r["step"]) <= self.step]

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not float(loss) < self.explode_at:  # also catches NaN
                self.diverged = f"{float(loss):.4g}"
                self.model.stop_training = True
                return
            self.step += 1
            self._record_step()
            if self.stop.signum:
                self.model.stop_training = True
            # At an epoch's last batch, on_epoch_end saves right after (with validation and the
            # plateau callback's update), so a step checkpoint there would be an incomplete twin.
            if self.step % self.spe == 0:
                return
            if self.stop.signum or (self.save_every and self.step % self.save_every == 0):
                self._save_last()

        def on_epoch_end(self, epoch, logs=None):
            if self.diverged:
                return
            logs = dict(logs or {})
            if self.stop.signum and self.step != (epoch + 1) * self.spe:
                return  # interrupted mid-epoch: the step checkpoint is already saved
            self.epoch = epoch + 1
            loss, val_loss = logs.get("loss"), logs.get("val_loss")
            monitored = val_loss if self.has_val else loss
            row = {
                "epoch": self.epoch, "step": self.step, "loss": loss, "val_loss": val_loss,
                "bpc": _bpc(loss), "val_bpc": _bpc(val_loss),
                "lr": float(np.asarray(self._model_ref.optimizer.learning_rate)),
                "seconds": round(self._elapsed(), 1),
            }
            self.history.append(row)
            write_log(self.out, read_log(self.out) + [row])
            named = get_named_weights(self._model_ref, self.config.model)
            if monitored is not None and math.isfinite(monitored) and monitored < self.best:
                self.best = float(monitored)
                self.best_epoch = self.epoch
                runs.write_weights(self.out / runs.BEST_WEIGHTS, named,
                                   attrs={"epoch": self.epoch, "step": self.step,
                                          "loss": self.best})
            self._maybe_stop()
            self._save_last()
            tc = self.config.train
            if tc.sample_every and self.epoch % tc.sample_every == 0:
                write_samples(self.out, self.config, named, self.epoch, self.step)
            runs.write_json(self.out / runs.STATE_FILE, {
                "stopped": self.stopped_because,
                "epochs_done": self.epoch, "steps_done": self.step,
                "epochs_planned": self.config.train.epochs, "steps_per_epoch": self.spe,
                "best_loss": _finite(self.best),
                "best_monitor": "val_loss" if self.has_val else "loss",
                "seconds": round(self._elapsed(), 1),
            })

        def _maybe_stop(self) -> None:
            """Early stopping (--patience) and the time budget (--max-minutes)."""
            tc = self.config.train
            if tc.patience and self.epoch - self.best_epoch >= tc.patience:
                self.stopped_because = (f"early stopping: no better loss for {tc.patience} "
                                        f"epochs (best at epoch {self.best_epoch})")
            elif tc.max_minutes and self.epoch:
                per_epoch = self._elapsed() / self.epoch
                if self._elapsed() + per_epoch > tc.max_minutes * 60:
                    self.stopped_because = (f"time budget: {tc.max_minutes:g} minutes would "
                                            "be exceeded by another epoch")
            if self.stopped_because:
                self.model.stop_training = True

    return _RunSaver


def write_samples(out: Path, config: Config, named: dict, epoch: int, step: int) -> None:
    """Samples at a few temperatures (for each style) from the current weights: to stderr and
    samples.txt."""
    from .sample import Network, SampleRequest, generate_texts

    run = runs.open_run(out)
    vocab = run.vocab
    net = Network(config.model, named)
    blocks = [f"===== epoch {epoch}, step {step}"]
    prime = vocab.encode("\n" if "\n" in vocab else vocab.tokens[-1])
    for style, name in enumerate(run.styles or [None]):
        for t in SAMPLE_TEMPERATURES:
            req = SampleRequest(chars=config.train.sample_chars, temperature=t, seed=epoch,
                                style=name)
            text = generate_texts(net, vocab, prime, req, seed=epoch,
                                  style=style if name else None)[0]
            label = f", style {name}" if name else ""
            blocks.append(f"----- temperature {t}{label}\n{text}")
    block = "\n".join(blocks) + "\n"
    print(block, file=sys.stderr, end="")
    path = out / SAMPLES_FILE
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    runs.write_text(path, previous + block)


def RunSaver(*args, **kwargs):  # a factory, so that importing this module needs no Keras
    return _make_saver_class()(*args, **kwargs)


def config_vocab_size(model) -> int:
    return int(model.get_layer("logits").units)


def _bpc(nats):
    return None if nats is None else float(nats) / math.log(2)


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fields})
    runs.write_text(path, buf.getvalue())


def read_log(out: Path) -> list[dict]:
    return read_csv(out / runs.LOG_FILE)


def write_log(out: Path, rows: list[dict]) -> None:
    write_csv(out / runs.LOG_FILE, LOG_FIELDS, rows)


@contextlib.contextmanager
def _signals_to(stop: StopFlag):
    """Turn SIGTERM/SIGINT into 'save at the next batch boundary and stop'."""
    def handler(signum, frame):
        if stop.signum:  # second signal: give up at once
            raise KeyboardInterrupt
        stop.signum = signum
        print(f"\ntextgen: {signal.Signals(signum).name} received; saving at the next step",
              file=sys.stderr)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
