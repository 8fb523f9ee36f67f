"""The resumable checkpoint: every model and optimizer variable plus the training position.

``last.h5`` holds all model variables (weights and the Dropout RNG state), all optimizer
variables (iteration count, accumulators, learning rate), the running loss mean of an unfinished
epoch, and the position (epochs and steps done, best loss, plateau and patience counters,
seconds trained). Since the data order is a pure function of (seed, epoch) (windows.py), that is
everything needed to continue bit-identically.

The previous checkpoint is kept as ``last.prev.h5`` and used when ``last.h5`` cannot be read.
Rotation never leaves a moment without ``last.h5``: the new file is written in full under a
temporary name, the current ``last.h5`` is hard-linked (or copied) to ``last.prev.h5``, and only
then is the new file renamed over ``last.h5``.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import runs
from .errors import RunError

# Tests kill training inside a save with TEXTGEN_FAULT="SIGNAL@PHASE@STEP" (runs.fault): PHASE
# start, written, rotated or saved of the save of global step STEP.
FAULT_ENV = runs.FAULT_ENV
NEW_LAST = ".last.h5.new"  # the next last.h5, complete on disk before it replaces the current
NEW_PREV = ".last.prev.h5.new"


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


START = Checkpoint(epoch=0, step=0, best=math.inf, seconds=0.0)


def save_last(out: Path, model, ckpt: Checkpoint) -> None:
    """Write last.h5, keeping the previous one as last.prev.h5 (see the module docstring)."""
    extra = {f"model/{i}": np.asarray(v) for i, v in enumerate(model.variables)}
    extra.update({f"optimizer/{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    extra.update({f"metrics/{i}": np.asarray(v) for i, v in enumerate(model.metrics_variables)})
    attrs = {"epoch": ckpt.epoch, "step": ckpt.step, "best": ckpt.best, "seconds": ckpt.seconds,
             "plateau_best": ckpt.plateau[0], "plateau_wait": ckpt.plateau[1],
             "plateau_cooldown": ckpt.plateau[2], "best_epoch": ckpt.best_epoch,
             "smooth": ckpt.smooth}
    new = out / NEW_LAST
    try:
        runs.fault("start", ckpt.step)
        runs.write_weights(new, {}, extra=extra, attrs=attrs)
        runs.fault("written", ckpt.step)
        try:
            _rotate(out, new, ckpt.step)
        except OSError as e:
            raise runs.write_error(out / runs.LAST_WEIGHTS, e) from None
    except BaseException:  # a full disk, or a second signal (trainer.py): no temp file stays
        new.unlink(missing_ok=True)
        (out / NEW_PREV).unlink(missing_ok=True)
        raise
    runs.fault("saved", ckpt.step)


def _rotate(out: Path, new: Path, step: int) -> None:
    path, prev, prev_new = out / runs.LAST_WEIGHTS, out / runs.PREV_LAST, out / NEW_PREV
    if path.exists():
        prev_new.unlink(missing_ok=True)
        try:
            os.link(path, prev_new)
        except OSError:  # a file system without hard links
            shutil.copyfile(path, prev_new)
        os.replace(prev_new, prev)
    runs.fault("rotated", step)
    os.replace(new, path)
    runs.fsync_dir(out)


def load_last(out: Path, model) -> Checkpoint:
    """Restore model + optimizer from last.h5, falling back to last.prev.h5 with a warning."""
    errors = []
    for name in (runs.LAST_WEIGHTS, runs.PREV_LAST):
        path = out / name
        if not path.exists():
            continue
        try:
            ckpt = _read(path, model)
        except RunError as e:
            errors.append(str(e))
            continue
        if errors:
            print(f"warning: {errors[0]}; resumed from {path.name} instead", file=sys.stderr)
        return ckpt
    if errors:
        raise RunError(f"{out}: no readable checkpoint to resume from ({'; '.join(errors)})")
    return START  # stopped before the first checkpoint: start from the beginning


def saved_position(out: Path) -> tuple[int, int] | None:
    """(epochs, steps) done at the newest checkpoint whose position can be read, from its
    attributes alone (no model needed); None when there is none."""
    import h5py

    for name in (runs.LAST_WEIGHTS, runs.PREV_LAST):
        try:
            if not (out / name).is_file():  # missing, or a FIFO that would block HDF5's open
                continue
            with h5py.File(out / name, "r") as f:
                return int(f.attrs["epoch"]), int(f.attrs["step"])
        except (OSError, KeyError, TypeError, ValueError, OverflowError):
            continue
    return None


def has_checkpoint(out: Path) -> bool:
    return (out / runs.LAST_WEIGHTS).exists() or (out / runs.PREV_LAST).exists()


def _read(path: Path, model) -> Checkpoint:
    expected = {f"_extra/{prefix}/{i}": tuple(v.shape)
                for prefix, variables in (("model", model.variables),
                                          ("optimizer", model.optimizer.variables),
                                          ("metrics", model.metrics_variables))
                for i, v in enumerate(variables)}
    _, extra, attrs = runs.read_weights(path, expected)
    try:
        plateau = (float(attrs["plateau_best"]), int(attrs["plateau_wait"]),
                   int(attrs["plateau_cooldown"]))
        n_metrics = len([k for k in extra if k.startswith("metrics/")])
        metrics = [extra[f"metrics/{i}"] for i in range(n_metrics)]
        ckpt = Checkpoint(int(attrs["epoch"]), int(attrs["step"]), float(attrs["best"]),
                          float(attrs["seconds"]), plateau, metrics, int(attrs["best_epoch"]),
                          float(attrs["smooth"]))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise RunError(f"{path}: damaged checkpoint (attribute {e} missing or invalid)") from None
    if ckpt.epoch < 0 or ckpt.step < 0 or ckpt.best_epoch < 0:
        raise RunError(f"{path}: damaged checkpoint (negative position)")
    _assign(model.variables, extra, "model", path)
    _assign(model.optimizer.variables, extra, "optimizer", path)
    return ckpt


def _assign(variables, extra: dict, prefix: str, path: Path) -> None:
    values = [extra.get(f"{prefix}/{i}") for i in range(len(variables))]
    if any(v is None for v in values) or f"{prefix}/{len(variables)}" in extra:
        raise RunError(f"{path}: checkpoint does not match this model ({prefix} variables)")
    for var, value in zip(variables, values):
        if tuple(var.shape) != tuple(value.shape):
            raise RunError(f"{path}: checkpoint shape mismatch for {var.path}")
    for var, value in zip(variables, values):
        var.assign(value)
