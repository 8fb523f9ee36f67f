"""Small Keras callbacks that keep a run folder current during ``fit``, one job each.

They share one ``Progress`` (epochs and steps done, best loss, time trained), restored from the
checkpoint on resume; trainer.py builds them in this order, which is the order their hooks run in:

=====================  ===================================================================
``DivergenceStop``     a NaN, infinite or exploding batch loss ends training at once
``StepCounter``        counts steps; at an epoch end, whether the whole epoch was done
``SignalStop``         SIGTERM/SIGINT/SIGHUP: stop at the next batch boundary
``EpochMetrics``       a resumed run's unfinished epoch continues its running loss mean
``StepLoss``           each batch's loss and its smoothing, for steps.csv
``Plateau``            halves the learning rate on a plateau (counters survive a resume)
``EpochLog``           a row of log.csv per epoch
``BestWeights``        weights.h5 whenever the monitored loss improves
``PatienceStop``       early stopping (counters survive a resume)
``TimeBudget``         stops when another epoch would not fit in the time budget
``Checkpointer``       last.h5 every ``save_every`` steps, on a signal, and every epoch
``TrainingSamples``    samples to stderr and samples.txt every few epochs
``StateFile``          state.json every epoch
=====================  ===================================================================

Keras calls ``on_epoch_end`` also for an epoch cut short by a signal; the epoch-end callbacks
then do nothing (the step checkpoint saved at the signal is the newer state).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from . import runs
from .checkpoint import Checkpoint, save_last
from .config import ModelConfig
from .errors import TrainingDiverged
from .model import get_named_weights

SMOOTHING = 0.99  # smooth_loss = 0.99 * smooth_loss + 0.01 * batch loss
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0)


@dataclass
class Progress:
    """Where training stands; every callback reads it, ``StepCounter`` advances it."""

    steps_per_epoch: int
    epoch: int  # epochs completed
    step: int  # global steps completed
    best: float  # best monitored loss so far (inf if none)
    best_epoch: int  # the epoch that reached it
    seconds_before: float  # training time of earlier processes (resumed runs)
    started: float = field(default_factory=time.monotonic)
    epoch_complete: bool = False  # set at each epoch end: was the whole epoch trained?
    stopped: str | None = None  # why training ends early, when a callback stops it
    history: list[dict] = field(default_factory=list)  # log.csv rows of this process

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, steps_per_epoch: int) -> "Progress":
        return cls(steps_per_epoch, ckpt.epoch, ckpt.step, ckpt.best, ckpt.best_epoch,
                   ckpt.seconds)

    def elapsed(self) -> float:
        return self.seconds_before + (time.monotonic() - self.started)


class _RunCallback(keras.callbacks.Callback):
    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress


class DivergenceStop(keras.callbacks.TerminateOnNaN):
    """Raises ``TrainingDiverged`` on a NaN or infinite loss, or one over ``explode_at`` (as
    char-rnn: 3x the loss of a uniform guess); nothing of the diverged step is saved."""

    def __init__(self, progress: Progress, vocab_size: int, out: Path):
        super().__init__(raise_error=True)
        self.progress, self.out = progress, out
        self.explode_at = 3 * math.log(vocab_size)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not float(loss) < self.explode_at:  # also catches NaN
            raise TrainingDiverged(
                f"{self.out}: loss became {float(loss):.4g} at step {self.progress.step + 1} "
                f"(diverged: NaN, inf or over {self.explode_at:.2f}, 3x a uniform guess); "
                "training stopped and the last good checkpoints are untouched; lower the "
                "learning rate or keep gradient clipping on",
                cli_hint="e.g. --lr 0.002 --clipnorm 5")


class StepCounter(_RunCallback):
    def on_train_batch_end(self, batch, logs=None):
        self.progress.step += 1

    def on_epoch_end(self, epoch, logs=None):
        p = self.progress
        p.epoch_complete = p.step == (epoch + 1) * p.steps_per_epoch
        if p.epoch_complete:
            p.epoch = epoch + 1


class SignalStop(keras.callbacks.Callback):
    """Ends ``fit`` at the batch boundary after SIGTERM/SIGINT/SIGHUP (``stop.signum`` set)."""

    def __init__(self, stop):
        super().__init__()
        self.stop = stop

    def on_train_batch_end(self, batch, logs=None):
        if self.stop.signum:
            self.model.stop_training = True


class EpochMetrics(keras.callbacks.Callback):
    """A run resumed mid-epoch: ``fit`` resets the metrics at the epoch start; put back the
    running loss mean the checkpoint saved, so the epoch's logged loss is the uninterrupted
    run's."""

    def __init__(self, saved: list[np.ndarray] | None):
        super().__init__()
        self.saved = saved

    def on_epoch_begin(self, epoch, logs=None):
        if self.saved:
            for var, value in zip(self.model.metrics_variables, self.saved):
                var.assign(value)
        self.saved = None


