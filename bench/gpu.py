"""Training speed on a GPU: textgen's Keras step against the bare kernel, per backend, bounded.

    python bench/gpu.py                       # every backend installed, about 150 s each
    python bench/gpu.py --budget 120 --out /tmp/gpu-bench
    python bench/gpu.py --cpu --quick         # try it on a CPU: about a minute

textgen must be importable: installed (pip install -e .), or PYTHONPATH=. from the checkout as
scripts/gpu_session.sh sets it on a GPU machine without an install.

For each backend installed (PyTorch, JAX, TensorFlow), in a process of its own (one backend per
process; JAX is kept from taking most of the GPU's memory up front), within ``--budget``
seconds (the parent stops a worker that overruns, keeping what it reported), for each shape
textgen trains (configs/gpu.toml, configs/best-cpu.toml, the default config, in that order of
priority) in float32 and mixed_bfloat16 (on a GPU), four ways to run the same training step on
the same batches, already in memory (real text windows, a ring of ``RING`` batches):

* ``textgen fit``: the model built as `textgen train --backend B` builds it
  (textgen.model.build_model + compile_model, devices.fused_kernel_options; on TensorFlow on a
  small CPU devices.cpu_layout), ``fit`` with textgen's per-batch callbacks (divergence check,
  step counter, signal check, per-step loss), as textgen trains;
* ``keras fit``: the same ``fit`` without callbacks;
* ``keras step``: Keras's own compiled train function called directly on batches already on
  the device (no fit loop, no per-step copy; PyTorch and JAX);
* ``bare``: bench/bare_kernel.py's step, the same network and update written in the backend
  (cuDNN's LSTM on a GPU), batches already on the device.

Rows give ms per step (median over interleaved rounds, A B C D A B C D ..., after an untimed
warm-up: compiling, cuDNN's plans), the range, Keras / bare (the overhead textgen controls)
and targets/s (characters trained per second). Then the levers, each timed beside its
reference in rounds of their own: the fused kernel off (Keras's ``use_cudnn=False``), fused or
per-parameter Adam, one LSTM module per layer, batches copied from the host every step,
``torch.compile`` (bare, and Keras's ``jit_compile=True``), scan unrolling and donation (JAX),
bigger batches. Then the profiler summary of one textgen step and one bare step
(bench/profile_step.py): on PyTorch whether cuDNN's RNN kernel ran.

Prints Markdown tables and writes one record through bench/records.py (bench ``gpu``;
``--results`` picks the folder); ``--out DIR`` also keeps each worker's log and the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpora" / "tinyshakespeare.txt"
BACKENDS = ("torch", "jax", "tensorflow")
SHAPES = ("gpu", "best-cpu", "default")  # in order of priority: a tight budget drops the last
# A shape no config trains, for trying this script on a CPU in seconds (--cpu --quick).
TINY = {"model": {"layers": 2, "units": 32, "embedding_dim": 16},
        "window": {"window": 20, "batch_size": 16}, "train": {"optimizer": "adam", "lr": 0.003}}
PRECISIONS = ("float32", "mixed_bfloat16")
KINDS = ("textgen fit", "keras fit", "keras step", "bare")
RING = 8  # distinct batches cycled through
# Each process: JAX takes memory as it needs it (by default it takes 75% of the GPU at start).
CHILD_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
             "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
MARK = "@@ "  # a worker's report lines start with this


def emit(event: str, **data) -> None:
    print(MARK + json.dumps({"event": event, **data}, default=str), flush=True)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def configs() -> dict:
    from train_speed import bundled_config  # bench/train_speed.py, beside this script

    from textgen.config import Config

    return {"default": Config(), **{stem: bundled_config(stem) for stem in ("best-cpu", "gpu")},
            "tiny": Config.from_dict(TINY)}


# ----------------------------------------------------------------------------- candidates

class Candidate:
    """One way to run training steps: ``run(n)`` queues n steps, ``sync()`` waits for them.
    ``warm()`` runs it untimed (compiling), then sizes a round to about ``round_s`` seconds."""

    def __init__(self, name: str, kind: str, targets: int, run, sync, min_steps: int = 2):
        self.name, self.kind, self.targets = name, kind, targets
        self.run, self.sync, self.min_steps = run, sync, min_steps
        self.steps, self.times, self.warm_s = min_steps, [], None

    def timed(self, steps: int) -> float:
        start = time.perf_counter()
        self.run(steps)
        self.sync()
        return (time.perf_counter() - start) / steps

    def warm(self, round_s: float, max_steps: int) -> None:
        start = time.perf_counter()
        self.run(2)
        self.sync()
        self.warm_s = time.perf_counter() - start
        per_step = self.timed(2)
        self.steps = int(min(max(math.ceil(round_s / per_step), self.min_steps), max_steps))

    def round(self) -> None:
        self.times.append(self.timed(self.steps))

    def summary(self) -> dict | None:
        if not self.times:
            return None
        median = statistics.median(self.times)
        return {"ms": median * 1e3, "low_ms": min(self.times) * 1e3,
                "high_ms": max(self.times) * 1e3, "rounds": len(self.times),
                "steps_per_round": self.steps, "targets_s": self.targets / median,
                "warmup_s": self.warm_s}


class Lab:
    """Everything one backend's worker builds: Keras, the corpus's ids, per-shape rings of
    batches, and the candidates."""

    def __init__(self, backend: str, cpu: bool):
        from textgen.config import Config
        from textgen.data import prepare
        from textgen.devices import (gpus, load_keras, select_backend, set_determinism,
                                     set_threads)

        select_backend(backend)
        set_threads()  # as `textgen train` does: TensorFlow on a small CPU only
        self.keras = load_keras()
        self.backend = backend
        self.gpu = bool(gpus())
        if not self.gpu and not cpu:
            raise RuntimeError("no GPU visible")
        set_determinism(0)  # as `textgen train` does (deterministic kernels), for every row
        data = prepare([str(CORPUS)], Config(), use_cache=False)
        self.vocab, self.ids = len(data.vocab), data.split.train
        self.configs = configs()
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu-bench-"))

    def shape(self, name: str, batch: int | None = None):
        from bare_kernel import Shape

        shape = Shape.of(self.configs[name], self.vocab)
        return shape.with_batch(batch) if batch else shape

    def ring(self, shape) -> list:
        from bare_kernel import batches

        return batches(shape, RING, seed=0, ids=self.ids)

    def sync_keras(self, model):
        if self.backend == "torch":
            import torch

            return torch.cuda.synchronize if self.gpu else (lambda: None)
        if self.backend == "jax":
            import jax

            return lambda: jax.block_until_ready(model.trainable_variables[0].value)
        return lambda: model.trainable_variables[0].numpy()

    def to_device(self, batch):
        if self.backend == "torch":
            import torch

            device = "cuda" if self.gpu else "cpu"
            return tuple(torch.as_tensor(a, device=device) for a in batch)
        if self.backend == "jax":
            import jax

            return tuple(jax.device_put(a) for a in batch)
        import tensorflow as tf

        return tuple(tf.constant(a) for a in batch)


def keras_model(lab: Lab, config: str, precision: str, fused: bool = True,
                jit: bool | None = None, batch: int | None = None):
    """textgen's compiled model, as `textgen train --backend B --precision P` builds it."""
    import dataclasses

    from textgen.devices import cpu_layout, fused_kernel_options
    from textgen.model import build_model, compile_model

    keras, cfg = lab.keras, lab.configs[config]
    if batch:  # a bigger batch with the learning rate scaled linearly
        scale = batch / cfg.window.batch_size
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                                 lr=cfg.train.lr * scale))
    kwargs = {} if lab.gpu else cpu_layout(cfg.window.window, steps=10**6)
    kwargs.update(fused_kernel_options(precision))
    if not fused:
        kwargs["fused"] = False
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(precision)
    try:
        model = build_model(cfg.model, lab.vocab, **kwargs)
        compile_model(model, cfg.train)
    finally:
        keras.config.set_dtype_policy("float32")
    if jit is not None:
        model.jit_compile = jit
    elif lab.backend == "tensorflow":
        model.jit_compile = False  # textgen leaves XLA off on TensorFlow
    model.optimizer.build(model.trainable_variables)
    return model, cfg


