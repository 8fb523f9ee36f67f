"""Is TensorFlow's speed bimodal across process starts? Train the default config in N fresh
processes and report each one's steady training speed.

    python bench/fast_mode.py                # 10 starts, about 10 minutes
    python bench/fast_mode.py --starts 4 --steps 100

Each start is a fresh ``textgen train corpora/tinyshakespeare.txt`` (default config: 2 x LSTM
128, batch 128 x 40, textgen's CPU layout) of epochs of ``--steps`` steps with validation off,
enough of them to plan the 500 steps that get the CPU layout's chains; the second epoch's time
(log.csv's ``seconds``, minus the first epoch's, so graph building is left out) gives the
targets/s of that process. Prints every start and the sorted list.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from textgen.devices import CHAINS_MIN_STEPS  # noqa: E402 (imports no framework)


def one_start(tmp: Path, i: int, steps: int, env: dict) -> float:
    out = tmp / f"run-{i}"
    epochs = max(2, -(-CHAINS_MIN_STEPS // steps))
    subprocess.run([sys.executable, "-m", "textgen", "train",
                    ROOT / "corpora" / "tinyshakespeare.txt", "--out", out, "--epochs", str(epochs),
                    "--steps-per-epoch", str(steps), "--val-split", "0", "--sample-every", "0",
                    "--seed", str(i)], cwd=tmp, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with (out / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    seconds = float(rows[1]["seconds"]) - float(rows[0]["seconds"])
    return steps * 128 * 40 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    speeds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.starts):
            speeds.append(one_start(Path(tmp), i, args.steps, env))
            print(f"start {i + 1}: {speeds[-1]:,.0f} targets/s", file=sys.stderr, flush=True)
    print(f"{args.starts} process starts, default config, {args.steps} timed steps each: "
          f"median {statistics.median(speeds):,.0f} targets/s, "
          f"min {min(speeds):,.0f}, max {max(speeds):,.0f}")
    print("sorted: " + ", ".join(f"{s:,.0f}" for s in sorted(speeds)))


if __name__ == "__main__":
    main()