class StepLoss(_RunCallback):
    """Each batch's own loss (from the running mean's state) and its exponential smoothing;
    ``save()`` writes them to steps.csv (the checkpointer calls it before each checkpoint)."""

    def __init__(self, progress: Progress, out: Path, smooth: float):
        super().__init__(progress)
        self.path, self.smooth = out / runs.STEPS_FILE, smooth
        self.rows, _ = runs.read_log_upto(self.path, "step", progress.step)
        self._seen = (0.0, 0.0)  # the loss mean's (total, count) after the last batch

    def _totals(self) -> tuple[float, float]:
        total, count = self.model.metrics_variables[:2]  # the loss Mean's state
        return float(np.asarray(total)), float(np.asarray(count))

    def on_epoch_begin(self, epoch, logs=None):
        self._seen = self._totals()

    def on_train_batch_end(self, batch, logs=None):
        total, count = self._totals()
        seen_total, seen_count = self._seen
        self._seen = (total, count)
        if count <= seen_count:
            return
        loss = (total - seen_total) / (count - seen_count)
        self.smooth = (loss if math.isnan(self.smooth)
                       else SMOOTHING * self.smooth + (1 - SMOOTHING) * loss)
        self.rows.append({"step": self.progress.step, "epoch": self.progress.epoch + 1,
                          "loss": round(loss, 5), "smooth_loss": round(self.smooth, 5)})

    def save(self) -> None:
        runs.write_csv(self.path, runs.STEP_FIELDS, self.rows)


class Plateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters survive ``fit`` calls and resumes (they are
    checkpointed)."""

    def __init__(self, state: tuple[float, int, int], **kwargs):
        super().__init__(**kwargs)
        self.best, self.wait, self.cooldown_counter = state

    def on_train_begin(self, logs=None):
        pass  # Keras resets best/wait/cooldown here; ours come from the checkpoint

    def state(self) -> tuple[float, int, int]:
        return float(self.best), int(self.wait), int(self.cooldown_counter)


def _bpc(nats):
    return None if nats is None else float(nats) / math.log(2)


class EpochLog(_RunCallback):
    """Appends a row to log.csv at each epoch end (rows past the checkpoint, from a run that
    was interrupted, are dropped first: that training is redone)."""

    def __init__(self, progress: Progress, out: Path):
        super().__init__(progress)
        self.path = out / runs.LOG_FILE
        self.rows, dropped = runs.read_log_upto(self.path, "epoch", progress.epoch)
        if dropped:
            runs.write_csv(self.path, runs.LOG_FIELDS, self.rows)

    def on_epoch_end(self, epoch, logs=None):
        p = self.progress
        if not p.epoch_complete:
            return
        logs = logs or {}
        loss, val_loss = logs.get("loss"), logs.get("val_loss")
        row = {"epoch": p.epoch, "step": p.step, "loss": loss, "val_loss": val_loss,
               "bpc": _bpc(loss), "val_bpc": _bpc(val_loss),
               "lr": float(np.asarray(self.model.optimizer.learning_rate)),
               "seconds": round(p.elapsed(), 1)}
        p.history.append(row)
        self.rows.append(row)
        runs.write_csv(self.path, runs.LOG_FIELDS, self.rows)


class BestWeights(_RunCallback):
    """weights.h5 (textgen's weight format) whenever the monitored loss improves."""

    def __init__(self, progress: Progress, out: Path, model_cfg: ModelConfig, monitor: str,
                 identity: dict[str, str]):
        super().__init__(progress)
        self.path, self.model_cfg, self.monitor = out / runs.BEST_WEIGHTS, model_cfg, monitor
        self.identity = identity  # the vocabulary and styles, recorded with the weights

    def on_epoch_end(self, epoch, logs=None):
        p = self.progress
        value = (logs or {}).get(self.monitor)
        if not p.epoch_complete or value is None or not float(value) < p.best:
            return
        p.best, p.best_epoch = float(value), p.epoch
        runs.write_weights(self.path, get_named_weights(self.model, self.model_cfg),
                           attrs={"epoch": p.epoch, "step": p.step, "loss": p.best,
                                  **self.identity})


class PatienceStop(keras.callbacks.EarlyStopping):
    """EarlyStopping whose best loss and wait survive ``fit`` calls and resumes."""

    def __init__(self, progress: Progress, monitor: str, patience: int):
        super().__init__(monitor=monitor, patience=patience, verbose=0)
        self.progress = progress
        self.best = progress.best if math.isfinite(progress.best) else None
        self.wait = progress.epoch - progress.best_epoch

    def on_train_begin(self, logs=None):
        pass  # Keras resets best and wait here; ours come from the checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if not self.progress.epoch_complete:
            return
        super().on_epoch_end(epoch, logs)
        if self.model.stop_training and self.stopped_epoch == epoch:
            p = self.progress
            p.stopped = (f"early stopping: no better loss for {self.patience} epochs "
                         f"(best at epoch {p.best_epoch})")


class TimeBudget(_RunCallback):
    """Stops at the last epoch end before another epoch would exceed ``minutes``."""

    def __init__(self, progress: Progress, minutes: float):
        super().__init__(progress)
        self.minutes = minutes

    def on_epoch_end(self, epoch, logs=None):
        p = self.progress
        if not p.epoch_complete or p.stopped or not p.epoch:
            return
        elapsed = p.elapsed()
        if elapsed + elapsed / p.epoch > self.minutes * 60:
            p.stopped = f"time budget: {self.minutes:g} minutes would be exceeded by another epoch"
            self.model.stop_training = True


class Checkpointer(_RunCallback):
    """last.h5 every ``save_every`` steps, at the batch a signal arrived, and every epoch end
    (after the epoch's validation and learning-rate change). ``before_save`` runs first (it
    writes steps.csv), so a log never lags its checkpoint."""

    def __init__(self, progress: Progress, out: Path, save_every: int | None, stop,
                 plateau: Plateau, step_loss: StepLoss):
        super().__init__(progress)
        self.out, self.save_every, self.stop = out, save_every, stop
        self.plateau, self.step_loss = plateau, step_loss

    def save(self) -> None:
        p = self.progress
        self.step_loss.save()
        save_last(self.out, self.model, Checkpoint(
            p.epoch, p.step, p.best, p.elapsed(), self.plateau.state(),
            best_epoch=p.best_epoch, smooth=self.step_loss.smooth))

    def on_train_batch_end(self, batch, logs=None):
        step = self.progress.step
        # At an epoch's last batch, on_epoch_end saves right after (with validation and the
        # plateau's update), so a step checkpoint there would be an incomplete twin.
        if step % self.progress.steps_per_epoch == 0:
            return
        if self.stop.signum or (self.save_every and step % self.save_every == 0):
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        if self.progress.epoch_complete:
            self.save()


class TrainingSamples(_RunCallback):
    """Every ``every`` epochs, samples at a few temperatures (for each style) from the current
    weights, started from ``textgen sample``'s default prime: to stderr and samples.txt."""

    def __init__(self, progress: Progress, out: Path, model_cfg: ModelConfig, vocab,
                 styles: list[str], every: int, chars: int,
                 echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr, end="")):
        super().__init__(progress)
        self.path, self.model_cfg, self.vocab, self.styles = (out / runs.SAMPLES_FILE,
                                                              model_cfg, vocab, styles)
        self.every, self.chars, self.echo = every, chars, echo

    def on_epoch_end(self, epoch, logs=None):
        p = self.progress
        if not p.epoch_complete or p.epoch % self.every:
            return
        block = training_samples(self.model_cfg, get_named_weights(self.model, self.model_cfg),
                                 self.vocab, self.styles, self.chars, p.epoch, p.step)
        self.echo(block)
        runs.append_text(self.path, block)