def ring_dataset(lab: Lab, ring: list):
    """The ring of batches as ``fit`` reads them: a keras.utils.PyDataset (textgen's
    pipeline on JAX and PyTorch), a cached tf.data dataset on TensorFlow."""
    if lab.backend == "tensorflow":
        import numpy as np
        import tensorflow as tf

        from textgen.backends.tensorflow import finish

        x = np.concatenate([b[0] for b in ring])
        y = np.concatenate([b[1] for b in ring])
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(ring[0][0]),
                                                              drop_remainder=True)
        return finish(ds.cache().repeat())
    from textgen.windows import py_dataset

    class Ring:
        def __len__(self):
            return 10**9

        def __getitem__(self, i):
            return ring[i % len(ring)]

    return py_dataset(Ring())


def textgen_callbacks(lab: Lab) -> list:
    """textgen's per-batch callbacks (train._callbacks), on a scratch run folder; the
    epoch-end ones (checkpoints, samples, logs) are left out: a round is not an epoch."""
    from textgen import callbacks as cb
    from textgen.trainer import StopFlag

    progress = cb.Progress(10**9, 0, 0, math.inf, 0, 0.0)
    return [cb.DivergenceStop(progress, lab.vocab, lab.tmp), cb.StepCounter(progress),
            cb.SignalStop(StopFlag()), cb.StepLoss(progress, lab.tmp, math.nan)]


