"""Training speed on a GPU: every Keras backend that sees one, side by side in one run.

    python bench/gpu.py             # per backend: its start-up, then about --seconds 90 of rounds
    python bench/gpu.py --quick

For each backend installed and seeing a GPU (PyTorch, JAX, TensorFlow), in a process of its
own (a process runs one backend; JAX is kept from taking most of the GPU's memory up front):
* what `textgen info --devices --backend B` says (the device, and whether the LSTM layers
  qualify for the fused cuDNN kernel);
* targets/s (characters whose loss is trained per second) of the default config,
  configs/best-cpu.toml and configs/gpu.toml, each in float32 and in mixed_bfloat16, built as
  `textgen train --backend B --precision P` builds them on a GPU and fed by textgen's own input
  pipeline; beside each, the step on a batch already prepared (a starved input pipeline shows as
  a real step slower than the model step);
* the default config with the fused kernel switched off (Keras's ``use_cudnn=False``): what the
  fused kernel is worth, and proof that it runs.
On JAX the mixed_bfloat16 rows run the LSTM as a loop, as `textgen train` does there (JAX's
cuDNN RNN is float32 only: devices.fused_kernel_options).
Each process measures its models in interleaved rounds (A B C A B C ...) after an untimed
first round (tracing, compiling, cuDNN's plans), for ``--seconds`` at most (a whole round
always); the table gives the median round and the range.
Prints a Markdown table; with --json FILE also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
CORPUS = ROOT / "corpora" / "tinyshakespeare.txt"
BACKENDS = ("torch", "jax", "tensorflow")
# Each process: JAX takes memory as it needs it (by default it takes 75% of the GPU at start).
CHILD_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
             "TF_CPP_MIN_LOG_LEVEL": "2"}


def configs() -> dict:
    from train_speed import bundled_config  # bench/train_speed.py, beside this script

    from textgen.config import Config

    return {"default": Config(), **{stem: bundled_config(stem) for stem in ("best-cpu", "gpu")}}


def worker(backend: str, rounds: int, steps: int, seconds: float, cpu: bool = False) -> None:
    """``--worker BACKEND``: prints one JSON line: the device and the rows. ``cpu``: measure
    on the CPU when no GPU is visible (to try this script; mixed precision is slow there).
    Stops after ``rounds`` timed rounds, or after the first round that ends ``seconds`` after
    the timed rounds began."""
    from textgen.devices import describe_devices, gpus, load_keras, select_backend

    select_backend(backend)
    keras = load_keras()
    seen = gpus() or (["cpu"] if cpu else [])
    if not seen:
        print(json.dumps({"backend": backend, "skipped": "no GPU visible"}))
        return
    from train_speed import config_label, textgen_candidate

    from textgen.config import Config
    from textgen.data import prepare

    data = prepare([str(CORPUS)], Config(), use_cache=False)
    cands = []
    for name, cfg in configs().items():
        for precision in ("float32", "mixed_bfloat16"):
            cands.append(textgen_candidate(f"{config_label(name, cfg)}, {precision}", cfg,
                                           data, precision=precision))
    off = textgen_candidate(f"{config_label('default', Config())}, float32, use_cudnn=False",
                            Config(), data, fused=False)
    cands.append(off)
    start = None
    for r in range(rounds + 1):
        for c in cands:
            # the loop without the fused kernel is many times slower: fewer steps
            c.round(max(steps // 5, 2) if c is off else steps)
            if r == 0:  # untimed: tracing, compiling, cuDNN's plans
                c.real.clear()
                c.compute.clear()
        start = start or time.perf_counter()  # the timed rounds begin after round 0
        if r and time.perf_counter() - start > seconds:  # at least one timed round
            break
    rows = [c.row(steps) for c in cands]
    print(json.dumps({"backend": backend, "keras": keras.__version__,
                      "framework": _framework_version(backend), "devices": [str(d) for d in seen],
                      "info": describe_devices("lstm"), "rows": rows}, default=str))


def _framework_version(backend: str) -> str:
    module = __import__(backend)
    return getattr(module, "__version__", "?")


def installed(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(backend) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                        help="default: every one installed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seconds", type=float, default=90,
                        help="timed rounds per backend end after about this long (default 90)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds, steps = (2, 10) if args.quick else (5, 30)
    rounds, steps = args.rounds or rounds, args.steps or steps
    if args.worker:
        worker(args.worker, rounds, steps, args.seconds, args.cpu)
        return
    results = []
    for backend in args.backends or [b for b in BACKENDS if installed(b)]:
        env = dict(os.environ, **CHILD_ENV)
        proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--rounds",
                               str(rounds), "--steps", str(steps), "--seconds",
                               str(args.seconds), *["--cpu"] * args.cpu],
                              env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            results.append({"backend": backend, "failed": proc.returncode,
                            "stderr": proc.stderr[-3000:]})
            print(f"{backend}: worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}",
                  file=sys.stderr)
            continue
        results.append(json.loads(lines[-1]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print_table(results, steps)


def print_table(results: list[dict], steps: int) -> None:
    for res in results:
        if "rows" not in res:
            print(f"- {res['backend']}: {res.get('skipped') or 'failed'}")
            continue
        print(f"- {res['backend']} {res['framework']}, Keras {res['keras']}, "
              f"{', '.join(res['devices'])}: cuDNN kernel: {res['info'].get('cudnn_kernel')}")
    print()
    print("| model, precision | backend | targets/s (median) | range | ms/step | model-only "
          "ms/step | pipeline ms/batch |")
    print("|---|---|---:|---|---:|---:|---:|")
    for res in results:
        for row in res.get("rows", []):
            split = row["split"]
            model = split["model"]
            print(f"| {row['name']} | {res['backend']} | {row['targets_s']:,.0f} | "
                  f"{row['low']:,.0f}-{row['high']:,.0f} | {split['real'] * 1e3:.1f} | "
                  f"{model * 1e3 if model else float('nan'):.1f} | "
                  f"{split['pipeline'] * 1e3:.2f} |")
    print(f"\n{steps} steps a round; targets/s = batch x window / median real step time.")


if __name__ == "__main__":
    main()
