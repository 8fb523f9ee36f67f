"""Training speed and memory against the machine's own roofline, side by side in one run.

    python bench/train_speed.py            # about 7 minutes on 2 cores
    python bench/train_speed.py --quick

Measures, in one run:
* the roofline: NumPy float32 2048^3 matrix product, GFLOP/s (best of 10);
* targets/s (characters whose loss is trained per second) of the default config, of
  configs/best-cpu.toml and of the seed-style model (bench/speed.py describes it), each with the
  implied GFLOP/s (training ~ 3x the forward pass's matrix products) as a share of the roofline;
  the seed-style model both on textgen's pipeline and as the seed code runs it (NumPy one-hot
  arrays, ``model.fit(x, y)``, TensorFlow's threads), so the baseline is not a slowed one;
* the default config on each Keras backend (TensorFlow, JAX, PyTorch), each in a process of its
  own (a process runs one backend), measured in interleaved rounds like the rest, with the
  settings `textgen train --backend B` uses on this machine (the workers not measuring are
  stopped with SIGSTOP: idle framework threads of one slowed PyTorch in another 20-fold);
* on TensorFlow, textgen's tf.data pipeline against the NumPy-gathered batches through a
  keras.utils.PyDataset that JAX and PyTorch train from (the same batches);
* each of textgen's speed choices against its alternative. textgen's rows are built as a long
  `textgen train` builds them on this machine (devices.cpu_layout: one recurrent chain per core,
  loop unrolled); beside them the default config not unrolled (runs shorter than 50 x window
  steps), with plain layers (as on a GPU) and with batches of unknown size (an epoch's last
  batch short; textgen tops it up to a full batch). In processes apart from those: the default
  config with tf.data's autotuning (textgen switches it off), plain layers with XLA
  ``jit_compile`` (textgen leaves it off), mixed_bfloat16 (textgen refuses it on a CPU), and the
  default and best-cpu configs with TensorFlow's own thread settings (textgen runs each op on
  one thread on a machine of <= 2 cores);
* the per-step time split: gathering a batch in the input pipeline alone, one training step on
  a batch already in memory, and a real step (pipeline + model) - a starved pipeline shows as a
  real step slower than the model step;
* peak RSS of `textgen train` (default config, 50 steps) on a generated ~100 MB corpus, and of a
  50-step run on tinyshakespeare for comparison, each in a fresh process;
* wall time of `textgen --help` (median of 5).

Throughput on this kind of machine drifts between runs, so every model is measured in several
rounds, interleaved (A B C D A B C D ...), and the table gives the median round and the range.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import records
from common import CLI_CHILD, CONFIGS, CORPUS, env, load_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DEFAULT = "default (2 x LSTM 128, batch 128 x 40)"


def bundled_config(stem: str):
    """configs/STEM.toml over the defaults, as ``textgen train --config`` resolves it."""
    return load_config(CONFIGS / f"{stem}.toml")


def best_config():
    return bundled_config("best-cpu")


def config_label(name: str, cfg) -> str:
    """A row's name, from the config itself so it never goes stale."""
    return (f"{name} ({cfg.model.layers} x LSTM {cfg.model.units}, "
            f"batch {cfg.window.batch_size} x {cfg.window.window})")


BEST = config_label("best-cpu", best_config())
SEED = "seed-style (one-hot, last char only)"
WRITTEN = SEED + " as the seed code runs it (NumPy one-hot arrays, model.fit(x, y))"
CHAINS = DEFAULT + ", not unrolled"
PLAIN = DEFAULT + ", plain layers (one chain, not unrolled)"
AUTOTUNED = DEFAULT + ", tf.data autotune"
JIT = PLAIN + ", XLA jit_compile"
BF16 = DEFAULT + ", mixed_bfloat16"
SHORT = DEFAULT + ", short last batch (batch size unknown)"
PYDATASET = DEFAULT + ", NumPy batches through a PyDataset (the JAX/PyTorch pipeline)"
BACKENDS = ("tensorflow", "jax", "torch")