def fit_candidate(lab: Lab, name: str, kind: str, model, ring, callbacks=None) -> Candidate:
    ds = ring_dataset(lab, ring)

    def run(n):
        model.fit(ds, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False,
                  callbacks=callbacks)

    # on a GPU at least 5 steps a round, so that fit's own start and end weigh little
    return Candidate(name, kind, ring[0][0].size, run, lab.sync_keras(model),
                     min_steps=5 if lab.gpu else 2)


def keras_step_candidate(lab: Lab, name: str, model, ring) -> Candidate | None:
    """Keras's own train function, called directly on batches on the device."""
    if lab.backend == "tensorflow":
        return None  # its train function reads a tf.data iterator: the fit row is that
    on_device = [lab.to_device(b) for b in ring]
    model.make_train_function()
    if lab.backend == "torch":
        def run(n):
            for i in range(n):
                model.train_function([on_device[i % len(on_device)]])
    else:
        def run(n):
            state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                         optimizer_variables=True, metrics_variables=True)
            for i in range(n):
                _, state = model.train_function(state, iter([on_device[i % len(on_device)]]))
            keys = ("trainable_variables", "non_trainable_variables", "optimizer_variables",
                    "metrics_variables")
            model._jax_state = dict(zip(keys, state))  # back into the model, as
            model._jax_state_synced = False  # train_on_batch does
            model.jax_state_sync()
    return Candidate(name, "keras step", ring[0][0].size, run, lab.sync_keras(model))


def bare_candidate(lab: Lab, name: str, shape, ring, precision: str, feed: str = "device",
                   **options) -> Candidate:
    """bench/bare_kernel.py's step. ``feed``: "device" (batches already there), "host" (each
    batch copied from host memory every step, as Keras does) or "pinned" (PyTorch on a GPU:
    from page-locked memory, ``non_blocking``)."""
    from bare_kernel import make_bare, random_weights

    bare = make_bare(lab.backend, shape, random_weights(shape), precision, **options)
    on_device = [bare.to_device(b) for b in ring]
    if feed == "pinned":
        import torch

        pinned = [tuple(torch.from_numpy(a).pin_memory() for a in b) for b in ring]
    last = []

    def batch(i):
        if feed == "host":
            return bare.to_device(ring[i % len(ring)])
        if feed == "pinned":
            return tuple(t.to(bare.device, non_blocking=True) for t in pinned[i % len(ring)])
        return on_device[i % len(ring)]

    def run(n):
        for i in range(n):
            last[:] = [bare.step(*batch(i))]

    return Candidate(name, "bare", shape.targets, run, lambda: bare.sync(), min_steps=2)


