"""One model on TensorFlow, JAX and PyTorch: the backend matrix.

For each backend, one child process trains a tiny run, evaluates it, checks gradients and
compares the Keras model's next-character distribution with the NumPy sampler's; on JAX and
PyTorch that process cannot import TensorFlow (tests/no_tensorflow/sitecustomize.py). Then a
run killed inside a save resumes to the uninterrupted run's exact state on each backend, and a
run switches from TensorFlow to JAX to PyTorch. The NumPy input pipeline is compared with the
tf.data one batch for batch.
"""

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textgen import devices, runs
from textgen.backends import tensorflow as tensorflow_backend
from textgen.backends.tensorflow import train_dataset, val_dataset
from textgen.config import Config, ModelConfig, WindowConfig
from textgen.errors import ConfigError
from textgen.windows import TrainBatches, ValBatches, index_shuffle, window_starts

from .conftest import TINY_TEXT, finish, invoke

ROOT = Path(__file__).resolve().parents[1]
NO_TENSORFLOW = ROOT / "tests" / "no_tensorflow"
BACKENDS = ["tensorflow", "jax", "torch"]
FLAGS = ["--units", "8", "--embedding-dim", "4", "--window", "16", "--step", "4",
         "--batch-size", "8", "--epochs", "2", "--steps-per-epoch", "3", "--seed", "7",
         "--sample-every", "0", "--save-every", "1"]
KILL = "KILL@rotated@5"  # inside step 5's save: last.h5 still holds step 4, mid-epoch 2

# Runs in the child: CLI commands in order, then (optionally) the sampler parity check; prints
# one JSON report line. With "switch", first loads the run's checkpoint into this backend's
# model and compares every variable with the file.
CHILD = r'''
import json, sys
from pathlib import Path
import numpy as np
spec = json.loads(sys.argv[1])
report = {}

def check_switch(run_dir):
    from textgen.devices import select_backend
    select_backend(spec["backend"])  # before Keras is imported
    import keras
    from textgen import runs, trainer as train
    from textgen.checkpoint import load_last
    run = runs.open_run(run_dir)
    model, _ = train._build_model(run.config, len(run.vocab), 0, 10**6)
    step = load_last(Path(run_dir), model).step
    _, extra, _ = runs.read_weights(Path(run_dir) / "last.h5")
    pairs = [(f"{p}/{i}", v) for p, vs in (("model", model.variables),
             ("optimizer", model.optimizer.variables)) for i, v in enumerate(vs)]
    equal = all(np.array_equal(keras.ops.convert_to_numpy(v), extra[k]) for k, v in pairs)
    return {"step": step, "equal": equal, "variables": len(pairs)}

def parity(run_dir):
    import keras
    from textgen import runs
    from textgen.model import build_model, set_named_weights
    from textgen.sample import Network
    run = runs.open_run(run_dir)
    named = run.read_weights()
    model = build_model(run.config.model, len(run.vocab))
    set_named_weights(model, run.config.model, named)
    ids = np.asarray(run.vocab.encode("the cat sat on the mat.\na dog"), np.int32)
    logits = keras.ops.convert_to_numpy(model(ids[None], training=False))[0]
    net, state, worst = Network(run.config.model, named), None, 0.0
    state = net.initial_state(1)
    soft = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    for t, i in enumerate(ids):
        out, state = net.step(np.array([i]), state)
        worst = max(worst, float(np.abs(soft(out[0].astype(np.float64))
                                        - soft(logits[t].astype(np.float64))).max()))
    return worst

if spec.get("switch"):
    report["switch"] = check_switch(spec["switch"])
from textgen.cli import cli
for name, args in spec["commands"]:
    code = cli.main([str(a) for a in args], prog_name="textgen", standalone_mode=False)
    report[name] = code or 0
if spec.get("parity"):
    report["parity"] = parity(spec["parity"])
report["tensorflow_imported"] = "tensorflow" in sys.modules
try:
    import tensorflow  # noqa: F401
    report["tensorflow_importable"] = True
except ImportError:
    report["tensorflow_importable"] = False
print("REPORT " + json.dumps(report))
'''