def roofline() -> float:
    """Best of 10, before TensorFlow is imported (its thread pools would compete)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    best = 0.0
    for _ in range(10):
        t = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return best


def flops_per_target(cfg, vocab_size: int, last_only_window: int | None = None) -> float:
    """Training FLOPs per trained character: 3 x the forward matrix products."""
    m = cfg.model
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[m.cell]
    per_step, inp = 0, m.embedding_dim if last_only_window is None else vocab_size
    for _ in range(m.layers):
        per_step += 2 * (inp + m.units) * gates * m.units
        inp = m.units
    if last_only_window is None:  # every position is a target: one timestep per target
        return 3 * (per_step + 2 * m.units * vocab_size)
    # seed-style: a whole window of recurrent steps per (last-character) target
    return 3 * (per_step * last_only_window + 2 * m.units * vocab_size)


class Candidate:
    """One model and its pipeline (textgen's NumPy ``TrainBatches`` or a tf.data dataset);
    ``round()`` times one real fit of ``steps`` steps, and one on a batch already in memory."""

    def __init__(self, name, model, source, targets_per_step, flops):
        self.name, self.model, self.source = name, model, source
        self.targets_per_step, self.flops = targets_per_step, flops
        numpy = not hasattr(source, "element_spec")
        if numpy:
            from textgen.windows import py_dataset

            self.ds, first = py_dataset(source), source[0]
        else:
            self.ds, first = source, next(iter(source))
        self.cached = _cached(first, full=numpy or source.element_spec[1].shape[0] is not None)
        self.real, self.compute = [], []  # measure() traces and warms both in a first round

    def _timed_fit(self, data, steps: int) -> float:
        t = time.perf_counter()
        self.model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        return (time.perf_counter() - t) / steps

    def round(self, steps: int) -> None:
        self.real.append(self._timed_fit(self.ds, steps))
        self.compute.append(self._timed_fit(self.cached, steps))

    def pipeline(self, steps: int) -> float:
        if hasattr(self.source, "element_spec"):
            it = iter(self.source)
            next(it)
            t = time.perf_counter()
            for _ in range(steps):
                next(it)
        else:
            t = time.perf_counter()
            for i in range(1, steps + 1):
                self.source[i]
        return (time.perf_counter() - t) / steps

    def row(self, steps: int) -> dict:
        rates = [self.targets_per_step / r for r in self.real]
        real = statistics.median(self.real)
        return {"name": self.name, "targets_s": self.targets_per_step / real,
                "low": min(rates), "high": max(rates), "rounds": len(rates),
                "gflops": self.targets_per_step / real * self.flops / 1e9,
                "split": {"pipeline": self.pipeline(steps), "real": real,
                          "model": statistics.median(self.compute) if self.compute else None}}


def _cached(batch, full: bool):
    """The same batch again and again, from memory: on TensorFlow a cached tf.data dataset (its
    batch dimension known or None, as in the real pipeline: one traced graph serves both),
    elsewhere a PyDataset handing out the same arrays."""
    import keras

    if keras.backend.backend() != "tensorflow":
        from textgen.windows import py_dataset

        class Same:
            def __len__(self):
                return 10**6

            def __getitem__(self, i):
                return batch

        return py_dataset(Same())
    import tensorflow as tf

    from textgen.backends.tensorflow import finish

    x, y = batch
    cached = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(y), drop_remainder=full)
    return finish(cached.cache().repeat())


class ArrayCandidate(Candidate):
    """The seed code's way to train: the whole one-hot array made up front in memory (here only
    as many windows as the rounds use), then ``model.fit(x, y, batch_size=...)``, each round on
    windows it has not seen. No tf.data pipeline of its own to time apart."""

    def __init__(self, name, model, x, y, batch, flops):
        self.name, self.model, self.x, self.y = name, model, x, y
        self.targets_per_step, self.flops, self.batch = batch, flops, batch
        self.real, self.compute, self.offset = [], [], 0

    def round(self, steps: int) -> None:
        n = steps * self.batch
        if self.offset + n > len(self.x):
            self.offset = 0
        part = slice(self.offset, self.offset + n)
        self.offset += n
        t = time.perf_counter()
        self.model.fit(self.x[part], self.y[part], batch_size=self.batch, epochs=1, verbose=0)
        self.real.append((time.perf_counter() - t) / steps)

    def pipeline(self, steps: int) -> None:
        return None


def textgen_candidate(name, cfg, data, layout: str = "textgen", autotune: bool = False,
                      jit: bool = False, precision: str = "float32",
                      full_batches: bool = True, pipeline: str = "textgen",
                      fused: bool = True) -> Candidate:
    """``layout``: "textgen" builds the model as a long `textgen train` does on this machine
    (devices.cpu_layout: on TensorFlow the chains and unrolling), "chains" without unrolling,
    "plain" as on a GPU. ``pipeline``: "textgen" is what textgen trains from (tf.data on
    TensorFlow, TrainBatches through a PyDataset elsewhere), "numpy" the latter everywhere;
    ``autotune`` and short last batches apply to tf.data."""
    import keras

    from textgen.devices import cpu_layout, fused_kernel_options
    from textgen.model import build_model, compile_model
    from textgen.backends.tensorflow import train_dataset
    from textgen.windows import TrainBatches

    kwargs = cpu_layout(cfg.window.window, steps=10**6) if layout != "plain" else {}
    kwargs.update(fused_kernel_options(precision))  # as textgen train builds it
    if not fused:  # the fused cuDNN kernel switched off, to measure what it is worth
        kwargs["fused"] = False
    if layout == "chains":
        kwargs["window"] = None
    keras.utils.set_random_seed(0)
    if pipeline == "numpy" or keras.backend.backend() != "tensorflow":
        source = TrainBatches(data.ids, cfg.window, seed=0, epochs=1, steps=10**6)
    else:
        source = train_dataset(data.ids, cfg.window, seed=0, epochs=1, steps=10**6,
                               autotune=autotune, full_batches=full_batches)
    keras.config.set_dtype_policy(precision)  # textgen refuses mixed precision on a CPU
    model = build_model(cfg.model, len(data.vocab), **kwargs)
    compile_model(model, cfg.train)
    keras.config.set_dtype_policy("float32")
    if jit or keras.backend.backend() == "tensorflow":
        model.jit_compile = jit  # textgen leaves XLA off on TensorFlow; JAX always compiles
    return Candidate(name, model, source, cfg.window.batch_size * cfg.window.window,
                     flops_per_target(cfg, len(data.vocab)))


def seed_candidate(cfg, data) -> Candidate:
    from speed import seed_style_model  # bench/speed.py, beside this script

    from textgen.backends.tensorflow import train_dataset

    w, v = cfg.window.window, len(data.vocab)
    ds = train_dataset(data.ids, cfg.window, seed=0, epochs=1, steps=10**6)
    ds = ds.map(lambda x, y: (x, y[:, -1]))
    return Candidate(SEED, seed_style_model(cfg, v), ds, cfg.window.batch_size,
                     flops_per_target(cfg, v, last_only_window=w))


def written_candidate(cfg, data, steps: int) -> Candidate:
    """Holds one-hot arrays of the windows of ``steps`` batches."""
    import numpy as np
    from speed import seed_style_model

    w, v, step = cfg.window.window, len(data.vocab), cfg.window.step
    starts = np.arange(steps * cfg.window.batch_size, dtype=np.int64) * step
    seq = np.asarray(data.ids)[starts[:, None] + np.arange(w + 1)]
    one_hot = np.eye(v, dtype=bool)
    return ArrayCandidate(WRITTEN, seed_style_model(cfg, v, as_written=True), one_hot[seq[:, :-1]],
                          one_hot[seq[:, -1]], cfg.window.batch_size,
                          flops_per_target(cfg, v, last_only_window=w))


def measure(names: list[str], rounds: int, steps: int) -> list[dict]:
    """Rows for the named candidates, measured in ``rounds`` interleaved rounds."""
    from textgen.config import Config
    from textgen.data import prepare

    default = Config()
    best = best_config()
    data = prepare([str(CORPUS)], default, use_cache=False)
    makers = {
        DEFAULT: lambda: textgen_candidate(DEFAULT, default, data),
        AUTOTUNED: lambda: textgen_candidate(AUTOTUNED, default, data, autotune=True),
        CHAINS: lambda: textgen_candidate(CHAINS, default, data, layout="chains"),
        PLAIN: lambda: textgen_candidate(PLAIN, default, data, layout="plain"),
        JIT: lambda: textgen_candidate(JIT, default, data, layout="plain", jit=True),
        BF16: lambda: textgen_candidate(BF16, default, data, precision="mixed_bfloat16"),
        SHORT: lambda: textgen_candidate(SHORT, default, data, full_batches=False),
        PYDATASET: lambda: textgen_candidate(PYDATASET, default, data, pipeline="numpy"),
        BEST: lambda: textgen_candidate(BEST, best, data),
        SEED: lambda: seed_candidate(default, data),
        WRITTEN: lambda: written_candidate(default, data, (rounds + 1) * steps),
    }
    cands = [makers[n]() for n in names]
    for r in range(rounds + 1):
        for c in cands:
            # slower models take fewer steps, to keep the rounds short and even
            c.round(max(steps // 3, 4) if c.name in (BEST, JIT) else steps)
            if r == 0:  # an untimed first round: the first fits after building are slow
                c.real.clear()
                c.compute.clear()
    return [c.row(steps) for c in cands]


def child_rows(names: list[str], threads: str, rounds: int, steps: int) -> list[dict]:
    """Rows measured in a fresh process, with textgen's thread settings or TensorFlow's own
    (threads are fixed when TensorFlow starts; a tf.data autotuner's threads would outlive
    its own rows and slow the others)."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(names), threads,
                          str(rounds), str(steps)], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    for r in rows:
        r["name"] += ", TensorFlow's default threads" if threads == "tf" else ""
    return rows