# ----------------------------------------------------------------------------- the worker

def build_group(lab: Lab, config: str, precision: str) -> dict:
    """The four candidates of one (shape, precision) row; the model and the bare step are
    kept for the profiler and the levers."""
    shape = lab.shape(config)
    ring = lab.ring(shape)
    model, _ = keras_model(lab, config, precision)
    label = f"{config} ({shape.label()}), {precision}"
    cands = [fit_candidate(lab, label, "textgen fit", model, ring, textgen_callbacks(lab)),
             fit_candidate(lab, label, "keras fit", model, ring),
             keras_step_candidate(lab, label, model, ring),
             bare_candidate(lab, label, shape, ring, precision)]
    return {"config": config, "precision": precision, "shape": shape, "label": label,
            "model": model, "ring": ring, "cands": [c for c in cands if c is not None]}


def group_row(group: dict) -> dict:
    row = {"config": group["config"], "precision": group["precision"], "label": group["label"],
           "shape": asdict(group["shape"])}
    for c in group["cands"]:
        row[c.kind] = c.summary()
    bare = row.get("bare")
    for kind in ("textgen fit", "keras fit", "keras step"):
        if row.get(kind) and bare:
            row[f"{kind} / bare"] = row[kind]["ms"] / bare["ms"]
    return row


def run_rounds(cands: list, until: float, max_rounds: int, report) -> None:
    """Interleaved rounds (every candidate once per round) while a whole round still fits
    before ``until`` (at least one round); ``report()`` after each round."""
    done = 0
    while done < max_rounds:
        estimate = sum(c.steps * (statistics.median(c.times) if c.times else 0.0)
                       for c in cands)
        if done and time.monotonic() + estimate > until:
            break
        for c in list(cands):
            try:
                c.round()
            except Exception as e:  # noqa: BLE001 - one failing candidate stops no other
                log(f"{c.kind} {c.name}: {type(e).__name__}: {e}")
                cands.remove(c)
        done += 1
        report()


def worker(backend: str, budget: float, cpu: bool, shapes: list, precisions: list,
           quick: bool, levers: bool, profile: bool, threads: int | None = None) -> None:
    start = time.monotonic()
    deadline = start + budget
    if threads and backend == "torch":  # --threads: a shared CPU (textgen sets none on torch)
        import torch

        torch.set_num_threads(threads)
    lab = Lab(backend, cpu)
    from textgen.devices import describe_devices

    emit("device", info=describe_devices("lstm"), keras=lab.keras.__version__,
         framework=__import__(backend).__version__, import_s=time.monotonic() - start)
    round_s, max_steps = (0.25, 8) if not lab.gpu else (0.2, 60)
    if quick:
        round_s = round_s / 2
    # shares of the budget: building and warming up (compiling) to 40%, the main table's
    # rounds to 65% (85% without levers), the profiles (JAX compiles the steps again to read
    # their programs), the levers to the end
    groups = build_groups(lab, shapes, precisions if lab.gpu else ["float32"], round_s,
                          max_steps, start + 0.4 * budget)
    cands = [c for g in groups for c in g["cands"] if c.warm_s is not None]
    run_rounds(cands, start + (0.65 if levers else 0.85) * budget, 3 if quick else 7,
               lambda: emit("table", rows=[group_row(g) for g in groups]))
    if profile and groups:
        emit("profile", profiles=profiles_for(lab, groups, 3 if quick else 5,
                                              start + (0.8 if levers else 0.97) * budget))
    if levers and groups:
        run_levers(lab, groups, round_s, max_steps, deadline - 3, quick)
    emit("done", seconds=time.monotonic() - start)


