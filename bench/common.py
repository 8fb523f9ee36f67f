"""What the bench scripts share: paths, running textgen in a child process, making a run folder,
and describing a config.

The scripts are run as ``python bench/NAME.py``: Python puts bench/ on sys.path (so ``import
common`` and ``import records`` work) and textgen is imported as installed; no script edits
sys.path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT / "corpora"
CONFIGS = ROOT / "configs"
CORPUS = CORPORA / "tinyshakespeare.txt"

# Peak RSS from VmHWM, not getrusage's ru_maxrss: a forked child inherits its parent's
# ru_maxrss. CLI_CHILD runs the textgen CLI in-process and prints its peak (MB) on stderr.
PEAK_MB = """
def peak_mb():
    line = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    return int(line.split()[1]) / 1024
"""
CLI_CHILD = PEAK_MB + """
import sys
from textgen.cli import cli
try:
    cli(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
print(peak_mb(), file=sys.stderr)
"""


def env(quiet: bool = False, **extra: str) -> dict[str, str]:
    """This process's environment with TensorFlow's C++ logs down (all of them when quiet)."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3" if quiet else "2", **extra)


def textgen(*args: Any, cwd: Path | str, quiet: bool = False) -> str:
    """Run ``python -m textgen ARGS`` in ``cwd`` and return its stdout; a failure raises
    CalledProcessError. Its stderr (progress, warnings) goes to ours, or nowhere when quiet."""
    out = subprocess.run([sys.executable, "-m", "textgen", *map(str, args)], cwd=cwd,
                         env=env(quiet), check=True, stdout=subprocess.PIPE, text=True,
                         stderr=subprocess.DEVNULL if quiet else None)
    return out.stdout


def make_run(tmp: Path, steps: int = 20, seed: int = 0, corpus: Path = CORPUS,
             name: str = "run") -> Path:
    """A default-config (2 x LSTM 128) run folder trained for ``steps`` steps: enough for
    timing the sampler or the page, whose speed does not depend on the weights."""
    out = tmp / name
    done = subprocess.run([sys.executable, "-m", "textgen", "train", str(corpus), "--out",
                           str(out), "--epochs", "1", "--steps-per-epoch", str(steps), "--seed",
                           str(seed), "--sample-every", "0"], cwd=tmp, env=env(),
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"training the benchmark run failed:\n{done.stderr[-3000:]}")
    return out


def load_config(path: Path):
    """The config file over the defaults, as ``textgen train --config PATH`` resolves it."""
    from textgen.config import Config, load_toml, merge

    return merge(Config(), load_toml(path), path.name)


def describe(cfg) -> str:
    """One line naming what a config trains, for records and tables: "2 x LSTM 192, dropout
    0.1, adam lr 0.006, batch 64 x 100"."""
    m, w, t = cfg.model, cfg.window, cfg.train
    return (f"{m.layers} x {m.cell.upper()} {m.units}, dropout {m.dropout:g}, "
            f"{t.optimizer} lr {t.lr:g}, batch {w.batch_size} x {w.window}")