def _need(*backends: str) -> None:
    """A backend's framework absent: skip locally, fail under CI (.ci/run installs them)."""
    for backend in backends:
        if importlib.util.find_spec(backend) is None:
            extra = "" if backend == "tensorflow" else f"[{backend}]"  # TensorFlow: a default
            message = f'{backend} is not installed (pip install "textgen{extra}")'
            if os.environ.get("CI"):
                pytest.fail(message + "; CI must run the backend matrix")
            pytest.skip(message + "; CI runs these tests")


def _env(backend: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")}  # textgen quietens itself
    if backend != "tensorflow":  # TensorFlow must not be needed: make it unimportable
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NO_TENSORFLOW),
                                                          env.get("PYTHONPATH")]))
    return env


def _child(spec: dict, cwd: Path) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec, default=str)], cwd=cwd,
                          env=_env(spec["backend"]), capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT "):]), proc.stdout + proc.stderr


def _textgen(args, backend: str, cwd: Path, fault: str | None = None, **extra_env):
    env = {**_env(backend), **extra_env}
    if fault:
        env["TEXTGEN_FAULT"] = fault  # see textgen/checkpoint.py: a signal inside a save
    return subprocess.run([sys.executable, "-m", "textgen", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


class Lab:
    """Runs made once per module and shared: each backend's baseline (with its child report)
    and its run killed inside a save (and a copy of it as killed)."""

    def __init__(self, root: Path):
        self.root, self.corpus, self.made = root, root / "tiny.txt", {}
        self.corpus.write_text(TINY_TEXT, encoding="utf-8")

    def baseline(self, backend: str):
        if ("base", backend) not in self.made:
            out = self.root / f"base-{backend}"
            report, output = _child({"backend": backend, "parity": str(out), "commands": [
                ("train", ["train", self.corpus, "--out", out, *FLAGS, "--backend", backend]),
                ("evaluate", ["evaluate", out, "--order", "3", "--backend", backend]),
                ("check-gradients", ["check-gradients", "--layers", "1", "--units", "3",
                                     "--backend", backend])]}, self.root)
            self.made["base", backend] = (out, report, output)
        return self.made["base", backend]

    def killed(self, backend: str) -> tuple[Path, Path]:
        if ("killed", backend) not in self.made:
            out = self.root / f"killed-{backend}"
            proc = _textgen(["train", self.corpus, "--out", out, *FLAGS, "--backend", backend],
                            backend, self.root, KILL)
            assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
            snapshot = Path(shutil.copytree(out, self.root / f"snapshot-{backend}"))
            self.made["killed", backend] = (out, snapshot)
        return self.made["killed", backend]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return Lab(tmp_path_factory.mktemp("backends"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_evaluate_and_check_gradients(lab, backend):
    """On JAX and PyTorch in a process where `import tensorflow` fails; quiet by default."""
    _need(backend)
    out, report, output = lab.baseline(backend)
    # check-gradients exits 0 only when every gradient is within 1e-6 of central differences
    assert report["train"] == report["evaluate"] == report["check-gradients"] == 0, output
    assert "held-out text:" in output and f"float64, central differences, {backend}" in output
    if backend != "tensorflow":
        assert not report["tensorflow_imported"] and not report["tensorflow_importable"]
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "W0000", "I0000"):
        assert noise not in output, noise
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["train"]["backend"] == backend
    info = invoke(["info", out])
    assert f"backend: '{backend}'" in info.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_sampler_matches_the_keras_model(lab, backend):
    _need(backend)
    _, report, _ = lab.baseline(backend)
    assert report["parity"] < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])  # TensorFlow: test_train's kill tests
def test_killed_inside_a_save_then_resumed_matches_uninterrupted(lab, backend):
    _need(backend)
    base, _, _ = lab.baseline(backend)
    out, _ = lab.killed(backend)
    assert runs.read_weights(out / runs.LAST_WEIGHTS)[2]["step"] == 4
    proc = _textgen(["train", lab.corpus, "--out", out, "--resume", "--backend", backend],
                    backend, lab.root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, want, attrs_want = runs.read_weights(base / runs.LAST_WEIGHTS)
    _, got, attrs_got = runs.read_weights(out / runs.LAST_WEIGHTS)
    assert attrs_got["step"] == attrs_want["step"] == 6 and want.keys() == got.keys()
    for key in want:  # weights, optimizer state, Dropout RNG state, running loss mean
        assert np.array_equal(want[key], got[key]), key
    assert (out / "steps.csv").read_text() == (base / "steps.csv").read_text()


@pytest.mark.slow
def test_resume_switches_from_tensorflow_to_jax_to_pytorch(lab):
    """Each switch loads every variable exactly; training then goes on with a finite loss."""
    _need("tensorflow", "jax", "torch")
    _, snapshot = lab.killed("tensorflow")
    out = Path(shutil.copytree(snapshot, lab.root / "switching"))
    for backend, epochs, step in (("jax", 3, 4), ("torch", 4, 9)):
        report, output = _child({"backend": backend, "switch": str(out), "commands": [
            ("train", ["train", lab.corpus, "--out", out, "--resume", "--backend", backend,
                       "--epochs", epochs])]}, lab.root)
        assert report["switch"] == {"step": step, "equal": True, "variables": 24}, output
        assert report["train"] == 0 and not report["tensorflow_imported"], output
    log = runs.read_csv(out / runs.LOG_FILE)
    assert [int(r["step"]) for r in log] == [3, 6, 9, 12]
    assert all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["val_loss"]))
               for r in log)
    assert json.loads((out / "config.json").read_text())["config"]["train"]["backend"] == "torch"