def build_groups(lab: Lab, shapes, precisions, round_s, max_steps, until) -> list:
    groups = []
    for config in shapes:
        for precision in precisions:
            if time.monotonic() > until:
                emit("skipped", what=f"{config}, {precision}", why="budget spent building")
                continue
            try:
                group = build_group(lab, config, precision)
                for c in group["cands"]:
                    c.warm(round_s, max_steps)
            except Exception as e:  # noqa: BLE001 - record it; the other rows go on
                emit("error", what=f"{config}, {precision}", error=f"{type(e).__name__}: {e}")
                continue
            log(f"built {group['label']}: warm-up " + ", ".join(
                f"{c.kind} {c.warm_s:.1f} s" for c in group["cands"]))
            groups.append(group)
    return groups


# ----------------------------------------------------------------------------- levers

def nondeterministic(lab: Lab, make):
    """``make`` (a lever's maker), its steps run with PyTorch's deterministic algorithms off
    (textgen asks for them: devices.set_determinism)."""
    def made():
        import torch

        cand = make()
        run = cand.run

        def free_run(n):
            torch.use_deterministic_algorithms(False)
            try:
                run(n)
            finally:
                torch.use_deterministic_algorithms(True, warn_only=lab.gpu)
        cand.run = free_run
        return cand
    return made


def lever_specs(lab: Lab, group: dict) -> list:
    """(name, reference kind in ``group``, maker) for this backend; makers build a
    Candidate. Costly compiles come last: the budget cuts them first."""
    shape, ring, precision = group["shape"], group["ring"], group["precision"]
    config = group["config"]
    label = group["label"]

    def bare(name, **options):
        return lambda: bare_candidate(lab, f"{label}, {name}", shape, ring, precision, **options)

    def keras_fit(name, **options):
        def make():
            batch = options.pop("batch", None)
            model, _ = keras_model(lab, config, precision, batch=batch, **options)
            big = lab.ring(lab.shape(config, batch)) if batch else ring
            return fit_candidate(lab, f"{label}, {name}", "keras fit", model, big)
        return make

    specs = [("bare: batches copied from the host every step", "bare", bare("host", feed="host")),
             ("keras fit: fused kernel off (use_cudnn=False)", "keras fit",
              keras_fit("use_cudnn=False", fused=False))]
    if lab.backend == "torch":
        specs += [("bare: Adam fused=True", "bare", bare("fused Adam", adam="fused")),
                  ("bare: Adam foreach=False", "bare", bare("loop Adam", adam="loop")),
                  ("bare: one nn.LSTM per layer", "bare", bare("per layer", per_layer=True)),
                  ("bare: batches from pinned memory, non_blocking", "bare",
                   bare("pinned", feed="pinned") if lab.gpu else None),
                  ("bare: deterministic algorithms off", "bare",
                   nondeterministic(lab, bare("nondeterministic")))]
    if lab.backend == "jax":
        specs += [("bare: lax.scan LSTM (no cuDNN)", "bare", bare("scan", cudnn=False)),
                  ("bare: lax.scan unroll=4", "bare", bare("scan unroll 4", cudnn=False,
                                                           unroll=4)),
                  ("bare: no buffer donation", "bare", bare("not donated", donate=False))]
    if lab.gpu:
        b = shape.batch
        specs += [(f"keras fit: batch {2 * b}, lr x2", "keras fit", keras_fit("2x", batch=2 * b)),
                  (f"keras fit: batch {4 * b}, lr x4", "keras fit", keras_fit("4x", batch=4 * b))]
    if lab.backend == "torch":
        specs += [("bare: torch.compile of the step", "bare", bare("compiled", compile=True)),
                  ("keras fit: jit_compile=True (torch.compile)", "keras fit",
                   keras_fit("jit_compile", jit=True))]
    return specs