def training_samples(model_cfg: ModelConfig, named: dict, vocab, styles: list[str], chars: int,
                     epoch: int, step: int) -> str:
    from .sample import Network, default_prime, generate_texts
    from .sampling import SampleRequest

    net = Network(model_cfg, named)
    prime = vocab.encode(default_prime(vocab))
    blocks = [f"===== epoch {epoch}, step {step}"]
    for style, name in enumerate(styles or [None]):
        for t in SAMPLE_TEMPERATURES:
            req = SampleRequest(chars=chars, temperature=t, seed=epoch, style=name)
            text = generate_texts(net, vocab, prime, req, seed=epoch,
                                  style=style if name else None)[0]
            label = f", style {name}" if name else ""
            blocks.append(f"----- temperature {t}{label}\n{text}")
    return "\n".join(blocks) + "\n"


class StateFile(_RunCallback):
    """state.json at every epoch end: progress, best loss, why training stopped."""

    def __init__(self, progress: Progress, out: Path, epochs_planned: int, monitor: str):
        super().__init__(progress)
        self.path, self.epochs_planned, self.monitor = out / runs.STATE_FILE, epochs_planned, monitor

    def on_epoch_end(self, epoch, logs=None):
        if self.progress.epoch_complete:
            self.write()

    def write(self) -> None:
        p = self.progress
        runs.write_json(self.path, {
            "stopped": p.stopped, "epochs_done": p.epoch, "steps_done": p.step,
            "epochs_planned": self.epochs_planned, "steps_per_epoch": p.steps_per_epoch,
            "best_loss": p.best if math.isfinite(p.best) else None,
            "best_monitor": self.monitor, "seconds": round(p.elapsed(), 1)})
