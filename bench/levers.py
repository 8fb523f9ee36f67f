"""Training recipes at equal steps: configs/best-cpu.toml on tinyshakespeare with one change
each, the same seed and the same number of steps, two runs at a time.

    python bench/levers.py                    # every lever, 12 epochs of 100 steps (~60 min)
    python bench/levers.py --only none lr-0.006 --epochs 3
    python bench/levers.py --train-flags "--units 256 --dropout 0.25"   # the README's table

A recipe that does not change the cost of a step (the learning rate, its schedule, a weight
average) is compared fairly by the loss it reaches in the same steps, whatever else the machine
runs, so two runs share the 2 cores. Each run is ``textgen train`` in a process of its own with
the lever applied inside it (an optimizer or a callback swapped in; textgen itself has none of
these options); the table gives each run's best validation loss in log.csv (windows scored from
a zero state, so higher than ``textgen evaluate``'s figure). Levers that change the cost of a
step (width, batch) belong in bench/quality.py, at equal wall-clock.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (textgen train flags, patch); best-cpu is Adam lr 0.006 now, so "none" pins 0.003
LEVERS = {
    "none": (["--lr", "0.003"], {}),
    "lr-0.006": (["--lr", "0.006"], {}),
    "lr-0.01": (["--lr", "0.01"], {}),
    "ema-0.99": (["--lr", "0.003"], {"ema": 0.99}),
    "cosine-per-step": (["--lr", "0.003"], {"decay": "cosine"}),
    "linear-per-step": (["--lr", "0.003"], {"decay": "linear"}),
    "lr-0.006-cosine-per-epoch": (["--lr", "0.006"], {"decay": "cosine-epoch"}),
    "lr-0.01-cosine-per-epoch": (["--lr", "0.01"], {"decay": "cosine-epoch"}),
}
FINAL = 0.05  # every decay ends at lr / 20


def child(patch: dict, argv: list[str]) -> None:
    """Run ``textgen`` with ``argv``, the lever ``patch`` applied (in this process)."""
    import math

    import keras

    import textgen.callbacks as cb
    import textgen.model as tm
    import textgen.train as tt

    def compile_model(model, cfg):
        total = patch.get("steps", 0)
        lr = {"cosine": lambda: keras.optimizers.schedules.CosineDecay(cfg.lr, total, FINAL),
              "linear": lambda: keras.optimizers.schedules.PolynomialDecay(
                  cfg.lr, total, cfg.lr * FINAL)}.get(patch.get("decay"), lambda: cfg.lr)()
        ema = {"use_ema": True, "ema_momentum": patch["ema"]} if "ema" in patch else {}
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, clipnorm=cfg.clipnorm,
                                                      **ema),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class CosineByEpoch(keras.callbacks.Callback):
        def __init__(self, lr, epochs):
            super().__init__()
            self.lr, self.epochs = lr, epochs

        def on_epoch_begin(self, epoch, logs=None):
            done = (epoch + 1) / self.epochs
            self.model.optimizer.learning_rate = self.lr * (
                FINAL + (1 - FINAL) * (1 + math.cos(math.pi * done)) / 2)

    build = tt._callbacks

    def callbacks(config, *args, **kwargs):
        found, progress = build(config, *args, **kwargs)
        if "ema" in patch:  # validate (and keep the best of) the averaged weights
            found.insert(0, keras.callbacks.SwapEMAWeights())
        if patch.get("decay") == "cosine-epoch":
            found.insert(0, CosineByEpoch(config.train.lr, config.train.epochs))
        return found, progress

    tm.compile_model = compile_model
    tt._callbacks = callbacks
    if patch.get("decay"):  # the decay alone sets the rate: no plateau halvings
        cb.Plateau.on_epoch_end = lambda self, epoch, logs=None: None
    from textgen.cli import main

    sys.argv = ["textgen", *argv]
    main()


def start(name: str, tmp: Path, epochs: int, steps: int,
          extra: list[str]) -> tuple[subprocess.Popen, Path]:
    flags, patch = LEVERS[name]
    out = tmp / name
    argv = ["train", str(ROOT / "corpora" / "tinyshakespeare.txt"), "--config",
            str(ROOT / "configs" / "best-cpu.toml"), "--epochs", str(epochs),
            "--steps-per-epoch", str(steps), "--seed", "0", "--sample-every", "0",
            "--out", str(out), *extra, *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    code = json.dumps(dict(patch, steps=epochs * steps))
    return subprocess.Popen([sys.executable, __file__, "--child", code, *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        return child(json.loads(sys.argv[2]), sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--train-flags", default="",
                        help="textgen train flags for every run, e.g. \"--units 256\"")
    args = parser.parse_args()
    extra = shlex.split(args.train_flags)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(0, len(args.only), 2):
            runs = [start(name, Path(tmp), args.epochs, args.steps, extra)
                    for name in args.only[i:i + 2]]
            for name, (proc, out) in zip(args.only[i:i + 2], runs):
                if proc.wait():
                    sys.exit(f"levers.py: {name} failed (exit {proc.returncode})")
                with (out / "log.csv").open() as f:
                    losses = [float(row["val_loss"]) for row in csv.DictReader(f)]
                rows.append((name, min(losses)))
                print(f"done {name}: {min(losses):.4f}", file=sys.stderr, flush=True)
    config = " ".join(["best-cpu.toml", *extra])
    print(f"{config} on tinyshakespeare, {args.epochs} x {args.steps} steps, seed 0\n")
    print("| lever | best val loss (log.csv) |\n|---|---|")
    for name, loss in rows:
        print(f"| {name} | {loss:.4f} |")


if __name__ == "__main__":
    main()