def run_levers(lab: Lab, groups: list, round_s: float, max_steps: int, until: float,
               quick: bool) -> None:
    """Each lever beside its reference (the first group: the first shape in float32), in
    rounds of their own; a lever whose warm-up would not leave time for its rounds is
    skipped."""
    group = groups[0]
    refs = {c.kind: c for c in group["cands"]}
    rows = []
    for name, ref_kind, make in lever_specs(lab, group):
        ref = refs.get(ref_kind)
        left = until - time.monotonic()
        why = ("GPU only" if make is None else "no reference" if ref is None
               else "budget spent" if left < (5 if quick else 20)
               else "--quick: no compiling" if quick and "compile" in name else None)
        if why:
            rows.append({"lever": name, "skipped": why})
            emit("levers", rows=rows, group=group["label"])
            continue
        try:
            cand = make()
            cand.warm(round_s, max_steps)
            if time.monotonic() > until:
                raise TimeoutError("its warm-up used up the budget")
            saved, ref.times = ref.times, []  # the lever's rounds, paired with its own
            try:
                run_rounds([ref, cand], min(until, time.monotonic() + max(left / 4, 10)),
                           2 if quick else 5, lambda: None)
                rows.append({"lever": name, "reference": ref_kind, "ref": ref.summary(),
                             "with": cand.summary(), "ratio": cand.summary()["ms"] /
                             ref.summary()["ms"], "warmup_s": cand.warm_s})
            finally:
                ref.times = saved
        except Exception as e:  # noqa: BLE001 - a lever that fails is a finding too
            rows.append({"lever": name, "error": f"{type(e).__name__}: {str(e)[:300]}"})
        emit("levers", rows=rows, group=group["label"])


# ----------------------------------------------------------------------------- profiles

def profiles_for(lab: Lab, groups: list, steps: int, until: float = math.inf) -> dict:
    """The profiler summaries (bench/profile_step.py) of the first group of each precision
    (JAX: of the first group only; its mixed precision runs the lax.scan loop, by textgen's
    choice, and reading a program means compiling it again): its textgen fit (PyTorch), Keras
    step and bare step; a failure is recorded, not raised."""
    found, seen = {}, set()
    for group in groups[:1] if lab.backend == "jax" else groups:
        if group["precision"] not in seen:
            seen.add(group["precision"])
            found.update(profile_group(lab, group, steps, until))
    return found


def profile_group(lab: Lab, group: dict, steps: int, until: float = math.inf) -> dict:
    """``steps`` steps of each profiled kind, fewer (at least one) where its measured step
    time would run past ``until``; a kind whose one step would is skipped."""
    import profile_step

    found = {}
    by_kind = {c.kind: c for c in group["cands"]}
    for kind in ("textgen fit", "keras step", "bare"):
        cand = by_kind.get(kind)
        if cand is None:
            continue
        label = f"{kind}: {group['label']}"
        per_step = 2 * statistics.median(cand.times) if cand.times else 0.0  # profiler overhead
        fits = int((until - time.monotonic()) / per_step) if per_step else steps
        if fits < 1:
            found[label] = {"error": "skipped: no time left in the budget"}
            continue
        steps = min(steps, fits)
        try:
            if lab.backend == "torch":
                found[label] = profile_step.profile_torch(
                    lambda n, c=cand: (c.run(n), c.sync()), steps, lab.gpu)
            elif lab.backend == "jax" and kind != "textgen fit":
                found[label] = jax_profile(lab, group, kind, cand, steps)
        except Exception as e:  # noqa: BLE001
            found[label] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    return found


def jax_profile(lab: Lab, group: dict, kind: str, cand: Candidate, steps: int) -> dict:
    import jax

    import profile_step
    from bare_kernel import make_bare, random_weights

    ring = [lab.to_device(b) for b in group["ring"]]
    if kind == "keras step":
        model = group["model"]
        state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                     optimizer_variables=True, metrics_variables=True)
        summary = profile_step.xla_summary(jax.jit(model.train_step), state, ring[0])
    else:
        bare = make_bare("jax", group["shape"], random_weights(group["shape"]),
                         group["precision"])
        summary = profile_step.xla_summary(bare._step, bare.params, bare.state, *ring[0],
                                           bare.key)
    summary["profiler"] = f"XLA compiled program (jax {jax.__version__})"
    start = time.perf_counter()
    cand.run(steps)  # dispatch: the Python side of the steps, before waiting for the device
    dispatch = time.perf_counter() - start
    cand.sync()
    timing = {"steps": steps, "dispatch_ms": dispatch * 1e3 / steps,
              "wall_ms": (time.perf_counter() - start) * 1e3 / steps}
    summary.update(timing)
    return summary