def backend_worker(backend: str) -> None:
    """``--worker BACKEND``: the default config on one backend, built as `textgen train
    --backend BACKEND` builds it on this machine; one timed round per "round STEPS" line on
    stdin, its row for "row STEPS"."""
    from textgen.config import Config
    from textgen.data import prepare
    from textgen.devices import load_keras, select_backend, set_threads

    select_backend(backend)
    set_threads()  # TensorFlow only, as textgen train does
    load_keras()
    data = prepare([str(CORPUS)], Config(), use_cache=False)
    cand = textgen_candidate(f"{DEFAULT}, {backend} backend", Config(), data)
    print("READY", flush=True)
    for line in sys.stdin:
        command, steps = line.split()
        if command == "row":
            print("ROW " + json.dumps(cand.row(int(steps))), flush=True)
            return
        if command == "round":
            cand.round(int(steps))
        else:  # "clear": the untimed first round is over
            cand.real.clear()
            cand.compute.clear()
        print("DONE", flush=True)


def backend_rows(rounds: int, steps: int) -> list[dict]:
    """The default config on every installed backend, one process each, rounds interleaved
    (TensorFlow, JAX, PyTorch, TensorFlow, ...): only one process computes at a time."""
    import importlib.util

    names = [b for b in BACKENDS if importlib.util.find_spec(b)]
    workers = {b: subprocess.Popen([sys.executable, __file__, "--worker", b], text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for b in names}

    def ask(worker, line: str, answer: str) -> str:
        if line:
            worker.stdin.write(line + "\n")
            worker.stdin.flush()
        for out in worker.stdout:
            if out.startswith(answer):
                return out[len(answer):].strip()
        raise RuntimeError(f"a backend worker stopped (waiting for {answer!r})")

    def turn(worker, line: str, answer: str) -> str:
        """Only the worker whose turn it is runs: the others are stopped (SIGSTOP), so that
        their idle framework threads cannot slow it (PyTorch's fell to 2% of its speed)."""
        worker.send_signal(signal.SIGCONT)
        try:
            return ask(worker, line, answer)
        finally:
            worker.send_signal(signal.SIGSTOP)

    for w in workers.values():
        turn(w, "", "READY")
    for r in range(rounds + 1):
        for w in workers.values():
            turn(w, f"round {steps}", "DONE")
            if r == 0:
                turn(w, f"clear {steps}", "DONE")
    rows = [json.loads(turn(w, f"row {steps}", "ROW ")) for w in workers.values()]
    for w in workers.values():
        w.send_signal(signal.SIGCONT)
    for w in workers.values():
        w.wait()
    return rows


def train_rss(corpus: Path, tmp: Path, name: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CLI_CHILD, "train", str(corpus), "--out", str(tmp / name),
         "--epochs", "1", "--steps-per-epoch", "50", "--seed", "0", "--sample-every", "0"],
        env=env(TEXTGEN_CACHE_DIR=""), capture_output=True, text=True, check=True, cwd=tmp)
    return float(out.stderr.strip().splitlines()[-1])