@pytest.mark.slow
def test_two_jax_processes_on_loopback_train_the_same_model(lab):
    """--strategy multiworker on JAX: two processes of two (XLA host) devices each, joined
    through KERAS_DISTRIBUTION_*, each feeding half of every global batch (keras.distribution.
    DataParallel over the four devices), end with the one-device run's weights."""
    _need("jax")
    import socket

    base, _, _ = lab.baseline("jax")
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = []
    for index in range(2):
        env = {**_env("jax"), "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
               "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
               "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "textgen", "train", str(lab.corpus), "--out",
             str(lab.root / f"jax-worker{index}"), *FLAGS, "--backend", "jax",
             "--strategy", "multiworker"], env=env, cwd=lab.root, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = [finish(p) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    one, _, _ = runs.read_weights(base / runs.BEST_WEIGHTS)
    for index in range(2):  # the same global batches: equal up to the order of the sums
        worker, _, _ = runs.read_weights(lab.root / f"jax-worker{index}" / runs.BEST_WEIGHTS)
        for name in one:
            np.testing.assert_allclose(worker[name], one[name], rtol=1e-4, atol=1e-6,
                                       err_msg=name)


def _tf_batches(ds):
    def arrays(x):
        return tuple(arrays(v) for v in x) if isinstance(x, tuple) else x.numpy()
    return [arrays(b) for b in ds]


def _equal(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a.dtype == b.dtype and np.array_equal(a, b)


def test_index_shuffle_is_tensorflows_permutation():
    import tensorflow as tf

    for n in (1, 2, 100, 256, 257, 65_536, 65_537, 300_000, 30_184_860):
        index = np.arange(min(n, 70_000), dtype=np.int64)[:: 1 if n < 70_000 else 7]
        for seed, epoch in ((0, 0), (7, 3), (2**32 - 1, 9)):
            want = tf.random.experimental.index_shuffle(
                index, seed=tf.constant([seed, epoch], tf.int64), max_index=n - 1).numpy()
            assert np.array_equal(index_shuffle(index, seed, epoch, n - 1), want), (n, seed)


@pytest.mark.parametrize("full_batches", [True, False])
@pytest.mark.parametrize("skip", [0, 7, 40])
def test_numpy_batches_equal_tf_data_batches(full_batches, skip):
    ids = (np.arange(3000) % 71).astype(np.uint8)
    cfg = WindowConfig(window=9, step=2, batch_size=16, val_split=0.0)
    want = _tf_batches(train_dataset(ids, cfg, 5, 3, 40, skip=skip, full_batches=full_batches))
    got = TrainBatches(ids, cfg, 5, 3, 40, skip=skip, full_batches=full_batches)
    assert len(want) == len(got) == 3 * 40 - skip
    assert all(_equal(w, got[i]) for i, w in enumerate(want))
    # with style segments and explicit window starts (styles, --no-cross-docs)
    starts = np.sort(np.random.default_rng(1).choice(2900, 500, replace=False)).astype(np.int32)
    segments = np.array([0, 1000, 2200], np.int64)
    want = _tf_batches(train_dataset(ids, cfg, 9, 2, 30, skip=skip, starts=starts,
                                     segments=segments, full_batches=full_batches))
    got = TrainBatches(ids, cfg, 9, 2, 30, skip=skip, starts=starts, segments=segments,
                       full_batches=full_batches)
    assert len(want) == len(got) and all(_equal(w, got[i]) for i, w in enumerate(want))
    val_starts = window_starts(len(ids), 9, 9)
    want = _tf_batches(val_dataset(ids, cfg, val_starts, segments))
    got = ValBatches(ids, cfg, val_starts, segments)
    assert len(want) == len(got) and all(_equal(w, got[i]) for i, w in enumerate(want))


def test_numpy_batches_shard_rows_between_processes():
    ids = (np.arange(500) % 13).astype(np.uint8)
    cfg = WindowConfig(window=5, step=1, batch_size=8, val_split=0.0)
    whole = TrainBatches(ids, cfg, 1, 2, 20)
    parts = [TrainBatches(ids, cfg, 1, 2, 20, shard=(k, 2)) for k in range(2)]
    for i in range(len(whole)):
        x = np.concatenate([p[i][0] for p in parts])
        assert np.array_equal(x, whole[i][0])
    with pytest.raises(ValueError, match="equal parts"):
        TrainBatches(ids, cfg, 1, 2, 20, shard=(0, 3))


def test_a_gpu_run_gets_recurrent_layers_that_qualify_for_cudnn(monkeypatch):
    from textgen.model import build_model, fused_kernel_blockers

    monkeypatch.setattr(tensorflow_backend, "gpus", lambda: ["GPU:0"])
    layout = devices.cpu_layout(16, 10**6)
    assert layout == {}  # on a GPU: whole batches, not unrolled
    for cell in ("lstm", "gru"):
        cfg = ModelConfig(cell=cell, layers=2, units=4, embedding_dim=3, dropout=0.2,
                          style_dim=2)
        for styles in (0, 2):
            found = fused_kernel_blockers(build_model(cfg, 11, styles, **layout), cell)
            assert found == {"rnn_0": [], "rnn_1": []}, found
    cpu = fused_kernel_blockers(build_model(ModelConfig(units=4, embedding_dim=3), 11,
                                            chains=2, window=16), "lstm")
    assert cpu["rnn_0"] == ["unrolled", "split into chains"]
    rnn = fused_kernel_blockers(build_model(ModelConfig(cell="rnn", units=4), 11), "rnn")
    assert rnn["rnn_0"] == ["the rnn cell has no fused kernel on tensorflow"]


def test_a_missing_framework_is_one_line_not_a_traceback(tmp_path):
    """Keras on a backend whose framework is not installed (here TensorFlow, blocked)."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow",
               PYTHONPATH=os.pathsep.join([str(NO_TENSORFLOW), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-m", "textgen", "check-gradients"], env=env,
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Error: Keras cannot start on the tensorflow backend: no "
                                  "module named 'tensorflow' in "), proc.stderr
    assert proc.stderr.count("\n") == 1 and "pip install textgen" in proc.stderr


def test_jax_runs_the_fused_kernel_in_float32_only(monkeypatch):
    """JAX's cuDNN RNN lowers float32 only (on an H200, mixed_bfloat16 failed to compile and
    float64's backward failed XLA's verifier): there, other dtypes get the generic loop."""
    from textgen.model import build_model, fused_kernel_blockers

    monkeypatch.setattr(devices, "backend", lambda: "jax")
    assert devices.fused_kernel_options("float32") == {}
    for dtype in ("mixed_bfloat16", "mixed_float16", "float64"):
        assert devices.fused_kernel_options(dtype) == {"fused": False}
    for name in ("tensorflow", "torch"):
        monkeypatch.setattr(devices, "backend", lambda name=name: name)
        assert devices.fused_kernel_options("mixed_bfloat16") == {}
    off = "fused kernel switched off (use_cudnn=False)"
    for cell in ("lstm", "gru"):
        model = build_model(ModelConfig(cell=cell, units=4, embedding_dim=3), 11, fused=False)
        assert fused_kernel_blockers(model, cell) == {"rnn_0": [off], "rnn_1": [off]}
    rnn = build_model(ModelConfig(cell="rnn", units=4, embedding_dim=3), 11, fused=False)
    assert off not in fused_kernel_blockers(rnn, "rnn")["rnn_0"]  # SimpleRNN has no such switch


def test_tensorflow_only_pieces_stay_on_tensorflow(monkeypatch):
    monkeypatch.setattr(devices, "backend", lambda: "torch")
    assert devices.cpu_layout(40, 10**9) == {} and devices.set_threads(2) is None
    with pytest.raises(ConfigError, match="not available on the torch backend"):
        devices.make_distribution("mirrored")
    monkeypatch.setattr(devices, "backend", lambda: "jax")
    assert devices.cpu_layout(40, 10**9) == {}


def test_backend_is_chosen_before_keras_is_imported(tiny_corpus, tmp_path):
    import keras  # this test process runs Keras on TensorFlow

    assert keras.backend.backend() == "tensorflow"
    with pytest.raises(ConfigError, match="already imported .* tensorflow backend"):
        devices.select_backend("jax")
    result = invoke(["train", tiny_corpus, "--out", tmp_path / "run", "--backend", "torch",
                     "--epochs", "1"])
    assert result.exit_code == 1 and "must be chosen before Keras is imported" in result.output
    bad = invoke(["check-gradients", "--backend", "mxnet"])
    assert bad.exit_code == 2


def test_backend_may_change_on_resume():
    from textgen.trainer import RESUMABLE_CHANGES

    assert ("train", "backend") in RESUMABLE_CHANGES
    assert Config().train.backend == "tensorflow"


def test_keras_builds_symbolically_without_a_training_batch_under_one_worker():
    """backends/tensorflow.adapt_model replaces Keras's ``_maybe_symbolic_build`` on textgen's
    model under MultiWorkerMirroredStrategy only (there its reduction of a batch across workers
    fails; tests/test_cloud.py trains two workers). This pins the Keras behaviour that lets it
    leave every other strategy alone: the symbolic build still reduces a batch (the source),
    but takes it from an iterator of its own, so training starts at the first batch (a
    release that lost a batch here would fail the first assertion below)."""
    import inspect

    import keras
    import tensorflow as tf
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    assert "distribute_strategy.reduce(" in inspect.getsource(
        TensorFlowTrainer._maybe_symbolic_build)
    batches = [(np.full((2, 1), float(i + 1), "float32"), np.zeros((2, 1), "float32"))
               for i in range(3)]
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"),
                     tf.distribute.MirroredStrategy(["/cpu:0"])):
        with strategy.scope():
            x = keras.Input((1,))
            model = keras.Model(x, keras.layers.Dense(1, use_bias=False,
                                                      kernel_initializer="ones")(x))
            model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        tensorflow_backend.adapt_model(model, strategy)
        assert "_maybe_symbolic_build" not in vars(model)  # left alone under one worker
        data = tf.data.Dataset.from_tensor_slices(
            ([b[0] for b in batches], [b[1] for b in batches]))
        model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
        # one SGD step of w = 1 on mean((w x)^2) at the first batch, x = 1
        assert float(model.layers[-1].kernel.numpy()[0, 0]) == pytest.approx(1.0 - 0.01 * 2)