def profile_section(backend: str, config: str, precision: str, steps: int) -> dict:
    """bench/profile_step.py's CLI: one group built on this machine, profiled."""
    lab = Lab(backend, cpu=True)
    group = build_group(lab, config, precision)
    for c in group["cands"]:
        c.warm(0.2, 5)
    return profile_group(lab, group, steps)


# ----------------------------------------------------------------------------- the parent

def installed(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(backend) is not None


def run_worker(backend: str, args, log_dir: Path | None) -> dict:
    """One backend's worker process, stopped at its budget plus a grace; what it reported
    before that is kept."""
    cmd = [sys.executable, __file__, "--worker", backend, "--budget", str(args.budget),
           "--shapes", *args.shapes, "--precisions", *args.precisions,
           *["--cpu"] * args.cpu, *["--quick"] * args.quick,
           *["--no-levers"] * args.no_levers, *["--no-profile"] * args.no_profile,
           *(["--threads", str(args.threads)] if args.threads else [])]
    env = dict(os.environ, **CHILD_ENV)
    err = open(log_dir / f"{backend}.log", "w") if log_dir else subprocess.DEVNULL
    result = {"backend": backend}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        out, _ = proc.communicate(timeout=args.budget + args.grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        result["killed"] = f"over its budget of {args.budget} + {args.grace} s"
    result["exit"] = proc.returncode
    result["seconds"] = round(time.monotonic() - start, 1)
    for line in out.splitlines():
        if line.startswith(MARK):
            merge_event(result, json.loads(line[len(MARK):]))
    if err is not subprocess.DEVNULL:
        err.close()
    return result


def merge_event(result: dict, event: dict) -> None:
    kind = event.pop("event")
    if kind in ("error", "skipped"):
        result.setdefault(kind + "s", []).append(event)
    elif kind == "table":
        result["rows"] = event["rows"]
    elif kind == "levers":
        result["levers"] = event["rows"]
    elif kind == "profile":
        result["profiles"] = event["profiles"]
    else:
        result[kind] = event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                        help="default: every one installed")
    parser.add_argument("--budget", type=float, default=150,
                        help="seconds per backend, start-up included (default 150)")
    parser.add_argument("--grace", type=float, default=45,
                        help="a worker still running this long after its budget is stopped")
    parser.add_argument("--shapes", nargs="+", choices=(*SHAPES, "tiny"), default=None,
                        help="configs to measure (default: all; with --cpu: default, with "
                             "--cpu --quick: tiny, 2 x LSTM 32, batch 16 x 20)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--cpu", action="store_true",
                        help="measure on the CPU where no GPU is visible (float32 only)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--threads", type=int,
                        help="PyTorch's CPU threads (default: its own; for a shared CPU)")
    parser.add_argument("--no-levers", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, help="keep the workers' logs and the JSON here")
    parser.add_argument("--results", type=Path, help="records folder (default bench/results)")
    parser.add_argument("--no-record", action="store_true", help="write no record")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.shapes = args.shapes or (list(SHAPES) if not args.cpu else
                                  ["tiny"] if args.quick else ["default"])
    if args.worker:
        worker(args.worker, args.budget, args.cpu, args.shapes, args.precisions, args.quick,
               not args.no_levers, not args.no_profile, args.threads)
        return
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for backend in args.backends or [b for b in BACKENDS if installed(b)]:
        log(f"{backend}: worker started (budget {args.budget:.0f} s)")
        results.append(run_worker(backend, args, args.out))
        log(f"{backend}: done in {results[-1]['seconds']} s (exit {results[-1]['exit']})")
    config = {"mode": "cpu" if args.cpu else "gpu", "quick": args.quick,
              "budget_s_per_backend": args.budget, "shapes": args.shapes,
              "precisions": args.precisions, "ring_batches": RING, "kinds": list(KINDS)}
    figures = {"cudnn_rnn": cudnn_findings(results), "backends": results}
    if args.out:
        (args.out / "gpu.json").write_text(json.dumps({"config": config, **figures}, indent=1))
    if not args.no_record:
        import records

        records.write_record("gpu", config, figures, results=args.results)
    print_tables(results)


def cudnn_findings(results: list) -> dict:
    """{backend: {profiled step: whether cuDNN's RNN kernel ran}}, read off the profiles:
    on PyTorch ``aten::_cudnn_rnn`` in the trace, on JAX a cuDNN RNN custom call in the
    compiled program."""
    return {res["backend"]: {label: p["cudnn_rnn"] for label, p in res.get("profiles", {}).items()
                             if "cudnn_rnn" in p} for res in results}


def print_cudnn(results: list) -> None:
    for res in results:
        gpu = res.get("device", {}).get("info", {}).get("gpus")
        for label, p in res.get("profiles", {}).items():
            if "cudnn_rnn" not in p:
                continue
            where = "on the GPU" if gpu else "on the CPU (cuDNN is GPU-only)"
            detail = (f"aten::_cudnn_rnn {p['cudnn_rnn_calls']}/step, matmuls {p['matmuls']}/step"
                      if "matmuls" in p else f"custom calls {p.get('custom_calls')}")
            print(f"cuDNN RNN kernel, {res['backend']}, {label} {where}: "
                  f"{'YES' if p['cudnn_rnn'] else 'NO'} ({detail})")


def _ms(summary: dict | None) -> str:
    return "-" if not summary else f"{summary['ms']:.2f}"


def _range(summary: dict | None) -> str:
    return "-" if not summary else f"{summary['low_ms']:.2f}-{summary['high_ms']:.2f}"


def print_tables(results: list) -> None:
    for res in results:
        device = res.get("device", {})
        info = device.get("info", {})
        print(f"- {res['backend']} {device.get('framework', '?')}, Keras {device.get('keras')}"
              f", GPUs {info.get('gpu_names') or info.get('gpus') or 'none'}: "
              f"{info.get('cudnn_kernel', '')} ({res['seconds']} s"
              f"{', ' + res['killed'] if res.get('killed') else ''})")
        for e in res.get("errors", []) + res.get("skippeds", []):
            print(f"  - {e.get('what')}: {e.get('error') or e.get('why')}")
    print("\n| shape, precision | backend | textgen fit ms | keras fit ms | keras step ms | "
          "bare ms (range) | textgen / bare | keras step / bare | targets/s textgen | "
          "targets/s bare |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for res in results:
        for row in res.get("rows", []):
            tg, bare = row.get("textgen fit"), row.get("bare")
            ratio = lambda k: f"{row[k]:.2f}" if k in row else "-"  # noqa: E731
            print(f"| {row['label']} | {res['backend']} | {_ms(tg)} | {_ms(row.get('keras fit'))}"
                  f" | {_ms(row.get('keras step'))} | {_ms(bare)} ({_range(bare)}) | "
                  f"{ratio('textgen fit / bare')} | {ratio('keras step / bare')} | "
                  f"{tg['targets_s'] if tg else 0:,.0f} | "
                  f"{bare['targets_s'] if bare else 0:,.0f} |")
    print("\n| lever | backend | reference ms | with lever ms | ratio |")
    print("|---|---|---:|---:|---:|")
    for res in results:
        for lever in res.get("levers", []):
            if "ratio" in lever:
                print(f"| {lever['lever']} | {res['backend']} | {_ms(lever['ref'])} | "
                      f"{_ms(lever['with'])} | {lever['ratio']:.2f} |")
            else:
                print(f"| {lever['lever']} | {res['backend']} | - | "
                      f"{lever.get('error') or lever.get('skipped')} | - |")
    import profile_step

    print()
    print_cudnn(results)
    for res in results:
        if res.get("profiles"):
            print(f"\nProfiles, {res['backend']}:")
            profile_step.print_table({k: v for k, v in res["profiles"].items()
                                      if "error" not in v})
            for k, v in res["profiles"].items():
                if "error" in v:
                    print(f"  {k}: {v['error']}")


if __name__ == "__main__":
    main()