def print_table(rows: list[dict], peak: float, threads) -> None:
    """The Markdown table; "x seed-style" against the last row (the seed-style model)."""
    seed = rows[-1]["targets_s"]
    print(f"{os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}; roofline (NumPy float32 "
          f"2048^3 matmul): {peak:.0f} GFLOP/s; textgen's threads (intra-op, inter-op): "
          f"{threads or 'TensorFlow defaults'}; median of {rows[0]['rounds']} interleaved "
          "rounds\n")
    print("| model | targets/s | range | x seed-style | GFLOP/s | % of roofline "
          "| pipeline ms/step | model ms/step | real ms/step |")
    print("|---|---|---|---|---|---|---|---|---|")

    def ms(seconds, digits):
        return "-" if seconds is None else f"{1000 * seconds:.{digits}f}"

    for r in rows:
        s = r["split"]
        print(f"| {r['name']} | {r['targets_s']:,.0f} | {r['low']:,.0f}-{r['high']:,.0f} | "
              f"{r['targets_s'] / seed:.1f} | {r['gflops']:.1f} | {100 * r['gflops'] / peak:.0f}% "
              f"| {ms(s['pipeline'], 2)} | {ms(s['model'], 1)} | {ms(s['real'], 1)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--mb", type=int, default=100, help="size of the generated corpus")
    parser.add_argument("--backends-only", action="store_true",
                        help="only the default config on each backend (and the pipelines)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend_worker(args.worker)
        return
    if args.child:
        names, threads, rounds, steps = args.child
        if threads == "textgen":
            from textgen.devices import set_threads

            set_threads()
        print(json.dumps(measure(json.loads(names), int(rounds), int(steps))))
        return
    rounds, steps = (3, 8) if args.quick else (5, 15)

    peak = roofline()
    from textgen.devices import set_threads

    threads = set_threads()  # as `textgen train` does, before TensorFlow starts
    config = {"mode": "backends-only" if args.backends_only else "full", "rounds": rounds,
              "steps": steps, "threads": list(threads) if threads else None}
    if args.backends_only:
        rows = measure([DEFAULT, PYDATASET, SEED], rounds, steps)
        rows[-1:-1] = backend_rows(rounds, steps)
        print_table(rows, peak, threads)
        records.write_record("train_speed", config, {"roofline_gflops": peak, "rows": rows})
        return
    rows = measure([DEFAULT, PYDATASET, BEST, CHAINS, PLAIN, SHORT, SEED], rounds, steps)
    rows[-1:-1] = backend_rows(rounds, steps)
    rows[-1:-1] = child_rows([AUTOTUNED, JIT, BF16], "textgen", rounds, steps)
    # the seed code as written runs with TensorFlow's own threads, as it does for its users
    rows[-1:-1] = child_rows([DEFAULT, BEST, WRITTEN] if threads else [WRITTEN], "tf", rounds,
                             steps)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = tmp / "big.txt"
        text = CORPUS.read_text()
        with open(big, "w") as f:
            for _ in range(args.mb * 1_000_000 // len(text) + 1):
                f.write(text)
        rss_big = train_rss(big, tmp, "big")
        rss_small = train_rss(CORPUS, tmp, "small")
        big_mb = big.stat().st_size / 1e6

    helps = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "textgen", "--help"], check=True,
                       capture_output=True)
        helps.append(time.perf_counter() - t)

    print_table(rows, peak, threads)
    written = next(r["targets_s"] for r in rows if r["name"].startswith(WRITTEN))
    print(f"\nThe default config against the seed-style model as the seed code runs it: "
          f"{rows[0]['targets_s'] / written:.1f}x.")
    print(f"Peak RSS of `textgen train` (default config, 50 steps): {rss_big:,.0f} MB on a "
          f"{big_mb:.0f} MB corpus, {rss_small:,.0f} MB on tinyshakespeare (1.1 MB).")
    print(f"`textgen --help`: {statistics.median(helps) * 1000:.0f} ms (median of 5, "
          f"python -m textgen).")
    records.write_record("train_speed", dict(config, mb=args.mb), {
        "roofline_gflops": peak, "rows": rows,
        "default_vs_seed_as_written": rows[0]["targets_s"] / written,
        "train_rss_mb": {"big": rss_big, "big_corpus_mb": big_mb, "tinyshakespeare": rss_small},
        "help_ms": statistics.median(helps) * 1000})


if __name__ == "__main__":
    main()
